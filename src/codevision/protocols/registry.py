"""Protocols by name, for the command line and configuration files."""

from __future__ import annotations

from codevision.protocols.base import Protocol
from codevision.protocols.code_tags import CodeTagsProtocol
from codevision.protocols.codevision import CodeVisionProtocol
from codevision.protocols.crop import CropProtocol
from codevision.protocols.direct import DirectProtocol
from codevision.protocols.toolcalls import CallRules, HermesProtocol

PROTOCOLS: dict[str, type[Protocol]] = {
    cls.name: cls for cls in (CodeVisionProtocol, CodeTagsProtocol, CropProtocol, DirectProtocol)
}
#: The protocol of CodeVision's released data and checkpoints.
DEFAULT_PROTOCOL = "codevision"


def get_protocol(
    name: str = DEFAULT_PROTOCOL, *, system_prompt: str | None = None, calls: CallRules | None = None
) -> Protocol:
    """The protocol called ``name``; ``system_prompt`` replaces its own system prompt, ``calls`` sets the
    call rules of a protocol with JSON tool calls (``trl``: read and answer calls as TRL's tool loop does)."""
    try:
        protocol = PROTOCOLS[name]
    except KeyError:
        raise ValueError(f"unknown protocol {name!r}; choose one of: {', '.join(sorted(PROTOCOLS))}") from None
    if calls is None or calls == "lenient":
        return protocol(system_prompt=system_prompt)
    if not issubclass(protocol, HermesProtocol):
        hermes = sorted(n for n, cls in PROTOCOLS.items() if issubclass(cls, HermesProtocol))
        raise ValueError(
            f"protocol {name!r} has no JSON tool calls, so call rules {calls!r} do not apply; "
            f"they apply to: {', '.join(hermes)}"
        )
    return protocol(system_prompt=system_prompt, calls=calls)
