"""The frame reader against hostile bytes: whatever arrives, the reader returns a header or raises FrameError.

The host also caps every text field of a result again; a field the session already capped keeps its note.

A session's socket is reachable from model code, so every byte the host reads may be forged. These tests
call the parser directly, below the sandbox, so they can try far more inputs than a session per example.
"""

from __future__ import annotations

import json
import socket
import struct
import subprocess
import sys
import textwrap

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from codevision.sandbox import wire
from codevision.sandbox.results import MAX_WARNING_CHARS, MAX_WARNINGS, NOTE_ROOM, cap_text, cap_warnings

#: Pieces of JSON and of what breaks JSON parsers: brackets, quotes, escapes, huge and special numbers.
TOKENS = st.sampled_from(
    [
        "[", "]", "{", "}", ",", ":", '"', "\\", '\\"', '"a"', '"k":', "0", "-", "1e999", "9" * 40,
        "1.5", "NaN", "Infinity", "true", "null", " ", "\n", "\\u00e9", "\\ud800", "\x00", "\xff",
    ]
)  # fmt: skip
GRAMMAR = st.lists(TOKENS, max_size=200).map(lambda parts: "".join(parts).encode("latin-1"))
LIMITS = wire.HeaderLimits(max_bytes=1 << 16, max_containers=64, max_items=64, max_depth=8)


def parse_or_refuse(data: bytes) -> None:
    try:
        header = wire.parse_header(data, LIMITS)
    except wire.FrameError:
        return
    assert isinstance(header, dict)


@settings(max_examples=400, deadline=None)
@given(data=st.binary(max_size=512) | GRAMMAR | GRAMMAR.map(lambda body: b'{"type":"result","x":' + body + b"}"))
def test_any_header_bytes_parse_to_an_object_or_raise_frame_error(data: bytes) -> None:
    parse_or_refuse(data)


@settings(max_examples=200, deadline=None)
@given(data=st.binary(max_size=256) | GRAMMAR, n_buffers=st.integers(0, 5), lengths=st.lists(st.integers(0, 2**64 - 1)))
def test_any_frame_bytes_unpack_or_raise_frame_error(data: bytes, n_buffers: int, lengths: list[int]) -> None:
    forged = (
        struct.pack("<II", len(data), n_buffers)
        + data
        + b"".join(struct.pack("<Q", n) for n in lengths[:n_buffers])
        + b"x" * 8
    )
    for frame in (forged, forged[: len(forged) // 2], data):
        try:
            header, _ = wire.unpack(frame, max_total=1 << 20, limits=LIMITS)
        except wire.FrameError:
            continue
        assert isinstance(header, dict)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.binary(max_size=300) | GRAMMAR, n_buffers=st.integers(0, 3), length=st.integers(0, 2**64 - 1))
def test_any_bytes_on_a_socket_read_as_a_frame_or_raise_frame_error(data: bytes, n_buffers: int, length: int) -> None:
    forged = struct.pack("<II", len(data), n_buffers) + data + struct.pack("<Q", length) * n_buffers
    left, right = socket.socketpair()
    with left, right:
        right.sendall(forged)
        right.close()
        try:
            header, _ = wire.recv_frame(left, deadline=None, max_total=1 << 16, limits=LIMITS)
        except wire.FrameError:
            return
        assert isinstance(header, dict)


FORGED = {
    # A string that never ends, made of escaped quotes: a backtracking string scan restarted at every
    # quote took 11 s for 80 KB and froze every host thread meanwhile.
    "unterminated-escaped-quotes": (b'{"a":"' + b'\\"' * 2_000_000, "never ends"),
    "deep": (b'{"a":' + b"[" * 200_000 + b"]" * 200_000 + b"}", "nests 200001 deep"),
    "deep-objects": (b'{"a":' + b'{"b":' * 40 + b"1" + b"}" * 40 + b"}", "nests 41 deep"),
    "many-containers": (b'{"a":[' + b"[]," * 1_100_000 + b"[]]}", "arrays and objects"),
    "many-items": (b'{"a":[' + b"0," * 1_100_000 + b"0]}", "items"),
    "long-number": (b'{"a":' + b"9" * 5000 + b"}", "number of 5000 characters"),
    "infinite-number": (b'{"a":1e999}', "out of range"),
    "nan": (b'{"a":NaN}', "not a number"),
    "not-an-object": (b"[1,2]", "not a JSON object"),
    "not-ascii": (b'{"a":"\xff"}', "not valid JSON"),
}


@pytest.mark.parametrize(("data", "reason"), FORGED.values(), ids=FORGED.keys())
def test_forged_headers_are_refused_with_the_reason(data: bytes, reason: str) -> None:
    limits = wire.HeaderLimits(max_bytes=8 << 20, max_containers=1 << 20, max_items=1 << 20)
    with pytest.raises(wire.FrameError, match=reason):
        wire.parse_header(data, limits)


def test_brackets_and_quotes_inside_strings_are_not_structure() -> None:
    text = '[[[{{{,,,\\"' * 100
    header = wire.parse_header(('{"a":"' + text + '"}').encode(), LIMITS)
    assert header == {"a": text.replace('\\"', '"')}


def test_deep_json_is_refused_even_where_the_recursion_limit_would_let_the_parser_overflow_the_stack() -> None:
    """With a high recursion limit a recursive parser segfaults the host on 200,000-deep JSON; the depth budget
    refuses it before parsing."""
    program = textwrap.dedent(
        """
        import sys
        sys.setrecursionlimit(10**7)
        from codevision.sandbox import wire
        try:
            limits = wire.HeaderLimits(max_bytes=1 << 20, max_containers=1 << 20)
            wire.parse_header(b'{"a":' + b'[' * 200_000 + b']' * 200_000 + b'}', limits)
        except wire.FrameError as exc:
            print("refused:", exc)
        """
    )
    done = subprocess.run([sys.executable, "-c", program], check=False, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "refused: frame header nests 200001 deep" in done.stdout


def test_the_deepest_legitimate_result_header_fits_the_depth_budget() -> None:
    """A traced op holds at most MAX_OP_CONTAINERS arrays and objects, so a result of such ops nests at most
    that deep plus the result and its op list."""
    from codevision.sandbox.results import MAX_OP_CONTAINERS, result_limits

    args: object = 1
    for _ in range(MAX_OP_CONTAINERS - 2):  # the op and its args dict are two of its containers
        args = [args]
    header = {"type": "result", "ops": [{"name": "crop", "args": {"box": args}}]}
    limits = result_limits(1 << 16)
    assert wire.parse_header(wire.pack(header)[0][8:], limits) == header


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet="ab\n[].", max_size=400), st.integers(min_value=1, max_value=300))
def test_the_host_capping_a_capped_text_again_keeps_the_sessions_note(text: str, limit: int) -> None:
    once = cap_text(text, limit)
    assert cap_text(once, limit) == once and len(once) <= limit + NOTE_ROOM
    if once != text:
        assert once.endswith(f"\n[... {len(text) - limit} characters cut]")


@settings(max_examples=100, deadline=None)
@given(st.lists(st.text(alphabet="w", max_size=MAX_WARNING_CHARS + 200), max_size=MAX_WARNINGS + 30))
def test_capped_warnings_capped_again_keep_their_count(warnings: list[str]) -> None:
    once = cap_warnings(warnings)
    assert cap_warnings(once) == once and len(once) <= MAX_WARNINGS + 1
    if len(warnings) > MAX_WARNINGS:
        assert once[-1] == f"[... {len(warnings) - MAX_WARNINGS} more warnings cut]"


def test_a_buffer_its_header_does_not_describe_is_refused_before_it_is_allocated() -> None:
    """A 2 GiB buffer announced for a 4x4 image: refused from the buffer table, nothing of it read."""
    header = b'{"images":[{"mode":"L","size":[4,4]}]}'
    host, session = socket.socketpair()
    with host, session:
        session.sendall(struct.pack("<II", len(header), 1) + header + struct.pack("<Q", 2 << 30))
        with pytest.raises(wire.FrameError, match=r"4x4 \(16 bytes\) but its buffer holds 2147483648"):
            wire.recv_frame(host, deadline=None, max_total=1 << 34)
        unlisted = b'{"type":"result"}'
        session.sendall(struct.pack("<II", len(unlisted), 1) + unlisted + struct.pack("<Q", 16))
        with pytest.raises(wire.FrameError, match="1 buffers but its header describes 0 images"):
            wire.recv_frame(host, deadline=None)


def structure_of(text: str) -> bytes:
    """The brackets and commas of JSON text outside its strings, read one character at a time."""
    out, inside, escaped = [], False, False
    for char in text:
        if inside:
            inside, escaped = (escaped or char != '"'), (not escaped and char == "\\")
        elif char == '"':
            inside = True
        elif char in "[]{},":
            out.append(char)
    return "".join(out).encode()


JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-(10**30), 10**30) | st.text(alphabet='ab[]{},:"\\\n é'),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(alphabet='k[]"\\,'), inner, max_size=4),
    max_leaves=30,
)


@settings(max_examples=300, deadline=None)
@given(JSON)
def test_the_structure_outside_strings_is_what_a_json_reader_sees(value: object) -> None:
    """Brackets, commas, quotes and backslashes inside strings never count as structure, escaped or not."""
    text = json.dumps({"v": value})
    structure = wire._structure(text.encode("ascii"))
    assert structure is not None
    brackets = bytes(b for b in structure.tobytes() if b in b"[]{},")
    assert brackets == structure_of(text)
    assert wire.parse_header(text.encode("ascii"), wire.HeaderLimits(max_bytes=1 << 20, max_depth=64)) == {"v": value}
