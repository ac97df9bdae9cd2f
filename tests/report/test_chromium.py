"""The report in a real browser: headless Chromium (Debian's ``chromium`` package).

For each report, a copy with a small script appended is loaded from disk (``file://``, no
network); the script records, after the load event, how many images there are and how many
failed to decode (``complete && naturalWidth > 0``), how many tables, and whether the page is
wider than the window. ``--dump-dom`` prints the page after the script ran. A page with a broken
image checks that the probe can fail. A screenshot of the image report is saved as a test
artifact (in ``$DATAVALUE_TEST_ARTIFACTS`` if set, else pytest's temporary folder; its path is
printed).

Chromium is installed by ``.ci/run``; without it these tests skip, unless
``DATAVALUE_REQUIRE_CHROMIUM=1`` makes a missing browser a failure.
"""

from __future__ import annotations

import html
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from datavalue.report import build_report

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
REQUIRED = os.environ.get("DATAVALUE_REQUIRE_CHROMIUM") == "1"

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        CHROMIUM is None and not REQUIRED,
        reason="headless Chromium not installed (apt-get install -y chromium); .ci/run "
        "installs it",
    ),
]

_PROBE = """<script>
window.addEventListener("load", function () {
  var images = Array.prototype.slice.call(document.images);
  var root = document.documentElement;
  var out = {
    n_images: images.length,
    broken: images.filter(function (i) { return !(i.complete && i.naturalWidth > 0); })
      .map(function (i) { return i.alt; }),
    n_tables: document.querySelectorAll("table").length,
    n_rows: document.querySelectorAll("tbody tr").length,
    scroll_width: root.scrollWidth,
    client_width: root.clientWidth
  };
  var pre = document.createElement("pre");
  pre.id = "probe-result";
  pre.textContent = JSON.stringify(out);
  document.body.appendChild(pre);
});
</script>"""


def _chromium(tmp: Path, url: str, width: int, *extra: str) -> subprocess.CompletedProcess:
    if CHROMIUM is None:
        pytest.fail("DATAVALUE_REQUIRE_CHROMIUM=1 but no chromium on PATH")
    args = [
        CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
        "--no-first-run", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--disable-extensions", "--hide-scrollbars", "--mute-audio",
        f"--user-data-dir={tmp / 'chromium-profile'}", "--run-all-compositor-stages-before-draw",
        "--virtual-time-budget=10000", f"--window-size={width},2000", *extra, url,
    ]  # fmt: skip
    return subprocess.run(args, capture_output=True, text=True, timeout=180)


def _probe(report: Path, tmp: Path, width: int) -> dict:
    """Load a copy of ``report`` with the probe script and return what it measured."""
    probe = tmp / f"probe-{report.parent.name}-{width}.html"
    probe.write_text(report.read_text().replace("</body>", _PROBE + "</body>"))
    proc = _chromium(tmp, probe.as_uri(), width, "--dump-dom")
    match = re.search(r'<pre id="probe-result">(.*?)</pre>', proc.stdout, re.DOTALL)
    assert match, f"the probe did not run (exit {proc.returncode}):\n{proc.stderr[-2000:]}"
    return json.loads(html.unescape(match.group(1)))


def _artifacts(tmp_path: Path) -> Path:
    d = Path(os.environ.get("DATAVALUE_TEST_ARTIFACTS", tmp_path))
    d.mkdir(parents=True, exist_ok=True)
    return d


@pytest.mark.parametrize("width", [1280, 700])
def test_image_report_loads_every_figure(digits_folder, tmp_path, width):
    report = build_report(digits_folder, progress=False)
    n_img = report.read_text().count("<img ")
    result = _probe(report, tmp_path, width)
    assert result["n_images"] == n_img >= 20  # 4 figures + 16 example digits
    assert result["broken"] == []
    assert result["n_tables"] >= 3 and result["n_rows"] >= 6
    assert result["scroll_width"] <= result["client_width"], "the page scrolls sideways"


def test_comparison_tables_fit_a_narrow_window(compare_folder, tmp_path):
    report = build_report(compare_folder)
    result = _probe(report, tmp_path, 700)
    assert result["broken"] == [] and result["n_images"] >= 4
    assert result["n_tables"] >= 3
    assert result["scroll_width"] <= result["client_width"], "a table is wider than the window"


def test_probe_sees_a_broken_image(tmp_path):
    """The check above can fail: a PNG that does not decode is reported."""
    page = tmp_path / "broken" / "report.html"
    page.parent.mkdir()
    page.write_text('<!DOCTYPE html><html><body><table><tbody><tr><td>x</td></tr></tbody>'
                    '</table><img alt="bad" src="data:image/png;base64,iVBORw0KGgoAAAA=">'
                    '<div style="width:3000px">wide</div></body></html>')
    result = _probe(page, tmp_path, 800)
    assert result["broken"] == ["bad"]
    assert result["scroll_width"] > result["client_width"]


def test_screenshot_is_saved_as_an_artifact(digits_folder, tmp_path, record_property):
    report = build_report(digits_folder, progress=False)
    shot = _artifacts(tmp_path) / "report-digits.png"
    shot.unlink(missing_ok=True)
    proc = _chromium(tmp_path, report.as_uri(), 1280, f"--screenshot={shot}")
    assert shot.is_file(), proc.stderr[-2000:]
    data = shot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 20_000
    record_property("screenshot", str(shot))
    print(f"report screenshot: {shot}")


_FRAME_PROBE = """<!DOCTYPE html><html><body style="margin:0">
<iframe id="f" src="{src}" width="{width}" height="800" style="border:0"></iframe>
<script>
document.getElementById("f").addEventListener("load", function () {{
  var doc = this.contentDocument, root = doc.documentElement;
  var figs = Array.prototype.slice.call(doc.querySelectorAll("figure img"));
  var cells = Array.prototype.slice.call(doc.querySelectorAll("td.num, td.short, th"));
  var out = {{
    scroll_width: root.scrollWidth, client_width: root.clientWidth,
    height: root.scrollHeight,
    narrowest_figure: figs.length ? Math.min.apply(null, figs.map(function (i) {{
      return i.getBoundingClientRect().width; }})) : null,
    broken_tokens: cells.filter(function (c) {{
      var r = doc.createRange(); r.selectNodeContents(c);
      return r.getClientRects().length > 1 && c.textContent.indexOf(" ") < 0; }})
      .map(function (c) {{ return c.textContent; }}).slice(0, 5)
  }};
  var pre = document.createElement("pre");
  pre.id = "probe-result";
  pre.textContent = JSON.stringify(out);
  document.body.appendChild(pre);
}});
</script></body></html>"""


def _probe_in_frame(report: Path, tmp: Path, width: int) -> dict:
    """Lay the report out in a ``width``-px frame (headless Chromium's window is never narrower
    than 500 px, a phone's is 390) and measure it from the parent page."""
    parent = tmp / f"frame-{report.parent.name}-{width}.html"
    parent.write_text(_FRAME_PROBE.format(src=report.as_uri(), width=width))
    proc = _chromium(tmp, parent.as_uri(), 1280, "--dump-dom", "--allow-file-access-from-files")
    match = re.search(r'<pre id="probe-result">(.*?)</pre>', proc.stdout, re.DOTALL)
    assert match, f"the frame probe did not run (exit {proc.returncode}):\n{proc.stderr[-2000:]}"
    return json.loads(html.unescape(match.group(1)))


@pytest.mark.parametrize(("width", "max_height"), [(390, 8_000), (1280, 5_000)])
def test_tabular_report_reads_on_a_phone_and_a_laptop(tabular_folder, tmp_path, width,
                                                      max_height):
    """breast_cancer (30 features): no sideways scrolling, figures at least 300 px wide on a
    phone, no number or name broken inside a cell, and a bounded page height (the example
    tables show a few features per row, the rest folded away). Measured: 4,566 px tall at
    390 px (146,778 before the fold) and 3,059 px at 1280 px."""
    report = build_report(tabular_folder, progress=False)
    result = _probe_in_frame(report, tmp_path, width)
    assert result["scroll_width"] <= result["client_width"], "the page scrolls sideways"
    assert result["height"] <= max_height, result["height"]
    assert result["narrowest_figure"] is None or result["narrowest_figure"] >= min(300, width - 40)
    assert result["broken_tokens"] == []


def test_image_report_reads_on_a_phone(digits_folder, tmp_path):
    report = build_report(digits_folder, progress=False)
    result = _probe_in_frame(report, tmp_path, 390)
    assert result["scroll_width"] <= result["client_width"], "the page scrolls sideways"
    assert result["narrowest_figure"] >= 300
    assert result["broken_tokens"] == []


def test_recommendation_and_unlearning_views_read_on_a_phone(shared_data, tmp_path):
    """The recommendation-explanation view (long movie titles in tables) and the unlearning
    summary at 390 px: no sideways scrolling, no number broken inside a cell."""
    import numpy as np
    import pandas as pd

    from datavalue.cli import main

    with np.load(shared_data / "movielens.npz") as f:
        rows = np.flatnonzero(np.isin(f["user"], np.arange(0, 671, 11)))
        pd.DataFrame({"user": f["user"][rows], "item": f["item"][rows],
                      "rating": f["rating"][rows],
                      "title": f["item_title"][f["item"][rows]]}).to_csv(
            tmp_path / "log.csv", index=False)
    data = ["--data", str(tmp_path / "log.csv"), "--title-column", "title", "--factors", "4"]
    assert main(["recommend", *data, "--user", "22", "--k", "4", "--explain",
                 "--out", str(tmp_path / "rec")]) == 0
    assert main(["unlearn", *data, "--user", "22", "--out", str(tmp_path / "unl")]) == 0
    for folder in ("rec", "unl"):
        report = build_report(tmp_path / folder, progress=False)
        result = _probe_in_frame(report, tmp_path, 390)
        assert result["scroll_width"] <= result["client_width"], (folder, "scrolls sideways")
        assert result["broken_tokens"] == [], folder


def test_attack_report_draws_every_pair(attack_folder, tmp_path):
    report = build_report(attack_folder)
    result = _probe(report, tmp_path, 700)
    assert result["n_images"] == 1 + 2 * (1 + 2)  # the target + original/perturbed pairs
    assert result["broken"] == [] and result["n_tables"] >= 1
    assert result["scroll_width"] <= result["client_width"], "the page scrolls sideways"
