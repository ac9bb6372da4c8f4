"""Teacher synthesis: guidance reaches the teacher only, acceptance follows the op trace, yield per kind."""

from __future__ import annotations

import asyncio
import json
import re
import socket
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from codevision.benchmarks import load_benchmark
from codevision.eval import RunStopped
from codevision.eval.items import build_items
from codevision.eval.scorer import make_scorer
from codevision.policies import OpenAIPolicy, PolicyError, ScriptedPolicy
from codevision.protocols import get_protocol
from codevision.sandbox import Sandbox
from codevision.synthesis import KINDS, rejection, synthesize
from codevision.task import Task
from codevision.testing.images import scene_image
from codevision.trajectory import Message, Trajectory
from codevision.transforms import parse_transforms
from tests.conftest import episode, final, tool_call


@pytest.fixture(scope="module")
def sandbox() -> Iterator[Sandbox]:
    with Sandbox(workers=2) as sb:
        yield sb


def call(code: str, image_index: int = 0) -> str:
    return "<think>step</think>\n<tool_call>" + json.dumps(
        {"name": "code_image_tool", "arguments": {"code": code, "image_index": image_index}}
    ) + "</tool_call>"  # fmt: skip


def teacher_reply(messages: Sequence[Message], *, wrong: bool = False) -> str:
    """A teacher that follows its guidance, which it finds at the end of the system prompt."""
    note = messages[0].text
    cues = {"direct": "without calling", "recovery": "mistake", "crop": "coarse to fine", "multi": "several tool"}
    kind = next((k for k, words in cues.items() if words in note), "single")
    answer = re.search(r"reference answer is: (.*?)\. Reason", note).group(1)  # type: ignore[union-attr]
    rotate = "image.rotate(270, expand=True)" if "rotate_270" in note else "image"
    region = re.search(r"region of image 0[^\[]*\[([^\]]*)\]", note)
    box = [float(v) for v in region.group(1).split(",")] if region else [0.0, 0.0, 1.0, 1.0]
    turn = sum(1 for m in messages if m.role == "assistant")
    final = f"<answer>{'nothing' if wrong else answer}</answer>"
    plans = {
        "direct": [final],
        "single": [call(f"display({rotate})"), final],
        "multi": [call(f"display({rotate})"), call("display(image.crop((0, 0, 40, 40)))", 1), final],
        "recovery": [call("display(imag.rotate(270, expand=True))"), call(f"display({rotate})"), final],
        "crop": [
            call(f"display(image.crop(({box[0] - 20}, {box[1] - 20}, {box[2] + 20}, {box[3] + 20})))"),
            call(f"display(image.crop(({box[0]}, {box[1]}, {box[2]}, {box[3]})))"),
            final,
        ],
    }
    return plans[kind][min(turn, len(plans[kind]) - 1)]


def items(transform: str | None):  # type: ignore[no-untyped-def]
    tasks = list(load_benchmark("synthetic:5"))
    chosen = parse_transforms(transform) if transform else []
    return [item for item in build_items(tasks, chosen) if transform is None or item.transform != "none"]


def run(sandbox: Sandbox, items_, kinds, out: Path, wrong: bool = False):  # type: ignore[no-untyped-def]
    teacher = ScriptedPolicy(lambda messages: teacher_reply(messages, wrong=wrong), name="teacher")
    return asyncio.run(
        synthesize(
            items_,
            kinds,
            teacher=teacher,
            sandbox=sandbox,
            protocol=get_protocol("codevision"),
            scorer=make_scorer(),
            out=out,
        )
    )


def test_every_kind_is_kept_when_done_right(sandbox: Sandbox, tmp_path: Path) -> None:
    report = run(sandbox, items("rotate_90"), ["single", "multi", "recovery", "direct"], tmp_path / "rot")
    assert {k: (v["attempted"], v["accepted"]) for k, v in report.items()} == {
        "single": (2, 2), "multi": (1, 1), "recovery": (1, 1), "direct": (1, 1),
    }  # fmt: skip
    crop = run(sandbox, items(None), ["crop"], tmp_path / "crop")
    assert crop["crop"]["accepted"] == crop["crop"]["attempted"] == 5


def test_guidance_never_reaches_the_saved_conversation(sandbox: Sandbox, tmp_path: Path) -> None:
    run(sandbox, items("rotate_90")[:1], ["single"], tmp_path)
    (folder,) = (tmp_path / "accepted").iterdir()
    trajectory = Trajectory.load(folder)
    text = " ".join(m.text for m in trajectory.conversation())
    assert "Guidance" not in text and "reference answer" not in text
    assert trajectory.metadata["kind"] == "single"


def test_rejections_say_why_and_the_run_resumes(sandbox: Sandbox, tmp_path: Path) -> None:
    report = run(sandbox, items("rotate_90")[:2], ["single"], tmp_path, wrong=True)
    assert report["single"]["accepted"] == 0
    assert report["single"]["rejections"] and all(
        reason.startswith("wrong answer") for reason in report["single"]["rejections"]
    )
    again = run(sandbox, items("rotate_90")[:2], ["single"], tmp_path, wrong=False)
    assert again == report  # nothing is re-run: both items were already recorded


def test_traces_that_miss_the_required_op_are_rejected(sandbox: Sandbox, tmp_path: Path) -> None:
    bad = [item.task.model_copy(update={"expected_ops": ["rotate_270", "flip_v"]}) for item in items("rotate_90")[:1]]
    (item,) = build_items(bad, [], include_original=True)
    report = run(sandbox, [item], ["single"], tmp_path)
    (reason,) = report["single"]["rejections"]
    assert reason == "the last image shown does not have the required orientation"  # details grouped away


def test_a_teacher_hedging_between_orientations_is_rejected(sandbox: Sandbox) -> None:
    t = Task.from_images([scene_image(320, 240)], id="t", question="q", answers=["7"], expected_ops=["rotate_90"])
    both = "display(image.rotate(90, expand=True))\ndisplay(image.rotate(270, expand=True))"
    hedge = episode(sandbox, t, tool_call(both), final("7"))
    reason = "the last image shown does not have the required orientation (missing: rotate_90)"
    assert rejection(t, hedge, "single", True) == reason
    honest = episode(sandbox, t, tool_call("display(image.rotate(90, expand=True))"), final("7"))
    assert rejection(t, honest, "single", True) is None


def test_unknown_kinds_are_refused(sandbox: Sandbox, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="choose from"):
        run(sandbox, items(None)[:1], ["bogus"], tmp_path)
    assert "crop" in KINDS


def test_synth_command_writes_the_yield_and_refuses_to_mix_runs(tmp_path: Path) -> None:
    from tests.test_cli import run_cli

    (tmp_path / "teacher.json").write_text(json.dumps(["<answer>nothing</answer>"]))
    args = ["data", "synth", "--teacher", "scripted:teacher.json", "--source", "synthetic:4", "--transforms",
            "rotate_90", "--kinds", "single,direct", "--n", "4", "--out", "synth"]  # fmt: skip
    done = run_cli(*args, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    report = json.loads((tmp_path / "synth" / "yield.json").read_text())
    assert {kind: stats["attempted"] for kind, stats in report.items()} == {"single": 2, "direct": 2}
    assert all(stats["accepted"] == 0 for stats in report.values())
    assert len(list((tmp_path / "synth" / "rejected").iterdir())) == 4
    again = run_cli(*args, cwd=tmp_path)
    assert again.returncode == 2 and "--resume" in " ".join((again.stdout + again.stderr).split())


def test_teacher_failures_are_failures_retried_on_resume(sandbox: Sandbox, tmp_path: Path) -> None:
    """A teacher that errors is not a rejection: the item is 'failed', outside the yield, and the next
    run on the same folder tries it again."""

    def broken(messages: Sequence[Message]) -> str:
        raise PolicyError("the teacher server answered HTTP 500")

    chosen = items("rotate_90")[:2]
    failing = ScriptedPolicy(broken, name="teacher")
    report = asyncio.run(
        synthesize(chosen, ["single"], teacher=failing, sandbox=sandbox, protocol=get_protocol("codevision"),
                   scorer=make_scorer(), out=tmp_path)
    )  # fmt: skip
    assert report["single"] == {"attempted": 0, "accepted": 0, "yield": None, "rejections": {}, "failed": 2}
    again = run(sandbox, chosen, ["single"], tmp_path)
    assert (again["single"]["accepted"], again["single"]["failed"]) == (2, 0)


def test_an_unreachable_teacher_stops_the_run_and_rejects_nothing(sandbox: Sandbox, tmp_path: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{sock.getsockname()[1]}/v1"
    teacher = OpenAIPolicy(dead, "teacher", retries=2, backoff=0.01)
    with pytest.raises(RunStopped, match="unreachable"):
        asyncio.run(
            synthesize(items("rotate_90"), ["single"], teacher=teacher, sandbox=sandbox,
                       protocol=get_protocol("codevision"), scorer=make_scorer(), out=tmp_path)
        )  # fmt: skip
    # Items that gave up before the breaker tripped are failures, which the next run tries again.
    results = tmp_path / "results.jsonl"
    lines = results.read_text().splitlines() if results.exists() else []
    assert all(json.loads(line)["status"] == "failed" for line in lines) and len(lines) < 5
