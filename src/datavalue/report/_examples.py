"""Training examples as people read them: small images for image data, feature rows otherwise.

Images (data sets with ``image_shape``, e.g. digits' 8x8) are encoded straight to PNG here (a
dozen lines of zlib and struct, no figure per example), in the data's original units
(:meth:`Dataset.raw_features`), dark = high as in the usual digit plots. Tabular examples are
shown as ``name=value`` text that wraps, skipping one-hot columns that are 0, so 80 features fit
in a column of a table.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Sequence
from typing import Any

import numpy as np

from datavalue.data import Dataset
from datavalue.report._html import esc, fmt, img, table
from datavalue.report.text import features_text, number

__all__ = ["png_image", "example_png", "cards", "rows_table"]

_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _chunk(tag: bytes, data: bytes) -> bytes:
    return (struct.pack(">I", len(data)) + tag + data
            + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF))


def png_image(pixels: np.ndarray, scale: int = 1) -> bytes:
    """PNG bytes of a uint8 image: (h, w) grey or (h, w, 3) RGB, each pixel ``scale`` x
    ``scale`` (nearest neighbour, so small images stay sharp)."""
    a = np.asarray(pixels, dtype=np.uint8)
    if a.ndim not in (2, 3) or (a.ndim == 3 and a.shape[2] != 3):
        raise ValueError(f"png_image needs an (h, w) or (h, w, 3) array; got shape {a.shape}.")
    a = np.repeat(np.repeat(a, scale, axis=0), scale, axis=1)
    h, w = a.shape[:2]
    color = 0 if a.ndim == 2 else 2
    rows = a.reshape(h, -1)
    raw = b"".join(b"\x00" + rows[i].tobytes() for i in range(h))  # filter 0 on every row
    header = struct.pack(">IIBBBBB", w, h, 8, color, 0, 0, 0)
    return (_PNG_MAGIC + _chunk(b"IHDR", header) + _chunk(b"IDAT", zlib.compress(raw, 9))
            + _chunk(b"IEND", b""))


class _Pixels:
    """Maps raw feature values of one data set to 0..255 with the same range for every image."""

    def __init__(self, ds: Dataset) -> None:
        raw = np.asarray(ds.raw_features(ds.x_train), dtype=np.float64)
        self.low, self.high = float(np.min(raw)), float(np.max(raw))
        self.shape = tuple(int(s) for s in ds.image_shape or ())
        self.ds = ds

    def __call__(self, x: np.ndarray) -> np.ndarray:
        raw = np.asarray(self.ds.raw_features(np.asarray(x)[None, :]), dtype=np.float64)[0]
        span = self.high - self.low if self.high > self.low else 1.0
        level = np.clip((raw - self.low) / span, 0.0, 1.0)
        if len(self.shape) == 2:
            level = 1.0 - level  # dark ink on white paper
        return np.round(level * 255).astype(np.uint8).reshape(self.shape)


def example_png(ds: Dataset, x: np.ndarray, pixels: _Pixels | None = None) -> bytes:
    """One example of an image data set as a PNG about 96 pixels wide."""
    pixels = pixels or _Pixels(ds)
    image = pixels(x)
    scale = max(1, 96 // max(image.shape[:2]))
    return png_image(image, scale)


def _caption_lines(lines: Sequence[str]) -> str:
    return "<br>".join(esc(s) for s in lines)


def cards(ds: Dataset, x: np.ndarray, captions: Sequence[Sequence[str]], *,
          flags: Sequence[bool] | None = None, query: Sequence[bool] | None = None,
          alt: str = "example") -> str:
    """Image examples as a wrapping row of cards (image + caption lines)."""
    pixels = _Pixels(ds)
    out = ['<div class="cards">']
    for i, lines in enumerate(captions):
        klass = "card"
        if flags is not None and flags[i]:
            klass += " flag"
        if query is not None and query[i]:
            klass += " query"
        out.append(f'<div class="{klass}">{img(example_png(ds, x[i], pixels), f"{alt} {i + 1}")}'
                   f"<div>{_caption_lines(lines)}</div></div>")
    out.append("</div>")
    return "".join(out)


def _distinctive(ds: Dataset, x: np.ndarray, n: int) -> list[int]:
    """The ``n`` features in which ``x`` is most unusual: the largest standardized distance
    from the training mean (one-hot columns count when set to a rare level)."""
    mean = ds.x_train.mean(axis=0)
    std = ds.x_train.std(axis=0)
    z = np.abs((np.asarray(x, dtype=np.float64) - mean) / np.where(std > 0, std, 1.0))
    return [int(j) for j in np.argsort(-z, kind="stable")[:n]]


def features_cell(ds: Dataset, x: np.ndarray, *, shown: int = 4) -> str:
    """HTML of an example's features: the few most distinctive ones, then every feature folded
    in a ``<details>`` (a phone screen shows four short lines, not thirty)."""
    top = _distinctive(ds, x, shown)
    raw = np.asarray(ds.raw_features(np.asarray(x)[None, :]), dtype=np.float64)[0]
    short = ", ".join(esc(f"{ds.feature_names[j]}={number(raw[j])}") for j in top)
    if ds.n_features <= shown:
        return short
    return (f"{short}<details><summary>all {ds.n_features} features</summary>"
            f"{esc(features_text(ds, x))}</details>")


def rows_table(ds: Dataset, x: np.ndarray, columns: dict[str, Sequence[Any]], *,
               flags: Sequence[bool] | None = None) -> str:
    """Tabular examples: the given columns, then the most distinctive features (the rest
    folded away)."""
    header = [*columns, "features"]
    n = len(x)
    rows = [[*(esc(fmt(columns[c][i])) for c in columns), features_cell(ds, x[i])]
            for i in range(n)]
    numeric = [all(isinstance(v, int | float | np.number) and not isinstance(v, bool)
                   for v in columns[c]) for c in columns] + [False]
    classes = ["flag" if flags is not None and flags[i] else "" for i in range(n)]
    short = [True] * len(columns) + [False]
    return table(header, rows, numeric=numeric, row_classes=classes, short=short,
                 raw=[True] * (len(columns) + 1))
