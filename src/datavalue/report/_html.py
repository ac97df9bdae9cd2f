"""HTML building blocks of the report: escaping, tables, embedded images, the page.

Everything is inline (CSS in a ``<style>`` element, figures as ``data:image/png;base64`` URIs),
so ``report.html`` is one file that opens offline. The layout is one column of at most 1100 px
that shrinks with the window; tables wrap their cells instead of growing sideways.
"""

from __future__ import annotations

import base64
import html
import io
import math
import numbers
from collections.abc import Iterable, Sequence
from typing import Any

import pandas as pd

__all__ = ["esc", "fmt", "figure_png", "img", "figure", "table", "frame_table", "kv", "section",
           "page"]

_CSS = """
*, *::before, *::after { box-sizing: border-box; }
html { -webkit-text-size-adjust: 100%; }
body { margin: 0 auto; padding: 1rem 1.25rem 3rem; max-width: 1100px; color: #1d2327;
  font: 15px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial,
  sans-serif; background: #fff; overflow-wrap: break-word; }
h1 { font-size: 1.6rem; margin: 0.5rem 0 0.25rem; }
h2 { font-size: 1.25rem; margin: 2rem 0 0.5rem; padding-top: 0.5rem;
  border-top: 1px solid #dde1e4; }
h3 { font-size: 1.05rem; margin: 1.25rem 0 0.4rem; }
p, li { max-width: 80ch; }
.muted { color: #5f6b73; font-size: 0.9rem; }
nav ul { display: flex; flex-wrap: wrap; gap: 0.25rem 1rem; padding: 0; list-style: none; }
figure { margin: 0.75rem 0 1.25rem; }
figure img { display: block; max-width: 100%; height: auto; }
figcaption { color: #5f6b73; font-size: 0.9rem; margin-top: 0.25rem; }
.scroll { overflow-x: auto; max-width: 100%; margin: 0.5rem 0 1rem; }
table { border-collapse: collapse; width: 100%; font-size: 0.9rem; }
th, td { border: 1px solid #dde1e4; padding: 0.3rem 0.45rem; text-align: left;
  vertical-align: top; overflow-wrap: normal; word-break: normal; }
th { background: #f3f5f6; font-weight: 600; white-space: nowrap; }
td.features { min-width: 12rem; }
details > summary { cursor: pointer; color: #1f5f99; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
td.features { font-size: 0.82rem; color: #37424a; }
td.short, th.short { white-space: nowrap; }
tr.flag td { background: #fff4f2; }
dl.kv { display: grid; grid-template-columns: minmax(6rem, max-content) minmax(0, 1fr);
  gap: 0.2rem 1rem; margin: 0.5rem 0 1rem; }
dl.kv dt { font-weight: 600; }
dl.kv dd { margin: 0; min-width: 0; overflow-wrap: anywhere; }
@media (max-width: 600px) {
  body { padding: 0.75rem 0.75rem 2rem; }
  dl.kv { grid-template-columns: minmax(0, 1fr); gap: 0 0; }
  dl.kv dd { margin-bottom: 0.4rem; }
  .explain .group { flex-basis: 100%; }
}
.cards { display: flex; flex-wrap: wrap; gap: 0.6rem; margin: 0.5rem 0 1rem; }
.card { width: 7.5rem; border: 1px solid #dde1e4; border-radius: 4px; padding: 0.35rem;
  font-size: 0.78rem; line-height: 1.3; }
.card img { display: block; width: 100%; height: auto; image-rendering: pixelated; }
.card.flag { border-color: #d9534f; background: #fff4f2; }
.card.query { border-color: #1f77b4; background: #f0f6fb; }
.explain { display: flex; flex-wrap: wrap; gap: 1rem; align-items: flex-start;
  border: 1px solid #dde1e4; border-radius: 4px; padding: 0.6rem; margin: 0.75rem 0; }
.explain > div { min-width: 0; }
.explain .group { flex: 1 1 20rem; }
.note { background: #f7f7f2; border-left: 3px solid #c9b458; padding: 0.4rem 0.7rem; }
"""


def esc(text: Any) -> str:
    """HTML-escaped text."""
    return html.escape(str(text), quote=True)


def fmt(value: Any, digits: int = 4) -> str:
    """A number for a table cell: ``digits`` significant digits, "–" for NaN/None."""
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, numbers.Integral):
        return str(int(value))
    if isinstance(value, numbers.Real):
        v = float(value)
        return "–" if not math.isfinite(v) else f"{v:.{digits}g}"
    return str(value)


def figure_png(fig: Any, dpi: int = 100) -> bytes:
    """A matplotlib figure as PNG bytes (built without pyplot, so nothing is shown)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    return buf.getvalue()


def img(png: bytes, alt: str, *, cls: str = "", width: int | None = None) -> str:
    """An ``<img>`` with the PNG embedded as a base64 data URI."""
    data = base64.b64encode(png).decode("ascii")
    attrs = f' class="{esc(cls)}"' if cls else ""
    attrs += f' width="{int(width)}"' if width else ""
    return f'<img src="data:image/png;base64,{data}" alt="{esc(alt)}"{attrs}>'


def figure(png: bytes, alt: str, caption: str = "") -> str:
    cap = f"<figcaption>{caption}</figcaption>" if caption else ""
    return f"<figure>{img(png, alt)}{cap}</figure>"


def table(header: Sequence[str], rows: Iterable[Sequence[Any]], *,
          numeric: Sequence[bool] | None = None, row_classes: Sequence[str] | None = None,
          raw: Sequence[bool] | None = None, caption: str = "",
          short: Sequence[bool] | None = None) -> str:
    """A table. Cells are escaped unless ``raw`` marks the column as HTML; ``numeric`` columns
    are right-aligned; ``short`` columns never wrap (so a long column beside them takes the
    width)."""
    header = list(header)
    numeric = list(numeric) if numeric is not None else [False] * len(header)
    raw = list(raw) if raw is not None else [False] * len(header)
    short = list(short) if short is not None else [False] * len(header)
    out = ['<div class="scroll"><table>']
    if caption:
        out.append(f"<caption class='muted'>{esc(caption)}</caption>")
    out.append("<thead><tr>" + "".join(
        f'<th class="short">{esc(h)}</th>' if short[j] else f"<th>{esc(h)}</th>"
        for j, h in enumerate(header)) + "</tr></thead>")
    out.append("<tbody>")
    for i, row in enumerate(rows):
        klass = row_classes[i] if row_classes is not None else ""
        cells = []
        for j, cell in enumerate(row):
            text = cell if raw[j] else esc(fmt(cell))
            cls = "num" if numeric[j] else ("features" if header[j] == "features" else "")
            cls = f"{cls} short".strip() if short[j] else cls
            cells.append(f'<td class="{cls}">{text}</td>' if cls else f"<td>{text}</td>")
        out.append((f'<tr class="{klass}">' if klass else "<tr>") + "".join(cells) + "</tr>")
    out.append("</tbody></table></div>")
    return "".join(out)


def frame_table(frame: pd.DataFrame, *, digits: int = 4, caption: str = "") -> str:
    """A DataFrame as a table (numeric columns right-aligned)."""
    numeric = [pd.api.types.is_numeric_dtype(frame[c]) and not pd.api.types.is_bool_dtype(frame[c])
               for c in frame.columns]
    rows = ([fmt(v, digits) for v in row] for row in frame.itertuples(index=False))
    # Identifier-like headers ("most_valuable_first") read, and wrap, as words.
    return table([str(c).replace("_", " ") for c in frame.columns], rows, numeric=numeric,
                 caption=caption)


def kv(pairs: Iterable[tuple[str, Any]]) -> str:
    """A definition list of label/value pairs."""
    items = "".join(f"<dt>{esc(k)}</dt><dd>{esc(fmt(v))}</dd>" for k, v in pairs)
    return f'<dl class="kv">{items}</dl>'


def section(anchor: str, title: str, body: str) -> str:
    return f'<section id="{esc(anchor)}"><h2>{esc(title)}</h2>{body}</section>'


#: In the head of every report: ``report --out FILE`` replaces only files that carry it.
REPORT_MARKER = b'<meta name="generator" content="datavalue report">'


def page(title: str, subtitle: str, sections: Sequence[tuple[str, str, str]]) -> str:
    """The whole document: a title, a table of contents and the sections
    ``(anchor, title, html)``."""
    toc = "".join(f'<li><a href="#{esc(a)}">{esc(t)}</a></li>' for a, t, _ in sections)
    body = "".join(section(a, t, h) for a, t, h in sections)
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
        + REPORT_MARKER.decode()
        + f"<title>{esc(title)}</title><style>{_CSS}</style></head><body>"
        f"<header><h1>{esc(title)}</h1><p class=\"muted\">{esc(subtitle)}</p>"
        f"<nav><ul>{toc}</ul></nav></header><main>{body}</main></body></html>\n"
    )
