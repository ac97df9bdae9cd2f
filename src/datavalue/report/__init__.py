"""The HTML report: one self-contained file that shows what the values say.

``datavalue report DIR`` (or :func:`build_report`) reads a folder written by ``datavalue
value`` (with ``evaluate``, ``clean`` and ``fix`` results if present), ``datavalue compare`` or
``datavalue explain``, and writes ``DIR/report.html``: a summary, the value distribution of
corrupted and clean examples, detection and removal curves, the comparison table, the most
harmful and most helpful training examples (images for image data, feature rows otherwise) and,
for explanations, each test example beside its most helpful and harmful training examples.
Figures are embedded as base64 PNG: the file works offline, on its own.

An explanation folder is ``explanation.json`` (:meth:`datavalue.actions.explain.Explanation.save`; more
test examples as ``explanation-<index>.json``) beside the ``dataset.npz`` it refers to; see
:mod:`datavalue.report.explain`.
"""

from __future__ import annotations

from datavalue.report._build import build_report
from datavalue.report.explain import load_explanations, save_explanations

__all__ = ["build_report", "save_explanations", "load_explanations"]
