"""Finding and loading the trajectories a page should show.

A run folder may hold thousands of trajectory folders at any depth, some of them half-written or
from an older schema. One bad file must not cost the reader the rest, so loading never raises:
every file that cannot be read becomes a :class:`LoadFailure` that the page lists with its reason.
Each trajectory is placed in its evaluation run, with its transform, as it is loaded.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from codevision.trajectory import TRAJECTORY_FILE, Trajectory
from codevision.viewer.progress import BuildProgress
from codevision.viewer.runs import Placement, RunIndex, run_labels


@dataclass(frozen=True)
class LoadedTrajectory:
    """A trajectory and the JSON file it came from (its images are relative to that file's folder).

    ``transform`` is the one it was run under and ``run`` the short name of its evaluation run;
    either is ``""`` when not known (a trajectory saved outside a run).
    """

    path: Path
    trajectory: Trajectory
    transform: str = ""
    run: str = ""


@dataclass(frozen=True)
class LoadFailure:
    """A path that was given or found but yields no trajectory, and why."""

    path: Path
    reason: str


@dataclass
class Collection:
    """Everything found under the given paths, in a stable order (the order of the paths, then by path)."""

    loaded: list[LoadedTrajectory] = field(default_factory=list)
    failures: list[LoadFailure] = field(default_factory=list)


def _walk(folder: Path) -> list[Path]:
    """Every ``trajectory.json`` below ``folder``; symlinked folders are not followed, so links cannot loop."""
    found = []
    for root, dirs, files in os.walk(folder):
        dirs.sort()
        if TRAJECTORY_FILE in files:
            found.append(Path(root) / TRAJECTORY_FILE)
    return found


def find_trajectory_files(paths: Iterable[Path]) -> tuple[list[Path], list[LoadFailure]]:
    """Trajectory files under ``paths`` (files are taken as they are), and the paths that do not exist."""
    files: list[Path] = []
    missing: list[LoadFailure] = []
    seen: set[Path] = set()
    for path in paths:
        if path.is_dir():
            candidates = _walk(path)
        elif path.exists():
            candidates = [path]
        else:
            missing.append(LoadFailure(path, "no such file or folder"))
            continue
        for candidate in candidates:
            key = candidate.resolve()
            if key not in seen:
                seen.add(key)
                files.append(candidate)
    return files, missing


def collect(paths: Iterable[Path], progress: BuildProgress | None = None) -> Collection:
    """Load every trajectory under ``paths``; unreadable or invalid files become failures, never exceptions."""
    files, failures = find_trajectory_files(paths)
    advance = (progress or BuildProgress()).stage("reading", len(files))
    index = RunIndex()
    placed: list[tuple[Path, Trajectory, Placement]] = []
    for file in files:
        try:
            trajectory = Trajectory.load(file)
        except (OSError, ValueError) as exc:
            failures.append(LoadFailure(file, str(exc) or type(exc).__name__))
        else:
            placed.append((file, trajectory, index.place(file, trajectory)))
        advance()
    labels = run_labels(placement.run for _, _, placement in placed if placement.run is not None)
    loaded = [
        LoadedTrajectory(file, trajectory, placement.transform, "" if placement.run is None else labels[placement.run])
        for file, trajectory, placement in placed
    ]
    return Collection(loaded, failures)
