"""The folder of files beside a page (``<page>_files/``): images and trajectory bodies, named by content.

A file's name is a hash of what it was made from, so a rebuild finds the work of the last build
already done and writes only what changed; every file is written to a temporary name and renamed,
so a reader or a crashed build never sees half a file. The build ends with :meth:`FilesFolder.clean`,
which removes every file this build did not reference: nothing of an earlier build stays mixed in.
The folder is marked as the viewer's when created; a folder of the same name holding anything
else is refused rather than emptied.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import threading
from pathlib import Path
from urllib.parse import quote

MARKER = ".codevision-viewer"
"""The file that marks a folder as the viewer's own, so that it may be cleaned."""


class ForeignFilesFolder(ValueError):
    """The page's files folder exists and holds files the viewer did not write."""


def files_folder_of(page: Path) -> Path:
    """Where the files of ``page`` go: ``trajectories.html`` has ``trajectories_files/``."""
    return page.with_name(f"{page.stem}_files")


def _is_ours(folder: Path) -> bool:
    return (folder / MARKER).is_file()


def remove_files_folder(page: Path) -> None:
    """Remove the files folder an earlier build of ``page`` left (a page that now needs none); only if ours."""
    folder = files_folder_of(page)
    if _is_ours(folder):
        shutil.rmtree(folder)


def write_atomically(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file in the same folder, renamed over it at the end."""
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise


class FilesFolder:
    """The files of one page build. Thread-safe: images are written from a pool."""

    def __init__(self, page: Path) -> None:
        self.path = files_folder_of(page)
        if self.path.exists() and not _is_ours(self.path) and any(self.path.iterdir()):
            raise ForeignFilesFolder(
                f"{self.path} already holds files that are not a codevision viewer's; "
                "move it away or write the page elsewhere"
            )
        self.path.mkdir(parents=True, exist_ok=True)
        if not _is_ours(self.path):
            note = (
                f"The files of the codevision viewer page {page.name}: each build of it removes what it does not use.\n"
            )
            (self.path / MARKER).write_text(note, encoding="utf-8")
        self._existing = {entry.name for entry in self.path.iterdir()}
        self._referenced: set[str] = set()
        self._lock = threading.Lock()
        self._prefix = quote(self.path.name) + "/"

    def url(self, name: str) -> str:
        """The address of file ``name`` relative to the page."""
        return self._prefix + name

    def find(self, stem: str, suffixes: tuple[str, ...]) -> str | None:
        """The name of a file already there as ``stem`` plus one of ``suffixes``, now kept; ``None`` if none is."""
        with self._lock:
            for suffix in suffixes:
                if stem + suffix in self._existing:
                    self._referenced.add(stem + suffix)
                    return stem + suffix
        return None

    def path_of(self, name: str) -> Path:
        """Where file ``name`` is on disk."""
        return self.path / name

    def write(self, name: str, data: bytes) -> str:
        """Write file ``name`` unless it is already there (its name says what it holds); returns the name."""
        with self._lock:
            self._referenced.add(name)
            if name in self._existing:
                return name
        write_atomically(self.path / name, data)
        with self._lock:
            self._existing.add(name)
        return name

    def clean(self) -> int:
        """Remove everything the build did not reference (and temporary files of builds cut short); returns how many."""
        removed = 0
        for entry in self.path.iterdir():
            if entry.name in self._referenced or entry.name == MARKER:
                continue
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry)
            else:
                entry.unlink()
            removed += 1
        return removed
