"""The 'recommend' and 'unlearn' commands on a ratings CSV with the user's own ids, and on the
built-in MovieLens log."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from datavalue.cli import main


@pytest.fixture(scope="module")
def ratings_csv(tmp_path_factory, movielens_file):
    """A customer-style ratings log: string user ids, product codes, its own rating ids."""
    with np.load(movielens_file) as f:
        keep = np.isin(f["user"], np.arange(0, 671, 9))  # 75 users
        rows = np.flatnonzero(keep)
        df = pd.DataFrame({
            "rating_id": [f"R{r:06d}" for r in rows],
            "customer": [f"C-{u:04d}" for u in f["user"][rows]],
            "product": [f"P{i}" for i in f["item"][rows]],
            "stars": f["rating"][rows].astype(float),
            "when": f["timestamp"][rows],
            "name": f["item_title"][f["item"][rows]],
        })
    p = tmp_path_factory.mktemp("log") / "ratings.csv"
    df.to_csv(p, index=False)
    return p


def _args(csv):
    return ["--data", str(csv), "--user-column", "customer", "--item-column", "product",
            "--rating-column", "stars", "--timestamp-column", "when", "--title-column", "name",
            "--id-column", "rating_id", "--factors", "5"]


def test_recommend_explain_and_report(ratings_csv, tmp_path, capsys):
    out = tmp_path / "rec"
    assert main(["recommend", *_args(ratings_csv), "--user", "C-0009", "--k", "3", "--explain",
                 "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "Top 3 for user C-0009" in text and "because you rated" in text
    rec = json.loads((out / "recommendations.json").read_text())
    assert rec["user_id"] == "C-0009" and len(rec["recommendations"]) == 3
    first = rec["recommendations"][0]
    assert first["because"] and all(r["user_id"] == "C-0009" for r in first["because"])
    assert first["because"][0]["row_id"].startswith("R")  # the log's own rating ids
    assert main(["report", str(out)]) == 0
    page = (out / "report.html").read_text()
    assert "Recommendations for user C-0009" in page and "Because you rated" in page


def test_unlearn_then_recommend_with_the_updated_model(ratings_csv, tmp_path, capsys):
    out = tmp_path / "unl"
    assert main(["unlearn", *_args(ratings_csv), "--user", "C-0018", "--verify", "--out",
                 str(out)]) == 0
    text = capsys.readouterr().out
    assert "Removed" in text and "verify: retraining took" in text
    summary = json.loads((out / "unlearning.json").read_text())
    v = summary["verify"]
    assert v["gap_unlearned_vs_retrained"] < v["gap_original_vs_retrained"]
    changes = pd.read_csv(out / "prediction_changes.csv")
    assert changes["removed"].sum() == summary["removed"]["n_ratings"]
    # the updated model no longer holds the user's ratings: nothing to recommend from
    assert main(["recommend", *_args(ratings_csv), "--user", "C-0018", "--model",
                 str(out / "model.npz")]) == 2
    assert "no ratings in the model's training data" in capsys.readouterr().err
    assert main(["recommend", *_args(ratings_csv), "--user", "C-0027", "--k", "2", "--model",
                 str(out / "model.npz")]) == 0
    assert main(["report", str(out)]) == 0
    assert "Unlearning" in (out / "report.html").read_text()


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--user", "C-9999", "--out", "x"], "'--user' is 'C-9999', which is not a user id"),
        (["--user", "C-0009", "--item", "P1", "--out", "x"], "exactly one of --user"),
        (["--item", "P-nope", "--out", "x"], "not an item id"),
    ],
)
def test_unlearn_errors_name_the_option(ratings_csv, tmp_path, capsys, extra, message):
    extra = [str(tmp_path / e) if e == "x" else e for e in extra]
    assert main(["unlearn", *_args(ratings_csv), *extra]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_a_model_of_another_log_is_refused(ratings_csv, tmp_path, capsys):
    out = tmp_path / "rec"
    assert main(["recommend", *_args(ratings_csv), "--user", "C-0009", "--k", "1", "--out",
                 str(out)]) == 0
    other = tmp_path / "other.csv"
    df = pd.read_csv(ratings_csv)
    df.loc[0, "stars"] = 5.0 if df.loc[0, "stars"] != 5.0 else 4.0
    df.to_csv(other, index=False)
    args = _args(other)
    assert main(["recommend", *args, "--user", "C-0009", "--model", str(out / "model.npz")]) == 2
    assert "changed since it was fitted" in capsys.readouterr().err


def test_recommend_on_the_builtin_movielens_log(movielens_file, monkeypatch, capsys):
    monkeypatch.setenv("DATAVALUE_DATA", str(movielens_file.parent))
    assert main(["recommend", "--data", "movielens", "--user", "15", "--k", "2",
                 "--explain", "--factors", "4"]) == 0
    text = capsys.readouterr().out
    assert "100,004 ratings" in text and "because you rated" in text


@pytest.mark.parametrize("content", [b"", bytes(range(256)) * 4, b"PK\x03\x04 not a zip"],
                         ids=["empty", "random-bytes", "broken-zip"])
def test_a_model_or_log_file_that_is_not_one_is_a_one_line_error(ratings_csv, tmp_path, capsys,
                                                                 content):
    # The sweep: random bytes as --model printed numpy's advice to unpickle them.
    bad = tmp_path / "model.npz"
    bad.write_bytes(content)
    assert main(["recommend", *_args(ratings_csv), "--user", "C-0009", "--model",
                 str(bad)]) == 2
    err = capsys.readouterr().err
    assert "is not a datavalue recommender model" in err and len(err.strip().splitlines()) == 1
    assert main(["recommend", "--data", str(bad), "--user", "1"]) == 2
    err = capsys.readouterr().err
    assert "is not a ratings file" in err and "pickle" not in err
