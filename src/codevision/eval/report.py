"""Reports of evaluation runs: accuracy, robustness, tool use, faithfulness, cost; and comparisons.

Everything is computed from the result lines alone, so a report can be rebuilt at any time (also
for a run that is still going or was interrupted). The robustness table compares each transform
with the untransformed images of the same tasks, which is CodeVision's measure of collapse.
"""

from __future__ import annotations

import base64
import html
import io
import json
from collections import defaultdict
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from codevision.eval.runner import NO_TRANSFORM
from codevision.eval.store import ResultStore

Record = dict[str, Any]


def _accuracy(records: list[Record]) -> float | None:
    scored = [r for r in records if r.get("correct") is not None]
    return round(100.0 * sum(1 for r in scored if r["correct"]) / len(scored), 2) if scored else None


def _family(transform: str) -> tuple[str, int | None]:
    name, _, severity = transform.partition(":")
    return name, int(severity) if severity.isdigit() else None


def build_report(records: Iterable[Record]) -> dict[str, Any]:
    records = list(records)
    done = [r for r in records if r["status"] == "done"]
    failed = [r for r in records if r["status"] == "failed"]
    report: dict[str, Any] = {
        "items": len(records),
        "scored": len(done),
        "failed": [{"key": r["key"], "reason": r.get("reason")} for r in failed],
        "accuracy": _accuracy(done),
    }
    by_source: dict[str, list[Record]] = defaultdict(list)
    for r in done:
        by_source[r.get("source") or "unknown"].append(r)
    report["benchmarks"] = {s: {"accuracy": _accuracy(rs), "n": len(rs)} for s, rs in sorted(by_source.items())}
    report["robustness"] = _robustness(done)
    report["tool_use"] = _tool_use(done)
    report["faithfulness"] = _faithfulness(done)
    report["cost"] = {
        "prompt_tokens": sum(r.get("prompt_tokens", 0) for r in done),
        "completion_tokens": sum(r.get("completion_tokens", 0) for r in done),
        "mean_completion_tokens": round(sum(r.get("completion_tokens", 0) for r in done) / len(done), 1)
        if done
        else None,
        "mean_seconds": round(sum(r.get("seconds", 0.0) for r in done) / len(done), 3) if done else None,
    }
    by_turns: dict[int, list[Record]] = defaultdict(list)
    for r in done:
        by_turns[r.get("turns", 0)].append(r)
    report["by_turns"] = {str(t): {"accuracy": _accuracy(rs), "n": len(rs)} for t, rs in sorted(by_turns.items())}
    return report


def _robustness(done: list[Record]) -> list[dict[str, Any]]:
    """Accuracy per transform, and the drop against the same tasks without a transform."""
    by_transform: dict[str, list[Record]] = defaultdict(list)
    for r in done:
        by_transform[r["transform"]].append(r)
    baseline = {r["task_id"]: r for r in by_transform.get(NO_TRANSFORM, [])}
    rows = []
    for transform, rs in sorted(by_transform.items(), key=lambda kv: (kv[0] != NO_TRANSFORM, kv[0])):
        family, severity = _family(transform)
        matched = [baseline[r["task_id"]] for r in rs if r["task_id"] in baseline]
        accuracy = _accuracy(rs)
        base = _accuracy(matched) if transform != NO_TRANSFORM else None
        rows.append(
            {
                "transform": transform,
                "family": family,
                "severity": severity,
                "n": len(rs),
                "accuracy": accuracy,
                "baseline": base,
                "drop": round(base - accuracy, 2) if base is not None and accuracy is not None else None,
            }
        )
    return rows


def _tool_use(done: list[Record]) -> dict[str, Any]:
    if not done:
        return {}
    with_expected = [r for r in done if r.get("expected_ops")]
    return {
        "share_using_tools": round(100.0 * sum(1 for r in done if r.get("tool_calls")) / len(done), 2),
        "mean_turns": round(sum(r.get("turns", 0) for r in done) / len(done), 2),
        "tool_errors": sum(r.get("tool_errors", 0) for r in done),
        "errors_recovered": sum(r.get("errors_recovered", 0) for r in done),
        "expected_ops_items": len(with_expected),
        "expected_ops_covered": round(
            100.0
            * sum(1 for r in with_expected if set(r["expected_ops"]) <= set(r.get("shown_ops", [])))
            / len(with_expected),
            2,
        )
        if with_expected
        else None,
    }


def _faithfulness(done: list[Record]) -> dict[str, Any] | None:
    stats = [r["faithfulness"] for r in done if r.get("faithfulness")]
    if not stats:
        return None
    crops = sum(s["crops"] for s in stats)
    return {
        "items": len(stats),
        "crops": crops,
        "overlapping": round(100.0 * sum(s["overlapping"] for s in stats) / crops, 2) if crops else None,
        "containing": round(100.0 * sum(s["containing"] for s in stats) / crops, 2) if crops else None,
        # Results written before lineage counted crops that could not be mapped back instead.
        "unverified": sum(s.get("unverified", s.get("unmappable", 0)) for s in stats),
    }


# ---------------------------------------------------------------- writing


def _fmt(value: Any) -> str:
    return "–" if value is None else (f"{value:.2f}" if isinstance(value, float) else str(value))


def to_markdown(report: dict[str, Any], title: str = "Evaluation report") -> str:
    lines = [
        f"# {title}",
        "",
        f"Items: {report['items']}, scored: {report['scored']}, failed: {len(report['failed'])}.",
    ]
    lines += ["", f"**Accuracy: {_fmt(report['accuracy'])}%**", "", "## Benchmarks", "", "| benchmark | n | accuracy |"]
    lines += ["|---|---|---|"] + [
        f"| {s} | {v['n']} | {_fmt(v['accuracy'])} |" for s, v in report["benchmarks"].items()
    ]
    lines += [
        "",
        "## Robustness",
        "",
        "| transform | n | accuracy | same tasks untransformed | drop |",
        "|---|---|---|---|---|",
    ]
    lines += [
        f"| {r['transform']} | {r['n']} | {_fmt(r['accuracy'])} | {_fmt(r['baseline'])} | {_fmt(r['drop'])} |"
        for r in report["robustness"]
    ]
    lines += ["", "## Tool use", ""] + [f"- {k.replace('_', ' ')}: {_fmt(v)}" for k, v in report["tool_use"].items()]
    if report["faithfulness"]:
        lines += ["", "## Faithfulness (crops against the target boxes, from geometry)", ""]
        lines += [f"- {k}: {_fmt(v)}" for k, v in report["faithfulness"].items()]
    lines += ["", "## Cost", ""] + [f"- {k.replace('_', ' ')}: {_fmt(v)}" for k, v in report["cost"].items()]
    if report["failed"]:
        lines += ["", "## Failed items", ""] + [f"- `{f['key']}`: {f['reason']}" for f in report["failed"]]
    return "\n".join(lines) + "\n"


def _plots(report: dict[str, Any]) -> dict[str, str]:
    """Bar and line charts as base64 PNG, for embedding in the HTML report."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    charts: dict[str, str] = {}

    def save(name: str, fig: Any) -> None:
        buffer = io.BytesIO()
        fig.tight_layout()
        fig.savefig(buffer, format="png", dpi=100)
        plt.close(fig)
        charts[name] = base64.b64encode(buffer.getvalue()).decode("ascii")

    rows = [r for r in report["robustness"] if r["accuracy"] is not None]
    if rows:
        fig, ax = plt.subplots(figsize=(max(4.0, 0.6 * len(rows) + 2), 3.2))
        ax.bar([r["transform"] for r in rows], [r["accuracy"] for r in rows], color="#3b6ea5")
        ax.set_ylabel("accuracy (%)")
        ax.set_ylim(0, 100)
        ax.set_title("accuracy by transform")
        ax.tick_params(axis="x", rotation=45)
        save("accuracy by transform", fig)
    families: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in rows:
        if r["severity"] is not None:
            families[r["family"]].append(r)
    if families:
        fig, ax = plt.subplots(figsize=(5, 3.2))
        for family, points in sorted(families.items()):
            points.sort(key=lambda r: r["severity"])
            ax.plot([p["severity"] for p in points], [p["accuracy"] for p in points], marker="o", label=family)
        ax.set_xlabel("severity")
        ax.set_ylabel("accuracy (%)")
        ax.set_ylim(0, 100)
        ax.legend(fontsize=7)
        ax.set_title("accuracy by severity")
        save("accuracy by severity", fig)
    turns = {t: v for t, v in report["by_turns"].items() if v["accuracy"] is not None}
    if turns:
        fig, ax = plt.subplots(figsize=(4, 3.2))
        ax.bar(list(turns), [v["accuracy"] for v in turns.values()], color="#6a9f58")
        ax.set_xlabel("turns")
        ax.set_ylabel("accuracy (%)")
        ax.set_ylim(0, 100)
        ax.set_title("accuracy by turn count")
        save("accuracy by turn count", fig)
    return charts


def to_html(report: dict[str, Any], markdown: str, title: str) -> str:
    images = "".join(
        f'<figure><img alt="{html.escape(name)}" src="data:image/png;base64,{data}"><figcaption>{html.escape(name)}'
        "</figcaption></figure>"
        for name, data in _plots(report).items()
    )
    policy = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"
    return (
        f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><meta http-equiv="Content-Security-Policy" '
        f'content="{policy}"><title>{html.escape(title)}</title><style>body{{font-family:sans-serif;margin:2em;'
        "max-width:1100px}figure{display:inline-block;margin:0 1em 1em 0}pre{white-space:pre-wrap}</style></head>"
        f"<body><h1>{html.escape(title)}</h1>{images}<pre>{html.escape(markdown)}</pre></body></html>\n"
    )


def write_report(run_dir: str | Path, title: str | None = None) -> dict[str, Path]:
    """Write report.json, report.md and report.html (with plots) into the run folder."""
    run_dir = Path(run_dir)
    store = ResultStore(run_dir)
    report = build_report(store.records.values())
    title = title or f"codevision evaluation: {run_dir.name}"
    markdown = to_markdown(report, title)
    paths = {"json": run_dir / "report.json", "markdown": run_dir / "report.md", "html": run_dir / "report.html"}
    paths["json"].write_text(json.dumps(report, indent=2))
    paths["markdown"].write_text(markdown)
    paths["html"].write_text(to_html(report, markdown, title))
    return paths


def compare(run_a: str | Path, run_b: str | Path) -> list[dict[str, Any]]:
    """Rows of a side-by-side table: overall, per benchmark and per transform, with the difference."""
    reports = [build_report(ResultStore(run).records.values()) for run in (run_a, run_b)]
    rows = [{"group": "overall", "a": reports[0]["accuracy"], "b": reports[1]["accuracy"]}]
    for section, key in (("benchmarks", None), ("robustness", "transform")):
        names: list[str] = []
        values: list[dict[str, Any]] = []
        for report in reports:
            entries = report[section]
            table = entries if key is None else {row[key]: row for row in entries}
            values.append(table)
            names += [n for n in table if n not in names]
        for name in names:
            a, b = (v.get(name, {}).get("accuracy") for v in values)
            rows.append({"group": f"{'benchmark' if key is None else 'transform'} {name}", "a": a, "b": b})
    for row in rows:
        row["diff"] = round(row["b"] - row["a"], 2) if row["a"] is not None and row["b"] is not None else None
    return rows
