"""Protocols by name, for the command line and configuration files."""

from __future__ import annotations

from codevision.protocols.base import Protocol
from codevision.protocols.code_tags import CodeTagsProtocol
from codevision.protocols.codevision import CodeVisionProtocol
from codevision.protocols.crop import CropProtocol
from codevision.protocols.direct import DirectProtocol

PROTOCOLS: dict[str, type[Protocol]] = {
    cls.name: cls for cls in (CodeVisionProtocol, CodeTagsProtocol, CropProtocol, DirectProtocol)
}
#: The protocol of CodeVision's released data and checkpoints.
DEFAULT_PROTOCOL = "codevision"


def get_protocol(name: str = DEFAULT_PROTOCOL, *, system_prompt: str | None = None) -> Protocol:
    """The protocol called ``name``; ``system_prompt`` replaces its own system prompt."""
    try:
        protocol = PROTOCOLS[name]
    except KeyError:
        raise ValueError(f"unknown protocol {name!r}; choose one of: {', '.join(sorted(PROTOCOLS))}") from None
    return protocol(system_prompt=system_prompt)
