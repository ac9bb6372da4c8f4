"""Build time and size of the trajectory viewer for one run of 1,000 trajectories, against an earlier viewer.

The run is synthetic (``codevision.testing.runs``): every item a two-turn trajectory with an input
image and a crop, and its ``results.jsonl`` line. The images are scenes of flat shapes that compress
like charts and renderings: the baseline's page then weighs about 70 KB per trajectory, as pages of
real runs did. ``--noise`` makes them compress like photographs (and slow to generate). The baseline is the
viewer package as of a git revision (by default the last one before pages got a files folder, when
every page was one self-contained file), taken out with ``git show`` into a temporary package and
imported beside today's, so both build the same run in the same process. Each page is built cold
(nothing of it on disk); today's default page is built a second time over its own files folder,
which is what a rebuild costs (``codevision view`` again, or the end of ``codevision eval --resume``).
Sizes are the page file, its files folder, and what a browser reads to list the run: the page
alone, since nothing else is fetched until a trajectory is opened.
"""

from __future__ import annotations

import argparse
import importlib
import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from types import ModuleType

from rich.console import Console
from rich.table import Table

from codevision.testing.runs import write_synthetic_run
from codevision.viewer import files_folder_of, write_viewer

BASELINE = "448a477e066cd8e0d6f5314fc10531c32bfcff75"
PACKAGE = "src/codevision/viewer"
REPOSITORY = Path(__file__).resolve().parent.parent


@dataclass
class Build:
    name: str
    seconds: float
    page_bytes: int
    files_bytes: int
    files: int


def baseline_viewer(revision: str, into: Path) -> ModuleType:
    """The viewer package as of ``revision``, importable as ``baseline_viewer`` from ``into``."""
    listing = ["git", "-C", str(REPOSITORY), "ls-tree", "-r", "--name-only", revision, PACKAGE]
    for path in subprocess.run(listing, check=True, capture_output=True, text=True).stdout.split():
        shown = subprocess.run(
            ["git", "-C", str(REPOSITORY), "show", f"{revision}:{path}"], check=True, capture_output=True
        )
        target = into / "baseline_viewer" / Path(path).relative_to(PACKAGE)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(
            shown.stdout.decode("utf-8").replace("codevision.viewer", "baseline_viewer"), encoding="utf-8"
        )
    sys.path.insert(0, str(into))
    return importlib.import_module("baseline_viewer")


def _size(folder: Path) -> tuple[int, int]:
    files = [path for path in folder.rglob("*") if path.is_file()] if folder.is_dir() else []
    return sum(path.stat().st_size for path in files), len(files)


def measure(name: str, build: Callable[[], Path]) -> Build:
    started = time.perf_counter()
    page = build()
    seconds = time.perf_counter() - started
    files_bytes, files = _size(files_folder_of(page))
    return Build(name, seconds, page.stat().st_size, files_bytes, files)


def _megabytes(count: int) -> str:
    return f"{count / 1e6:.1f}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog=(
            "Examples:\n"
            "  python bench/viewer.py\n"
            "  python bench/viewer.py --trajectories 200 --size 1024x768\n"
            "  python bench/viewer.py --baseline HEAD~3 --json viewer.json"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--trajectories", type=int, default=1000, help="items in the run (default 1000)")
    parser.add_argument("--size", default="800x600", help="input image size, WxH (default 800x600)")
    parser.add_argument("--noise", type=float, default=0.0, help="image noise, grey levels (default 0: like charts)")
    parser.add_argument("--baseline", default=BASELINE, help="git revision of the viewer to compare with")
    parser.add_argument("--json", type=Path, metavar="PATH", help="also write the figures as JSON")
    args = parser.parse_args(argv)
    width, height = (int(side) for side in args.size.lower().split("x"))
    console = Console()
    with tempfile.TemporaryDirectory(prefix="bench-viewer-") as tmp:
        root = Path(tmp)
        try:
            old = baseline_viewer(args.baseline, root / "baseline")
        except (OSError, subprocess.CalledProcessError) as exc:
            console.print(f"[red]error:[/] the baseline needs a git checkout that holds {args.baseline}: {exc}")
            return 2
        with console.status(f"writing a run of {args.trajectories} trajectories"):
            run = write_synthetic_run(root / "run", args.trajectories, (width, height), args.noise)
        items = [run / "items"]
        builds = [
            measure(f"baseline {args.baseline[:10]}", lambda: old.write_viewer(items, root / "old" / "page.html")),
            measure("self-contained", lambda: write_viewer(items, root / "one" / "page.html", self_contained=True)),
            measure("default, cold", lambda: write_viewer(items, root / "new" / "page.html")),
            measure("default, rebuild", lambda: write_viewer(items, root / "new" / "page.html")),
        ]
    noise = f", noise {args.noise:g}" if args.noise else ""
    table = Table(title=f"codevision view: {args.trajectories} trajectories, {width}x{height} inputs{noise}")
    for column in ("page", "build s", "page MB", "files MB", "files", "× time", "× page"):
        table.add_column(column, justify="left" if column == "page" else "right", no_wrap=True)
    baseline = builds[0]
    for build in builds:
        table.add_row(
            build.name,
            f"{build.seconds:.2f}",
            _megabytes(build.page_bytes),
            _megabytes(build.files_bytes),
            str(build.files),
            f"{baseline.seconds / build.seconds:.1f}",
            f"{baseline.page_bytes / build.page_bytes:.1f}",
        )
    console.print(table)
    console.print("× time, × page: the baseline's build time and page size over the row's (above 1: faster, smaller)")
    if args.json:
        args.json.write_text(json.dumps({"trajectories": args.trajectories, "builds": [asdict(b) for b in builds]}))
        console.print(f"figures written to {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
