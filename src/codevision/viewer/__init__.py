"""A static HTML page for reading trajectories: ``codevision view`` writes it, and so does ``codevision eval``.

The page needs no server or network. By default it lists every trajectory and keeps the rest in a
files folder beside it (``<page>_files/``: thumbnails, full images, trajectory bodies), fetched
only when looked at, so a run of thousands opens at once. A self-contained page carries
everything in one file instead, to mail or attach a handful of trajectories.
"""

from __future__ import annotations

from codevision.viewer.build import NoTrajectoriesFound, write_page, write_viewer
from codevision.viewer.collect import Collection, LoadedTrajectory, LoadFailure, collect, find_trajectory_files
from codevision.viewer.files import ForeignFilesFolder, files_folder_of
from codevision.viewer.progress import BuildProgress

__all__ = [
    "BuildProgress",
    "Collection",
    "ForeignFilesFolder",
    "LoadFailure",
    "LoadedTrajectory",
    "NoTrajectoriesFound",
    "collect",
    "files_folder_of",
    "find_trajectory_files",
    "write_page",
    "write_viewer",
]
