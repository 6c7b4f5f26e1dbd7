"""jaxfit.report: one self-contained HTML page per sweep directory (no network, no Chromium)."""

import base64
import io
import os
import shutil
from html.parser import HTMLParser

import numpy as np
import pytest

import jaxfit
import jaxfit.report

SECTIONS = ("dataset", "curves", "final-acc", "boundaries")
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


class Page(HTMLParser):
    """The images, every src/href, each table's body rows and the text under each element id."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.images: dict[str, dict] = {}
        self.links: list[str] = []
        self.rows: dict[str, list[list[str]]] = {}
        self.text_by_id: dict[str, list[str]] = {}
        self._open_ids: list[tuple[str, str]] = []  # (tag, id) of elements with an id still open
        self._table: str | None = None
        self._in_tbody = False
        self._row: list[str] | None = None
        self._cell: list[str] | None = None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        for k in ("src", "href"):
            if a.get(k) is not None:
                self.links.append(a[k])
        if tag == "img":
            self.images[a.get("id") or f"noid-{len(self.images)}"] = a
            return
        if a.get("id"):
            self._open_ids.append((tag, a["id"]))
            self.text_by_id.setdefault(a["id"], [])
        if tag == "table":
            self._table = a.get("id")
            self.rows.setdefault(self._table, [])
        elif tag == "tbody":
            self._in_tbody = True
        elif tag == "tr" and self._in_tbody:
            self._row = []
        elif tag in ("td", "th") and self._row is not None:
            self._cell = []

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._cell is not None and self._row is not None:
            self._row.append("".join(self._cell).strip())
            self._cell = None
        elif tag == "tr" and self._row is not None:
            self.rows[self._table].append(self._row)
            self._row = None
        elif tag == "tbody":
            self._in_tbody = False
        elif tag == "table":
            self._table = None
        if self._open_ids and self._open_ids[-1][0] == tag:
            self._open_ids.pop()

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)
        for _, i in self._open_ids:
            self.text_by_id[i].append(data)


def parse(path) -> Page:
    p = Page()
    with open(path, encoding="utf-8") as f:
        p.feed(f.read())
    p.close()
    return p


def assert_png(src: str):
    prefix = "data:image/png;base64,"
    assert src.startswith(prefix), src[:60]
    raw = base64.b64decode(src[len(prefix):], validate=True)
    assert raw.startswith(PNG_MAGIC)
    from PIL import Image

    with Image.open(io.BytesIO(raw)) as im:
        im.verify()
        assert im.format == "PNG" and im.size[0] > 100 and im.size[1] > 100


def assert_offline(page: Page):
    assert page.links, "the page has no src/href at all?"
    for link in page.links:
        assert not link.lower().startswith(("http:", "https:", "//")), link
        assert link.startswith(("data:image/png;base64,", "#")), link[:80]


@pytest.fixture(scope="module")
def sweep_dir(tmp_path_factory):
    data = jaxfit.datasets.sum_bin(n=200, seed=0)
    configs = jaxfit.grid(hidden=[(4,), (16,)], lr=[1e-3, 1e-1], seed=range(2), epochs=3)
    configs.append(jaxfit.Config(hidden=(4,), loss="mse", optimizer="sgd", lr=1e6, epochs=3))  # planted
    result = jaxfit.sweep(data, configs)
    assert result.diverged.tolist() == [False] * 8 + [True]
    root = tmp_path_factory.mktemp("sweep")
    result.save(root / "sum_bin")
    return root, result


@pytest.fixture(scope="module")
def report(sweep_dir):
    root, _ = sweep_dir
    path = jaxfit.report.build(root)
    assert path == os.path.join(str(root), "report.html")
    return parse(path)


def test_every_figure_is_an_embedded_png(report):
    for sec in SECTIONS:
        img = report.images.get(f"fig-sum_bin-{sec}")
        assert img is not None, f"figure {sec} missing; have {sorted(report.images)}"
        assert img.get("alt"), sec
        assert_png(img["src"])
    assert len(report.images) == len(SECTIONS)


def test_ranked_table_one_row_per_config_in_order(report, sweep_dir):
    """The ranked table follows SweepResult.ranking (the command line's table): groups of seeds best
    first (diverged groups last, then the mean final validation accuracy, ties by loss), each group's
    configs together."""
    _, result = sweep_dir
    rows = report.rows["ranked-sum_bin"]
    assert len(rows) == len(result)
    ids = [int(r[1]) for r in rows]  # rank, config, ...
    assert sorted(ids) == list(range(len(result)))
    assert [int(r[0]) for r in rows] == list(range(1, len(result) + 1))
    _, members, _ = result.ranking("val_acc")
    assert [sorted(ids[k:k + len(m)]) for k, m in
            zip(np.cumsum([0] + [len(m) for m in members[:-1]]), members)] == members
    t = result.table
    div = t["diverged"].to_numpy()[ids]
    assert not np.any(np.diff(div.astype(int)) < 0)  # diverged configs (any rule) last
    means = [t["final_val_acc"].to_numpy()[m].mean() for m in members if not t["diverged"].to_numpy()[m].any()]
    assert np.all(np.diff(means) <= 1e-12)  # highest first
    best = result.best("val_acc", k=1)
    first = result.configs[ids[0]]
    assert (tuple(best["hidden"][0]), best["lr"][0]) == (first.hidden, first.lr)  # the CLI's best row


def test_diverged_section_names_the_planted_config(report, sweep_dir):
    _, result = sweep_dir
    rows = report.rows["diverged-sum_bin"]
    assert len(rows) == 1
    planted = result.configs[8]
    assert rows[0][0] == "8" and rows[0][1] == planted.short()
    text = " ".join(report.text_by_id["sum_bin-diverged"] + report.text_by_id["diverged-sum_bin"])
    assert "lr=1e+06" in text and "none diverged" not in text


def test_diagnostics_section_counts_flags_and_lists_the_flagged(report, sweep_dir):
    from jaxfit.diagnostics import FLAGS

    _, result = sweep_dir
    assert "sum_bin-diagnostics" in report.text_by_id
    counts = {r[0]: int(r[1]) for r in report.rows["diagnostics-counts-sum_bin"]}
    assert list(counts) == list(FLAGS)
    t = result.table
    for f in FLAGS:
        assert counts[f] == int(t[f].fillna(False).astype(bool).sum()), f
    assert counts["diverged"] == 1
    rows = report.rows["diagnostics-sum_bin"]
    flagged = [i for i in range(len(result)) if t["diagnosis"].iloc[i]]
    assert [int(r[0]) for r in rows] == flagged and 8 in flagged
    planted = next(r for r in rows if r[0] == "8")
    assert "diverged" in planted[2] and "learning rate" in planted[-1]


def test_page_is_self_contained(report, sweep_dir):
    root, _ = sweep_dir
    assert_offline(report)
    html = open(os.path.join(root, "report.html"), encoding="utf-8").read()
    assert "<script" not in html.lower() and "@import" not in html and "url(" not in html
    head = " ".join(report.text_by_id.get("run-sum_bin", []))
    for word in ("sum_bin", "9 (", "cpu", "jax "):
        assert word in head, word
    assert "fingerprint" in " ".join(report.text_by_id["sum_bin-data"] + [html])


def test_single_result_directory(sweep_dir, tmp_path):
    root, result = sweep_dir
    single = tmp_path / "one"
    shutil.copytree(root / "sum_bin", single)
    path = jaxfit.report.build(single)
    assert path == os.path.join(str(single), "report.html")
    page = parse(path)
    for sec in SECTIONS:
        assert_png(page.images[f"fig-one-{sec}"]["src"])
    assert len(page.rows["ranked-one"]) == len(result)
    assert_offline(page)


def test_unreproducible_data_skips_its_figures(sweep_dir, tmp_path, monkeypatch):
    root, result = sweep_dir
    real = jaxfit.datasets.sum_bin

    def shifted(n=2000, seed=0, n_val=None):  # same arguments, other points: another fingerprint
        return real(n=n, seed=seed + 1, n_val=n_val)

    monkeypatch.setitem(jaxfit.datasets.DATASETS, "sum_bin", shifted)
    path = jaxfit.report.build(root, out=tmp_path / "other.html")
    assert path == str(tmp_path / "other.html")
    page = parse(path)
    assert set(page.images) == {"fig-sum_bin-curves", "fig-sum_bin-final-acc"}
    assert "not reproducible" in " ".join(page.text_by_id["run-sum_bin"])
    assert len(page.rows["ranked-sum_bin"]) == len(result)


def test_not_a_sweep(tmp_path):
    with pytest.raises(ValueError, match="no saved SweepResult"):
        jaxfit.report.build(tmp_path)
