"""The command line never loses or mixes up the user's files, and bad input gets one line.

Run in-process through ``datavalue.cli.main`` (the same code as the ``datavalue`` command): an
exception escaping ``main`` is what a user would see as a traceback.
"""

from __future__ import annotations

import io
import json
import zipfile

import numpy as np
import pandas as pd
import pytest

import datavalue as dv
from datavalue import cli
from datavalue._core.folder import MANIFEST


def main(capsys, *argv) -> tuple[int, str, str]:
    code = cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def one_line_error(code: int, err: str, *mentions: str) -> None:
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("datavalue: error: "), err
    for text in mentions:
        assert text in lines[0], (text, lines[0])


_FAST = ("--data", "iris", "--method", "data-oob", "--n-estimators", "20", "--quiet")


@pytest.fixture()
def run_dir(tmp_path, capsys):
    out = tmp_path / "run"
    code, _, err = main(capsys, "value", *_FAST, "--noise", "0.1", "--out", out)
    assert code == 0, err
    return out


# ---------------------------------------------------------------------- output folders
def test_value_refuses_a_folder_of_user_files_and_touches_nothing(tmp_path, capsys):
    (tmp_path / "report.html").write_text("my report")
    (tmp_path / "values.csv").write_text("my values")
    code, _, err = main(capsys, "value", *_FAST, "--out", tmp_path)
    one_line_error(code, err, "--out", "did not write")
    assert (tmp_path / "report.html").read_text() == "my report"
    assert (tmp_path / "values.csv").read_text() == "my values"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.html", "values.csv"]


def test_value_refuses_an_empty_out(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "review.csv").write_text("mine")
    code, _, err = main(capsys, "value", *_FAST, "--out", "")
    one_line_error(code, err, "--out", "empty")
    assert (tmp_path / "review.csv").read_text() == "mine"


def test_value_never_deletes_its_own_input(run_dir, capsys):
    code, _, err = main(capsys, "evaluate", run_dir, "--fractions", "0.1", "--quiet")
    assert code == 0, err
    before = (run_dir / "removal.csv").read_bytes()
    code, _, err = main(capsys, "value", "--data", run_dir / "removal.csv", "--target",
                        "score", "--out", run_dir, "--quiet")
    one_line_error(code, err, "removal.csv", "input")
    assert (run_dir / "removal.csv").read_bytes() == before


def test_a_new_run_replaces_the_old_runs_files_but_not_the_users(run_dir, capsys):
    code, _, err = main(capsys, "evaluate", run_dir, "--fractions", "0.1", "--quiet")
    assert code == 0, err
    (run_dir / "my_notes.txt").write_text("keep")
    code, _, err = main(capsys, "value", *_FAST, "--out", run_dir)
    assert code == 0, err
    assert not (run_dir / "evaluation.json").exists()  # described the old values
    assert (run_dir / "my_notes.txt").read_text() == "keep"


def test_unwritable_out_and_checkpoint_fail_before_any_work(tmp_path, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    code, out, err = main(capsys, "value", *_FAST, "--out", blocker / "out")
    one_line_error(code, err, "--out")
    assert out == ""  # nothing was computed or printed
    code, out, err = main(capsys, "value", "--data", "iris", "--method", "tmc-shapley",
                          "--budget", "2", "--quiet", "--checkpoint", blocker / "x.ckpt",
                          "--out", tmp_path / "out")
    one_line_error(code, err, "--checkpoint")
    assert out == "" and not (tmp_path / "out").exists()


def test_report_out_never_replaces_a_file_datavalue_did_not_write(run_dir, tmp_path, capsys):
    mine = tmp_path / "mine.html"
    mine.write_text("<html>my page</html>")
    code, _, err = main(capsys, "report", run_dir, "--out", mine, "--quiet")
    one_line_error(code, err, "mine.html", "not written by datavalue")
    assert mine.read_text() == "<html>my page</html>"
    ours = tmp_path / "ours.html"
    for _ in range(2):  # a report of ours is replaced
        code, _, err = main(capsys, "report", run_dir, "--out", ours, "--quiet")
        assert code == 0, err


# ---------------------------------------------------------------------- budgets
def test_budget_is_an_exact_bound_from_the_command_line(tmp_path, capsys):
    out = tmp_path / "o"
    code, _, err = main(capsys, "value", "--data", "iris", "--method", "tmc-shapley",
                        "--budget", "3", "--quiet", "--out", out)
    assert code == 0, err
    assert dv.ValuationResult.load(out).extra["n_samples"] == 3


# ---------------------------------------------------------------------- damaged folders
def _rewrite(run_dir, name: str, data: bytes) -> None:
    """Replace a file of a run and update its manifest, as a buggy tool might: the files are
    then 'consistent' and only their content is wrong."""
    import hashlib

    (run_dir / name).write_bytes(data)
    manifest = json.loads((run_dir / MANIFEST).read_text())
    manifest["files"][name] = {"sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}
    (run_dir / MANIFEST).write_text(json.dumps(manifest))


def _object_npz() -> bytes:
    buf = io.BytesIO()
    np.savez(buf, values=np.array([{"a": 1}], dtype=object))
    return buf.getvalue()


@pytest.mark.parametrize("command", ["evaluate", "report", "clean"])
@pytest.mark.parametrize("damage", ["garbage npz", "object npz", "corrupt json",
                                    "changed by hand", "wrong keys"])
def test_damaged_run_folders_give_one_line(run_dir, capsys, command, damage):
    if damage == "garbage npz":
        _rewrite(run_dir, "dataset.npz", b"PK\x03\x04 not really a zip")
    elif damage == "object npz":
        _rewrite(run_dir, "values.npz", _object_npz())
    elif damage == "corrupt json":
        _rewrite(run_dir, "result.json", b"{\"method\": ")
    elif damage == "wrong keys":
        _rewrite(run_dir, "result.json", b'{"a": 1}')
    else:
        (run_dir / "values.npz").write_bytes(b"edited")
    code, _, err = main(capsys, command, run_dir, "--quiet")
    one_line_error(code, err, str(run_dir))


def test_evaluate_on_a_file_says_it_is_a_file(run_dir, capsys):
    code, _, err = main(capsys, "evaluate", run_dir / "values.csv")
    one_line_error(code, err, "is a file")


@pytest.mark.parametrize("header", [
    "not json", json.dumps({"version": 1}), json.dumps({"version": 1, "config": None}),
])
def test_malformed_checkpoint_headers_give_one_line(tmp_path, capsys, header):
    ck = tmp_path / "run.ckpt"
    buf = io.BytesIO()
    np.savez(buf, __header__=np.array(header), in_count=np.zeros(3))
    ck.write_bytes(buf.getvalue())
    code, _, err = main(capsys, "value", "--data", "iris", "--method", "tmc-shapley",
                        "--budget", "2", "--quiet", "--checkpoint", ck, "--resume",
                        "--out", tmp_path / "o")
    one_line_error(code, err, "checkpoint")


def test_a_checkpoint_that_is_not_a_zip_gives_one_line(tmp_path, capsys):
    ck = tmp_path / "run.ckpt"
    ck.write_text("hello")
    code, _, err = main(capsys, "value", "--data", "iris", "--method", "tmc-shapley",
                        "--budget", "2", "--quiet", "--checkpoint", ck, "--resume",
                        "--out", tmp_path / "o")
    one_line_error(code, err, "checkpoint")
    assert zipfile.is_zipfile(ck) is False and ck.read_text() == "hello"  # left as it was


def test_knn_shapley_without_validation_data_gives_one_line(tmp_path, capsys):
    code, _, err = main(capsys, "value", "--data", "iris", "--method", "knn-shapley",
                        "--valid-size", "0", "--quiet", "--out", tmp_path / "o")
    one_line_error(code, err, "valid")


@pytest.mark.parametrize("seed", ["x", "-1", "1.5"])
def test_bad_seeds_are_named(tmp_path, capsys, seed):
    with pytest.raises(SystemExit) as exc:
        cli.main(["value", *_FAST, "--seed", seed, "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert exc.value.code == 2
    assert "--seed" in err and "Traceback" not in err


# ---------------------------------------------------------------------- CSV injection
def test_cells_that_start_a_formula_are_quoted_in_written_csv(tmp_path, capsys):
    rng = np.random.default_rng(0)
    n = 120
    x = rng.normal(size=(n, 2))
    label = np.where(x[:, 0] > 0, "=HYPERLINK(\"http://evil\")", "@SUM(A1)")
    frame = pd.DataFrame({"x1": x[:, 0], "x2": x[:, 1], "label": label})
    frame.to_csv(tmp_path / "d.csv", index=False)
    out = tmp_path / "run"
    code, _, err = main(capsys, "value", "--data", tmp_path / "d.csv", "--target", "label",
                        "--method", "data-oob", "--n-estimators", "20", "--noise", "0.1",
                        "--quiet", "--out", out)
    assert code == 0, err
    code, _, err = main(capsys, "clean", out, "--fractions", "0.05", "--quiet")
    assert code == 0, err
    code, _, err = main(capsys, "fix", out, "--rankings", "random", "--fractions", "0.1",
                        "--quiet")
    assert code == 0, err
    for name in ("cleaned_train.csv", "review.csv"):
        cells = pd.read_csv(out / name)["label"].astype(str)
        assert cells.str.startswith("'").all(), (name, cells.head())
        assert not cells.str.match(r"^[=+\-@]").any()
    # numbers, negative ones included, stay numbers
    assert (pd.read_csv(out / "cleaned_train.csv")["x1"] < 0).any()


# ---------------------------------------------------------------------- text for people
@pytest.mark.parametrize("command", ["value", "compare", "evaluate", "clean", "fix", "report",
                                     "explain", "demo"])
def test_help_has_no_markup(capsys, command):
    with pytest.raises(SystemExit):
        cli.main([command, "--help"])
    text = capsys.readouterr().out
    for markup in (":class:", ":func:", ":meth:", ":data:", "``"):
        assert markup not in text, (command, markup)


def test_detection_lines_stay_aligned_for_three_digit_k():
    from datavalue.cli._output import _detection_lines

    lines = _detection_lines({"auc": 0.9, "f1_kmeans": 0.5, "k": 120, "precision_at_k": 0.408})
    assert "precision at 120 0.408" in lines.splitlines()[2]
    # every number starts in the same column
    starts = [lines.splitlines()[i].index(s) for i, s in enumerate(("0.900", "0.500", "0.408"))]
    assert len(set(starts)) == 1


@pytest.mark.parametrize(("arrays", "mention"), [
    ({"X": np.array(5.0), "y": np.array([1, 2])}, "shapes ()"),
    ({"X": np.zeros((4, 2)), "y": np.zeros((4, 3))}, "'y' a 1-D array"),
    ({"X": np.array([{"a": 1}], dtype=object), "y": np.arange(1)}, "object array"),
])
def test_bad_npz_members_are_named_with_the_file(tmp_path, capsys, arrays, mention):
    path = tmp_path / "bad.npz"
    np.savez(path, **arrays)
    code, _, err = main(capsys, "value", "--data", path, "--quiet", "--out", tmp_path / "o")
    one_line_error(code, err, "bad.npz", mention)


# ---------------------------------------------------------------------- issue 23 sweep
def test_an_unexpected_error_is_one_line_and_debug_shows_the_traceback(monkeypatch, capsys):
    def broken(args):
        raise KeyError("an internal bug")

    monkeypatch.setattr(cli, "_cmd_value", broken)
    code, _, err = main(capsys, "value", *_FAST, "--out", "x")
    assert code == 1
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "KeyError" in lines[0] and "--debug" in lines[0], err
    with pytest.raises(KeyError):
        cli.main(["--debug", "value", *_FAST, "--out", "x"])


def test_debug_shows_the_traceback_of_a_refused_input_too(capsys):
    with pytest.raises(dv.DatavalueError, match="Unknown"):
        cli.main(["--debug", "value", "--data", "no-such-set", "--out", "x"])


def test_augment_header_only_candidates_and_the_id_column_of_the_data(tmp_path, capsys):
    rng = np.random.default_rng(0)
    n = 120
    frame = pd.DataFrame({"customer_id": [f"C{i:04d}" for i in range(n)],
                          "a": rng.normal(size=n), "b": rng.normal(size=n),
                          "label": (rng.normal(size=n) > 0).astype(int)})
    data = tmp_path / "data.csv"
    frame.to_csv(data, index=False)
    empty = tmp_path / "empty.csv"
    frame.iloc[:0].to_csv(empty, index=False)
    code, _, err = main(capsys, "augment", "--data", data, "--target", "label", "--id-column",
                        "customer_id", "--candidates", empty)
    one_line_error(code, err, "empty.csv", "has no rows")
    cand = tmp_path / "cand.csv"
    frame.iloc[:10].assign(customer_id=[f"N{i}" for i in range(10)]).to_csv(cand, index=False)
    code, out, err = main(capsys, "augment", "--data", data, "--target", "label", "--id-column",
                          "customer_id", "--candidates", cand, "--method", "knn-shapley")
    assert code == 0, err
    # The id column named rows and was not encoded as 120 one-hot features.
    assert "2 features" in out and "N0" in out, out
