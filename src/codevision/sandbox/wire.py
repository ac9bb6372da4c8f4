"""Framing of messages between the sandbox host, its session processes and remote clients.

A frame is a JSON header plus raw binary buffers, one per entry of the header's ``images``
(the pixels of the image it describes), so images cross every boundary as raw pixels and never
through an encode/decode round trip. The reading side
treats the peer as hostile: sizes are bounded before anything is allocated and a
malformed frame raises :class:`FrameError` instead of crashing or hanging the reader.
"""

from __future__ import annotations

import json
import math
import select
import socket
import struct
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image

_PREFIX = struct.Struct("<II")  # header length, number of buffers
_LENGTH = struct.Struct("<Q")

MAX_BUFFERS = 4096
#: Largest code cell a run accepts.
MAX_CODE_BYTES = 4 * 1024 * 1024
#: Largest image side that can cross the wire (PIL's own limits are far beyond what a session may return).
MAX_IMAGE_SIDE = 1 << 16

# Modes whose raw layout is stable and self-describing; anything else is converted first.
BYTES_PER_PIXEL = {"L": 1, "LA": 2, "RGB": 3, "RGBA": 4, "I;16": 2, "I": 4, "F": 4}
WIRE_MODES = frozenset(BYTES_PER_PIXEL) | {"1"}


class FrameError(Exception):
    """The peer sent something that is not a valid frame (or the connection broke)."""


@dataclass(frozen=True)
class HeaderLimits:
    """What a frame header may hold, checked before it is parsed: a header of a million ``[]`` is a few
    megabytes of text but a gigabyte of Python objects, a 5,000-digit number costs seconds to read, and
    JSON nested 200,000 deep overflows the C stack of a parser that recurses.

    ``max_containers`` bounds the arrays and objects, ``max_items`` the commas between elements (both
    counted outside strings), ``max_depth`` how deep they nest, ``max_number_chars`` the length of one
    number.
    """

    max_bytes: int = 1 << 20
    max_containers: int = 1 << 12
    max_items: int = 1 << 14
    max_depth: int = 32
    max_number_chars: int = 32


#: For frames whose content is small: session requests and answers other than results, service bodies.
SMALL = HeaderLimits()
#: For what a session reads from its host: a code cell may be long; a session may hold many images.
FROM_HOST = HeaderLimits(max_bytes=MAX_CODE_BYTES * 6 + (1 << 20), max_containers=1 << 16, max_items=1 << 16)
# +1 for a byte that opens an array or object, -1 for one that closes it: a running sum is the depth.
_BRACKET_STEP = np.zeros(256, dtype=np.int8)
_BRACKET_STEP[[ord("["), ord("{")]] = 1
_BRACKET_STEP[[ord("]"), ord("}")]] = -1


class FrameTimeout(FrameError):
    """No complete frame arrived before the deadline."""


class FrameClosed(FrameError):
    """The peer closed the connection (or it broke); nothing malformed was received."""


def raw_size(mode: str, width: int, height: int) -> int:
    if mode == "1":
        return (width + 7) // 8 * height
    return BYTES_PER_PIXEL[mode] * width * height


def to_wire_mode(image: Image.Image) -> Image.Image:
    """Return ``image`` in a mode that can be sent as raw pixels, converting only if needed."""
    if image.mode in WIRE_MODES:
        return image
    if image.mode in ("P", "PA"):
        has_alpha = image.mode == "PA" or "transparency" in image.info
        return image.convert("RGBA" if has_alpha else "RGB")
    if image.mode in ("I;16B", "I;16L", "I;16N"):
        return image.convert("I")
    if image.mode in ("RGBa", "La"):
        return image.convert("RGBA" if image.mode == "RGBa" else "LA")
    return image.convert("RGB")


def encode_image(image: Image.Image) -> tuple[dict[str, Any], bytes]:
    """Describe and serialise one image as (metadata, raw pixel bytes)."""
    image = to_wire_mode(image)
    return {"mode": image.mode, "size": [image.width, image.height]}, image.tobytes()


def image_layout(meta: Any) -> tuple[str, int, int]:
    """The mode and size an image's metadata declares, validated, so sizes can be checked before decoding."""
    try:
        mode = meta["mode"]
        width, height = (int(v) for v in meta["size"])
    except (KeyError, TypeError, ValueError) as exc:
        raise FrameError(f"image metadata is malformed: {str(meta)[:200]}") from exc
    if mode not in WIRE_MODES or not (0 <= width <= MAX_IMAGE_SIDE and 0 <= height <= MAX_IMAGE_SIDE):
        raise FrameError(f"image metadata is invalid: mode={str(mode)[:20]!r} size={width}x{height}")
    return mode, width, height


def decode_image(meta: dict[str, Any], data: bytes | bytearray | memoryview) -> Image.Image:
    """Rebuild an image from :func:`encode_image` output, validating the declared layout."""
    mode, width, height = image_layout(meta)
    if len(data) != raw_size(mode, width, height):
        raise FrameError(
            f"image buffer holds {len(data)} bytes but a {mode} image of {width}x{height} needs "
            f"{raw_size(mode, width, height)}"
        )
    return Image.frombytes(mode, (width, height), bytes(data) if isinstance(data, memoryview) else data)


def pack(
    header: dict[str, Any], buffers: Sequence[bytes | bytearray | memoryview] = ()
) -> list[bytes | bytearray | memoryview]:
    """Serialise a frame into a list of chunks suitable for ``sendall`` or an HTTP body."""
    # ASCII escapes keep lone surrogates (from model output or model code) encodable.
    body = json.dumps(header, separators=(",", ":")).encode("ascii")
    lengths = b"".join(_LENGTH.pack(len(buf)) for buf in buffers)
    return [_PREFIX.pack(len(body), len(buffers)) + body + lengths, *buffers]


def send_frame(
    sock: socket.socket, header: dict[str, Any], buffers: Sequence[bytes | bytearray | memoryview] = ()
) -> None:
    for chunk in pack(header, buffers):
        if len(chunk):
            sock.sendall(chunk)


def has_pending_data(sock: socket.socket) -> bool:
    """Whether the peer sent bytes nobody asked for (or closed the connection)."""
    readable, _, _ = select.select([sock], [], [], 0)
    return bool(readable)


def peer_closed(sock: socket.socket) -> bool:
    """Whether a readable socket is readable because the peer went away, not because it sent something."""
    try:
        return sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b""
    except BlockingIOError:
        return False
    except OSError:
        return True


class _Reader:
    """Reads exact byte counts from a socket, honouring an optional absolute deadline."""

    def __init__(self, sock: socket.socket, deadline: float | None) -> None:
        self.sock = sock
        self.deadline = deadline

    def _wait(self) -> None:
        if self.deadline is None:
            return
        remaining = self.deadline - time.monotonic()
        if remaining <= 0:
            raise FrameTimeout("timed out waiting for the peer")
        ready, _, _ = select.select([self.sock], [], [], remaining)
        if not ready:
            raise FrameTimeout("timed out waiting for the peer")

    def exact(self, n: int) -> bytearray:
        buf = bytearray(n)
        view = memoryview(buf)
        got = 0
        while got < n:
            self._wait()
            try:
                count = self.sock.recv_into(view[got:], n - got)
            except (ConnectionError, OSError) as exc:
                raise FrameClosed(f"connection broke while reading: {exc}") from exc
            if count == 0:
                raise FrameClosed("connection closed by the peer" if got == 0 else "connection closed mid-frame")
            got += count
        return buf


def parse_prefix(prefix: bytes | bytearray, max_total: int, limits: HeaderLimits) -> tuple[int, int]:
    header_len, n_buffers = _PREFIX.unpack(prefix)
    if header_len > min(limits.max_bytes, max_total) or n_buffers > MAX_BUFFERS:
        raise FrameError(f"frame declares an implausible size (header {header_len} B, {n_buffers} buffers)")
    return header_len, n_buffers


def _number(limit: int, convert: Callable[[str], Any]) -> Callable[[str], Any]:
    def parse(text: str) -> Any:
        if len(text) > limit:
            raise FrameError(f"frame header holds a number of {len(text)} characters (at most {limit})")
        value = convert(text)
        if isinstance(value, float) and not math.isfinite(value):
            raise FrameError(f"frame header holds a number out of range: {text}")
        return value

    return parse


def _no_constant(name: str) -> Any:
    raise FrameError(f"frame header holds {name}, which is not a number")


def _structure(data: bytes) -> np.ndarray | None:
    """The bytes of a header that lie outside its strings, or None when a string never ends.

    Escape pairs are blanked first (``\\\\`` then ``\\"``, left to right as JSON pairs them), so every
    quote left opens or closes a string and the parity of the quotes before a byte says whether it is
    inside one. Linear, with a few bytes of memory per byte of header whatever it holds (a pattern
    substitution over a million short strings builds a list of a million pieces, 17 bytes a byte). A
    backslash outside a string is not JSON: the parser stops there, so nothing after it is parsed.
    """
    unescaped = data.replace(b"\\\\", b"__").replace(b'\\"', b"__")
    chars = np.frombuffer(unescaped, dtype=np.uint8)
    parity = np.cumsum(chars == ord('"'), dtype=np.uint8)  # wraps at 256, which keeps the parity
    np.bitwise_and(parity, 1, out=parity)
    if len(parity) and parity[-1]:
        return None
    return chars[parity == 0]


def _nesting_depth(structure: np.ndarray) -> int:
    """How deep the arrays and objects nest (closing brackets left unmatched are the JSON parser's to report)."""
    steps = _BRACKET_STEP[structure]
    steps = steps[steps != 0]
    return int(np.cumsum(steps, dtype=np.int32).max()) if len(steps) else 0


def parse_header(body: bytes | bytearray | memoryview, limits: HeaderLimits = SMALL) -> dict[str, Any]:
    """The JSON object of a frame header, within ``limits``; :class:`FrameError` for anything else."""
    data = bytes(body)
    if len(data) > limits.max_bytes:
        raise FrameError(f"frame header of {len(data)} bytes exceeds the limit of {limits.max_bytes}")
    structure = _structure(data)  # brackets and commas inside strings do not count
    if structure is None:
        raise FrameError("frame header holds a string that never ends")
    counts = np.bincount(structure, minlength=256)
    containers = int(counts[ord("[")] + counts[ord("{")])
    if containers > limits.max_containers:
        raise FrameError(f"frame header opens {containers} arrays and objects (at most {limits.max_containers})")
    closed = int(counts[ord("]")] + counts[ord("}")])
    if closed > containers:
        raise FrameError(f"frame header closes {closed} arrays and objects but opens {containers}")
    items = int(counts[ord(",")])
    if items > limits.max_items:
        raise FrameError(f"frame header lists {items} items (at most {limits.max_items})")
    depth = _nesting_depth(structure)
    if depth > limits.max_depth:
        raise FrameError(f"frame header nests {depth} deep (at most {limits.max_depth})")
    try:
        header = json.loads(
            data.decode("ascii"),
            parse_int=_number(limits.max_number_chars, int),
            parse_float=_number(limits.max_number_chars, float),
            parse_constant=_no_constant,
        )
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise FrameError(f"frame header is not valid JSON: {exc}") from exc
    if not isinstance(header, dict):
        raise FrameError("frame header is not a JSON object")
    return header


def _check_buffers(header: dict[str, Any], lengths: list[int]) -> None:
    """Every buffer of a frame is the pixels of the image its header's ``images`` entry describes: a
    buffer of any other length is refused before it is allocated."""
    if not lengths:
        return
    images = header.get("images")
    if not isinstance(images, list) or len(images) != len(lengths):
        described = len(images) if isinstance(images, list) else 0
        raise FrameError(f"frame carries {len(lengths)} buffers but its header describes {described} images")
    for index, (meta, length) in enumerate(zip(images, lengths, strict=True)):
        mode, width, height = image_layout(meta)
        if length != raw_size(mode, width, height):
            raise FrameError(
                f"field 'images[{index}]' describes a {mode} image of {width}x{height} "
                f"({raw_size(mode, width, height)} bytes) but its buffer holds {length}"
            )


def recv_frame(
    sock: socket.socket, *, deadline: float | None = None, max_total: int = 1 << 34, limits: HeaderLimits = SMALL
) -> tuple[dict[str, Any], list[bytearray]]:
    """Read one frame; ``max_total`` bounds header plus buffers, ``limits`` the header, and the header's
    image metadata each buffer, before anything is allocated or parsed."""
    reader = _Reader(sock, deadline)
    header_len, n_buffers = parse_prefix(reader.exact(_PREFIX.size), max_total, limits)
    header = parse_header(reader.exact(header_len), limits)
    lengths = [_LENGTH.unpack_from(reader.exact(_LENGTH.size))[0] for _ in range(n_buffers)]
    if header_len + sum(lengths) > max_total:
        raise FrameError(f"frame of {header_len + sum(lengths)} bytes exceeds the limit of {max_total}")
    _check_buffers(header, lengths)
    return header, [reader.exact(length) for length in lengths]


def unpack(
    data: bytes | bytearray | memoryview, *, max_total: int = 1 << 34, limits: HeaderLimits = SMALL
) -> tuple[dict[str, Any], list[memoryview]]:
    """Parse a frame held fully in memory (an HTTP body)."""
    view = memoryview(data)
    if len(view) < _PREFIX.size:
        raise FrameError("frame is shorter than its prefix")
    header_len, n_buffers = parse_prefix(view[: _PREFIX.size], max_total, limits)
    offset = _PREFIX.size
    header = parse_header(view[offset : offset + header_len], limits)
    offset += header_len
    lengths = []
    for _ in range(n_buffers):
        if offset + _LENGTH.size > len(view):
            raise FrameError("frame is truncated in its buffer table")
        lengths.append(_LENGTH.unpack_from(view, offset)[0])
        offset += _LENGTH.size
    _check_buffers(header, lengths)
    buffers = []
    for length in lengths:
        if offset + length > len(view):
            raise FrameError("frame is truncated in its buffers")
        buffers.append(view[offset : offset + length])
        offset += length
    if offset != len(view):
        raise FrameError("frame has trailing bytes")
    return header, buffers
