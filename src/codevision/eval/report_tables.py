"""The tables and sentences of a report, once, for both report.md and report.html to render.

A :class:`Table` holds plain values (and :class:`Link` cells to item trajectories); the renderers
only decide how they look, so the Markdown printed at the end of a run and the HTML page can never
disagree about a number.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from codevision.scoring import ALL
from codevision.trajectory import TRAJECTORY_FILE


@dataclass(frozen=True)
class Link:
    """A cell that links to a file of the run folder (a relative path)."""

    text: str
    href: str


Cell = str | int | float | None | Link


@dataclass
class Table:
    """One section of the report.

    ``facts`` tables are name/value pairs (bullets in Markdown); ``numeric_from`` is the first column
    holding numbers (right-aligned in HTML); tables with ``markdown=False`` are too long or too wide
    for the summary printed in a terminal and appear in the HTML page only.
    """

    key: str
    title: str
    columns: list[str]
    rows: list[list[Cell]]
    notes: list[str] = field(default_factory=list)
    facts: bool = False
    numeric_from: int = 1
    markdown: bool = True


# The trajectory viewer that ``codevision eval`` writes into the run folder when the run ends.
VIEWER_FILE = "trajectories.html"
PROVISIONAL_NOTE = (
    "provisional: scored by the rule alone while the benchmark's protocol wants a judge verdict; these "
    "scores may change once a judge scores them (`codevision eval --resume --retry-failed --judge URL …`)."
)


def fmt(value: Any) -> str:
    """A value for a table cell: two decimals for floats, "–" for missing."""
    return "–" if value is None else (f"{value:.2f}" if isinstance(value, float) else str(value))


def trajectory_link(item: dict[str, Any]) -> Link | None:
    """A relative link to an item's saved trajectory, where it has one."""
    folder = item.get("trajectory")
    return Link(folder, f"{quote(folder)}/{TRAJECTORY_FILE}") if folder else None


# ---------------------------------------------------------------- sentences


def summary_line(report: dict[str, Any]) -> str:
    """Items, and what became of them: failed items (infrastructure) are never counted as wrong."""
    planned = report["planned_items"]
    items = f"{report['items']} of {planned} planned" if planned is not None else str(report["items"])
    line = (
        f"Items: {items}, scored: {report['scored']} ({report['correct']} correct, {report['wrong']} wrong), "
        f"failed: {len(report['failed'])}"
    )
    if report["skipped"]:
        line += f", skipped: {len(report['skipped'])}"
    return line + "."


def partial_note(report: dict[str, Any]) -> str | None:
    if not report["partial"]:
        return None
    return (
        f"Partial: {report['items']} of {report['planned_items']} planned items have results; the run has not "
        "finished (or was stopped). `codevision eval report RUN` rebuilds this report as results come in."
    )


def judge_note(report: dict[str, Any]) -> str | None:
    """Scores that still wait for a judge, and judge replies that could not be used."""
    scoring = report["scoring"]
    parts = []
    if scoring["needs_judge"]:
        parts.append(f"{scoring['needs_judge']} items scored by rule only, waiting for a judge")
    if scoring["judge_errors"]:
        parts.append(f"{scoring['judge_errors']} judge replies unreadable or the judge failed")
    return "; ".join(parts) + "." if parts else None


def scoring_note(report: dict[str, Any]) -> str | None:
    """The scoring mode, as run.json and the result lines record it (nothing when neither does)."""
    scoring = report["scoring"]
    parts = [] if scoring["mode"] is None else [describe(scoring["mode"])]
    parts += [f"{row['rule']}: {row['mode']} (n={row['n']})" for row in scoring["rules"] if row["mode"]]
    return "Scoring mode: " + "; ".join(parts) + "." if parts else None


def accuracy_line(report: dict[str, Any]) -> str:
    line = f"Accuracy: {fmt(report['accuracy'])}%"
    kept = []
    if report.get("partial_credit"):
        kept.append(f"{report['partial_credit']} ANLS items count their similarity, not 1 per match")
    if report["provisional"]:
        kept.append(f"includes {report['provisional']} provisional scores")
    return line + (f" ({'; '.join(kept)})" if kept else "")


def notes(report: dict[str, Any]) -> list[str]:
    """The sentences under the headline, in order, leaving out those that do not apply."""
    return [n for n in (partial_note(report), judge_note(report), scoring_note(report)) if n]


def describe(value: Any) -> str:
    """A setting as words: ``{"mode": "default", "quick_extract": False}`` reads "mode default, quick extract off"."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, dict):
        return ", ".join(f"{k.replace('_', ' ')} {describe(v)}" for k, v in value.items() if v is not None)
    return json.dumps(value)


# ---------------------------------------------------------------- tables


def tables(report: dict[str, Any]) -> list[Table]:
    """Every section of the report, in page order."""
    candidates = [
        _run(report),
        _overall(report),
        _scoring(report),
        _benchmarks(report),
        _robustness(report),
        _benchmark_transforms(report),
        _hrbench(report),
        _turns(report),
        _facts("tool_use", "Tool use", report["tool_use"]),
        _facts("faithfulness", "Faithfulness (crops against the target boxes, from geometry)", report["faithfulness"]),
        _facts("rewards", "Training reward of the episodes (eval --reward)", report.get("rewards")),
        _facts("cost", "Cost", report["cost"]),
        _items("failed", "Failed items", report["failed"], "failed"),
        _items("skipped", "Skipped items", report["skipped"], "skipped because their input could not be read"),
        _pending(report),
    ]
    return [table for table in candidates if table is not None]


def _provisional(table: Table, entries: list[dict[str, Any]], report: dict[str, Any]) -> Table:
    """Add a "provisional" column and its explanation where the report holds provisional scores."""
    if report["provisional"]:
        table.columns.append("provisional")
        for row, entry in zip(table.rows, entries, strict=True):
            row.append(entry["provisional"])
        table.notes.append(PROVISIONAL_NOTE)
    return table


RUN_FIELDS = (
    "model",
    "model_name",
    "protocol",
    "calls",
    "benchmarks",
    "transforms",
    "limit",
    "max_turns",
    "seed",
    "scoring",
)


def _run(report: dict[str, Any]) -> Table | None:
    """What was run, from run.json."""
    config = report["run"]
    rows: list[list[Cell]] = [
        [name.replace("_", " "), ", ".join(map(str, value)) if isinstance(value, list) else describe(value)]
        for name in RUN_FIELDS
        if (value := config.get(name)) is not None
    ]
    return Table("run", "Run", ["", ""], rows, facts=True, markdown=False) if rows else None


def _overall(report: dict[str, Any]) -> Table:
    scoring = report["scoring"]
    rows: list[list[Cell]] = [
        ["items with results", report["items"]],
        ["planned items", report["planned_items"]],
        ["status", "partial: the run has not finished" if report["partial"] else "complete"],
        ["scored", report["scored"]],
        ["correct", report["correct"]],
        ["wrong", report["wrong"]],
        ["failed", len(report["failed"])],
        ["skipped", len(report["skipped"])],
        ["accuracy (%)", report["accuracy"]],
        ["provisional scores (waiting for a judge)", scoring["needs_judge"]],
        ["judge replies unreadable or judge failed", scoring["judge_errors"]],
    ]
    if report["planned_items"] is None:
        rows[1:3] = []  # run.json does not say how many items were planned: partial cannot be told
    return Table("overall", "Overall", ["", ""], rows, facts=True, markdown=False)


def _scoring(report: dict[str, Any]) -> Table | None:
    scoring = report["scoring"]
    if not scoring["rules"]:
        return None
    rows: list[list[Cell]] = [
        [row["rule"], row["mode"], row["n"], row["judged"], row["provisional"]] for row in scoring["rules"]
    ]
    table = Table(
        "scoring",
        "Scoring",
        ["rule", "mode", "items", "judged", "waiting for a judge"],
        rows,
        numeric_from=2,
        markdown=False,
    )
    if scoring["mode"] is not None:
        table.notes.append(f"Scoring mode of the run: {describe(scoring['mode'])}.")
    return table


def _benchmarks(report: dict[str, Any]) -> Table:
    entries = [{"name": name, **values} for name, values in report["benchmarks"].items()]
    rows: list[list[Cell]] = [[e["name"], e["n"], e["accuracy"]] for e in entries]
    return _provisional(Table("benchmarks", "Benchmarks", ["benchmark", "n", "accuracy"], rows), entries, report)


def _robustness(report: dict[str, Any]) -> Table:
    entries = report["robustness"]
    rows: list[list[Cell]] = [[r["transform"], r["n"], r["accuracy"], r["baseline"], r["drop"]] for r in entries]
    columns = ["transform", "n", "accuracy", "same tasks untransformed", "drop"]
    return _provisional(Table("robustness", "Robustness", columns, rows), entries, report)


def _benchmark_transforms(report: dict[str, Any]) -> Table:
    """Transforms down, benchmarks across: a long list of transforms stays readable on a page."""
    benchmarks = list(report["benchmarks"])
    transforms = [row["transform"] for row in report["robustness"]]
    cells = {(c["benchmark"], c["transform"]): c for c in report["benchmark_transforms"]}
    rows: list[list[Cell]] = [
        [transform, *(_cell(cells.get((benchmark, transform))) for benchmark in benchmarks)] for transform in transforms
    ]
    table = Table("benchmark_transforms", "Benchmarks by transform", ["transform", *benchmarks], rows, markdown=False)
    table.notes.append("accuracy (%) and n per cell.")
    if report["provisional"]:
        table.notes.append(PROVISIONAL_NOTE)
    return table


def _hrbench(report: dict[str, Any]) -> Table | None:
    entries = report.get("hrbench") or []
    if not entries:
        return None
    categories = [*sorted({c for e in entries for c in e["cycle_average"] if c != ALL}), ALL]
    rows: list[list[Cell]] = [
        [e["transform"], e["n"], e["cycles"], *(e["cycle_average"].get(c) for c in categories), e["accuracy"]]
        for e in entries
    ]
    columns = ["transform", "n", "cycles", *(f"{c} (cycle average)" for c in categories), "plain accuracy"]
    table = Table("hrbench", "HR-Bench as released: the accuracy of each option rotation, averaged", columns, rows)
    table.notes.append(
        "HR-Bench asks each question four times with its options rotated (cycle_category 0-3) and reports the "
        "mean of the four rotations' accuracies; the plain accuracy is the mean over all rows."
    )
    uneven = [e["transform"] for e in entries if not e["even_cycles"]]
    if uneven:
        table.notes.append(
            f"Rotations of unequal size under {', '.join(uneven)} (a --limit, or failed items): the two differ."
        )
    return table


def _cell(entry: dict[str, Any] | None) -> str | None:
    if entry is None:
        return None
    text = f"{fmt(entry['accuracy'])} (n={entry['n']}"
    if entry["provisional"]:
        text += f", {entry['provisional']} provisional"
    return text + ")"


def _turns(report: dict[str, Any]) -> Table:
    entries = [{"turns": turns, **values} for turns, values in report["by_turns"].items()]
    rows: list[list[Cell]] = [[e["turns"], e["n"], e["accuracy"]] for e in entries]
    table = Table("by_turns", "Accuracy by turn count", ["turns", "n", "accuracy"], rows, markdown=False)
    return _provisional(table, entries, report)


def _facts(key: str, title: str, values: dict[str, Any] | None) -> Table | None:
    if not values:
        return None
    rows: list[list[Cell]] = [[name.replace("_", " "), value] for name, value in values.items()]
    return Table(key, title, ["", ""], rows, facts=True)


def _items(key: str, title: str, items: list[dict[str, Any]], what: str) -> Table | None:
    if not items:
        return None
    rows: list[list[Cell]] = [[i["key"], i["stage"], i["reason"], trajectory_link(i)] for i in items]
    table = Table(key, title, ["item", "stage", "reason", "trajectory"], rows, numeric_from=4)
    table.notes.append(f"{len(items)} items {what}; they are not counted as wrong answers.")
    return table


def _pending(report: dict[str, Any]) -> Table | None:
    """Scored items whose judge verdict is missing: the ones to look at before trusting the accuracy."""
    pending = report["scoring"]["pending"]
    if not pending:
        return None
    rows: list[list[Cell]] = [[p["key"], p["rule"], p["judge_error"], trajectory_link(p)] for p in pending]
    return Table(
        "pending",
        "Items waiting for a judge",
        ["item", "rule", "judge error", "trajectory"],
        rows,
        notes=[PROVISIONAL_NOTE],
        numeric_from=4,
        markdown=False,
    )
