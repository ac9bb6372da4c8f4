"""Trajectory images as the page shows them: embedded in a self-contained page, or as files beside it.

A self-contained page must open anywhere (a mail attachment), so its images travel inside it as
data URLs, downscaled to :data:`MAX_SIDE`: a page of a thousand trajectories weighs tens of
megabytes that way, all read when it opens. A page with a files folder instead shows the original
file, copied byte for byte, fetched only when its trajectory is opened; an image that is heavy to
fetch or to decode is shown as a :data:`THUMB_SIDE` thumbnail first and as the original when the
reader clicks it. An image costs nothing until looked at, and can always be read at full
resolution. Images encoded here are PNG, or JPEG when that is smaller for an opaque image
(photographs), keeping flat renderings and text crisp.

File names come from a hash of the source file, so a rebuild recognises the images it already
wrote and skips decoding them.
"""

from __future__ import annotations

import base64
import hashlib
import io
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from codevision.viewer.files import FilesFolder

MAX_SIDE = 1024
"""Longest side, in pixels, of an image embedded in a self-contained page."""

THUMB_SIDE = 480
"""Longest side, in pixels, of a thumbnail: sharp at the size the page shows images before a click."""

JPEG_WORTH_TRYING = 48_000
"""PNG size in bytes above which JPEG is tried too: below it the saving cannot matter."""

THUMB_BYTES = 96_000
"""Image files above this many bytes get a thumbnail: a chart or a rendering below it is as quick to show."""

THUMB_PIXELS = 4 * THUMB_SIDE * THUMB_SIDE
"""Images above this many pixels get a thumbnail whatever their file weighs: decoding them costs memory."""

THUMBNAIL_VERSION = 1
"""Part of every thumbnail's name: raise it when thumbnails are made differently, so rebuilds remake them."""

_KEPT_MODES = ("RGB", "RGBA", "L", "LA")
_BROWSER_FORMATS = {"PNG": ".png", "JPEG": ".jpg", "GIF": ".gif", "WEBP": ".webp"}
_MIME = {".png": "image/png", ".jpg": "image/jpeg", ".gif": "image/gif", ".webp": "image/webp"}
_ENCODED = (".jpg", ".png")
_HASH_CHARS = 32


@dataclass(frozen=True)
class ShownImage:
    """An image ready for an ``<img>``: ``src`` shown at ``width``×``height``, and ``full`` to load on a click.

    ``full`` is ``None`` when ``src`` already is all there is to see.
    """

    src: str
    width: int
    height: int
    full: str | None = None


def _displayable(img: Image.Image) -> Image.Image:
    """The image in a mode both PNG and browsers handle, keeping transparency where there is any."""
    if img.mode in _KEPT_MODES:
        return img
    if img.mode in ("P", "PA") and (img.mode == "PA" or "transparency" in img.info):
        return img.convert("RGBA")
    if img.mode in ("I", "I;16", "I;16B", "I;16L", "F", "1"):
        return img.convert("L")
    return img.convert("RGB")


def _encode(img: Image.Image, fmt: str, **options: int | bool) -> bytes:
    buffer = io.BytesIO()
    img.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def _jpeg(img: Image.Image) -> tuple[str, bytes]:
    return ".jpg", _encode(img, "JPEG", quality=85, optimize=True)


def _smallest(img: Image.Image) -> tuple[str, bytes]:
    """``img`` as PNG, or as JPEG when it is opaque and that is smaller: the file suffix and the bytes.

    The sizes are compared with a quickly compressed PNG: full compression of a photograph costs
    ten times as much and loses to JPEG anyway. Only the PNG that is kept is fully compressed.
    """
    if img.mode not in ("RGB", "L"):
        return ".png", _encode(img, "PNG")
    quick = _encode(img, "PNG", compress_level=1)
    if len(quick) > JPEG_WORTH_TRYING:
        suffix, jpeg = _jpeg(img)
        if len(jpeg) < len(quick):
            return suffix, jpeg
    return ".png", _encode(img, "PNG")


def _downscaled(img: Image.Image, side: int) -> Image.Image:
    """A displayable copy of ``img`` no longer than ``side`` on its longest side."""
    img = _displayable(img)
    if max(img.size) > side:
        img = img.copy()
        img.thumbnail((side, side), Image.Resampling.LANCZOS, reducing_gap=3.0)
    return img


def _data_url(suffix: str, data: bytes) -> str:
    return f"data:{_MIME[suffix]};base64,{base64.b64encode(data).decode('ascii')}"


def embed_image(img: Image.Image) -> ShownImage:
    """``img`` downscaled to :data:`MAX_SIDE` as a data URL of the smaller of PNG and (if opaque) JPEG."""
    img = _downscaled(img, MAX_SIDE)
    return ShownImage(_data_url(*_smallest(img)), img.width, img.height)


def image_path(folder: Path, relative: str) -> Path:
    """The image file ``relative`` to a trajectory ``folder``.

    Raises ``ValueError`` for a path that leaves the folder: a trajectory file from someone else
    must not be able to copy arbitrary images of this machine into a page that gets shared.
    """
    base = folder.resolve()
    path = (base / relative).resolve()
    if not path.is_relative_to(base):
        raise ValueError(f"{relative!r} points outside the trajectory folder")
    return path


def _read(folder: Path, relative: str) -> bytes:
    """The bytes of the image file ``relative`` to a trajectory ``folder``, checked.

    Unreadable files raise ``OSError`` or a Pillow error, for the caller to show in place of the
    image; a PNG cut short or corrupted is caught here too (its checksums are verified), not left
    for the browser to fail on.
    """
    data = image_path(folder, relative).read_bytes()
    with Image.open(io.BytesIO(data)) as img:
        img.verify()
    return data


def load_embedded(folder: Path, relative: str) -> ShownImage:
    """Embed the image file ``relative`` to a trajectory ``folder``; raises as :func:`_read` does.

    A file that is small and in a format browsers read is embedded as it is: encoding it again
    would cost time and save nothing.
    """
    data = _read(folder, relative)
    with Image.open(io.BytesIO(data)) as img:
        suffix = _BROWSER_FORMATS.get(img.format or "")
        if suffix is not None and max(img.size) <= MAX_SIDE and len(data) <= JPEG_WORTH_TRYING:
            return ShownImage(_data_url(suffix, data), img.width, img.height)
        img.load()
        return embed_image(img)


def _full_size(files: FilesFolder, digest: str, data: bytes, img: Image.Image) -> str:
    """The file of the image at full resolution: the source itself in a format browsers read, else as PNG."""
    suffix = _BROWSER_FORMATS.get(img.format or "")
    if suffix is not None:
        return files.write(digest + suffix, data)
    return files.find(digest, (".png",)) or files.write(digest + ".png", _encode(_displayable(img), "PNG"))


def _thumbnail(files: FilesFolder, digest: str, img: Image.Image, photographic: bool) -> tuple[str, int, int]:
    """The thumbnail's file, made unless an earlier build made it, and its size.

    The thumbnail of a ``photographic`` image (its file holds more than a byte per pixel: it
    compresses like a photograph) is a JPEG without trying PNG, which would lose and cost most of the time.
    """
    stem = f"{digest}-thumb{THUMB_SIDE}v{THUMBNAIL_VERSION}"
    found = files.find(stem, _ENCODED)
    if found is not None:
        with Image.open(files.path_of(found)) as thumbnail:
            return found, thumbnail.width, thumbnail.height
    img.draft(img.mode, (THUMB_SIDE, THUMB_SIDE))  # JPEG sources decode at a fraction of their size
    small = _downscaled(img, THUMB_SIDE)
    suffix, encoded = _jpeg(small) if photographic and small.mode in ("RGB", "L") else _smallest(small)
    return files.write(stem + suffix, encoded), small.width, small.height


def link_image(files: FilesFolder, folder: Path, relative: str) -> ShownImage:
    """Put the image file ``relative`` to a trajectory ``folder`` into ``files``, with a thumbnail if it is heavy.

    Raises as :func:`_read` does.
    """
    data = _read(folder, relative)
    digest = hashlib.sha256(data).hexdigest()[:_HASH_CHARS]
    with Image.open(io.BytesIO(data)) as img:
        width, height = img.size
        heavy = len(data) > THUMB_BYTES or width * height > THUMB_PIXELS
        thumbnail = None
        if heavy and max(width, height) > THUMB_SIDE:
            thumbnail, width, height = _thumbnail(files, digest, img, len(data) > width * height)
        full = files.url(_full_size(files, digest, data, img))
    return (
        ShownImage(full, width, height) if thumbnail is None else ShownImage(files.url(thumbnail), width, height, full)
    )
