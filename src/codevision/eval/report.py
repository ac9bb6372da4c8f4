"""Reports of evaluation runs: accuracy, robustness, tool use, faithfulness, cost and scoring status.

Everything is computed from the result lines (and the run's ``run.json``) alone, so a report can be
rebuilt at any time, also for a run that is still going or was interrupted: it then says it is
partial. The robustness table compares each transform with the untransformed images of the same
tasks, which is CodeVision's measure of collapse. Scores the rule gave while the item still waits for
a judge are counted as provisional wherever an accuracy includes them.
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from codevision.eval.report_md import to_markdown
from codevision.eval.report_tables import VIEWER_FILE, describe
from codevision.eval.runner import NO_TRANSFORM
from codevision.eval.store import ResultStore, credit
from codevision.scoring import PARTIAL_CREDIT_RULES, hrbench_accuracy

Record = dict[str, Any]


def _accuracy(records: list[Record]) -> float | None:
    """The mean credit of the scored items, in percent (see :func:`credit`)."""
    credits = [c for c in map(credit, records) if c is not None]
    return round(100.0 * sum(credits) / len(credits), 2) if credits else None


def _provisional(records: list[Record]) -> int:
    """Scored items whose score is the rule's alone while a judge verdict is still wanted."""
    return sum(1 for r in records if r.get("needs_judge", False))


def _group(records: list[Record]) -> dict[str, Any]:
    return {"accuracy": _accuracy(records), "n": len(records), "provisional": _provisional(records)}


def _family(transform: str) -> tuple[str, int | None]:
    """``gaussian_noise:3`` is severity 3 of ``gaussian_noise``; options after the severity stay in the family."""
    name, *rest = transform.split(":")
    if rest and rest[0].isdigit():
        return ":".join([name, *rest[1:]]), int(rest[0])
    return transform, None


def _transform_order(transform: str) -> tuple[bool, str, int]:
    family, severity = _family(transform)
    return transform != NO_TRANSFORM, family, severity or 0


def _item(record: Record) -> dict[str, Any]:
    """An item as the report lists it: its key, why it is listed, and where its trajectory is."""
    return {
        "key": record["key"],
        "stage": record.get("stage"),
        "reason": record.get("reason"),
        "trajectory": record.get("trajectory"),
    }


def build_report(records: Iterable[Record], config: dict[str, Any] | None = None) -> dict[str, Any]:
    """The report's numbers; ``config`` is the run's ``run.json`` (planned items, scoring mode)."""
    records = list(records)
    config = config or {}
    done = [r for r in records if r["status"] == "done"]
    planned = config.get("planned_items")
    report: dict[str, Any] = {
        "run": config,
        "items": len(records),
        "planned_items": planned,
        "partial": isinstance(planned, int) and len(records) < planned,
        "scored": len(done),
        "correct": sum(1 for r in done if r.get("correct")),
        "wrong": sum(1 for r in done if r.get("correct") is False),
        "failed": [_item(r) for r in records if r["status"] == "failed"],
        "skipped": [_item(r) for r in records if r["status"] == "skipped"],
        "accuracy": _accuracy(done),
        "partial_credit": sum(1 for r in done if r.get("rule") in PARTIAL_CREDIT_RULES),
        "provisional": _provisional(done),
        "scoring": _scoring(records, done, config),
    }
    by_source: dict[str, list[Record]] = defaultdict(list)
    for r in done:
        by_source[r.get("source") or "unknown"].append(r)
    report["benchmarks"] = {s: _group(rs) for s, rs in sorted(by_source.items())}
    report["robustness"] = _robustness(done)
    report["benchmark_transforms"] = _benchmark_transforms(done)
    report["hrbench"] = _hrbench(done)
    report["tool_use"] = _tool_use(done)
    report["faithfulness"] = _faithfulness(done)
    report["rewards"] = _rewards(done, config)
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
    report["by_turns"] = {str(t): _group(rs) for t, rs in sorted(by_turns.items())}
    return report


def _scoring(records: list[Record], done: list[Record], config: dict[str, Any]) -> dict[str, Any]:
    """How the items were scored: the run's scoring mode, each rule (and mode) used, and what waits for a judge."""
    by_rule: dict[tuple[str, str | None], list[Record]] = defaultdict(list)
    for r in done:
        by_rule[(r.get("rule") or "unknown", _mode(r))].append(r)
    return {
        "mode": config.get("scoring"),
        "rules": [
            {
                "rule": rule,
                "mode": mode,
                "n": len(rs),
                "judged": sum(1 for r in rs if r.get("judged")),
                "provisional": _provisional(rs),
            }
            for (rule, mode), rs in sorted(by_rule.items(), key=lambda kv: (kv[0][0], kv[0][1] or ""))
        ],
        "needs_judge": _provisional(done),
        "judge_errors": sum(1 for r in records if r.get("judge_error")),
        "pending": [
            {**_item(r), "rule": r.get("rule"), "judge_error": r.get("judge_error")}
            for r in done
            if r.get("needs_judge") or r.get("judge_error")
        ],
    }


def _mode(record: Record) -> str | None:
    """The scoring mode an item was scored in, where its line records one: its ``scoring``, or its score
    details' ``mode`` and MathVista's extraction setting (``quick_extract``)."""
    stated = record.get("scoring")
    if stated is None:
        details = record.get("details") or {}
        stated = {key: details[key] for key in ("mode", "quick_extract") if key in details} or None
    return None if stated is None else describe(stated)


def _robustness(done: list[Record]) -> list[dict[str, Any]]:
    """Accuracy per transform, and the drop against the same tasks without a transform."""
    by_transform: dict[str, list[Record]] = defaultdict(list)
    for r in done:
        by_transform[r["transform"]].append(r)
    baseline = {r["task_id"]: r for r in by_transform.get(NO_TRANSFORM, [])}
    rows = []
    for transform in sorted(by_transform, key=_transform_order):
        rs = by_transform[transform]
        family, severity = _family(transform)
        matched = [baseline[r["task_id"]] for r in rs if r["task_id"] in baseline]
        group = _group(rs)
        base = _accuracy(matched) if transform != NO_TRANSFORM else None
        accuracy = group["accuracy"]
        rows.append(
            {
                "transform": transform,
                "family": family,
                "severity": severity,
                **group,
                "baseline": base,
                "drop": round(base - accuracy, 2) if base is not None and accuracy is not None else None,
            }
        )
    return rows


def _benchmark_transforms(done: list[Record]) -> list[dict[str, Any]]:
    """Accuracy of every benchmark under every transform: where one benchmark collapses and another holds."""
    cells: dict[tuple[str, str], list[Record]] = defaultdict(list)
    for r in done:
        cells[(r.get("source") or "unknown", r["transform"])].append(r)
    ordered = sorted(cells, key=lambda cell: (cell[0], _transform_order(cell[1])))
    return [
        {"benchmark": source, "transform": transform, **_group(cells[(source, transform)])}
        for source, transform in ordered
    ]


def _hrbench(done: list[Record]) -> list[dict[str, Any]]:
    """HR-Bench as its release reports it, per transform: the accuracy of each option rotation
    (``cycle_category``) averaged over the rotations, for each category and all, next to the plain mean.

    The plain accuracy weighs a rotation by its rows; the release weighs every rotation alike. The
    two differ when a run holds rotations of unequal size (``--limit``, failed items), which is said.
    """
    by_transform: dict[str, list[Record]] = defaultdict(list)
    for r in done:
        metadata = r.get("metadata") or {}
        if r.get("source") == "hrbench" and "cycle_category" in metadata and credit(r) is not None:
            by_transform[r["transform"]].append(r)
    rows = []
    for transform in sorted(by_transform, key=_transform_order):
        rs = by_transform[transform]
        released = hrbench_accuracy(
            (r["metadata"]["cycle_category"], r["metadata"].get("category", "unknown"), credit(r)) for r in rs
        )
        sizes = Counter(str(r["metadata"]["cycle_category"]) for r in rs)
        rows.append(
            {
                "transform": transform,
                "n": len(rs),
                "cycles": len(released.per_cycle),
                "even_cycles": len(set(sizes.values())) == 1,
                "accuracy": _accuracy(rs),
                "cycle_average": {category: round(100.0 * value, 2) for category, value in released.average.items()},
            }
        )
    return rows


def _reached(record: Record) -> bool:
    """Whether every expected op reached the model, as the rewards read it; results written before that
    field existed fall back to the expected ops being among the shown ones."""
    reached = record.get("expected_ops_reached")
    if reached is None:
        return set(record["expected_ops"]) <= set(record.get("shown_ops", []))
    return bool(reached)


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
            100.0 * sum(1 for r in with_expected if _reached(r)) / len(with_expected),
            2,
        )
        if with_expected
        else None,
    }


def _rewards(done: list[Record], config: dict[str, Any]) -> dict[str, Any] | None:
    """The mean training reward (``eval --reward``) and each term's mean, beside the share of items
    answered in the protocol's format: what a trainer would have paid for these episodes."""
    rewarded = [r for r in done if r.get("reward") is not None]
    if not rewarded:
        return None
    terms = sorted({term for r in rewarded for term in r.get("reward_terms", {})})
    return {
        "spec": config.get("reward"),
        "items": len(rewarded),
        "mean": round(sum(r["reward"] for r in rewarded) / len(rewarded), 4),
        "answered_in_format": round(100.0 * sum(1 for r in done if r.get("stop_reason") == "answered") / len(done), 2),
        **{
            f"mean {term}": round(sum(r.get("reward_terms", {}).get(term, 0.0) for r in rewarded) / len(rewarded), 4)
            for term in terms
        },
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


def write_report(run_dir: str | Path, title: str | None = None) -> dict[str, Path]:
    """Write report.json, report.md and report.html (with plots) into the run folder."""
    # The HTML page needs matplotlib, which is slow to import: only writing a report pays for it.
    from codevision.eval.report_html import to_html

    run_dir = Path(run_dir)
    report = build_report(ResultStore.read(run_dir).values(), ResultStore.config_of(run_dir))
    title = title or f"codevision evaluation: {run_dir.name}"
    paths = {"json": run_dir / "report.json", "markdown": run_dir / "report.md", "html": run_dir / "report.html"}
    paths["json"].write_text(json.dumps(report, indent=2))
    paths["markdown"].write_text(to_markdown(report, title))
    paths["html"].write_text(to_html(report, title, viewer=(run_dir / VIEWER_FILE).exists()))
    return paths
