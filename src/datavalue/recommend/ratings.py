"""A ratings log (who rated what, how much, when), validated once, and its recommender splits.

:class:`Ratings` is the one validated object the recommender code takes: integer codes
``user`` / ``item`` (0..U-1, 0..I-1) into id tables that keep the user's own ids, float ratings
on a known scale, optional timestamps, item titles, and for every rating its row id in the
source (so results point back at the user's file). Splits keep the id tables, so a model fitted
on the training part predicts for the test part.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from datavalue._core.exceptions import InvalidDataError, InvalidParameterError, UnknownNameError

__all__ = ["Ratings", "load_ratings", "BUILTIN_RATINGS"]

#: Ratings logs :func:`load_ratings` knows by name (files in the shared data folder).
BUILTIN_RATINGS: tuple[str, ...] = ("movielens",)


def _ids_text(ids: np.ndarray, k: int = 5) -> str:
    shown = ", ".join(map(repr, ids[:k].tolist()))
    return shown + (", ..." if len(ids) > k else "")


@dataclass(frozen=True, eq=False)
class Ratings:
    """Explicit ratings: one row per (user, item) pair.

    Attributes
    ----------
    user, item : ndarray of int64, shape (n,)
        Codes into :attr:`user_ids` and :attr:`item_ids`.
    rating : ndarray of float64, shape (n,)
    timestamp : ndarray of int64 or None
        Seconds since 1970 (UTC), when known.
    row_id : ndarray, shape (n,)
        Each rating's id in the source (its row number, or the user's id column).
    user_ids, item_ids : ndarray
        The source's own ids of every user and item code (a split keeps all of them, so codes
        mean the same in every part).
    item_titles, item_genres : ndarray of str or None
        Per item code (MovieLens: titles, and genres separated by "|").
    scale : (float, float)
        Lowest and highest possible rating (predictions are reported on it).
    name : str
    """

    user: np.ndarray
    item: np.ndarray
    rating: np.ndarray
    user_ids: np.ndarray
    item_ids: np.ndarray
    row_id: np.ndarray
    timestamp: np.ndarray | None = None
    item_titles: np.ndarray | None = None
    item_genres: np.ndarray | None = None
    scale: tuple[float, float] = (0.5, 5.0)
    name: str = "ratings"

    def __post_init__(self) -> None:
        n = len(self.rating)
        for attr in ("user", "item", "row_id") + (("timestamp",) if self.timestamp is not None
                                                  else ()):
            if len(getattr(self, attr)) != n:
                raise InvalidDataError(f"'{attr}' has {len(getattr(self, attr))} entries but "
                                       f"'rating' has {n}; they must have the same length.")
        if n and (self.user.min() < 0 or self.user.max() >= len(self.user_ids)):
            raise InvalidDataError("'user' codes must be in [0, len(user_ids)).")
        if n and (self.item.min() < 0 or self.item.max() >= len(self.item_ids)):
            raise InvalidDataError("'item' codes must be in [0, len(item_ids)).")
        for a in (self.user, self.item, self.rating, self.row_id):
            a.setflags(write=False)

    # -- sizes
    @property
    def n_ratings(self) -> int:
        return len(self.rating)

    @property
    def n_users(self) -> int:
        return len(self.user_ids)

    @property
    def n_items(self) -> int:
        return len(self.item_ids)

    def __len__(self) -> int:
        return self.n_ratings

    def describe(self) -> str:
        return (f"{self.name}: {self.n_ratings:,} ratings by {len(np.unique(self.user)):,} users "
                f"of {len(np.unique(self.item)):,} items, scale {self.scale[0]:g}-"
                f"{self.scale[1]:g}")

    # -- construction
    @classmethod
    def from_arrays(
        cls,
        user: Sequence[Any] | np.ndarray,
        item: Sequence[Any] | np.ndarray,
        rating: Sequence[float] | np.ndarray,
        *,
        timestamp: Sequence[int] | np.ndarray | None = None,
        row_id: Sequence[Any] | np.ndarray | None = None,
        item_titles: dict[Any, str] | None = None,
        scale: tuple[float, float] | None = None,
        name: str = "ratings",
    ) -> Ratings:
        """Ratings from the user's own ids (any hashable: ints, strings).

        ``scale`` is the possible range of ratings (default: the observed minimum and maximum);
        ratings outside it, NaN ratings and a (user, item) pair rated twice are refused.
        """
        u = np.asarray(user)
        i = np.asarray(item)
        try:
            r = np.asarray(rating, dtype=np.float64)
        except (TypeError, ValueError) as exc:
            raise InvalidDataError(f"'rating' must be numbers: {exc}.") from None
        for a, nm in ((u, "user"), (i, "item"), (r, "rating")):
            if a.ndim != 1:
                raise InvalidDataError(f"'{nm}' must be one-dimensional; got shape {a.shape}.")
        if not (len(u) == len(i) == len(r)):
            raise InvalidDataError(f"'user', 'item' and 'rating' must have the same length; got "
                                   f"{len(u)}, {len(i)} and {len(r)}.")
        if len(r) == 0:
            raise InvalidDataError("'rating' is empty: there is nothing to fit.")
        if not np.isfinite(r).all():
            bad = np.flatnonzero(~np.isfinite(r))
            raise InvalidDataError(f"'rating' has {len(bad)} missing or infinite values (rows "
                                   f"{_ids_text(bad)}).")
        for a, nm in ((u, "user"), (i, "item")):
            if a.dtype == object and any(v is None or v != v for v in a):
                raise InvalidDataError(f"'{nm}' has missing ids.")
        lo, hi = (float(r.min()), float(r.max())) if scale is None else map(float, scale)
        if not lo < hi and scale is not None:
            raise InvalidParameterError(f"'scale' must be (low, high) with low < high; got "
                                        f"{scale!r}.")
        out = (r < lo) | (r > hi)
        if out.any():
            bad = np.flatnonzero(out)
            raise InvalidDataError(
                f"'rating' has {len(bad)} values outside the scale [{lo:g}, {hi:g}] (rows "
                f"{_ids_text(bad)}: {_ids_text(r[bad])}). Fix them or pass the right 'scale'."
            )
        user_ids, ucode = np.unique(u, return_inverse=True)
        item_ids, icode = np.unique(i, return_inverse=True)
        ucode, icode = ucode.astype(np.int64), icode.astype(np.int64)
        pair = ucode * len(item_ids) + icode
        uniq, first, counts = np.unique(pair, return_index=True, return_counts=True)
        if (counts > 1).any():
            dup = first[counts > 1]
            raise InvalidDataError(
                f"{int((counts > 1).sum())} (user, item) pairs are rated more than once, e.g. "
                f"user {u[dup[0]]!r} and item {i[dup[0]]!r}. Keep one rating per pair (the "
                "latest, say) before fitting."
            )
        rid = np.arange(len(r)) if row_id is None else np.asarray(row_id)
        if len(rid) != len(r):
            raise InvalidDataError(f"'row_id' has {len(rid)} entries but 'rating' has {len(r)}.")
        if len(np.unique(rid)) != len(rid):
            raise InvalidDataError("'row_id' must identify each rating once; it has repeats.")
        ts = None
        if timestamp is not None:
            ts = np.asarray(timestamp)
            if ts.shape != r.shape or not np.issubdtype(ts.dtype, np.number):
                raise InvalidDataError("'timestamp' must be one number per rating.")
            ts = ts.astype(np.int64)
        titles = None
        if item_titles is not None:
            titles = np.array([str(item_titles.get(k, k)) for k in item_ids.tolist()])
        return cls(ucode, icode, r, user_ids, item_ids, rid, ts, titles, None, (lo, hi), name)

    @classmethod
    def from_frame(
        cls, frame: Any, *, user: str = "user", item: str = "item", rating: str = "rating",
        timestamp: str | None = None, row_id: str | None = None, title: str | None = None,
        scale: tuple[float, float] | None = None, name: str = "ratings",
    ) -> Ratings:
        """Ratings from a pandas DataFrame's columns (a ratings log as most people keep it).
        Without ``row_id`` the frame's index is each rating's id."""
        cols = list(frame.columns)
        for arg, col in (("user", user), ("item", item), ("rating", rating),
                         ("timestamp", timestamp), ("row_id", row_id), ("title", title)):
            if col is not None and col not in cols:
                raise InvalidParameterError(
                    f"The '{arg}' column {col!r} is not in the table; its columns are "
                    f"{', '.join(map(str, cols[:12]))}{', ...' if len(cols) > 12 else ''}.")
        titles = None
        if title is not None:
            titles = dict(zip(frame[item].tolist(), frame[title].astype(str).tolist(),
                              strict=True))
        rid = frame[row_id].to_numpy() if row_id is not None else frame.index.to_numpy()
        return cls.from_arrays(
            frame[user].to_numpy(), frame[item].to_numpy(), frame[rating].to_numpy(),
            timestamp=None if timestamp is None else frame[timestamp].to_numpy(),
            row_id=rid, item_titles=titles, scale=scale, name=name)

    @classmethod
    def from_csv(cls, path: str | os.PathLike, **columns: Any) -> Ratings:
        """Ratings from a CSV file (see :meth:`from_frame` for the column arguments)."""
        import pandas as pd

        p = Path(path)
        if not p.is_file():
            raise InvalidParameterError(f"The ratings file {str(p)!r} does not exist.")
        columns.setdefault("name", p.stem)
        return cls.from_frame(pd.read_csv(p), **columns)

    # -- lookups by the user's ids
    def user_code(self, user_id: Any, name: str = "user") -> int:
        """The code of the user whose source id is ``user_id`` (a clear error if unknown)."""
        return self._code(self.user_ids, user_id, name, "user")

    def item_code(self, item_id: Any, name: str = "item") -> int:
        return self._code(self.item_ids, item_id, name, "item")

    @staticmethod
    def _code(ids: np.ndarray, value: Any, name: str, what: str) -> int:
        article = "an" if what == "item" else "a"
        lo, hi = ids[:1].tolist(), ids[-1:].tolist()
        try:
            if ids.dtype.kind in "US":
                value = str(value)  # never cast to the table's width: "nope" is not "no"
            elif ids.dtype.kind in "iuf":
                if isinstance(value, str):  # from a command line: "12"
                    value = float(value) if ids.dtype.kind == "f" else int(value.strip())
                as_num = np.asarray(value).astype(ids.dtype).item()
                if as_num != value:
                    raise ValueError
                value = as_num
        except (TypeError, ValueError):
            raise InvalidParameterError(f"'{name}' must be {article} {what} id like "
                                        f"{lo[0]!r}; got {value!r}.") from None
        pos = int(np.searchsorted(ids, value))
        if pos >= len(ids) or ids[pos] != value:
            raise InvalidParameterError(
                f"'{name}' is {value!r}, which is not {article} {what} id of these ratings "
                f"(ids run from {lo[0]!r} to {hi[0]!r}).")
        return pos

    def title(self, item_code: int) -> str:
        if self.item_titles is None:
            return str(self.item_ids[item_code])
        return str(self.item_titles[item_code])

    # -- subsets and splits
    def subset(self, mask_or_index: Any) -> Ratings:
        """The ratings selected by a boolean mask or an index array (same id tables)."""
        sel = np.asarray(mask_or_index)
        if sel.dtype == bool:
            if sel.shape != (self.n_ratings,):
                raise InvalidParameterError(f"A mask must have one entry per rating "
                                            f"({self.n_ratings}); got shape {sel.shape}.")
            sel = np.flatnonzero(sel)
        return replace(
            self, user=self.user[sel], item=self.item[sel], rating=self.rating[sel],
            row_id=self.row_id[sel],
            timestamp=None if self.timestamp is None else self.timestamp[sel])

    def split(self, how: str = "latest", *, n_per_user: int = 1, test_size: float = 0.1,
              min_train: int = 5, random_state: int | None = 0) -> tuple[Ratings, Ratings]:
        """(train, test): ``"latest"`` holds out each user's ``n_per_user`` latest ratings (by
        timestamp; users with fewer than ``min_train + n_per_user`` ratings stay in train),
        the usual protocol for recommenders; ``"random"`` holds out a random ``test_size``
        share of the ratings."""
        if how == "latest":
            if self.timestamp is None:
                raise InvalidParameterError("split('latest') needs timestamps; these ratings "
                                            "have none. Use split('random').")
            if n_per_user < 1:
                raise InvalidParameterError(f"'n_per_user' must be >= 1; got {n_per_user}.")
            order = np.lexsort((self.timestamp, self.user))  # by user, then time
            u_sorted = self.user[order]
            counts = np.bincount(self.user, minlength=self.n_users)
            end = np.cumsum(counts)[u_sorted]  # position after each rating's user block
            pos = np.arange(len(order))
            held = (pos >= end - n_per_user) & (counts[u_sorted] >= min_train + n_per_user)
            test = np.zeros(self.n_ratings, dtype=bool)
            test[order[held]] = True
        elif how == "random":
            if not 0 < test_size < 1:
                raise InvalidParameterError(f"'test_size' must be in (0, 1); got {test_size}.")
            rng = np.random.default_rng(random_state)
            test = rng.random(self.n_ratings) < test_size
        else:
            raise InvalidParameterError(f"Unknown split {how!r}: use 'latest' or 'random'.")
        return self.subset(~test), self.subset(test)


def _search_dirs() -> list[Path]:
    dirs = [Path(p) for p in (os.environ.get("DATAVALUE_DATA"),) if p]
    here = Path(__file__).resolve()
    dirs += [Path.cwd() / "shared" / "data", Path.cwd().parent / "shared" / "data",
             here.parents[3].parent / "shared" / "data"]  # beside a source checkout
    return dirs


def load_ratings(name: str | os.PathLike = "movielens", *, n_users: int | None = None,
                 min_item_ratings: int = 1, random_state: int | None = 0) -> Ratings:
    """A built-in ratings log (``"movielens"``: 100,004 ratings of 9,066 movies by 671 users)
    or a ``.npz`` file of the same format, or a CSV with columns user, item, rating[,
    timestamp].

    Parameters
    ----------
    n_users : int, optional
        Keep a seeded random sample of this many users (all their ratings), for quick runs.
    min_item_ratings : int
        Keep only items rated at least this often (after sampling users).

    The shared folder is searched in ``$DATAVALUE_DATA``, ``./shared/data``, ``../shared/data``
    and beside the source checkout.
    """
    key = str(name)
    path = Path(key)
    if key in BUILTIN_RATINGS:
        for d in _search_dirs():
            if (d / f"{key}.npz").is_file():
                path = d / f"{key}.npz"
                break
        else:
            raise InvalidParameterError(
                f"The {key!r} ratings file ({key}.npz) was not found in "
                f"{', '.join(str(d) for d in _search_dirs())}. Set DATAVALUE_DATA to the folder "
                "that holds it.")
    if not path.is_file():
        if path.suffix:
            raise InvalidParameterError(f"The ratings file {key!r} does not exist.")
        raise UnknownNameError(f"Unknown ratings log {key!r}: use one of "
                               f"{', '.join(BUILTIN_RATINGS)}, or a .npz or .csv file.")
    if path.suffix.lower() == ".csv":
        r = Ratings.from_csv(path)
    else:
        import zipfile

        try:
            f = np.load(path, allow_pickle=False)
        except (ValueError, OSError, EOFError, zipfile.BadZipFile) as exc:
            raise InvalidDataError(f"{str(path)!r} is not a ratings file (an .npz of arrays "
                                   f"user, item, rating): {type(exc).__name__}.") from exc
        if not hasattr(f, "files"):
            raise InvalidDataError(f"{str(path)!r} is one array, not a ratings file (an .npz of "
                                   "arrays user, item, rating).")
        with f:
            needed = {"user", "item", "rating"}
            if not needed <= set(f.files):
                raise InvalidDataError(f"{str(path)!r} is not a ratings file: it lacks "
                                       f"{sorted(needed - set(f.files))}.")
            user, item = f["user"].astype(np.int64), f["item"].astype(np.int64)
            rating = f["rating"].astype(np.float64)
            n_u = int(user.max()) + 1
            n_i = int(item.max()) + 1
            r = Ratings(
                user, item, rating,
                f["user_id"] if "user_id" in f.files else np.arange(n_u),
                f["item_id"] if "item_id" in f.files else np.arange(n_i),
                np.arange(len(rating)),
                f["timestamp"].astype(np.int64) if "timestamp" in f.files else None,
                f["item_title"] if "item_title" in f.files else None,
                f["item_genres"] if "item_genres" in f.files else None,
                (0.5, 5.0) if key == "movielens" else (float(rating.min()), float(rating.max())),
                path.stem,
            )
            pairs = r.user * r.n_items + r.item
            if len(np.unique(pairs)) != len(pairs):
                raise InvalidDataError(f"{str(path)!r} rates some (user, item) pair twice.")
    if n_users is not None:
        if not 1 <= n_users <= r.n_users:
            raise InvalidParameterError(f"'n_users' must be in [1, {r.n_users}]; got {n_users}.")
        keep = np.random.default_rng(random_state).choice(r.n_users, n_users, replace=False)
        r = r.subset(np.isin(r.user, keep))
    if min_item_ratings > 1:
        counts = np.bincount(r.item, minlength=r.n_items)
        r = r.subset(counts[r.item] >= min_item_ratings)
    return r
