"""The ratings log: ids kept, splits, and clear errors on bad input."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import datavalue as dv
from datavalue import DatavalueError, InvalidDataError, InvalidParameterError


def test_movielens_loads_with_titles_and_timestamps(movielens_file):
    r = dv.load_ratings(movielens_file)
    assert (r.n_ratings, r.n_users, r.n_items) == (100_004, 671, 9_066)
    assert r.scale == (0.5, 5.0)
    assert r.timestamp is not None and r.item_titles is not None
    assert np.array_equal(r.row_id, np.arange(100_004))  # positions in the source file


def test_builtin_name_is_found_through_datavalue_data(movielens_file, monkeypatch):
    monkeypatch.setenv("DATAVALUE_DATA", str(movielens_file.parent))
    assert dv.load_ratings("movielens", n_users=5).n_users == 671  # id tables are kept whole
    monkeypatch.setenv("DATAVALUE_DATA", "/nonexistent")
    monkeypatch.chdir("/")
    with pytest.raises(DatavalueError, match="Unknown ratings log .movielens_typo.: use one of"):
        dv.load_ratings("movielens_typo")


def test_latest_split_holds_out_each_users_latest_ratings(movielens_file):
    r = dv.load_ratings(movielens_file)
    train, test = r.split("latest", n_per_user=2)
    assert train.n_ratings + test.n_ratings == r.n_ratings
    assert test.n_ratings == 2 * 671  # every user has >= 20 ratings
    last_train = pd.Series(train.timestamp).groupby(train.user).max()
    first_test = pd.Series(test.timestamp).groupby(test.user).min()
    assert (last_train <= first_test.reindex(last_train.index)).all()
    # ids survive the split
    assert set(np.concatenate([train.row_id, test.row_id])) == set(range(r.n_ratings))


def test_random_split_is_seeded(movielens_file):
    r = dv.load_ratings(movielens_file, n_users=50)
    a = r.split("random", test_size=0.2, random_state=3)[1].row_id
    b = r.split("random", test_size=0.2, random_state=3)[1].row_id
    assert np.array_equal(a, b) and 0.15 < len(a) / r.n_ratings < 0.25


def test_from_frame_keeps_the_users_ids_and_row_ids():
    df = pd.DataFrame({"who": ["ann", "bob", "ann", "cy"], "movie": ["Up", "Up", "Heat", "Heat"],
                       "stars": [4, 2, 5, 3], "rid": ["r1", "r2", "r3", "r4"]})
    r = dv.Ratings.from_frame(df, user="who", item="movie", rating="stars", row_id="rid",
                              scale=(1, 5))
    assert r.user_ids.tolist() == ["ann", "bob", "cy"]
    assert r.row_id.tolist() == ["r1", "r2", "r3", "r4"]
    assert r.user_code("bob") == 1 and r.item_code("Up") == 1


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (dict(user=[1, 1], item=[2, 2], rating=[3.0, 4.0]), "rated more than once"),
        (dict(user=[1, 2], item=[2, 2], rating=[3.0, 9.0], scale=(1, 5)), "outside the scale"),
        (dict(user=[1, 2], item=[2, 2], rating=[3.0, np.nan]), "missing or infinite"),
        (dict(user=[1, 2], item=[2], rating=[3.0, 4.0]), "same length"),
        (dict(user=[], item=[], rating=[]), "empty"),
        (dict(user=[1, 2], item=[2, 2], rating=["a", "b"]), "must be numbers"),
    ],
)
def test_bad_ratings_are_refused_with_the_argument_named(kwargs, match):
    with pytest.raises(InvalidDataError, match=match):
        dv.Ratings.from_arrays(**kwargs)


def test_unknown_ids_and_columns_are_named():
    r = dv.Ratings.from_arrays([1, 2], [5, 6], [3.0, 4.0])
    with pytest.raises(InvalidParameterError, match="'user' is 9"):
        r.user_code(9)
    df = pd.DataFrame({"u": [1], "i": [2], "r": [3.0]})
    with pytest.raises(InvalidParameterError, match="'rating' column 'stars'"):
        dv.Ratings.from_frame(df, user="u", item="i", rating="stars")


def test_csv_ratings_log(tmp_path):
    p = tmp_path / "log.csv"
    pd.DataFrame({"user": ["a", "a", "b"], "item": [10, 11, 10], "rating": [4, 3, 5],
                  "ts": [1, 2, 3]}).to_csv(p, index=False)
    r = dv.Ratings.from_csv(p, timestamp="ts")
    assert r.n_ratings == 3 and r.name == "log"
    assert dv.load_ratings(p).n_ratings == 3
