"""report.html: the report as one self-contained page, tables and plots, readable without a server.

Styles are inline and the plots are SVG data URIs, so the file can be mailed or archived alone; its
Content-Security-Policy allows nothing else to load or run. Every text from the results (item keys,
failure reasons, benchmark names) is escaped. Links are relative, to the run folder's trajectory
viewer and to each listed item's saved trajectory.
"""

from __future__ import annotations

import base64
import html
import re
from typing import Any

from codevision.eval import plots
from codevision.eval.report_tables import (
    VIEWER_FILE,
    Cell,
    Link,
    Table,
    accuracy_line,
    fmt,
    judge_note,
    partial_note,
    scoring_note,
    summary_line,
    tables,
)

PADDING_PX = 20
# The page's column: the plots' natural width plus the padding either side.
PAGE_WIDTH_PX = plots.PLOT_WIDTH_PX + 2 * PADDING_PX
POLICY = "default-src 'none'; img-src data:; style-src 'unsafe-inline'; base-uri 'none'; form-action 'none'"
# Plots shown in the section of the table they illustrate.
PLOTS_IN = {
    "robustness": ("accuracy by transform", "accuracy by severity"),
    "by_turns": ("accuracy by turn count",),
}
CSS = f"""
body{{margin:0;background:#f3f4f6;color:#1d232a;font:14px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif}}
main{{box-sizing:border-box;max-width:{PAGE_WIDTH_PX}px;margin:0 auto;padding:24px {PADDING_PX}px 48px;background:#fff}}
h1{{font-size:1.6em;margin:0 0 .3em;overflow-wrap:anywhere}}
h2{{font-size:1.2em;margin:1.8em 0 .5em;padding-bottom:.2em;border-bottom:1px solid #dde1e6}}
.banner{{margin:.6em 0;padding:.6em .9em;border-left:4px solid;border-radius:3px}}
.partial{{background:#fff4d6;border-color:#d39e00}}
.judge{{background:#fdecea;border-color:#b03030}}
.info{{background:#eaf2fb;border-color:#3b6ea5}}
.accuracy{{font-size:1.35em;margin:.5em 0}}
nav{{margin:.8em 0}} nav a{{margin-right:1.2em}}
.scroll{{overflow-x:auto}}
table{{border-collapse:collapse;margin:.3em 0;font-variant-numeric:tabular-nums}}
th,td{{padding:.25em .7em;border-bottom:1px solid #e6e8eb;text-align:left;vertical-align:top}}
thead th{{background:#f0f2f5}}
tbody tr:nth-child(even){{background:#fafbfc}}
.num{{text-align:right;white-space:nowrap}}
td{{overflow-wrap:anywhere}}
.facts th{{font-weight:normal;color:#444}}
.note{{color:#555;font-size:.9em;margin:.3em 0}}
code{{background:#f0f2f5;padding:0 .25em;border-radius:3px}}
figure{{margin:1.2em 0}} figure img{{display:block;max-width:100%;height:auto}}
figcaption{{color:#555;font-size:.9em;margin-top:.3em}}
"""


def _e(text: Any) -> str:
    return html.escape(str(text), quote=True)


def _inline(text: str) -> str:
    """Escaped text with its `code` spans marked up."""
    return re.sub(r"`([^`]+)`", r"<code>\1</code>", _e(text))


def _cell(cell: Cell, numeric: bool) -> str:
    if isinstance(cell, Link):
        return f'<td><a href="{_e(cell.href)}">{_e(cell.text)}</a></td>'
    return f'<td class="num">{_e(fmt(cell))}</td>' if numeric else f"<td>{_e(fmt(cell))}</td>"


def _table(table: Table) -> str:
    if table.facts:
        body = "".join(
            f'<tr><th scope="row">{_e(name)}</th>{_cell(value, not isinstance(value, str))}</tr>'
            for name, value in table.rows
        )
        return f'<div class="scroll"><table class="facts"><tbody>{body}</tbody></table></div>'
    head = "".join(
        f'<th scope="col"{" class=num" if i >= table.numeric_from else ""}>{_e(c)}</th>'
        for i, c in enumerate(table.columns)
    )
    body = "".join(
        "<tr>" + "".join(_cell(cell, i >= table.numeric_from) for i, cell in enumerate(row)) + "</tr>"
        for row in table.rows
    )
    return f'<div class="scroll"><table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>'


def _figure(caption: str, svg: str, width: float, height: float) -> str:
    data = base64.b64encode(svg.encode("utf-8")).decode("ascii")
    return (
        f'<figure><img src="data:image/svg+xml;base64,{data}" alt="{_e(caption)}" width="{round(width)}" '
        f'height="{round(height)}"><figcaption>{_e(caption)}</figcaption></figure>'
    )


def _figures(report: dict[str, Any]) -> dict[str, str]:
    """Each plot as an ``<figure>``, by caption; a caption says when its accuracies include provisional scores."""
    figures = {}
    suffix = f" (includes {report['provisional']} provisional scores)" if report["provisional"] else ""
    for caption, fig in plots.charts(report).items():
        width, height = fig.get_size_inches() * 96
        figures[caption] = _figure(caption + suffix, plots.to_svg(fig), width, height)
    return figures


def _section(table: Table, figures: dict[str, str]) -> str:
    notes = "".join(f'<p class="note">{_inline(note)}</p>' for note in table.notes)
    shown = "".join(figures[caption] for caption in PLOTS_IN.get(table.key, ()) if caption in figures)
    return f'<section id="{_e(table.key)}"><h2>{_e(table.title)}</h2>{shown}{_table(table)}{notes}</section>'


def _header(report: dict[str, Any], title: str, viewer: bool) -> str:
    banners = [
        (partial_note(report), "partial", "partial"),
        (judge_note(report), "judge", "judging"),
        (scoring_note(report), "info", "scoring-mode"),
    ]
    shown = "".join(f'<p class="banner {kind}" id="{i}">{_inline(text)}</p>' for text, kind, i in banners if text)
    link = f'<a href="{VIEWER_FILE}">trajectory viewer</a>'
    if not viewer:
        link += (
            '<span class="note">(written when the run ends; <code>codevision view RUN/items -o '
            "RUN/trajectories.html</code> writes it now)</span>"
        )
    return (
        f"<header><h1>{_e(title)}</h1><p>{_e(summary_line(report))}</p>{shown}"
        f'<p class="accuracy"><strong>{_e(accuracy_line(report))}</strong></p><nav>{link}</nav></header>'
    )


def to_html(report: dict[str, Any], title: str, *, viewer: bool) -> str:
    """The page; ``viewer`` tells whether the run folder holds the trajectory viewer yet."""
    figures = _figures(report)
    sections = "".join(_section(table, figures) for table in tables(report))
    return (
        f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f'<meta http-equiv="Content-Security-Policy" content="{POLICY}">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{_e(title)}</title><style>{CSS}</style></head>"
        f"<body><main>{_header(report, title, viewer)}{sections}</main></body></html>\n"
    )
