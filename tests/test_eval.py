"""The evaluation runner: durable results, resume after kill -9, failures kept, reports and comparisons."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest

from codevision.eval import EvalItem, ResultStore, build_report, compare, evaluate, write_report
from codevision.eval.items import build_items
from codevision.policies import PolicyError, ScriptedPolicy
from codevision.protocols import get_protocol
from codevision.sandbox import Sandbox
from codevision.scoring.judge import JudgeError
from codevision.task import Task
from codevision.trajectory import Trajectory
from tests.conftest import gradient_image, tool_call


async def exact(task: Task, trajectory: Trajectory) -> dict[str, Any]:
    correct = (trajectory.final_answer or "").strip() in task.answers
    return {"correct": correct, "value": float(correct), "rule": "exact"}


def items(n: int = 4) -> list[EvalItem]:
    out = []
    for i in range(n):
        task = Task.from_images(
            [gradient_image(40, 30)], id=f"q{i}", question=f"What is q{i}?", answers=[str(i)], source="unit"
        )
        out.append(EvalItem(task))
        rotated = Task.from_images(
            [gradient_image(40, 30).rotate(90, expand=True)],
            id=f"q{i}",
            question=f"What is q{i}?",
            answers=[str(i)],
            source="unit",
        )
        out.append(EvalItem(rotated, transform="rotate_90"))
    return out


def answer_by_task(messages: Any) -> str:
    """Answers correctly on upright images only (the image is 40 wide) — a model that collapses."""
    return "<answer>0</answer>"


class Collapsing(ScriptedPolicy):
    """Reads the question's number off upright (landscape) images only, like a model that collapses."""

    def __init__(self) -> None:
        super().__init__(lambda messages: "")

    async def generate(self, messages, images, *, max_tokens):  # type: ignore[no-untyped-def]
        number = messages[1].text.rstrip("?").split("q")[-1]
        upright = images[0].width > images[0].height
        self.script = lambda _messages: f"<answer>{number if upright else 'no idea'}</answer>"
        return await super().generate(messages, images, max_tokens=max_tokens)


def test_results_report_and_robustness(tmp_path: Path) -> None:
    store = asyncio.run(
        evaluate(
            items(),
            policy=Collapsing(),
            sandbox=None,
            protocol=get_protocol("direct"),
            scorer=exact,
            out=tmp_path / "run",
            concurrency=3,
        )
    )
    assert len(store.records) == 8
    lines = (tmp_path / "run" / "results.jsonl").read_text().splitlines()
    assert sorted(json.loads(line)["key"] for line in lines) == sorted(item.key for item in items())
    report = build_report(store.records.values())
    assert report["accuracy"] == 50.0
    rows = {row["transform"]: row for row in report["robustness"]}
    assert rows["none"]["accuracy"] == 100.0
    assert (rows["rotate_90"]["accuracy"], rows["rotate_90"]["baseline"], rows["rotate_90"]["drop"]) == (
        0.0,
        100.0,
        100.0,
    )
    paths = write_report(tmp_path / "run")
    assert "Robustness" in paths["markdown"].read_text()
    assert "data:image/svg+xml;base64," in paths["html"].read_text()
    saved = Trajectory.load(tmp_path / "run" / store.records["q0@none"]["trajectory"])
    assert saved.score == {"correct": True, "value": 1.0, "rule": "exact"}


def test_failed_items_are_recorded_with_the_reason(tmp_path: Path) -> None:
    class Flaky(ScriptedPolicy):
        async def generate(self, messages, images, *, max_tokens):  # type: ignore[no-untyped-def]
            if "q2" in messages[1].text:
                raise PolicyError("the server answered 503 five times")
            return await super().generate(messages, images, max_tokens=max_tokens)

    store = asyncio.run(
        evaluate(
            items(),
            policy=Flaky(answer_by_task),
            sandbox=None,
            protocol=get_protocol("direct"),
            scorer=exact,
            out=tmp_path / "run",
        )
    )
    failed = {k: r for k, r in store.records.items() if r["status"] == "failed"}
    assert set(failed) == {"q2@none", "q2@rotate_90"}
    assert all("503 five times" in r["reason"] for r in failed.values())
    report = build_report(store.records.values())
    assert report["scored"] == 6 and len(report["failed"]) == 2


class Judged:
    """A scorer whose judge is down (``JudgeError``), unreadable, or up, as the test sets it."""

    def __init__(self, state: str) -> None:
        self.state = state
        self.calls = 0

    async def __call__(self, task: Task, trajectory: Trajectory) -> dict[str, Any]:
        self.calls += 1
        if self.state == "down":
            raise JudgeError("judge 'j' at http://127.0.0.1:9/v1: connection refused")
        base = await exact(task, trajectory)
        if self.state == "unreadable":
            return {**base, "needs_judge": True, "details": {"judge": {"error": "no readable verdict"}}}
        return {**base, "judged": True, "needs_judge": False}


class Refusing(ScriptedPolicy):
    """A model that must not be asked: re-scoring works from the saved trajectories."""

    def __init__(self) -> None:
        super().__init__(lambda messages: "")

    async def generate(self, messages, images, *, max_tokens):  # type: ignore[no-untyped-def]
        raise AssertionError("the model was asked again")


def run_judged(out: Path, policy: ScriptedPolicy, scorer: Judged, *, retry_failed: bool = False) -> ResultStore:
    return asyncio.run(
        evaluate(
            items(2),
            policy=policy,
            sandbox=None,
            protocol=get_protocol("direct"),
            scorer=scorer,
            out=out,
            retry_failed=retry_failed,
        )
    )


def test_a_judge_outage_keeps_the_trajectories_and_retry_failed_rescores_without_the_model(tmp_path: Path) -> None:
    out = tmp_path / "run"
    store = run_judged(out, ScriptedPolicy(answer_by_task), Judged("down"))
    assert {r["status"] for r in store.records.values()} == {"failed"}
    record = store.records["q0@none"]
    assert record["stage"] == "judge" and "connection refused" in record["reason"]
    assert record["correct"] is None and record["judge_error"].startswith("judge 'j'")
    assert Trajectory.load(out / record["trajectory"]).final_answer == "0"
    scorer = Judged("up")
    store = run_judged(out, Refusing(), scorer, retry_failed=True)
    assert scorer.calls == 4
    assert {k: r["correct"] for k, r in store.records.items()} == {
        "q0@none": True, "q0@rotate_90": True, "q1@none": False, "q1@rotate_90": False,
    }  # fmt: skip
    assert all(r["status"] == "done" and r["judged"] and r["judge_error"] is None for r in store.records.values())
    lines = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert sorted(r["key"] for r in lines) == sorted(store.records)  # superseded lines compacted away
    assert Trajectory.load(out / record["trajectory"]).score["judged"] is True


def test_unreadable_verdicts_are_counted_and_rescored_when_asked(tmp_path: Path) -> None:
    out = tmp_path / "run"
    store = run_judged(out, ScriptedPolicy(answer_by_task), Judged("unreadable"))
    assert all(r["status"] == "done" and r["needs_judge"] for r in store.records.values())
    assert {r["judge_error"] for r in store.records.values()} == {"no readable verdict"}
    untouched = Judged("up")
    run_judged(out, Refusing(), untouched)  # a plain resume leaves scored items alone
    assert untouched.calls == 0
    store = run_judged(out, Refusing(), untouched, retry_failed=True)
    assert untouched.calls == 4 and not any(r["needs_judge"] for r in store.records.values())


def test_an_unreadable_image_fails_its_item_and_the_rest_run(tmp_path: Path) -> None:
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG not really")
    good = Task(id="ok", images=["ok.png"], question="What is q0?", answers=["0"], source="unit")
    gradient_image(20, 20).save(tmp_path / "ok.png")
    bad = Task(id="bad", images=["broken.png"], question="What is q0?", answers=["0"], source="unit")
    listed = list(build_items([good, bad], [], base_dir=tmp_path))
    for skip, status in ((False, "failed"), (True, "skipped")):
        store = asyncio.run(
            evaluate(
                listed,
                policy=ScriptedPolicy(answer_by_task),
                sandbox=None,
                protocol=get_protocol("direct"),
                scorer=exact,
                out=tmp_path / status,
                skip_bad_items=skip,
            )
        )
        assert store.records["ok@none"]["correct"] is True
        record = store.records["bad@none"]
        assert record["status"] == status and record["stage"] == "input" and record["correct"] is None
        assert "broken.png" in record["reason"] and "cannot be read" in record["reason"]


def test_a_line_cut_by_a_crash_is_dropped_on_reopen(tmp_path: Path) -> None:
    store = ResultStore(tmp_path)
    store.add({"key": "a@none", "status": "done", "correct": True})
    with open(tmp_path / "results.jsonl", "a") as fh:
        fh.write('{"key": "b@none", "stat')
    assert set(ResultStore.read(tmp_path)) == {"a@none"}  # what reports read mid-run: the line stays
    assert (tmp_path / "results.jsonl").read_text().endswith('"stat')
    reopened = ResultStore(tmp_path)
    assert set(reopened.records) == {"a@none"}
    assert (tmp_path / "results.jsonl").read_text().endswith("}\n")


RUNNER = textwrap.dedent(
    """
    import asyncio, sys
    sys.path.insert(0, {root!r})
    from codevision.eval import EvalItem, evaluate
    from codevision.policies import ScriptedPolicy
    from codevision.protocols import get_protocol
    from codevision.task import Task
    from tests.conftest import gradient_image
    from tests.test_eval import exact

    items = [EvalItem(Task.from_images([gradient_image(20, 20)], id=f"t{{i}}", question="q", answers=["ok"]))
             for i in range(24)]
    policy = ScriptedPolicy(["<answer>ok</answer>"], delay=0.15)
    asyncio.run(evaluate(items, policy=policy, sandbox=None, protocol=get_protocol("direct"), scorer=exact,
                         out=sys.argv[1], concurrency=2))
    """
)


@pytest.mark.slow
def test_resume_after_kill_9_loses_and_duplicates_nothing(tmp_path: Path) -> None:
    script = tmp_path / "runner.py"
    script.write_text(RUNNER.format(root=str(Path(__file__).resolve().parent.parent)))
    out = tmp_path / "run"
    process = subprocess.Popen(
        [sys.executable, str(script), str(out)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        results = out / "results.jsonl"
        if results.exists() and len(results.read_text().splitlines()) >= 6:
            break
        time.sleep(0.05)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    partial = len((out / "results.jsonl").read_text().splitlines())
    assert 6 <= partial < 24
    resumed = subprocess.run([sys.executable, str(script), str(out)], capture_output=True, timeout=120, check=False)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    keys = [json.loads(line)["key"] for line in (out / "results.jsonl").read_text().splitlines()]
    assert sorted(keys) == sorted(f"t{i}@none" for i in range(24))  # every item exactly once


def evaluate_in_sandbox(task: Task, replies: list[str], out: Path) -> ResultStore:
    """One item, played by ``replies`` with the default protocol in a real sandbox."""
    with Sandbox(workers=1) as sandbox:
        return asyncio.run(
            evaluate(
                [EvalItem(task)],
                policy=ScriptedPolicy(replies),
                sandbox=sandbox,
                protocol=get_protocol("codevision"),
                scorer=exact,
                out=out,
            )
        )


def test_faithfulness_is_computed_from_geometry(tmp_path: Path) -> None:
    task = Task.from_images([gradient_image(64, 48)], id="f1", question="q", answers=["x"], bboxes=[(10, 10, 30, 30)])
    call = '<tool_call>{"name": "code_image_tool", "arguments": {"code": "display(image.crop((5, 5, 40, 40)))"}}'
    miss = '<tool_call>{"name": "code_image_tool", "arguments": {"code": "display(image.crop((40, 30, 64, 48)))"}}'
    replies = [call + "</tool_call>", miss + "</tool_call>", "<answer>x</answer>"]
    store = evaluate_in_sandbox(task, replies, tmp_path / "run")
    record = store.records["f1@none"]
    assert record["faithfulness"] == {"crops": 2, "overlapping": 1, "containing": 1, "unverified": 0}
    assert record["ops"] == ["crop"] and record["correct"] is True


def test_expected_ops_count_as_reached_only_through_the_deciding_view(tmp_path: Path) -> None:
    task = Task.from_images([gradient_image(64, 48)], id="o1", question="q", answers=["x"], expected_ops=["rotate_90"])
    both = "display(image.rotate(90, expand=True))\ndisplay(image.rotate(270, expand=True))"
    hedge = evaluate_in_sandbox(task, [tool_call(both), "<answer>x</answer>"], tmp_path / "hedge").records["o1@none"]
    assert hedge["expected_ops_reached"] is False and set(hedge["shown_ops"]) >= {"rotate_90", "rotate_270"}
    turn = tool_call("display(image.rotate(90, expand=True))")
    honest = evaluate_in_sandbox(task, [turn, "<answer>x</answer>"], tmp_path / "honest").records["o1@none"]
    assert honest["expected_ops_reached"] is True
    assert build_report([hedge, honest])["tool_use"]["expected_ops_covered"] == 50.0
    # Results written before the field existed are read by the shown ops.
    older = {key: value for key, value in hedge.items() if key != "expected_ops_reached"}
    assert build_report([older, honest])["tool_use"]["expected_ops_covered"] == 100.0


def test_compare_puts_two_runs_side_by_side(tmp_path: Path) -> None:
    for name, answer in (("a", "<answer>0</answer>"), ("b", "<answer>1</answer>")):
        asyncio.run(
            evaluate(
                items(2),
                policy=ScriptedPolicy(lambda m, answer=answer: answer),
                sandbox=None,
                protocol=get_protocol("direct"),
                scorer=exact,
                out=tmp_path / name,
            )
        )
    result = compare(tmp_path / "a", tmp_path / "b")
    assert result["same_items"] is True and result["warning"] is None
    rows = {row["group"]: row for row in result["rows"]}
    assert rows["overall"] == {"group": "overall", "a": 50.0, "b": 50.0, "n_a": 4, "n_b": 4, "diff": 0.0}
    assert rows["transform rotate_90"]["a"] == 50.0


def test_code_that_crashes_its_session_never_fails_the_item(tmp_path: Path) -> None:
    """A forged, deeply nested result frame (it used to throw RecursionError out of the sandbox) and a
    segfault: the episode goes on in a fresh session, and the item is scored rather than dropped."""
    forge = textwrap.dedent("""
        import os, struct
        fd = next(int(f) for f in os.listdir('/proc/self/fd')
                  if os.readlink(f'/proc/self/fd/{f}').startswith('socket:'))
        body = b'{"x":' + b'[' * 200000 + b']' * 200000 + b'}'
        os.write(fd, struct.pack('<II', len(body), 0) + body)
    """)
    crash = "import ctypes\nctypes.string_at(0)"
    task = Task.from_images([gradient_image(40, 30)], id="c1", question="q", answers=["x"])
    replies = [tool_call(forge), tool_call(crash), "<answer>x</answer>"]
    store = evaluate_in_sandbox(task, replies, tmp_path / "run")
    record = store.records["c1@none"]
    assert record["status"] == "done" and record["correct"] is True, record
    assert record["tool_errors"] == 2
