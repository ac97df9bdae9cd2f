"""The HTML report: self-contained, every figure a valid embedded PNG, the right examples."""

from __future__ import annotations

import base64
import io
from html.parser import HTMLParser

import matplotlib.image as mpimg
import numpy as np
import pytest

import datavalue as dv
from datavalue import InvalidDataError, InvalidParameterError
from datavalue.evaluate import point_removal, summarize_curve
from datavalue.report import build_report
from datavalue.report._examples import png_image
from datavalue.report.text import features_text

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


class _Page(HTMLParser):
    """Collects the images (src, alt), tables, headings and external references of a page."""

    def __init__(self) -> None:
        super().__init__()
        self.images: list[dict[str, str]] = []
        self.tables = 0
        self.headings: list[str] = []
        self.external: list[str] = []
        self._heading = False

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "img":
            self.images.append(a)
        if tag == "table":
            self.tables += 1
        if tag in ("h2", "h3"):
            self._heading = True
            self.headings.append("")
        for key in ("src", "href"):
            v = a.get(key, "")
            if v and not v.startswith(("data:", "#")):
                self.external.append(v)
        if tag in ("script", "link", "iframe"):
            self.external.append(tag)

    def handle_endtag(self, tag):
        if tag in ("h2", "h3"):
            self._heading = False

    def handle_data(self, data):
        if self._heading:
            self.headings[-1] += data


def _parse(path) -> tuple[_Page, str]:
    text = path.read_text()
    page = _Page()
    page.feed(text)
    return page, text


def _png(src: str) -> bytes:
    prefix = "data:image/png;base64,"
    assert src.startswith(prefix)
    return base64.b64decode(src[len(prefix):], validate=True)


def _check_self_contained(page: _Page, text: str) -> None:
    assert page.external == []  # no file, web or script the page would need
    assert "max-width: 1100px" in text and '<meta name="viewport"' in text
    for image in page.images:
        data = _png(image["src"])
        assert data[:8] == PNG_MAGIC
        pixels = mpimg.imread(io.BytesIO(data), format="png")
        assert pixels.shape[0] > 0 and pixels.shape[1] > 0
        assert image.get("alt")


def test_png_encoder_round_trips_exactly():
    rng = np.random.default_rng(0)
    grey = rng.integers(0, 256, size=(5, 7), dtype=np.uint8)
    back = mpimg.imread(io.BytesIO(png_image(grey, scale=3)), format="png")
    np.testing.assert_array_equal(np.round(back * 255).astype(np.uint8),
                                  np.repeat(np.repeat(grey, 3, 0), 3, 1))
    rgb = rng.integers(0, 256, size=(4, 3, 3), dtype=np.uint8)
    back = mpimg.imread(io.BytesIO(png_image(rgb)), format="png")
    np.testing.assert_array_equal(np.round(back[..., :3] * 255).astype(np.uint8), rgb)


def test_image_report_shows_the_lowest_and_highest_valued_digits(digits_folder):
    path = build_report(digits_folder, progress=False, k=6)
    assert path == digits_folder / "report.html"
    page, text = _parse(path)
    _check_self_contained(page, text)
    for title in ("Summary", "Value distribution and detection", "Removal and addition curves",
                  "Cleaning", "Fixing mislabeled examples",
                  "Most harmful and most helpful training examples",
                  "Most harmful: the lowest values", "Most helpful: the highest values"):
        assert title in page.headings, title
    assert page.tables >= 3
    cards = [im for im in page.images if im["alt"].startswith("Most harmful: the lowest values")]
    assert len(cards) == 6
    # The first card is the lowest-valued training digit, drawn from its raw pixels (0..16),
    # dark = high, each pixel 12 x 12.
    ds = dv.Dataset.load(digits_folder / "dataset.npz")
    result = dv.ValuationResult.load(digits_folder)
    lowest = result.ranking(ascending=True)[0]
    raw = ds.raw_features(ds.x_train[[lowest]])[0].reshape(8, 8)
    all_raw = ds.raw_features(ds.x_train)
    expected = np.round((1 - (raw - all_raw.min()) / np.ptp(all_raw)) * 255).astype(np.uint8)
    drawn = mpimg.imread(io.BytesIO(_png(cards[0]["src"])), format="png")
    assert drawn.shape[:2] == (96, 96)
    np.testing.assert_array_equal(np.round(drawn[::12, ::12] * 255).astype(np.uint8), expected)
    assert f"#{lowest}  value" in text
    # The removal curve (no 'evaluate' run): computed with the run's default model, logreg.
    removal = point_removal(result.values, ds, dv.make_model("logreg", ds.task, 0))
    mean = summarize_curve(removal)["most_valuable_first"]
    assert f">{mean:.4g}<" in text


def test_tabular_report_shows_rows_with_feature_names(tabular_folder):
    page, text = _parse(build_report(tabular_folder, progress=False))
    _check_self_contained(page, text)
    ds = dv.Dataset.load(tabular_folder / "dataset.npz")
    result = dv.ValuationResult.load(tabular_folder)
    lowest = int(result.ranking(ascending=True)[0])
    assert "mean radius=" in text
    assert features_text(ds, ds.x_train[lowest]).split(",")[0] in text
    assert page.tables >= 4  # detection, curve means, harmful, helpful
    assert not any(im["alt"].startswith("Most harmful") for im in page.images)  # rows, not images


def test_features_text_reads_like_the_data():
    ds = dv.Dataset.from_arrays(
        np.array([[39.0, 77516.0, 1.0, 0.0], [50.0, 83311.0, 0.0, 1.0], [38.5, 215646.0, 0.0, 0.0],
                  [53.0, 234721.0, 1.0, 0.0], [28.0, 338409.0, 0.0, 1.0]]),
        np.array([0, 1, 0, 1, 0]), valid_size=0, test_size=0, standardize=True,
        feature_names=["age", "fnlwgt", "workclass=Private", "workclass=State-gov"],
    )
    assert features_text(ds, ds.x_train[0]) == "age=39, fnlwgt=77516, workclass=Private"
    assert features_text(ds, ds.x_train[2]) == "age=38.5, fnlwgt=215646"


def test_compare_report_has_the_table_and_figures(compare_folder):
    page, text = _parse(build_report(compare_folder))
    _check_self_contained(page, text)
    for title in ("Comparison of methods", "Detection of corrupted examples by method",
                  "Removal and addition curves by method", "Value distributions (seed 0)",
                  "Every run"):
        assert title in page.headings, title
    assert text.count(" ± ") >= 6 and all(m in text for m in ("knn-shapley", "random", "loo"))
    assert page.tables >= 3
    assert len(page.images) >= 4


def test_explanation_report_puts_each_test_example_beside_its_examples(explain_folder):
    page, text = _parse(build_report(explain_folder))
    _check_self_contained(page, text)
    assert "test #0" in text and "test #5" in text
    assert sum(h == "Most helpful" for h in page.headings) == 2
    queries = [im for im in page.images if im["alt"].startswith("test example")]
    assert len(queries) == 2
    assert len([im for im in page.images if im["alt"].startswith("Most harmful")]) == 8


def test_report_errors(tmp_path, digits_folder):
    with pytest.raises(InvalidParameterError, match="holds no results"):
        build_report(tmp_path)
    with pytest.raises(InvalidParameterError, match="does not exist"):
        build_report(tmp_path / "missing")
    with pytest.raises(InvalidParameterError, match="'k'"):
        build_report(digits_folder, k=0)
    # An explanation computed on other data is refused.
    pytest.importorskip("torch", reason="explanations use influence functions")
    from datavalue.actions.explain import explain

    ds = dv.load_dataset("digits", noise_rate=0.1, random_state=0, n_samples=400)
    other = dv.load_dataset("digits", noise_rate=0.1, random_state=1, n_samples=400)
    explain(ds, 0, k=2).save(tmp_path / "e")
    other.save(tmp_path / "e" / "dataset.npz")
    with pytest.raises(InvalidDataError, match="fingerprints differ"):
        build_report(tmp_path / "e")


def test_saved_evaluate_curves_are_used(tabular_folder, tmp_path):
    import json
    import shutil

    d = tmp_path / "evaluated"
    shutil.copytree(tabular_folder, d)
    ds = dv.Dataset.load(d / "dataset.npz")
    result = dv.ValuationResult.load(d)
    from sklearn.neighbors import KNeighborsClassifier

    removal = point_removal(result.values, ds, KNeighborsClassifier(), fractions=[0.1, 0.3])
    from datavalue._core.folder import RunWriter

    with RunWriter(d, kind="evaluate") as w:  # as 'datavalue evaluate' writes them
        w.write_text("removal.csv", removal.to_csv(index=False))
        w.write_text("evaluation.json", json.dumps({"metric": "accuracy", "model": "knn"}))
    text = build_report(d).read_text()
    assert f">{summarize_curve(removal)['least_valuable_first']:.4g}<" in text
    assert "Point addition" not in text  # not saved, not computed
