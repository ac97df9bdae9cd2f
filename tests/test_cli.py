"""End-to-end tests of the ``datavalue`` command, run as ``python -m datavalue`` in a subprocess.

The oracles are the library itself called in-process: the command must save exactly the data
set, values and evaluation curves that the Python API computes with the same options.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import datavalue as dv
from datavalue import cli
from datavalue.evaluate import noisy_detection, point_removal

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def run(*args: object, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "datavalue", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def assert_ok(proc: subprocess.CompletedProcess) -> None:
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr


def printed(name: str, stdout: str) -> float:
    """The number printed after ``name`` at the start of a summary line (e.g. ``AUC  0.912``)."""
    match = re.search(rf"^\s*{re.escape(name)}\s+(-?[0-9.]+)", stdout, re.MULTILINE)
    assert match, f"{name!r} not printed in:\n{stdout}"
    return float(match.group(1))


def first_listed_index(stdout: str) -> int:
    """Training index in the first row (rank 1) of the lowest-values table."""
    match = re.search(r"^\s+1\s+(\d+)\s", stdout, re.MULTILINE)
    assert match, stdout
    return int(match.group(1))


def write_csv(path: Path, *, n: int = 150, with_nan: bool = True) -> Path:
    """A small classification CSV with a categorical column (and one missing feature value)."""
    rng = np.random.default_rng(0)
    x1, x2 = rng.normal(size=n), rng.normal(size=n)
    color = rng.choice(["red", "green", "blue"], size=n)
    label = np.where(x1 + 0.5 * x2 + (color == "red") > 0.3, "yes", "no")
    frame = pd.DataFrame({"x1": x1, "x2": x2, "color": color, "label": label})
    if with_nan:
        frame.loc[3, "x2"] = np.nan
    frame.to_csv(path, index=False)
    return path


# ---------------------------------------------------------------------- value
@pytest.fixture(scope="module")
def valued(tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess]:
    out = tmp_path_factory.mktemp("cli") / "bc"
    proc = run(
        "value", "--data", "breast_cancer", "--noise", "0.1", "--method", "knn-shapley",
        "--param", "n_neighbors=5", "--metric", "accuracy", "--quiet", "--out", out,
    )  # fmt: skip
    assert_ok(proc)
    return out, proc


def test_value_saves_what_the_api_computes(valued):
    out, proc = valued
    ds = dv.load_dataset("breast_cancer", noise_rate=0.1, random_state=0)
    expected = dv.KNNShapley(n_neighbors=5).fit(ds.x_train, ds.y_train, ds.x_valid, ds.y_valid)

    saved = dv.Dataset.load(out / "dataset.npz")
    np.testing.assert_array_equal(saved.noisy_indices, ds.noisy_indices)
    assert len(saved.noisy_indices) == 34
    np.testing.assert_array_equal(saved.x_train, ds.x_train)
    np.testing.assert_array_equal(saved.y_train, ds.y_train)

    result = dv.ValuationResult.load(out)
    assert result.method == "knn-shapley"
    assert result.params["n_neighbors"] == 5
    assert result.data_fingerprint == ds.fingerprint()
    np.testing.assert_allclose(result.values, expected.values_, rtol=0, atol=1e-12)

    run_info = json.loads((out / "run.json").read_text())
    assert run_info["options"]["method"] == "knn-shapley"
    assert run_info["options"]["seed"] == 0
    # --metric is a score for 'evaluate'; KNN-Shapley's own 'metric' (a distance) is untouched.
    assert run_info["options"]["metric"] == "accuracy"
    assert result.params["metric"] == "euclidean"

    det = noisy_detection(result.values, ds.noisy_indices)
    assert printed("AUC", proc.stdout) == pytest.approx(det["auc"], abs=5e-4)
    assert printed("F1 (k-means)", proc.stdout) == pytest.approx(det["f1_kmeans"], abs=5e-4)
    assert first_listed_index(proc.stdout) == result.ranking(ascending=True)[0]
    assert "breast_cancer" in proc.stdout


def test_evaluate_writes_curves_and_value_replaces_them(valued):
    out, _ = valued
    proc = run("evaluate", out, "--fractions", "0.1", "0.2", "--n-jobs", "1", "--quiet")
    assert_ok(proc)
    for name in ("evaluation.json", "removal.csv", "addition.csv"):
        assert (out / name).is_file(), name
    for name in ("values.png", "detection.png", "removal.png", "addition.png"):
        assert (out / name).read_bytes()[:8] == PNG_MAGIC, name

    ds = dv.Dataset.load(out / "dataset.npz")
    result = dv.ValuationResult.load(out)
    model = dv.make_model("logreg", ds.task, 0)  # the default of a run without --model
    expected = point_removal(result.values, ds, model, fractions=[0.1, 0.2], n_jobs=1)
    removal = pd.read_csv(out / "removal.csv")
    assert list(removal.columns) == ["order", "fraction", "n_points", "n_remaining", "score"]
    np.testing.assert_allclose(removal["score"], expected["score"], atol=1e-12)
    assert set(pd.read_csv(out / "addition.csv")["fraction"]) == {0.1, 0.2}

    report = json.loads((out / "evaluation.json").read_text())
    det = noisy_detection(result.values, ds.noisy_indices)
    assert report["detection"]["auc"] == pytest.approx(det["auc"], abs=1e-12)
    assert report["model"] == "logreg" and report["metric"] == "accuracy"
    assert printed("AUC", proc.stdout) == pytest.approx(det["auc"], abs=5e-4)
    assert "Point removal" in proc.stdout and "most_valuable_first" in proc.stdout

    # A new run into the same folder removes the evaluation of the old one.
    proc = run("value", "--data", "breast_cancer", "--method", "random", "--quiet", "--out", out)
    assert_ok(proc)
    assert dv.ValuationResult.load(out).method == "random"
    assert not (out / "evaluation.json").exists() and not (out / "removal.csv").exists()


def test_value_csv_with_categorical_column_model_and_impute(tmp_path):
    path = write_csv(tmp_path / "people.csv")
    out = tmp_path / "out"
    proc = run(
        "value", "--data", path, "--target", "label", "--impute", "--noise", "0.1",
        "--method", "loo", "--model", "knn", "--quiet", "--out", out,
    )  # fmt: skip
    assert_ok(proc)
    ds = dv.corrupt_labels(
        dv.Dataset.from_csv(path, "label", missing="impute", random_state=0, standardize=True),
        0.1,
        random_state=0,
    )
    saved = dv.Dataset.load(out / "dataset.npz")
    np.testing.assert_array_equal(saved.x_train, ds.x_train)
    np.testing.assert_array_equal(saved.y_train, ds.y_train)
    np.testing.assert_array_equal(saved.noisy_indices, ds.noisy_indices)
    assert any(name.startswith("color=") for name in saved.feature_names)
    assert saved.class_names == ("no", "yes")

    result = dv.ValuationResult.load(out)
    assert result.method == "loo" and len(result) == ds.n_train
    assert "KNeighborsClassifier" in result.params["model"]
    assert json.loads((out / "run.json").read_text())["options"]["model"] == "knn"
    assert "AUC" in proc.stdout


# ---------------------------------------------------------------------- demo
def test_demo_runs_and_reports_detection(tmp_path):
    out = tmp_path / "demo"
    proc = run("demo", "--out", out, "--n-estimators", "50", "--n-jobs", "1", "--quiet")
    assert_ok(proc)
    result = dv.ValuationResult.load(out)
    ds = dv.Dataset.load(out / "dataset.npz")
    assert result.method == "data-oob" and result.params["n_estimators"] == 50
    assert len(ds.noisy_indices) == round(0.1 * ds.n_train)
    det = noisy_detection(result.values, ds.noisy_indices)
    assert printed("AUC", proc.stdout) == pytest.approx(det["auc"], abs=5e-4)
    assert det["auc"] > 0.8  # Data-OOB finds flipped labels on breast_cancer even with 50 trees
    assert first_listed_index(proc.stdout) == result.ranking(ascending=True)[0]
    for name in ("values.png", "detection.png"):
        assert (out / name).read_bytes()[:8] == PNG_MAGIC
    assert str(out) in proc.stdout


# ---------------------------------------------------------------------- errors
@pytest.fixture(scope="module")
def bad_files(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("bad")
    (folder / "broken.npz").write_text("not a zip archive")
    return {"csv": write_csv(folder / "nan.csv", n=40), "npz": folder / "broken.npz"}


ERROR_CASES = {
    "unknown method": (["--data", "iris", "--method", "no-such-method"], list(dv.METHODS)),
    "unknown model": (["--data", "iris", "--model", "no-such-model"], list(dv.MODELS)),
    "noise too large": (["--data", "iris", "--noise", "1.5"], ["--noise", "1.5"]),
    "negative noise": (["--data", "iris", "--noise", "-0.1"], ["--noise", "-0.1"]),
    "missing file": (["--data", "no/such/file.csv", "--target", "y"], ["file.csv"]),
    "csv without target": (["--data", "{csv}"], ["--target"]),
    "nan without impute": (["--data", "{csv}", "--target", "label"], ["--impute"]),
    "unknown method parameter": (["--data", "iris", "--param", "no_such=1"], ["no_such"]),
    "broken npz": (["--data", "{npz}"], ["broken.npz"]),
    "resume without checkpoint": (["--data", "iris", "--resume"], ["--resume", "--checkpoint"]),
    "ray address without ray": (["--data", "iris", "--ray-address", "1.2.3.4:5"], ["--backend"]),
}


@pytest.mark.parametrize("case", ERROR_CASES)
def test_value_errors_are_one_line(case, bad_files, tmp_path):
    argv, mentions = ERROR_CASES[case]
    argv = [a.format(**bad_files) for a in argv]
    proc = run("value", *argv, "--out", tmp_path / "out")
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("datavalue: error: "), proc.stderr
    for text in mentions:
        assert text in lines[0]
    assert not (tmp_path / "out").exists()


def test_evaluate_missing_folder_is_one_line(tmp_path):
    proc = run("evaluate", tmp_path / "nothing-here")
    assert proc.returncode == 2
    assert proc.stderr.startswith("datavalue: error: ") and proc.stderr.count("\n") == 1


def test_keyboard_interrupt_exits_130(monkeypatch, capsys):
    def interrupted(args):
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "_cmd_value", interrupted)
    assert cli.main(["value", "--data", "iris", "--out", "x"]) == 130
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "interrupted" in err


# ---------------------------------------------------------------------- help and version
OPTIONS = {
    "value": [
        "--data", "--target", "--noise", "--noise-kind", "--n-samples", "--valid-size",
        "--test-size", "--method", "--model", "--metric", "--n-jobs", "--seed", "--impute",
        "--quiet", "--out", "--n-estimators", "--param",
    ],
    "demo": ["--out", "--data", "--n-estimators", "--n-jobs", "--quiet"],
    "evaluate": ["DIR", "--model", "--metric", "--fractions", "--n-jobs", "--quiet"],
}  # fmt: skip


def _subparsers() -> dict:
    parser = cli.build_parser()
    action = next(a for a in parser._actions if a.dest == "command")
    return dict(action.choices)


@pytest.mark.parametrize("command", sorted(OPTIONS))
def test_help_explains_every_option(command):
    proc = run(command, "--help")
    assert_ok(proc)
    for option in OPTIONS[command]:
        assert option in proc.stdout, option
    assert "examples:" in proc.stdout
    # Every option the parser knows has its own help text and appears in --help.
    for action in _subparsers()[command]._actions:
        assert action.help, action.dest
        for option in action.option_strings or [action.metavar]:
            assert option in proc.stdout, option
    if command == "value":
        for name in (*dv.METHODS, *dv.MODELS):  # the registries are listed, not a copy
            assert name in proc.stdout


def test_top_level_help_and_version():
    proc = run("--help")
    assert_ok(proc)
    for command in OPTIONS:
        assert command in proc.stdout
    proc = run("--version")
    assert_ok(proc)
    assert proc.stdout.strip() == f"datavalue {dv.__version__}"


# ---------------------------------------------------------------------- long runs
def test_checkpoint_then_resume_from_the_command_line(tmp_path):
    ck = tmp_path / "tmc.ckpt"
    common = ["value", "--data", "iris", "--n-samples", "60", "--method", "tmc-shapley",
              "--quiet", "--checkpoint-every", "0"]
    first = run(*common, "--budget", "8", "--checkpoint", ck, "--out", tmp_path / "a")
    assert_ok(first)
    assert ck.is_file()
    again = run(*common, "--budget", "8", "--checkpoint", ck, "--out", tmp_path / "b")
    assert again.returncode == 2 and "already exists" in again.stderr
    # Resuming with a larger budget equals a fresh run with that budget (same seed).
    more = run(*common, "--budget", "16", "--checkpoint", ck, "--resume", "--out", tmp_path / "c")
    assert_ok(more)
    fresh = run(*common, "--budget", "16", "--out", tmp_path / "d")
    assert_ok(fresh)
    resumed = dv.ValuationResult.load(tmp_path / "c")
    direct = dv.ValuationResult.load(tmp_path / "d")
    np.testing.assert_array_equal(resumed.values, direct.values)
    assert resumed.extra["n_samples"] == 16
