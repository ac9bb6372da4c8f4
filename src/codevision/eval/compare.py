"""Two runs side by side: overall, per benchmark and per transform, on the items both runs hold.

Runs of the same benchmarks rarely hold exactly the same items (one stopped early, one used
``--limit``, one failed items the other scored): accuracies over different items are not comparable,
so the comparison is made on the items both runs recorded unless all items are asked for, and it
always says how many items each side has and how many they share.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from codevision.eval.report import build_report
from codevision.eval.store import ResultStore


def _coverage_note(names: tuple[str, str], counts: dict[str, int], same: bool, all_items: bool) -> str | None:
    if same:
        return None
    shared = f"{counts['a']} items in {names[0]}, {counts['b']} in {names[1]}, {counts['overlap']} in both"
    if all_items:
        return f"the runs cover different items ({shared}); comparing all items of each run"
    return f"the runs cover different items ({shared}); comparing the {counts['overlap']} items in both"


def compare(run_a: str | Path, run_b: str | Path, *, all_items: bool = False) -> dict[str, Any]:
    """The comparison: item counts, what it was computed on, a warning when the items differ, and the rows.

    Each row has ``group``, accuracy ``a`` and ``b``, their scored counts ``n_a`` and ``n_b``, and ``diff``
    (b − a). Unless ``all_items``, only the items recorded in both runs are compared.
    """
    names = (str(run_a), str(run_b))
    stores = [ResultStore.read(run) for run in (run_a, run_b)]
    overlap = stores[0].keys() & stores[1].keys()
    same = stores[0].keys() == stores[1].keys()
    counts = {"a": len(stores[0]), "b": len(stores[1]), "overlap": len(overlap)}
    chosen = [
        list(records.values()) if all_items else [r for k, r in records.items() if k in overlap] for records in stores
    ]
    reports = [build_report(records) for records in chosen]
    rows = [
        {"group": "overall", "a": reports[0]["accuracy"], "b": reports[1]["accuracy"]}
        | {"n_a": reports[0]["scored"], "n_b": reports[1]["scored"]}
    ]
    for section, key, label in (("benchmarks", None, "benchmark"), ("robustness", "transform", "transform")):
        tables = [r[section] if key is None else {row[key]: row for row in r[section]} for r in reports]
        for name in dict.fromkeys([*tables[0], *tables[1]]):
            a, b = (table.get(name, {}) for table in tables)
            rows.append(
                {"group": f"{label} {name}", "a": a.get("accuracy"), "b": b.get("accuracy")}
                | {"n_a": a.get("n", 0), "n_b": b.get("n", 0)}
            )
    for row in rows:
        row["diff"] = round(row["b"] - row["a"], 2) if row["a"] is not None and row["b"] is not None else None
    return {
        "runs": {"a": names[0], "b": names[1]},
        "items": counts,
        "same_items": same,
        "compared_on": "all items" if all_items or same else "overlap",
        "warning": _coverage_note(names, counts, same, all_items),
        "rows": rows,
    }
