"""The results folder (datavalue._core.folder): never touch the user's files, never accept a mix.

Fault injection: writers are killed with SIGKILL at seeded random moments and two writers run
at once; every later read either returns one complete, consistent run or fails with a clear
error.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

import datavalue as dv
from datavalue import DatavalueError, InvalidDataError, InvalidParameterError
from datavalue._core.folder import MANIFEST, RunReader, RunWriter, check_output_folder


def _result(n: int, fill: float) -> dv.ValuationResult:
    return dv.ValuationResult(values=np.full(n, fill), stderr=np.zeros(n),
                              counts=np.full(n, n), method=f"m{n}")


# ---------------------------------------------------------------------- which folders
def test_a_folder_with_user_files_is_refused_and_untouched(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    (tmp_path / "values.csv").write_text("my own values")
    with pytest.raises(InvalidParameterError, match="did not write.*notes.txt"):
        _result(3, 1.0).save(tmp_path)
    assert sorted(os.listdir(tmp_path)) == ["notes.txt", "values.csv"]
    assert (tmp_path / "values.csv").read_text() == "my own values"


def test_new_empty_and_datavalue_folders_are_accepted(tmp_path):
    _result(3, 1.0).save(tmp_path / "new" / "deeper")
    (tmp_path / "empty").mkdir()
    _result(3, 1.0).save(tmp_path / "empty")
    _result(4, 2.0).save(tmp_path / "empty")  # a run folder: replaced
    assert dv.ValuationResult.load(tmp_path / "empty") == _result(4, 2.0)


def test_empty_path_and_file_path_are_refused(tmp_path):
    with pytest.raises(InvalidParameterError, match="empty"):
        check_output_folder("")
    (tmp_path / "f").write_text("x")
    with pytest.raises(InvalidParameterError, match="is a file"):
        check_output_folder(tmp_path / "f")
    with pytest.raises(InvalidParameterError, match="is a file"):
        check_output_folder(tmp_path / "f" / "sub")


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_an_unwritable_folder_is_refused_before_work(tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        with pytest.raises(InvalidParameterError, match="not writable"):
            check_output_folder(ro / "out")
    finally:
        ro.chmod(0o700)


def test_files_the_user_adds_to_a_run_survive_a_new_run(tmp_path):
    _result(3, 1.0).save(tmp_path)
    (tmp_path / "my_notes.md").write_text("keep me")
    with RunWriter(tmp_path, kind="evaluate") as w:
        w.write_text("removal.csv", "a\n1\n")
    with RunWriter(tmp_path, kind="value", replace=True) as w:  # replaces only the run's files
        w.write_text("values.csv", "new\n")
    assert (tmp_path / "my_notes.md").read_text() == "keep me"
    assert not (tmp_path / "removal.csv").exists()  # it belonged to the old run
    assert not (tmp_path / "values.npz").exists()
    assert sorted(json.loads((tmp_path / MANIFEST).read_text())["files"]) == ["values.csv"]


def test_a_writer_never_replaces_a_protected_input(tmp_path):
    with RunWriter(tmp_path, kind="evaluate") as w:
        w.write_text("removal.csv", "x\n1\n")
    with pytest.raises(InvalidParameterError, match="input"):
        check_output_folder(tmp_path, protect=[tmp_path / "removal.csv"])
    with pytest.raises(InvalidParameterError, match="input"), \
            RunWriter(tmp_path, kind="value", replace=True,
                      protect=[tmp_path / "removal.csv"]) as w:
        w.write_text("values.csv", "v\n")
    assert (tmp_path / "removal.csv").read_text() == "x\n1\n"


def test_an_exception_inside_the_writer_changes_nothing(tmp_path):
    _result(3, 1.0).save(tmp_path)
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir() if p.is_file()}
    with pytest.raises(RuntimeError), RunWriter(tmp_path, kind="value", replace=True) as w:
        w.write_text("values.csv", "half")
        raise RuntimeError("the model crashed")
    after = {p.name: p.read_bytes() for p in tmp_path.iterdir() if p.is_file()}
    assert after == before
    assert not [p for p in os.listdir(tmp_path) if p.startswith(".datavalue-staging")]


# ---------------------------------------------------------------------- reading
def test_load_checks_every_file_against_the_manifest(tmp_path):
    _result(5, 1.0).save(tmp_path / "a")
    _result(3, 2.0).save(tmp_path / "b")
    # values.npz of another run beside this run's result.json: refused, not loaded as 3 values
    (tmp_path / "a" / "values.npz").write_bytes((tmp_path / "b" / "values.npz").read_bytes())
    with pytest.raises(InvalidDataError, match="checksum"):
        dv.ValuationResult.load(tmp_path / "a")


def test_result_json_and_values_must_agree_on_n(tmp_path):
    good = _result(5, 1.0)
    with RunWriter(tmp_path, kind="value") as w:
        good._write_to(w)
        meta = json.loads((w.path("result.json")).read_text())
        w.write_text("result.json", json.dumps({**meta, "n": 3}))
    with pytest.raises(InvalidDataError, match="n=3"):
        dv.ValuationResult.load(tmp_path)


def test_a_half_written_run_is_refused_with_a_clear_error(tmp_path):
    _result(3, 1.0).save(tmp_path)
    manifest = json.loads((tmp_path / MANIFEST).read_text())
    (tmp_path / MANIFEST).write_text(json.dumps({**manifest, "state": "writing"}))
    with pytest.raises(InvalidDataError, match="incomplete"):
        dv.ValuationResult.load(tmp_path)
    _result(4, 2.0).save(tmp_path)  # the next writer repairs it
    assert dv.ValuationResult.load(tmp_path) == _result(4, 2.0)


@pytest.mark.parametrize("content", [b"", b"{not json", b'{"schema": "other"}',
                                     b'{"schema": "datavalue-run", "version": 99}'])
def test_a_damaged_manifest_gives_a_clear_error(tmp_path, content):
    _result(3, 1.0).save(tmp_path)
    (tmp_path / MANIFEST).write_bytes(content)
    with pytest.raises(InvalidDataError, match=MANIFEST.replace(".", r"\.")):
        dv.ValuationResult.load(tmp_path)


def test_reading_a_file_or_a_missing_folder_says_which(tmp_path):
    (tmp_path / "f.csv").write_text("x")
    with pytest.raises(InvalidParameterError, match="is a file"):
        dv.ValuationResult.load(tmp_path / "f.csv")
    with pytest.raises(InvalidParameterError, match="does not exist"):
        dv.ValuationResult.load(tmp_path / "nope")
    (tmp_path / "plain").mkdir()
    with pytest.raises(InvalidParameterError, match="not a folder written by datavalue"):
        dv.ValuationResult.load(tmp_path / "plain")


# ---------------------------------------------------------------------- faults
_WRITER = textwrap.dedent(
    """
    import sys, numpy as np
    import datavalue as dv
    out, tag = sys.argv[1], int(sys.argv[2])
    for i in range(int(sys.argv[3])):
        n = 50 + (tag * 1000 + i) % 7
        # every array of version (tag, i) holds the same number: a mix is visible
        fill = tag * 1000.0 + i
        dv.ValuationResult(values=np.full(n, fill), stderr=np.full(n, fill),
                           counts=np.full(n, n), method=f"w{tag}-{i}").save(out)
    """
)


def _check_consistent(folder: Path) -> str:
    """Load the folder: 'ok' for a consistent result, 'refused' for a clear error."""
    try:
        r = dv.ValuationResult.load(folder)
    except DatavalueError as exc:
        return f"refused: {exc}"
    fill = r.values[0]
    assert np.all(r.values == fill) and np.all(r.stderr == fill)
    assert np.all(r.counts == len(r))
    tag, i = divmod(int(fill), 1000)
    assert r.method == f"w{tag}-{i}"
    frame = (folder / "values.csv").read_text().splitlines()
    assert len(frame) == len(r) + 1  # values.csv of the same run
    return "ok"


@pytest.mark.slow
def test_sigkill_at_random_moments_never_leaves_a_mixed_run(tmp_path):
    """Every outcome is either a consistent run or a clear 'incomplete' error (how often each
    happens depends on the machine's speed, so only the invariant is asserted)."""
    script = tmp_path / "writer.py"
    script.write_text(_WRITER)
    out = tmp_path / "out"
    rng = np.random.default_rng(0)  # seeded kill times
    outcomes = []
    for trial in range(12):
        proc = subprocess.Popen([sys.executable, str(script), str(out), str(trial + 1), "100000"])
        # Let the import finish and some saves happen, then kill at a random moment.
        deadline = time.time() + 60
        while not (out / MANIFEST).exists() and time.time() < deadline:
            time.sleep(0.01)
        time.sleep(float(rng.uniform(0.0, 0.3)))
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
        outcomes.append(_check_consistent(out))
    assert all(o == "ok" or "incomplete" in o for o in outcomes), outcomes
    # A killed writer's leftovers never block the next one.
    _result(3, 7.0).save(out)
    assert dv.ValuationResult.load(out) == _result(3, 7.0)
    assert not [p for p in os.listdir(out) if p.startswith(".datavalue-staging")]


def test_a_kill_between_saves_leaves_the_last_run_readable(tmp_path):
    """Deterministic: the writer finishes a save, says so, and is killed while idle."""
    script = tmp_path / "writer.py"
    script.write_text(_WRITER + "\nprint('saved', flush=True)\nimport time\ntime.sleep(600)\n")
    out = tmp_path / "out"
    proc = subprocess.Popen([sys.executable, str(script), str(out), "3", "2"],
                            stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "saved"
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    assert _check_consistent(out) == "ok"
    assert dv.ValuationResult.load(out).method == "w3-1"


@pytest.mark.slow
def test_two_writers_at_once_leave_one_complete_run(tmp_path):
    script = tmp_path / "writer.py"
    script.write_text(_WRITER)
    for trial in range(4):
        out = tmp_path / f"out{trial}"
        procs = [subprocess.Popen([sys.executable, str(script), str(out), str(tag), "30"])
                 for tag in (1, 2)]
        assert [p.wait(timeout=120) for p in procs] == [0, 0]
        assert _check_consistent(out) == "ok"
        files = json.loads((out / MANIFEST).read_text())["files"]
        assert sorted(files) == ["result.json", "values.csv", "values.npz"]


def test_a_second_writer_checking_before_the_lock_sees_only_our_names(tmp_path, monkeypatch):
    """A writer checks the folder before it takes the lock (to fail before any work), so at every
    step of another writer's save the folder must pass that check. Deterministic version of the
    race that the two-process test above meets by chance: every rename and file creation of a
    save into a new folder and into an earlier run is followed by the check."""
    out = tmp_path / "out"
    seen: list[str] = []
    real_replace, real_mkstemp = os.replace, __import__("tempfile").mkstemp

    def check() -> None:
        if out.exists():
            check_output_folder(out)
            seen.append(",".join(sorted(os.listdir(out))))

    def replace(src, dst):
        check()
        real_replace(src, dst)
        check()

    def mkstemp(*a, **k):
        r = real_mkstemp(*a, **k)
        check()
        return r

    monkeypatch.setattr(os, "replace", replace)
    monkeypatch.setattr("tempfile.mkstemp", mkstemp)
    _result(3, 1.0).save(out)
    _result(4, 2.0).save(out)
    assert len(seen) > 10  # the check really ran inside the saves


def test_a_reader_waits_for_a_writer(tmp_path):
    """While a writer holds the folder, a reader blocks instead of reading a mix."""
    import threading

    _result(3, 1.0).save(tmp_path)
    seen = []
    with RunWriter(tmp_path, kind="value", replace=True) as w:
        _result(4, 2.0)._write_to(w)

        def read():
            with RunReader(tmp_path) as r:
                seen.append(len(r.read_bytes("values.csv").splitlines()))

        t = threading.Thread(target=read)
        t.start()
        t.join(0.3)
        assert t.is_alive()  # blocked by the writer's lock
    t.join(10)
    assert seen == [5]  # the new run: header + 4 rows


# ---------------------------------------------------------------------- kinds
def test_the_manifest_records_each_files_kind_and_its_version(tmp_path):
    _result(3, 1.0).save(tmp_path)
    with RunWriter(tmp_path, kind="evaluate") as w:
        w.write_text("removal.csv", "x\n1\n")
    manifest = json.loads((tmp_path / MANIFEST).read_text())
    assert manifest["kinds"] == {"evaluate": 1, "value": 1}
    assert manifest["files"]["removal.csv"]["kind"] == "evaluate"
    assert manifest["files"]["values.npz"]["kind"] == "value"
    with RunReader(tmp_path) as r:
        assert r.kinds == {"evaluate": 1, "value": 1}


def test_a_writer_writes_only_the_files_its_kind_declares(tmp_path):
    with pytest.raises(InvalidParameterError, match="'clean' run does not write 'notes.txt'"), \
            RunWriter(tmp_path, kind="clean") as w:
        w.write_text("notes.txt", "x")
    assert not (tmp_path / "notes.txt").exists()
    with pytest.raises(ValueError, match="Unknown results-folder kind 'nope'"):
        RunWriter(tmp_path, kind="nope")


@pytest.mark.parametrize("kinds, message", [
    ({"value": 99}, "'value' files in format 99; this datavalue reads format 1"),
    ({"hologram": 1}, "a kind this datavalue does not know \\('hologram'\\)"),
])
def test_a_folder_of_a_newer_datavalue_is_refused_clearly(tmp_path, kinds, message):
    _result(3, 1.0).save(tmp_path)
    manifest = json.loads((tmp_path / MANIFEST).read_text())
    manifest["kinds"] = kinds
    (tmp_path / MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(InvalidDataError, match=message + ".*newer datavalue"):
        dv.ValuationResult.load(tmp_path)
