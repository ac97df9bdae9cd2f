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
    """Row id in the first row (rank 1) of the lowest-values table."""
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
        "--param", "n_neighbors=5", "--quiet", "--out", out,
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
    assert run_info["options"]["metric"] is None
    assert result.params["distance"] == "euclidean"

    det = noisy_detection(result.values, ds.noisy_indices)
    assert printed("AUC", proc.stdout) == pytest.approx(det["auc"], abs=5e-4)
    assert printed("F1 (k-means)", proc.stdout) == pytest.approx(det["f1_kmeans"], abs=5e-4)
    assert first_listed_index(proc.stdout) == result.ids[result.ranking(ascending=True)[0]]
    assert "breast_cancer" in proc.stdout


def test_evaluate_writes_curves_and_value_replaces_them(valued, tmp_path):
    import shutil

    # On a copy: the module's other tests read the original run, in any order.
    out = tmp_path / "bc"
    shutil.copytree(valued[0], out)
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
    assert report["model"] == "logreg" and report["metric"] is None  # the default: accuracy
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
    assert first_listed_index(proc.stdout) == result.ids[result.ranking(ascending=True)[0]]
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
    "attack": ["--data", "--test-index", "--n-train", "--epsilon", "--max-steps", "--model",
               "--show", "--out", "--seed", "--quiet", "--id-column"],
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


# ---------------------------------------------------------------------- compare, clean, fix, report
def _has_torch() -> bool:
    try:
        import torch  # noqa: F401
    except ImportError:
        return False
    return True


@pytest.mark.slow
def test_clean_fix_and_report_end_to_end(tmp_path):
    """digits, 10% flipped labels (seed 0), Data-OOB with 200 trees, logistic regression.

    Measured: cleaning the 108 lowest-valued rows (10%; 97 of them flipped) raises test
    accuracy from 0.9136 to 0.9694; dropping 108 random rows gives 0.9220. Checking 10% of the
    training set by Data-OOB value finds 89.8% of the flips (self-influence 86.1%, training
    loss 84.3%, random 12.0%).
    """
    from datavalue.actions import clean, fix

    out = tmp_path / "digits"
    assert_ok(run("value", "--data", "digits", "--noise", "0.1", "--method", "data-oob",
                  "--n-estimators", "200", "--valid-size", "0.2", "--quiet", "--out", out))
    proc = run("clean", out, "--fraction", "0.1", "--quiet")
    assert_ok(proc)
    summary = json.loads((out / "clean.json").read_text())
    assert summary["n_flagged"] == 108 and summary["mode"] == "drop"
    assert summary["score_after"] > summary["score_before"] + 0.02  # 0.9694 vs 0.9136
    assert printed("test accuracy before", proc.stdout) == pytest.approx(
        summary["score_before"], abs=5e-5)
    assert printed("test accuracy after", proc.stdout) == pytest.approx(
        summary["score_after"], abs=5e-5)
    # The command computes what the API computes on the saved data and values.
    ds = dv.Dataset.load(out / "dataset.npz")
    result = dv.ValuationResult.load(out)
    api = clean(ds, result, fraction=0.1, model=dv.make_model("logreg", ds.task, 0))
    assert (api.score_before, api.score_after) == (summary["score_before"],
                                                  summary["score_after"])
    cleaned = dv.Dataset.load(out / "cleaned_dataset.npz")
    assert cleaned.n_train == ds.n_train - 108 and len(cleaned.noisy_indices) == 108 - 97
    rows = pd.read_csv(out / "cleaned_train.csv")
    assert len(rows) == cleaned.n_train and "id" in rows

    rankings = ["self-influence", "loss", "random"] if _has_torch() else ["loss", "random"]
    proc = run("fix", out, "--rankings", ",".join(rankings), "--quiet")
    assert_ok(proc)
    fixed = json.loads((out / "fix.json").read_text())
    assert fixed["n_flipped"] == 108 and fixed["fraction_checked"] == 0.1
    found = {k: v["fraction_found"] for k, v in fixed["rankings"].items()}
    assert list(found) == ["data-oob", *rankings]
    assert found["data-oob"] > 0.8 and found["loss"] > 0.7 and found["random"] < 0.25
    if "self-influence" in found:
        assert found["self-influence"] > 0.7
    scores = {k: v["score"] for k, v in fixed["rankings"].items()}
    assert scores["data-oob"] > fixed["score_noisy"] and scores["random"] < scores["data-oob"]
    truth = dv.load_dataset("digits", random_state=0)
    api = fix(ds, truth, values=result, rankings=rankings,
              model=dv.make_model("logreg", ds.task, 0))
    assert api.summary(0.1)["rankings"] == fixed["rankings"]
    review = pd.read_csv(out / "review.csv")
    assert review[review["ranking"] == "data-oob"]["index"].tolist()[:10] == [
        int(i) for i in re.findall(r"\d+", re.search(r"training rows ([\d, ]+)",
                                                     proc.stdout).group(1))
    ]

    proc = run("report", out, "--quiet")
    assert_ok(proc)
    page = (out / "report.html").read_text()
    for title in ("Cleaning", "Fixing mislabeled examples", "Most harmful"):
        assert title in page
    # A new 'value' run in the folder removes the outputs that described the old values.
    assert_ok(run("value", "--data", "digits", "--method", "random", "--quiet", "--out", out))
    for name in ("clean.json", "fix.json", "report.html", "cleaned_dataset.npz"):
        assert not (out / name).exists(), name


def test_compare_command_writes_what_the_api_computes(tmp_path):
    from datavalue.actions.compare import compare

    out = tmp_path / "cmp"
    proc = run("compare", "--data", "breast_cancer", "--n-samples", "150", "--noise", "0.2",
               "--methods", "knn-shapley,random", "--seeds", "0,1",
               "--param", "knn-shapley.n_neighbors=3", "--fractions", "0", "0.2",
               "--quiet", "--out", out)  # fmt: skip
    assert_ok(proc)
    table = pd.read_csv(out / "compare.csv")
    api = compare("breast_cancer", methods=["knn-shapley", "random"], seeds=[0, 1],
                  noise_rate=0.2, params={"knn-shapley": {"n_neighbors": 3}},
                  fractions=[0.0, 0.2], load_options={"n_samples": 150}, progress=False)
    cols = ["auc", "f1_kmeans", "removal_most_valuable_first", "addition_random"]
    np.testing.assert_allclose(table[cols].to_numpy(), api.table[cols].to_numpy(), rtol=1e-9)
    assert table["method"].tolist() == ["knn-shapley", "random"] * 2
    for name in ("compare.parquet", "summary.csv", "summary.md", "run.log", "compare.json"):
        assert (out / name).is_file(), name
    assert json.loads((out / "compare.json").read_text())["params"]["knn-shapley"] == {
        "n_neighbors": 3}
    assert "±" in proc.stdout and "knn-shapley" in proc.stdout
    assert f"datavalue report {out}" in proc.stdout
    assert_ok(run("report", out, "--quiet"))
    assert "Comparison of methods" in (out / "report.html").read_text()


NEW_OPTIONS = {
    "augment": ["--data", "--candidates", "--id-column", "--method", "--model", "--top",
                "--curve", "--out", "--n-jobs", "--quiet"],
    "compare": ["--data", "--target", "--noise", "--noise-kind", "--n-samples", "--train-size",
                "--valid-size", "--test-size", "--impute", "--methods", "--model", "--metric",
                "--seeds", "--param", "--fractions", "--lds", "--loo", "--keep-going", "--n-jobs",
                "--quiet", "--out"],
    "clean": ["DIR", "--fraction", "--mode", "--weight", "--model", "--metric", "--fractions",
              "--out", "--n-jobs", "--quiet"],
    "fix": ["DIR", "--rankings", "--model", "--metric", "--fractions", "--out", "--n-jobs",
            "--quiet"],
    "report": ["DIR", "--out", "--model", "--metric", "--fractions", "--k", "--n-jobs",
               "--quiet"],
}  # fmt: skip


@pytest.mark.parametrize("command", sorted(NEW_OPTIONS))
def test_help_of_the_new_commands(command):
    proc = run(command, "--help")
    assert_ok(proc)
    assert "examples:" in proc.stdout
    for option in NEW_OPTIONS[command]:
        assert option in proc.stdout, option
    for action in _subparsers()[command]._actions:
        assert action.help, action.dest
        for option in action.option_strings or [action.metavar]:
            assert option in proc.stdout, option
    if command == "compare":
        for name in dv.METHODS:  # listed from the registry
            assert name in proc.stdout


@pytest.fixture(scope="module")
def clean_run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("noiseless") / "iris"
    assert_ok(run("value", "--data", "iris", "--method", "random", "--quiet", "--out", out))
    return out


NEW_ERRORS = {
    "compare unknown method": (["compare", "--data", "iris", "--methods", "loo,no-such",
                                "--out", "{tmp}/o"], ["--methods", "no-such"]),
    "compare bad seeds": (["compare", "--data", "iris", "--seeds", "0,x", "--out", "{tmp}/o"],
                          ["--seeds"]),
    "compare param of another method": (["compare", "--data", "iris", "--methods", "loo",
                                         "--param", "tmc-shapley.max_permutations=5",
                                         "--out", "{tmp}/o"], ["tmc-shapley", "--param"]),
    "compare unknown param": (["compare", "--data", "iris", "--methods", "loo", "--param",
                               "no_such=1", "--out", "{tmp}/o"], ["no_such"]),
    "clean missing folder": (["clean", "{tmp}/nothing"], ["does not exist"]),
    "clean bad fraction": (["clean", "{run}", "--fraction", "1.5"], ["fraction"]),
    "fix without noise": (["fix", "{run}"], ["--noise"]),
    "fix unknown ranking": (["fix", "{run}", "--rankings", "loss,magic"], ["--rankings", "magic"]),
    "report empty folder": (["report", "{tmp}"], ["holds no results"]),
}  # fmt: skip


@pytest.mark.parametrize("case", NEW_ERRORS)
def test_new_command_errors_are_one_line(case, clean_run, tmp_path):
    argv, mentions = NEW_ERRORS[case]
    argv = [a.format(tmp=tmp_path, run=clean_run) for a in argv]
    proc = run(*argv)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("datavalue: error: "), proc.stderr
    for text in mentions:
        assert text in lines[0], lines[0]
    assert not (tmp_path / "o").exists()


# ---------------------------------------------------------------------- explain
def test_explain_prints_images_and_saves_for_the_report(tmp_path):
    pytest.importorskip("torch")
    out = tmp_path / "expl"
    proc = run("explain", "--data", "digits", "--noise", "0.1", "--test-index", "3", "--top",
               "3", "--out", out)
    assert_ok(proc)
    assert proc.stdout.count("train #") == 6
    assert "[label was flipped]" in proc.stdout  # harmful examples of a 10%-noise digit
    assert sum("@" in line for line in proc.stdout.splitlines()) >= 7 * 3  # 8x8 drawings
    from datavalue.actions.explain import Explanation

    saved = Explanation.load(out)
    ds = dv.Dataset.load(out / "dataset.npz")
    assert saved.data_fingerprint == ds.fingerprint() and len(saved.helpful) == 3
    bad = run("explain", "--data", "digits", "--test-index", "100000")
    assert bad.returncode == 2 and "--test-index" in bad.stderr and "Traceback" not in bad.stderr


def test_explain_and_value_with_gradient_tracing(tmp_path):
    pytest.importorskip("torch")
    proc = run("explain", "--data", "digits", "--noise", "0.1", "--test-index", "3", "--top",
               "2", "--method", "trak", "--out", tmp_path / "expl")
    assert_ok(proc)
    assert "method trak" in proc.stdout and "TRAK score" in proc.stdout
    from datavalue.actions.explain import Explanation

    assert Explanation.load(tmp_path / "expl").method == "trak"
    html = run("report", tmp_path / "expl", "--out", tmp_path / "r.html")
    assert_ok(html)
    assert "TRAK (Park et al. 2023)" in (tmp_path / "r.html").read_text()
    bad = run("explain", "--data", "digits", "--test-index", "3", "--method", "trakk")
    assert bad.returncode == 2 and "--method" in bad.stderr and "trak" in bad.stderr
    val = run("value", "--data", "digits", "--noise", "0.1", "--method", "tracin", "--param",
              "target=self", "--out", tmp_path / "v")
    assert_ok(val)
    assert printed("AUC", val.stdout) > 0.95  # flipped labels carry large self-influence
    cmp = run("compare", "--data", "breast_cancer", "--n-samples", "200", "--methods",
              "trak,random", "--seeds", "0", "--lds", "6", "--loo", "5", "--out",
              tmp_path / "cmp", timeout=300)
    assert_ok(cmp)
    assert "lds" in cmp.stdout and "loo_pearson" in cmp.stdout


def test_augment_ranks_a_candidates_file(tmp_path):
    pytest.importorskip("torch")
    ds = dv.load_dataset("digits", random_state=0)
    raw = ds.raw_features(ds.x_test[:40])
    y = ds.y_test[:40].copy()
    y[:10] = (y[:10] + 1) % 10  # ten mislabeled candidates
    np.savez(tmp_path / "pool.npz", X=raw, y=y, ids=np.array([f"c{i}" for i in range(40)]))
    # KNN-Shapley: model-free and exact. (Influence on the default logistic regression, C = 1
    # on 64 standardised pixels, is nearly separable: first-order predictions for far-out
    # mislabeled candidates are unreliable there; see the README.)
    proc = run("augment", "--data", "digits", "--candidates", tmp_path / "pool.npz", "--top",
               "3", "--curve", "--method", "knn-shapley", "--out", tmp_path / "aug")
    assert_ok(proc)
    assert "least useful" in proc.stdout and "candidate c" in proc.stdout
    import pandas as pd

    frame = pd.read_csv(tmp_path / "aug" / "candidates.csv")
    assert len(frame) == 40 and set(frame["rank"]) == set(range(1, 41))
    worst = frame.sort_values("rank")["id"].tail(10)
    assert sum(int(w[1:]) < 10 for w in worst) >= 8  # the mislabeled ones rank last
    infl = run("augment", "--data", "digits", "--candidates", tmp_path / "pool.npz", "--top", "2")
    assert_ok(infl)
    assert "method influence" in infl.stdout
    bad = run("augment", "--data", "digits", "--candidates", tmp_path / "pool.npz", "--method",
              "knn")
    assert bad.returncode == 2 and "--method" in bad.stderr
    missing = run("augment", "--data", "digits", "--candidates", tmp_path / "none.npz")
    assert missing.returncode == 2 and "does not exist" in missing.stderr
