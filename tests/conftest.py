"""Shared fixtures: one sandbox per test module keeps the suite fast while every test gets fresh sessions."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from PIL import Image

from codevision.agent import Limits, run_agent
from codevision.policies import ScriptedPolicy
from codevision.protocols.registry import get_protocol
from codevision.sandbox import RemoteSandbox, Sandbox, SandboxError
from codevision.task import Task
from codevision.testing.images import gradient_image
from codevision.trajectory import Trajectory


@pytest.fixture(scope="module")
def sandbox() -> Iterator[Sandbox]:
    with Sandbox(workers=2, timeout=5.0, memory_mb=1024) as sb:
        yield sb


@pytest.fixture
def rgb_image() -> Image.Image:
    return gradient_image()


# When the Python installation lives under /tmp (a checkout there), its directories are mounted
# read-only inside each session's /tmp. This snippet defines ``own_tmp``: what the session wrote.
OWN_TMP = (
    "import os\n"
    "_install = {line.split()[4].split('/')[2] for line in open('/proc/self/mountinfo')\n"
    "            if line.split()[4].startswith('/tmp/')}\n"
    "own_tmp = sorted(set(os.listdir('/tmp')) - _install)\n"
)


class _RefusedSession:
    async def __aenter__(self) -> None:
        raise SandboxError("no session can start now")

    async def __aexit__(self, *exc: object) -> None:
        return None


class RefusingSandbox:
    """A sandbox that refuses sessions the test says it cannot start (too many images, or any after N)."""

    def __init__(self, inner: Sandbox, *, max_images: int = 1 << 10, sessions: int = 1 << 10) -> None:
        self.inner, self.max_images, self.sessions = inner, max_images, sessions

    def session(self, images: object = (), **kwargs: object) -> object:
        images = list(images)  # type: ignore[call-overload]
        self.sessions -= 1
        if len(images) > self.max_images or self.sessions < 0:
            return _RefusedSession()
        return self.inner.session(images=images, **kwargs)  # type: ignore[arg-type]


def tool_call(code: str, image_index: int = 0) -> str:
    """A well-formed reply of the default protocol that runs ``code`` on image ``image_index``."""
    payload = {"name": "code_image_tool", "arguments": {"code": code, "image_index": image_index}}
    return f"<think>work on the image</think><tool_call>{json.dumps(payload)}</tool_call>"


def zoom_call(bbox: list[float], image_index: int = 0) -> str:
    """A well-formed reply of the crop protocol."""
    payload = {"name": "image_zoom_in_tool", "arguments": {"bbox_2d": bbox, "image_index": image_index}}
    return f"<think>look closer</think><tool_call>{json.dumps(payload)}</tool_call>"


def final(answer: str) -> str:
    return f"<think>done</think><answer>{answer}</answer>"


def episode(
    sandbox: Sandbox | RemoteSandbox | None,
    task: Task,
    *replies: str,
    protocol: str = "codevision",
    limits: Limits | None = None,
) -> Trajectory:
    """``task`` played through the real agent loop (and sandbox) by a policy that sends ``replies``."""
    return run_agent(task, ScriptedPolicy(list(replies)), sandbox, get_protocol(protocol), limits)


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """A Chromium session for the pages' browser tests (the viewer, the report); skipped without Chromium."""
    from tests.test_viewer import CHROMEDRIVER, CHROMIUM, INSTALL_HINT, WebDriver

    if CHROMIUM is None or CHROMEDRIVER is None:
        pytest.skip(f"needs Chromium and ChromeDriver ({INSTALL_HINT})")
    driver = WebDriver(tmp_path_factory.mktemp("chromium-profile"))
    try:
        yield driver
    finally:
        driver.quit()
