"""report.md: the report as Markdown, short enough to print in a terminal at the end of a run."""

from __future__ import annotations

from typing import Any

from codevision.eval.report_tables import Cell, Link, Table, accuracy_line, fmt, notes, summary_line, tables


def _text(cell: Cell) -> str:
    """A cell as Markdown table text: one line, with the column separator escaped."""
    text = cell.text if isinstance(cell, Link) else fmt(cell)
    return " ".join(text.split()).replace("|", "\\|")


def _table(table: Table) -> list[str]:
    lines = ["", f"## {table.title}", ""]
    if table.facts:
        lines += [f"- {_text(name)}: {_text(value)}" for name, value in table.rows]
    else:
        lines += ["| " + " | ".join(table.columns) + " |", "|" + "---|" * len(table.columns)]
        lines += ["| " + " | ".join(_text(cell) for cell in row) + " |" for row in table.rows]
    if table.notes:
        lines += [""] + [f"_{note}_" for note in table.notes]
    return lines


def to_markdown(report: dict[str, Any], title: str = "Evaluation report") -> str:
    lines = [f"# {title}", "", summary_line(report)]
    lines += [line for note in notes(report) for line in ("", note)]
    lines += ["", f"**{accuracy_line(report)}**"]
    for table in tables(report):
        if table.markdown:
            lines += _table(table)
    return "\n".join(lines) + "\n"
