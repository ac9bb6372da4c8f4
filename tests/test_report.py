"""Evaluation reports as a person reads them: report.html's tables, plots and links, and ``eval compare``.

Run folders are built from synthetic result lines (the shape ``summarize`` and ``_failure`` write),
so each case is exactly the one under test: 22 transform families at several severities, a family
that collapses to 0%, a single severity, a run still going, items waiting for a judge.
"""

from __future__ import annotations

import base64
import json
import re
import xml.etree.ElementTree as ET
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

from codevision.eval import build_report, compare, write_report
from codevision.eval.plots import PLOT_WIDTH_PX, WIDTH_IN, bar_chart, charts, palette, severity_chart
from codevision.eval.report_html import PAGE_WIDTH_PX
from codevision.transforms.corruptions import FAMILIES
from tests.test_cli import run_cli
from tests.test_viewer import WebDriver

FAMILY_NAMES = sorted(FAMILIES)[:22]
HOSTILE = "<script>alert(1)</script>"


def record(task: str, transform: str = "none", *, correct: bool | None = True, **fields: Any) -> dict[str, Any]:
    """A result line as the runner writes it for a scored item (``status`` and others can be overridden)."""
    key = f"{task}@{transform}"
    line = {
        "key": key,
        "task_id": task,
        "transform": transform,
        "source": "ocrbench",
        "status": "done",
        "reason": None,
        "correct": correct,
        "rule": "ocrbench",
        "judged": False,
        "turns": 2,
        "tool_calls": 1,
        "trajectory": f"items/{key}",
    }
    return line | fields


def failure(task: str, transform: str = "none", **fields: Any) -> dict[str, Any]:
    """A failed item's line: no score; ``_failure`` lines have no trajectory either."""
    line = record(task, transform, correct=None, status="failed", stage="model", reason="model: 503")
    del line["trajectory"]
    return line | fields


def run_folder(path: Path, records: list[dict[str, Any]], config: dict[str, Any] | None = None) -> Path:
    path.mkdir(parents=True)
    (path / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    if config is not None:
        (path / "run.json").write_text(json.dumps(config))
    return path


def corruption_records(severities: tuple[int, ...], tasks: int = 2) -> list[dict[str, Any]]:
    """Two benchmarks, untransformed and under 22 families at ``severities``; gaussian_noise collapses to 0%."""
    lines = []
    for source in ("ocrbench", "chartqa"):
        for i in range(tasks):
            task = f"{source}-{i}"
            lines.append(record(task, source=source, rule=source))
            for family in FAMILY_NAMES:
                for severity in severities:
                    correct = family != "gaussian_noise" and (i + severity) % 2 == 0
                    lines.append(record(task, f"{family}:{severity}", correct=correct, source=source, rule=source))
    return lines


class Page(HTMLParser):
    """report.html as a reader sees it: sections by id with their tables' cell texts, images, links, text."""

    def __init__(self, text: str) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[str] = []
        self.sections: dict[str, dict[str, list[Any]]] = {}
        self.links: list[str] = []
        self.images: list[dict[str, str | None]] = []
        self.ids: dict[str, str] = {}
        self.style = ""
        self.text = ""
        self._section: dict[str, list[Any]] | None = None
        self._table: dict[str, list[list[str]]] | None = None
        self._part = "rows"
        self._cell: list[str] | None = None
        self._open_id: list[str | None] = []
        self._in_style = False
        self.feed(text)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = dict(attrs)
        self.tags.append(tag)
        if tag == "section":
            self._section = self.sections.setdefault(str(attributes["id"]), {"tables": [], "images": []})
        elif tag == "table" and self._section is not None:
            self._table = {"head": [], "rows": []}
            self._section["tables"].append(self._table)
        elif tag in ("thead", "tbody"):
            self._part = "head" if tag == "thead" else "rows"
        elif tag == "tr" and self._table is not None:
            self._table[self._part].append([])
        elif tag in ("td", "th"):
            self._cell = []
        elif tag == "a":
            self.links.append(str(attributes["href"]))
        elif tag == "img":
            self.images.append(attributes)
            if self._section is not None:
                self._section["images"].append(attributes)
        elif tag == "style":
            self._in_style = True
        if tag == "p":
            self._open_id.append(attributes.get("id"))
            if attributes.get("id"):
                self.ids[str(attributes["id"])] = ""

    def handle_endtag(self, tag: str) -> None:
        if tag == "section":
            self._section = None
        elif tag == "table":
            self._table = None
        elif tag in ("td", "th") and self._cell is not None and self._table is not None:
            self._table[self._part][-1].append("".join(self._cell).strip())
            self._cell = None
        elif tag == "style":
            self._in_style = False
        elif tag == "p" and self._open_id:
            self._open_id.pop()

    def handle_data(self, data: str) -> None:
        self.text += data
        if self._in_style:
            self.style += data
        if self._cell is not None:
            self._cell.append(data)
        for open_id in self._open_id:
            if open_id:
                self.ids[open_id] += data

    def rows(self, section: str) -> list[list[str]]:
        return self.sections[section]["tables"][0]["rows"]

    def head(self, section: str) -> list[str]:
        return self.sections[section]["tables"][0]["head"][0]

    def facts(self, section: str) -> dict[str, str]:
        return {name: value for name, value in self.rows(section)}


def svg_of(image: dict[str, str | None]) -> ET.Element:
    src = str(image["src"])
    prefix = "data:image/svg+xml;base64,"
    assert src.startswith(prefix)
    return ET.fromstring(base64.b64decode(src[len(prefix) :]))


def svg_width_px(svg: ET.Element) -> float:
    """The SVG's own width in CSS pixels (matplotlib writes points)."""
    width = str(svg.get("width"))
    assert width.endswith("pt"), width
    view_box = [float(v) for v in str(svg.get("viewBox")).split()]
    assert view_box[2] == pytest.approx(float(width[:-2]))
    return float(width[:-2]) * 96 / 72


def svg_ids(svg: ET.Element) -> list[str]:
    return [str(element.get("id")) for element in svg.iter() if element.get("id")]


@pytest.fixture(scope="module")
def corruption_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished run over 22 families at severities 1, 3 and 5, with two failed items (one reason hostile)."""
    lines = corruption_records((1, 3, 5))
    lines += [failure("ocrbench-9", reason=HOSTILE, trajectory="items/ocrbench-9@none"), failure("chartqa-9")]
    folder = tmp_path_factory.mktemp("runs") / "corruptions"
    config = {"model": "m", "protocol": "codevision", "benchmarks": ["ocrbench:x", "chartqa:y"]}
    run_folder(folder, lines, config | {"planned_items": len(lines)})
    (folder / "trajectories.html").write_text("<!DOCTYPE html>")
    write_report(folder)
    return folder


@pytest.fixture(scope="module")
def corruption_page(corruption_run: Path) -> Page:
    return Page((corruption_run / "report.html").read_text())


def test_the_page_has_a_table_per_section(corruption_page: Page) -> None:
    page = corruption_page
    transforms = 1 + 22 * 3
    assert len(page.rows("robustness")) == transforms
    assert page.rows("robustness")[0][0] == "none"
    assert [row[0] for row in page.rows("robustness")[1:4]] == [f"{FAMILY_NAMES[0]}:{s}" for s in (1, 3, 5)]
    assert page.head("benchmarks") == ["benchmark", "n", "accuracy"]  # no provisional scores: no such column
    assert [row[0] for row in page.rows("benchmarks")] == ["chartqa", "ocrbench"]
    assert page.head("benchmark_transforms") == ["transform", "chartqa", "ocrbench"]
    assert len(page.rows("benchmark_transforms")) == transforms
    noise = next(row for row in page.rows("benchmark_transforms") if row[0] == "gaussian_noise:3")
    assert noise[1:] == ["0.00 (n=2)", "0.00 (n=2)"]
    overall = page.facts("overall")
    assert (overall["failed"], overall["status"]) == ("2", "complete")
    assert int(overall["correct"]) + int(overall["wrong"]) == int(overall["scored"]) == 2 * 2 * transforms
    for section in ("run", "scoring", "tool_use", "cost", "by_turns"):
        assert page.sections[section]["tables"], section
    assert len(page.rows("failed")) == 2
    assert "partial" not in page.ids


def test_the_page_is_self_contained_escaped_and_links_the_trajectories(corruption_page: Page) -> None:
    page = corruption_page
    assert "script" not in page.tags
    assert HOSTILE in page.text  # as text, never as markup
    assert all(str(image["src"]).startswith("data:image/svg+xml;base64,") for image in page.images)
    assert "trajectories.html" in page.links
    assert "written when the run ends" not in page.text  # the viewer is there
    failed = {row[0]: row for row in page.rows("failed")}
    assert failed["ocrbench-9@none"][1:3] == ["model", HOSTILE]
    assert failed["ocrbench-9@none"][3] == "items/ocrbench-9@none" and failed["chartqa-9@none"][3] == "–"
    assert f"{quote('items/ocrbench-9@none')}/trajectory.json" in page.links


def test_plots_fit_the_page_with_a_value_on_every_bar_and_zero_marked(corruption_page: Page) -> None:
    page = corruption_page
    assert f"max-width:{PAGE_WIDTH_PX}px" in page.style
    assert [str(image["alt"]) for image in page.sections["robustness"]["images"]] == [
        "accuracy by transform",
        "accuracy by severity",
    ]
    assert len(page.sections["by_turns"]["images"]) == 1
    for image in page.images:
        assert int(str(image["width"])) <= PAGE_WIDTH_PX
        assert svg_width_px(svg_of(image)) <= PAGE_WIDTH_PX
    ids = svg_ids(svg_of(page.sections["robustness"]["images"][0]))
    assert len([i for i in ids if i.startswith("value-")]) == 1 + 22 * 3
    assert "zero" in ids


def test_a_bar_chart_of_many_transforms_fits_its_width() -> None:
    labels = [f"{family}:{severity}" for family in FAMILY_NAMES for severity in (1, 3, 5)]
    labels[0] = "rotate_90+flip_h+gaussian_noise:5+jpeg_compression:3"
    values = [0.0 if i % 7 == 0 else 100.0 * (i % 5) / 4 for i in range(len(labels))]
    fig = bar_chart(labels, values, [4] * len(labels), reference=("untransformed", 75.0))
    fig.draw_without_rendering()
    assert fig.get_size_inches()[0] == WIDTH_IN and WIDTH_IN * 96 == PLOT_WIDTH_PX
    page = fig.bbox
    (ax,) = fig.axes
    texts = [*ax.get_yticklabels(), *ax.texts, *fig.legends]
    assert len(ax.texts) == len(labels)  # a value label on every bar, zeros included
    for artist in texts:
        box = artist.get_window_extent()
        assert page.x0 <= box.x0 and box.x1 <= page.x1, artist
    zero_marks = next(line for line in ax.lines if line.get_gid() == "zero")
    assert list(zero_marks.get_ydata()) == [i for i, v in enumerate(values) if v == 0]
    assert ax.get_xlim()[0] < 0  # a zero marker stands clear of the axis
    legend = fig.legends[0].get_window_extent()
    assert not legend.overlaps(ax.get_window_extent())


def test_the_severity_plot_has_its_legend_outside_and_no_colour_twice() -> None:
    families = {name: [(s, 20.0 * s) for s in (1, 2, 3, 4, 5)] for name in sorted(FAMILIES)}
    fig = severity_chart(families, ("untransformed", 90.0))
    fig.draw_without_rendering()
    (ax,) = fig.axes
    legend = fig.legends[0]
    assert len(legend.get_texts()) == len(families) + 1
    assert not legend.get_window_extent().overlaps(ax.get_window_extent())
    assert fig.bbox.contains(*legend.get_window_extent().p0)
    colours = [line.get_color() for line in ax.lines if line.get_label() in families]
    assert len(colours) == len(families) == len(set(colours))
    assert list(ax.get_xticks()) == [1, 2, 3, 4, 5]
    assert ax.get_xlim() == (0.5, 5.5)


def test_a_single_severity_gets_an_integer_axis() -> None:
    fig = severity_chart({"fog": [(3, 50.0)], "snow": [(3, 0.0)]})
    (ax,) = fig.axes
    fig.draw_without_rendering()
    assert list(ax.get_xticks()) == [3]
    assert [label.get_text() for label in ax.get_xticklabels()] == ["3"]
    assert ax.get_xlim() == (2.5, 3.5)
    assert ax.get_ylim()[0] < 0  # a point at 0% is drawn above the axis, not on it


@pytest.mark.parametrize("n", [1, 10, 23, 46, 80])
def test_palette_never_repeats_a_colour(n: int) -> None:
    assert len(set(palette(n))) == n


def test_charts_only_for_what_the_run_measured(tmp_path: Path) -> None:
    orientation = [record("t0"), record("t0", "rotate_90", correct=False)]
    report = build_report(orientation)
    assert set(charts(report)) == {"accuracy by transform", "accuracy by turn count"}


def test_a_partial_run_says_so_and_counts_failures_apart_from_wrong_answers(tmp_path: Path) -> None:
    lines = [record("t0"), record("t1", correct=False), failure("t2")]
    folder = run_folder(tmp_path / "run", lines, {"model": "m", "planned_items": 10})
    paths = write_report(folder)
    report = json.loads(paths["json"].read_text())
    assert (report["partial"], report["items"], report["planned_items"]) == (True, 3, 10)
    assert (report["correct"], report["wrong"], len(report["failed"])) == (1, 1, 1)
    page = Page(paths["html"].read_text())
    assert page.ids["partial"].startswith("Partial: 3 of 10 planned items")
    assert page.facts("overall")["status"].startswith("partial")
    assert (page.facts("overall")["wrong"], page.facts("overall")["failed"]) == ("1", "1")
    assert "written when the run ends" in page.text  # no viewer yet: the page says how to make one
    markdown = paths["markdown"].read_text()
    assert "Partial: 3 of 10 planned items" in markdown
    assert "scored: 2 (1 correct, 1 wrong), failed: 1" in markdown

    with open(folder / "results.jsonl", "a") as fh:
        fh.writelines(json.dumps(record(f"t{i}")) + "\n" for i in range(3, 10))
    finished = Page(write_report(folder)["html"].read_text())
    assert "partial" not in finished.ids and finished.facts("overall")["status"] == "complete"


def test_a_run_without_a_planned_count_is_not_called_partial(tmp_path: Path) -> None:
    folder = run_folder(tmp_path / "old", [record("t0")])
    report = json.loads(write_report(folder)["json"].read_text())
    assert report["partial"] is False and report["planned_items"] is None
    assert report["scoring"]["needs_judge"] == 0 and report["scoring"]["judge_errors"] == 0


def test_scores_waiting_for_a_judge_are_counted_and_marked_provisional(tmp_path: Path) -> None:
    lines = [
        record("m0", source="mathvista", rule="mathvista", needs_judge=True, judge_error=None),
        record("m1", source="mathvista", rule="mathvista", needs_judge=True, judge_error="no verdict in the reply"),
        record("m2", source="mathvista", rule="mathvista+judge", judged=True),
        record("o0", needs_judge=False, judge_error=None),
        failure("m3", source="mathvista", stage="judge", reason="judge: 503", judge_error="503"),
    ]
    paths = write_report(run_folder(tmp_path / "run", lines, {"planned_items": 5}))
    report = json.loads(paths["json"].read_text())
    assert (report["scoring"]["needs_judge"], report["scoring"]["judge_errors"], report["provisional"]) == (2, 2, 2)
    assert report["benchmarks"]["mathvista"]["provisional"] == 2
    sentence = "2 items scored by rule only, waiting for a judge; 2 judge replies unreadable or the judge failed."
    markdown = paths["markdown"].read_text()
    assert sentence in markdown and "includes 2 provisional scores" in markdown
    assert "| benchmark | n | accuracy | provisional |" in markdown
    page = Page(paths["html"].read_text())
    assert page.ids["judging"] == sentence
    assert page.head("benchmarks")[-1] == page.head("robustness")[-1] == "provisional"
    assert {row[0]: row[-1] for row in page.rows("benchmarks")} == {"mathvista": "2", "ocrbench": "0"}
    assert {row[0] for row in page.rows("pending")} == {"m0@none", "m1@none"}
    assert f"{quote('items/m1@none')}/trajectory.json" in page.links
    assert {(row[0], row[-1]) for row in page.rows("scoring")} >= {("mathvista", "2"), ("mathvista+judge", "0")}


def test_the_scoring_mode_is_stated_where_the_run_records_it(tmp_path: Path) -> None:
    scoring = {"mode": "strict-official", "mathvista_quick_extract": False, "official_prompts": None}
    details = {"mode": "strict-official", "quick_extract": False, "judge": {}}
    lines = [record("m0", rule="mathvista", details=details), record("c0", rule="chartqa", scoring="relaxed")]
    paths = write_report(run_folder(tmp_path / "run", lines, {"scoring": scoring, "planned_items": 2}))
    sentence = (
        "Scoring mode: mode strict-official, mathvista quick extract off; chartqa: relaxed (n=1); "
        "mathvista: mode strict-official, quick extract off (n=1)."
    )
    page = Page(paths["html"].read_text())
    assert page.ids["scoring-mode"] == sentence
    assert {row[0]: row[1] for row in page.rows("scoring")} == {
        "chartqa": "relaxed",
        "mathvista": "mode strict-official, quick extract off",
    }
    assert sentence in paths["markdown"].read_text()
    plain = write_report(run_folder(tmp_path / "plain", [record("t0")], {"planned_items": 1}))
    assert "Scoring mode" not in plain["markdown"].read_text()
    assert "scoring-mode" not in Page(plain["html"].read_text()).ids


def test_anls_items_count_their_similarity_in_every_accuracy(tmp_path: Path) -> None:
    """An ANLS item that earned 0.5 is half an item, in the report, per transform and in ``eval compare``."""
    anls = {"source": "docvqa", "rule": "anls"}
    lines = [
        record("d0", score=0.5, **anls),
        record("d1", score=1.0, **anls),
        record("d0", "rotate_90", score=0.75, **anls),
        record("d1", "rotate_90", correct=False, score=0.0, **anls),
    ]
    paths = write_report(run_folder(tmp_path / "run", lines))
    report = json.loads(paths["json"].read_text())
    assert report["accuracy"] == 56.25 and report["correct"] == 3 and report["partial_credit"] == 4
    assert report["benchmarks"]["docvqa"]["accuracy"] == 56.25
    assert {row["transform"]: (row["accuracy"], row["baseline"]) for row in report["robustness"]} == {
        "none": (75.0, None),
        "rotate_90": (37.5, 75.0),
    }
    assert "4 ANLS items count their similarity, not 1 per match" in paths["markdown"].read_text()
    exact = run_folder(tmp_path / "exact", [record("d0", **anls), record("d1", **anls)])
    assert compare(tmp_path / "run", exact)["rows"][0] == {
        "group": "overall", "a": 75.0, "b": 100.0, "n_a": 2, "n_b": 2, "diff": 25.0
    }  # fmt: skip


def test_hrbench_is_reported_as_released_next_to_the_plain_accuracy(tmp_path: Path) -> None:
    """Four option rotations of unequal size: the release's mean over rotations is not the mean over rows."""
    lines = []
    for cycle, (rows, right) in enumerate([(4, 4), (4, 2), (2, 0), (2, 2)]):
        for i in range(rows):
            category = "single" if i % 2 == 0 else "cross"
            meta = {"cycle_category": cycle, "category": category}
            lines.append(record(f"h{cycle}-{i}", correct=i < right, source="hrbench", rule="hrbench", metadata=meta))
    paths = write_report(run_folder(tmp_path / "run", lines))
    (row,) = json.loads(paths["json"].read_text())["hrbench"]
    assert (row["n"], row["cycles"], row["even_cycles"], row["accuracy"]) == (12, 4, False, 66.67)
    assert row["cycle_average"] == {"all": 62.5, "single": 62.5, "cross": 62.5}
    page = Page(paths["html"].read_text())
    assert page.rows("hrbench") == [["none", "12", "4", "62.50", "62.50", "62.50", "66.67"]]
    assert "Rotations of unequal size under none" in paths["markdown"].read_text()


def test_compare_uses_the_items_both_runs_hold(tmp_path: Path) -> None:
    a = run_folder(tmp_path / "a", [record(f"t{i}", correct=i < 2) for i in range(4)])  # t0..t3
    b = run_folder(tmp_path / "b", [record(f"t{i}", correct=True) for i in range(2, 6)])  # t2..t5
    result = compare(a, b)
    assert result["items"] == {"a": 4, "b": 4, "overlap": 2}
    assert result["same_items"] is False and result["compared_on"] == "overlap"
    assert "2 items in both" in result["warning"]
    overall = result["rows"][0]
    assert (overall["a"], overall["b"], overall["n_a"], overall["n_b"]) == (0.0, 100.0, 2, 2)
    everything = compare(a, b, all_items=True)
    assert everything["compared_on"] == "all items" and "all items of each run" in everything["warning"]
    assert (everything["rows"][0]["a"], everything["rows"][0]["n_a"]) == (50.0, 4)
    same = compare(a, a)
    assert same["same_items"] is True and same["warning"] is None and same["rows"][0]["diff"] == 0.0


def test_eval_compare_prints_the_coverage_warning(tmp_path: Path) -> None:
    run_folder(tmp_path / "a", [record(f"t{i}") for i in range(3)])
    run_folder(tmp_path / "b", [record(f"t{i}") for i in range(1, 3)])
    printed = run_cli("eval", "compare", "a", "b", cwd=tmp_path)
    assert printed.returncode == 0, printed.stderr
    text = " ".join(printed.stdout.split())
    assert "warning: the runs cover different items (3 items in a, 2 in b, 2 in both)" in text
    assert "--all-items" in text
    as_json = json.loads(run_cli("eval", "compare", "a", "b", "--json", cwd=tmp_path).stdout)
    assert as_json["items"] == {"a": 3, "b": 2, "overlap": 2} and as_json["compared_on"] == "overlap"


def test_eval_records_the_planned_items_and_a_rebuilt_report_is_partial(tmp_path: Path) -> None:
    (tmp_path / "replies.json").write_text(json.dumps(["<answer>nothing</answer>"]))
    args = ["eval", "-m", "scripted:replies.json", "-b", "synthetic:3", "--transforms", "rotate_90"]
    done = run_cli(*args, "--protocol", "direct", "-o", "run", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    run = tmp_path / "run"
    assert json.loads((run / "run.json").read_text())["planned_items"] == 6
    finished = Page((run / "report.html").read_text())
    assert finished.facts("overall")["status"] == "complete" and "written when the run ends" not in finished.text
    results = run / "results.jsonl"
    results.write_text("".join(results.read_text().splitlines(keepends=True)[:2]))
    rebuilt = run_cli("eval", "report", "run", cwd=tmp_path)
    assert rebuilt.returncode == 0, rebuilt.stderr
    assert Page((run / "report.html").read_text()).ids["partial"].startswith("Partial: 2 of 6 planned items")


# ---------------------------------------------------------------- in a browser

PAGE_GEOMETRY = """
const main = document.querySelector('main').getBoundingClientRect();
return {
  pageWidth: document.documentElement.clientWidth,
  scrollWidth: document.documentElement.scrollWidth,
  mainRight: main.right,
  images: [...document.images].map((img) => {
    const box = img.getBoundingClientRect();
    return [img.alt, img.complete, img.naturalWidth, box.left, box.right];
  }),
};
"""


@pytest.mark.parametrize("window_width", [1280, 700])
def test_the_plots_fit_the_page_in_chromium(browser: WebDriver, corruption_run: Path, window_width: int) -> None:
    browser.call("POST", "/window/rect", {"width": window_width, "height": 900})
    browser.call("POST", "/url", {"url": (corruption_run / "report.html").as_uri()})
    geometry = browser.script(PAGE_GEOMETRY)
    assert geometry["scrollWidth"] <= geometry["pageWidth"], geometry  # nothing sticks out to the right
    assert len(geometry["images"]) == 3
    for alt, complete, natural_width, left, right in geometry["images"]:
        assert complete and natural_width > 0, alt  # the SVG rendered under the page's CSP
        assert left >= 0 and right <= min(geometry["mainRight"], geometry["pageWidth"]), (alt, geometry)
    assert re.search(r"Accuracy: \d", browser.script("return document.querySelector('.accuracy').textContent"))
