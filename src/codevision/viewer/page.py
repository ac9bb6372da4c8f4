"""The page around the trajectories: statistics, filters, failures, style, script and security policy.

A page comes in two kinds. A self-contained page carries every trajectory's body, images
included, in its one file: it can be mailed. A page with a files folder carries only each
trajectory's summary line; the bodies are in script files of the folder, :data:`BODIES_PER_FILE`
to a file, which the page's script fetches when a trajectory is opened, expanded or searched.
Either way the page's script only shows, hides and fills in what Python rendered and escaped.

The Content-Security-Policy allows no script but the page's own (by hash) and, with a files
folder, the body files that script adds (``'strict-dynamic'``): a script element in a
trajectory's text could not run even if it escaped escaping. Images come from data URLs (a
self-contained page) or from the page's own origin, that is, its folder.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections import Counter
from collections.abc import Sequence
from importlib import resources

from codevision.viewer.collect import Collection
from codevision.viewer.html import OUTCOME_MARK, OUTCOMES, TrajectoryRenderer, code_style, esc, outcome_of, reward_of

BODIES_PER_FILE = 50
"""Trajectory bodies per script file: a few files for a whole run, little to fetch for one trajectory."""

RECEIVER = "codevisionBodies"
"""The function of the page's script that a body file calls with its number and its bodies."""


def _static(name: str) -> str:
    return resources.files("codevision.viewer").joinpath("static", name).read_text(encoding="utf-8")


def body_file(number: int, bodies: Sequence[str]) -> bytes:
    """The script file that hands bodies ``number * BODIES_PER_FILE`` onwards to the page.

    JSON with every non-ASCII character escaped is a JavaScript literal whatever the text holds.
    """
    return f"{RECEIVER}({number}, {json.dumps(list(bodies))});\n".encode("ascii")


def _options(key: str, label: str, counts: Counter[str], empty_name: str) -> str:
    """A filter ``<select>``; values carry a ``=`` prefix so that an empty name stays distinct from "all"."""
    options = [f'<option value="">all ({sum(counts.values())})</option>']
    for name, count in sorted(counts.items()):
        options.append(f'<option value="={esc(name)}">{esc(name or empty_name)} ({count})</option>')
    return f'<label>{label} <select id="f-{key}" data-filter="{key}">{"".join(options)}</select></label>'


def _header(collection: Collection) -> str:
    trajectories = [item.trajectory for item in collection.loaded]
    outcomes = Counter(outcome_of(t) for t in trajectories)
    judged = outcomes["correct"] + outcomes["incorrect"]
    rewards = [r for r in (reward_of(t) for t in trajectories) if r is not None]
    stats = [f"{len(trajectories)} trajectories"]
    if judged:
        stats.append(f"accuracy {outcomes['correct'] / judged:.1%} of {judged} scored")
    if rewards:
        stats.append(f"mean reward {sum(rewards) / len(rewards):.3g}")
    tokens = sum(t.usage.prompt_tokens + t.usage.completion_tokens for t in trajectories)
    stats.append(f"{tokens} tokens")
    boxes = "".join(
        f'<label class="badge-label"><input type="checkbox" name="outcome" value="{o}" checked>'
        f'<span class="badge {o}">{OUTCOME_MARK[o]}</span> {o} ({outcomes[o]})</label>'
        for o in OUTCOMES
    )
    selects = [
        _options("stop", "stop reason", Counter(t.stop_reason for t in trajectories), "(none)"),
        _options("source", "benchmark", Counter(t.source for t in trajectories), "(no source)"),
    ]
    transforms = Counter(item.transform for item in collection.loaded)
    if any(transforms):
        selects.append(_options("transform", "transform", transforms, "(unknown)"))
    runs = Counter(item.run for item in collection.loaded)
    if any(runs):
        selects.append(_options("run", "run", runs, "(no run)"))
    return (
        f'<header><h1>codevision trajectories</h1><p class="stats">{esc(" · ".join(stats))}</p>'
        f'<div class="filters">{boxes}{"".join(selects)}'
        '<label>search <input type="search" id="f-search" placeholder="words in any text"></label>'
        '<span id="loading" hidden>loading trajectories…</span>'
        f'<span class="count"><b id="visible-count">{len(trajectories)}</b> of {len(trajectories)} shown</span>'
        '<button type="button" id="expand-all">expand all</button>'
        '<button type="button" id="collapse-all">collapse all</button></div></header>'
    )


def _failures(collection: Collection) -> str:
    if not collection.failures:
        return ""
    items = "".join(
        f"<li><code>{esc(failure.path)}</code><pre>{esc(failure.reason)}</pre></li>" for failure in collection.failures
    )
    return f'<section id="failures"><h2>could not load ({len(collection.failures)})</h2><ul>{items}</ul></section>'


def render_page(
    collection: Collection,
    renderers: Sequence[TrajectoryRenderer],
    *,
    bodies: Sequence[str] | None = None,
    body_files: Sequence[str] = (),
) -> str:
    """The whole page: with the trajectories' ``bodies`` in it, or else fetching them from ``body_files``.

    ``body_files`` are addresses relative to the page, one per :data:`BODIES_PER_FILE` trajectories.
    """
    script = _static("viewer.js")
    digest = base64.b64encode(hashlib.sha256(script.encode("utf-8")).digest()).decode("ascii")
    images, scripts = ("data:", "") if bodies is not None else ("'self'", " 'strict-dynamic'")
    policy = (
        f"default-src 'none'; img-src {images}; style-src 'unsafe-inline'; script-src 'sha256-{digest}'{scripts}; "
        "base-uri 'none'; form-action 'none'"
    )
    # A page of one trajectory opens it; a page of many starts as a list to filter.
    opened = " open" if len(renderers) == 1 else ""
    items = []
    for number, renderer in enumerate(renderers):
        if bodies is not None:
            where, body = "", bodies[number]
        else:
            where, body = f' data-file="{number // BODIES_PER_FILE}" data-slot="{number % BODIES_PER_FILE}"', ""
        items.append(
            f'<details class="traj"{renderer.attributes()}{where}{opened}>{renderer.summary()}'
            f'<div class="body">{body}</div></details>'
        )
    count = len(renderers)
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f'<meta http-equiv="Content-Security-Policy" content="{esc(policy)}">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>codevision · {count} trajectories</title><style>{_static('viewer.css')}{code_style()}</style>"
        f"</head><body>{_header(collection)}{_failures(collection)}"
        f'<main id="trajectories" data-files="{esc(" ".join(body_files))}">{"".join(items)}</main>'
        '<p id="no-match" hidden>No trajectory matches the filters.</p>'
        f"<script>{script}</script></body></html>\n"
    )
