"""Agreement of codevision's scoring with the official scripts on the held-out parity sets, per set and mode.

For each set (``bench/parity/sets``) and mode, prints the rows, the rows where codevision's
verdict equals the official script's label, and the disagreements: by the deliberate difference
they exercise (default mode; listed in ``docs/benchmarks.md``), or untagged, which is a bug.

    python bench/parity/agreement.py            # the table
    python bench/parity/agreement.py --show 5   # and up to 5 untagged disagreements per set
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from codevision.testing.parity import MODES, VERDICTS, agreement, load_set

SETS = Path(__file__).parent / "sets"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sets", type=Path, default=SETS)
    parser.add_argument("--show", type=int, default=0, help="untagged disagreements to print per set and mode")
    args = parser.parse_args()
    print("| set | mode | n | agree | % | disagreements by difference | untagged |")
    print("|---|---|---:|---:|---:|---|---:|")
    shown = []
    for name in VERDICTS:
        rows = load_set(args.sets, name)
        for mode in MODES:
            result = agreement(name, rows, mode)
            tags = ", ".join(f"{tag} {count}" for tag, count in sorted(result.by_tag.items())) or "–"
            print(
                f"| {name} | {mode} | {result.n} | {result.agree} | {result.percent:.1f} | {tags} "
                f"| {len(result.untagged)} |"
            )
            shown += result.untagged[: args.show]
    for row in shown:
        print(json.dumps(row, ensure_ascii=False))


if __name__ == "__main__":
    main()
