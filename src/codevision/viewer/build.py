"""Building a page: images prepared in a pool while trajectories render, then the page and its files written.

Decoding, downscaling and encoding images is most of the work, and Pillow does it without the
GIL, so every image is submitted to a thread pool first and each trajectory waits only for its
own. The page is written last and atomically, then the files folder is cleaned of whatever this
build did not reference, so the page on disk always matches the files beside it.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from functools import partial
from pathlib import Path

from rich.console import Console

from codevision.trajectory import TRAJECTORY_FILE
from codevision.viewer.collect import Collection, collect
from codevision.viewer.files import FilesFolder, remove_files_folder, write_atomically
from codevision.viewer.html import TrajectoryRenderer
from codevision.viewer.images import ShownImage, link_image, load_embedded
from codevision.viewer.page import BODIES_PER_FILE, body_file, render_page
from codevision.viewer.progress import BuildProgress

Prepare = Callable[[Path, str], ShownImage]


class NoTrajectoriesFound(ValueError):
    """Nothing under the given paths looked like a trajectory, so there is no page to write."""


def _render(
    collection: Collection, prepare: Prepare, progress: BuildProgress
) -> tuple[list[TrajectoryRenderer], list[str]]:
    """Every trajectory's renderer and body, with its images prepared by ``prepare`` in a pool."""
    records = [
        (number, item, record)
        for number, item in enumerate(collection.loaded)
        for record in item.trajectory.images
        if record.file
    ]
    advance_image = progress.stage("images", len(records))
    advance_page = progress.stage("rendering", len(collection.loaded))
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        jobs: list[dict[int, Future[ShownImage]]] = [{} for _ in collection.loaded]
        for number, item, record in records:
            job = pool.submit(prepare, item.path.parent, record.file or "")
            job.add_done_callback(lambda _: advance_image())
            jobs[number][record.index] = job
        renderers = [TrajectoryRenderer(item, prepared) for item, prepared in zip(collection.loaded, jobs, strict=True)]
        bodies = []
        for renderer in renderers:
            bodies.append(renderer.body())
            advance_page()
    return renderers, bodies


def write_page(
    collection: Collection, out: Path, *, self_contained: bool = False, progress: BuildProgress | None = None
) -> Path:
    """Write the page for an already collected set of trajectories; returns ``out``.

    By default images and trajectory bodies go into ``<out stem>_files/`` beside the page, which
    then stays small whatever the number of trajectories; ``self_contained`` puts everything in
    the one file instead (and removes a files folder an earlier build of the page left).
    Raises :class:`~codevision.viewer.files.ForeignFilesFolder` when that folder holds other files.
    """
    progress = progress or BuildProgress()
    out.parent.mkdir(parents=True, exist_ok=True)
    if self_contained:
        renderers, bodies = _render(collection, load_embedded, progress)
        write_atomically(out, render_page(collection, renderers, bodies=bodies).encode("utf-8"))
        remove_files_folder(out)
        return out
    files = FilesFolder(out)
    renderers, bodies = _render(collection, partial(link_image, files), progress)
    names = []
    for number, start in enumerate(range(0, len(bodies), BODIES_PER_FILE)):
        script = body_file(number, bodies[start : start + BODIES_PER_FILE])
        names.append(files.write(hashlib.sha256(script).hexdigest()[:32] + ".js", script))
    page = render_page(collection, renderers, body_files=[files.url(name) for name in names])
    write_atomically(out, page.encode("utf-8"))
    files.clean()
    return out


def write_viewer(paths: list[Path], out: Path, *, self_contained: bool = False, console: Console | None = None) -> Path:
    """Find every trajectory under ``paths`` (files or folders, any depth) and write their page to ``out``.

    Trajectories that cannot be loaded are listed on the page with the reason. With a ``console``
    each stage of the build shows a progress bar there. Raises :class:`NoTrajectoriesFound` when
    the paths hold nothing at all to show.
    """
    with BuildProgress(console) as progress:
        collection = collect(paths, progress)
        if not collection.loaded and not collection.failures:
            raise NoTrajectoriesFound(f"no {TRAJECTORY_FILE} under {', '.join(map(str, paths))}")
        return write_page(collection, out, self_contained=self_contained, progress=progress)
