"""The report's plots, drawn to fit the report page at any number of transforms, families and severities.

Bars are horizontal, one row per transform, so 20 or 120 transforms only make the plot taller, never
wider than the page; every bar carries its value, and a zero bar a marker, so a collapse to 0% is
seen rather than inferred from a missing bar. Legends stand outside the data, colours never repeat,
and the severity axis shows the severities measured, as integers. Figures are built without pyplot
(no global state) and written as SVG with text as paths, so they look the same in any browser.
"""

from __future__ import annotations

import io
import math
from collections import defaultdict
from typing import Any

import matplotlib
from matplotlib.colors import to_hex
from matplotlib.figure import Figure

from codevision.eval.runner import NO_TRANSFORM

# The plots' natural width on the page, in CSS pixels (96 per inch); report.html's column is wider.
PLOT_WIDTH_PX = 960
WIDTH_IN = PLOT_WIDTH_PX / 96
BAR_IN = 0.26
BAR_COLOUR = "#3b6ea5"
ZERO_COLOUR = "#b03030"
REFERENCE_COLOUR = "#555555"
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "<", ">", "h")
# Accuracy axes run a little past 0 and 100, so that points and markers on the limits stand clear of the spines.
LIMITS = (-4.0, 104.0)
# Room right of 100% for the value labels of full bars.
LABEL_ROOM = 24.0
LEGEND_COLUMNS = 4
MAX_LABEL = 32
# Value labels stay readable where the reference line crosses them.
LABEL_BOX = {"facecolor": "white", "edgecolor": "none", "pad": 0.5, "alpha": 0.85}


def palette(n: int) -> list[str]:
    """``n`` colours, no two alike: the qualitative maps in turn, then evenly spaced hues beyond them."""
    maps = [list(matplotlib.colormaps[name].colors) for name in ("tab10", "tab20b", "tab20c")]
    colours = list(dict.fromkeys(to_hex(c) for c in maps[0] + maps[1] + maps[2][:16]))  # tab20c ends in greys
    if n <= len(colours):
        return colours[:n]
    return [to_hex(matplotlib.colormaps["hsv"](i / n)) for i in range(n)]


def _short(label: str) -> str:
    return label if len(label) <= MAX_LABEL else label[: MAX_LABEL - 1] + "…"


def _accuracy_axis(ax: Any, axis: str) -> None:
    getattr(ax, f"set_{axis}lim")(*LIMITS)
    getattr(ax, f"set_{axis}ticks")(range(0, 101, 20))
    getattr(ax, f"set_{axis}label")("accuracy (%)")


def _legend(fig: Figure, entries: int) -> None:
    """Below the plot, outside the data, in as many rows as it takes."""
    fig.legend(loc="outside lower center", ncols=min(LEGEND_COLUMNS, entries), fontsize=8, frameon=False)


def bar_chart(
    labels: list[str], values: list[float], counts: list[int], *, reference: tuple[str, float] | None = None
) -> Figure:
    """One horizontal bar per label with its accuracy and n; ``reference`` is a (label, accuracy) line."""
    legend_rows = 1 if reference else 0
    fig = Figure(figsize=(WIDTH_IN, 1.0 + BAR_IN * len(labels) + 0.3 * legend_rows), layout="constrained")
    ax = fig.add_subplot()
    positions = list(range(len(labels)))
    ax.barh(positions, values, height=0.7, color=BAR_COLOUR)
    ax.set_yticks(positions, [_short(label) for label in labels], fontsize=8)
    ax.set_ylim(len(labels) - 0.5, -0.5)  # first label on top, no empty band above or below
    _accuracy_axis(ax, "x")
    ax.set_xlim(LIMITS[0], LIMITS[1] + LABEL_ROOM)
    ax.spines[["top", "right"]].set_visible(False)
    ax.spines["bottom"].set_bounds(0, 100)
    zeros = [i for i, value in enumerate(values) if value == 0]
    if zeros:
        ax.plot([0] * len(zeros), zeros, linestyle="none", marker="D", markersize=5, color=ZERO_COLOUR, gid="zero")
    for position, value, count in zip(positions, values, counts, strict=True):
        ax.annotate(
            f"{value:.1f} (n={count})", (value, position), xytext=(6, 0), textcoords="offset points", va="center",
            fontsize=8, gid=f"value-{position}", bbox=LABEL_BOX, zorder=3,
        )  # fmt: skip
    if reference:
        name, accuracy = reference
        ax.axvline(accuracy, linestyle="--", linewidth=1, color=REFERENCE_COLOUR, label=f"{name}: {accuracy:.1f}%")
        _legend(fig, 1)
    return fig


def severity_chart(families: dict[str, list[tuple[int, float]]], reference: tuple[str, float] | None = None) -> Figure:
    """Accuracy against severity, one line per transform family, on the severities measured."""
    entries = len(families) + (1 if reference else 0)
    legend_rows = math.ceil(entries / LEGEND_COLUMNS)
    fig = Figure(figsize=(WIDTH_IN, 3.8 + 0.25 * legend_rows), layout="constrained")
    ax = fig.add_subplot()
    markers = [MARKERS[i % len(MARKERS)] for i in range(len(families))]
    for (family, points), colour, marker in zip(sorted(families.items()), palette(len(families)), markers, strict=True):
        measured, accuracies = zip(*sorted(points), strict=True)
        ax.plot(measured, accuracies, marker=marker, color=colour, label=family, clip_on=False)
    severities = sorted({severity for points in families.values() for severity, _ in points})
    ax.set_xticks(severities)
    ax.set_xlim(severities[0] - 0.5, severities[-1] + 0.5)
    ax.set_xlabel("severity")
    _accuracy_axis(ax, "y")
    ax.grid(axis="y", linewidth=0.5, alpha=0.5)
    if reference:
        name, accuracy = reference
        ax.axhline(accuracy, linestyle="--", linewidth=1, color=REFERENCE_COLOUR, label=f"{name}: {accuracy:.1f}%")
    _legend(fig, entries)
    return fig


def charts(report: dict[str, Any]) -> dict[str, Figure]:
    """The report's plots by caption: accuracy by transform, by severity, by turn count (where there is data)."""
    figures: dict[str, Figure] = {}
    rows = [r for r in report["robustness"] if r["accuracy"] is not None]
    untransformed = next((r["accuracy"] for r in rows if r["transform"] == NO_TRANSFORM), None)
    reference = ("untransformed", untransformed) if untransformed is not None else None
    if rows:
        figures["accuracy by transform"] = bar_chart(
            [r["transform"] for r in rows], [r["accuracy"] for r in rows], [r["n"] for r in rows], reference=reference
        )
    families: dict[str, list[tuple[int, float]]] = defaultdict(list)
    for r in rows:
        if r["severity"] is not None:
            families[r["family"]].append((r["severity"], r["accuracy"]))
    if families:
        figures["accuracy by severity"] = severity_chart(dict(families), reference)
    turns = {t: v for t, v in report["by_turns"].items() if v["accuracy"] is not None}
    if turns:
        labels = [f"{t} turn{'' if t == '1' else 's'}" for t in turns]
        figures["accuracy by turn count"] = bar_chart(
            labels, [v["accuracy"] for v in turns.values()], [v["n"] for v in turns.values()]
        )
    return figures


def to_svg(fig: Figure) -> str:
    """The figure as a standalone SVG document; the same report gives the same bytes."""
    buffer = io.BytesIO()
    with matplotlib.rc_context({"svg.fonttype": "path", "svg.hashsalt": "codevision-report"}):
        fig.savefig(buffer, format="svg", metadata={"Date": None})
    return buffer.getvalue().decode("utf-8")
