"""``codevision bench build transformed`` and ``codevision eval`` as a user runs them."""

from __future__ import annotations

import json
from pathlib import Path

from codevision.benchmarks import load_benchmark
from codevision.cli.prompts import tools_digest
from codevision.eval.store import CONFIG_FILE
from codevision.protocols import get_protocol
from codevision.trajectory import Trajectory
from tests.conftest import gradient_image
from tests.test_cli import run_cli


def test_build_a_transformed_benchmark_and_load_it_back(tmp_path: Path) -> None:
    done = run_cli(
        "bench", "build", "transformed", "--source", "synthetic:4", "--transforms", "rotate_90,flip_h,jpeg:3",
        "--per-item", "2", "--out", "built", cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    tasks = list(load_benchmark(f"tasks:{tmp_path / 'built'}"))
    assert len(tasks) == 8
    for task in tasks:
        transform = task.metadata["transform"]
        assert task.id == f"{task.metadata['source_task']}@{transform}"
        assert task.transforms[-1].name == transform
        assert task.metadata["source_benchmark"] == "synthetic:4"
        expected = {"rotate_90": ["rotate_270"], "flip_h": ["flip_h"], "jpeg_compression:3": []}
        assert task.expected_ops == expected.get(transform, task.expected_ops)
        assert (tmp_path / "built" / task.images[0]).exists() and task.bboxes


def test_eval_runs_scores_reports_and_resumes(tmp_path: Path) -> None:
    (tmp_path / "replies.json").write_text(json.dumps(["<answer>nothing</answer>"]))
    args = [
        "eval",
        "-m",
        "scripted:replies.json",
        "-b",
        "synthetic:5",
        "--transforms",
        "rotate_180",
        "--protocol",
        "direct",
    ]
    done = run_cli(*args, "-o", "run", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    lines = (tmp_path / "run" / "results.jsonl").read_text().splitlines()
    assert len(lines) == 10
    record = json.loads(lines[0])
    assert record["rule"] == "ocrbench" and record["correct"] is False
    report = json.loads((tmp_path / "run" / "report.json").read_text())
    assert report["accuracy"] == 0.0 and {r["transform"] for r in report["robustness"]} == {"none", "rotate_180"}
    assert (tmp_path / "run" / "report.html").exists() and (tmp_path / "run" / "trajectories.html").exists()
    Trajectory.load(tmp_path / "run" / record["trajectory"])
    again = run_cli(*args, "-o", "run", cwd=tmp_path)
    assert again.returncode == 2 and "--resume" in " ".join(again.stderr.split())
    resumed = run_cli(*args, "-o", "run", "--resume", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    assert len((tmp_path / "run" / "results.jsonl").read_text().splitlines()) == 10
    changed = run_cli(*args[:-2], "--protocol", "codevision", "-o", "run", "--resume", cwd=tmp_path)
    assert changed.returncode == 2 and "different protocol" in " ".join(changed.stderr.split())


def test_a_missing_image_fails_its_item_and_the_rest_of_the_benchmark_runs(tmp_path: Path) -> None:
    folder = tmp_path / "OCRBench"
    (folder / "OCRBench_Images").mkdir(parents=True)
    gradient_image(32, 24).save(folder / "OCRBench_Images" / "there.png")
    rows = [
        {"dataset_name": "IIIT5K", "id": i, "image_path": name, "question": "Text?", "answers": ["x"], "type": "Text"}
        for i, name in enumerate(["there.png", "lost.png", "there.png"])
    ]
    (folder / "OCRBench.json").write_text(json.dumps(rows))
    (tmp_path / "replies.json").write_text(json.dumps(["<answer>x</answer>"]))
    args = ["eval", "-m", "scripted:replies.json", "-b", f"ocrbench:{folder}", "--protocol", "direct"]
    for flag, status in (([], "failed"), (["--skip-bad-items"], "skipped")):
        done = run_cli(*args, *flag, "-o", status, cwd=tmp_path)
        assert "Traceback" not in done.stdout + done.stderr
        records = {r["key"]: r for r in map(json.loads, (tmp_path / status / "results.jsonl").read_text().splitlines())}
        assert [records[f"IIIT5K-{i}@none"]["correct"] for i in (0, 2)] == [True, True]
        lost = records["IIIT5K-1@none"]
        assert (lost["status"], lost["stage"]) == (status, "input") and "lost.png does not exist" in lost["reason"]
        assert done.returncode == (1 if status == "failed" else 0), done.stderr


def test_eval_compare_prints_both_runs(tmp_path: Path) -> None:
    for name, answer in (("a", "nothing"), ("b", "Hollow lantern window")):
        (tmp_path / f"{name}.json").write_text(json.dumps([f"<answer>{answer}</answer>"]))
        args = ["eval", "-m", f"scripted:{name}.json", "-b", "synthetic:3", "--protocol", "direct", "-o", name]
        assert run_cli(*args, cwd=tmp_path).returncode == 0
    done = run_cli("eval", "compare", "a", "b", "--json", cwd=tmp_path)
    rows = {row["group"]: row for row in json.loads(done.stdout)["rows"]}
    assert rows["overall"]["a"] == 0.0 and rows["overall"]["b"] > 0.0


def test_eval_names_a_bad_benchmark_and_a_bad_transform(tmp_path: Path) -> None:
    (tmp_path / "x.json").write_text('["<answer>1</answer>"]')
    bad = run_cli("eval", "-m", "scripted:x.json", "-b", "nosuch:x", "-o", "r", cwd=tmp_path)
    assert bad.returncode == 2 and "known benchmarks" in " ".join(bad.stderr.split())
    transform = run_cli("bench", "build", "transformed", "--source", "synthetic:2", "--transforms", "rotate_91x",
                        "--out", "o", cwd=tmp_path)  # fmt: skip
    assert transform.returncode == 2 and "rotate_91x" in " ".join(transform.stderr.split())


def test_build_a_transformed_chartqa(tmp_path: Path) -> None:
    from tests.test_benchmarks import chartqa_layout

    root = chartqa_layout(tmp_path / "ChartQA")
    done = run_cli(
        "bench", "build", "transformed", "--source", f"chartqa:{root}", "--transforms", "rotate_90,rotate_180,flip_h",
        "--out", "chartqa-t", cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    tasks = list(load_benchmark(f"tasks:{tmp_path / 'chartqa-t'}"))
    sources = list(load_benchmark(f"chartqa:{root}"))
    assert len(tasks) == 3 * len(sources)
    assert {t.metadata["transform"] for t in tasks} == {"rotate_90", "rotate_180", "flip_h"}
    assert all(t.source == sources[0].source and t.answers for t in tasks)


def test_eval_stops_at_once_when_the_model_is_down_and_resumes_later(tmp_path: Path) -> None:
    """48 items against a server that refuses connections: the circuit breaker stops the run in seconds
    (exit 5) instead of retrying every item, records nothing for the items not run, and --resume runs
    them once the server is up."""
    import socket
    import time

    from codevision.policies.fake_server import FakeOpenAIServer

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{sock.getsockname()[1]}/v1"
    common = ["-b", "synthetic:24", "--transforms", "rotate_90", "--protocol", "direct", "-o", "run"]
    started = time.monotonic()
    done = run_cli("eval", "-m", dead, "--model-name", "m", "--retries", "2", *common, cwd=tmp_path)
    assert done.returncode == 5, done.stdout + done.stderr
    assert time.monotonic() - started < 60
    assert "is unreachable" in done.stdout and "--resume" in done.stdout
    results = tmp_path / "run" / "results.jsonl"
    # Eight items in flight fail their first attempts together: the breaker trips before any item gives up.
    assert not results.exists() or results.read_text().strip() == ""
    with FakeOpenAIServer(lambda body: "<answer>0</answer>", model="m") as server:
        again = run_cli("eval", "-m", server.url, "--model-name", "m", *common, "--resume", cwd=tmp_path)
    assert again.returncode in (0, 1), again.stdout + again.stderr
    records = [json.loads(line) for line in (tmp_path / "run" / "results.jsonl").read_text().splitlines()]
    assert len({r["key"] for r in records}) == 48


def test_a_system_prompt_file_replaces_the_protocols_and_a_resume_must_keep_it(tmp_path: Path) -> None:
    (tmp_path / "replies.json").write_text(json.dumps(["<answer>1</answer>"]))
    (tmp_path / "prompt.txt").write_text("You are a careful reader. Answer in <answer> tags.")
    (tmp_path / "other.txt").write_text("Another prompt.")
    args = ["eval", "-m", "scripted:replies.json", "-b", "synthetic:2", "--protocol", "direct", "-o", "run"]
    done = run_cli(*args, "--system-prompt", "prompt.txt", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    record = json.loads((tmp_path / "run" / "results.jsonl").read_text().splitlines()[0])
    trajectory = Trajectory.load(tmp_path / "run" / record["trajectory"])
    assert trajectory.messages[0].role == "system"
    assert trajectory.messages[0].text == "You are a careful reader. Answer in <answer> tags."
    changed = run_cli(*args, "--resume", "--system-prompt", "other.txt", cwd=tmp_path)
    assert changed.returncode == 2 and "different system_prompt" in " ".join(changed.stderr.split())
    again = run_cli(*args, "--resume", "--system-prompt", "prompt.txt", cwd=tmp_path)
    assert again.returncode == 0, again.stderr


def test_the_tools_a_run_rendered_are_recorded_and_a_resume_must_keep_them(tmp_path: Path) -> None:
    (tmp_path / "replies.json").write_text(json.dumps(["<answer>1</answer>"]))
    (tmp_path / "tools.json").write_text(json.dumps(get_protocol().tool_schemas()))
    args = ["eval", "-m", "scripted:replies.json", "-b", "synthetic:2", "-o", "run"]
    done = run_cli(*args, "--tools", "tools.json", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    config = json.loads((tmp_path / "run" / CONFIG_FILE).read_text())
    assert config["tools"] == tools_digest(get_protocol().tool_schemas()) and config["tool_choice"] is None
    again = run_cli(*args, "--resume", "--tools", "protocol", cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    for other in ([], ["--tools", "tools.json", "--tool-choice", "none"]):
        changed = run_cli(*args, "--resume", *other, cwd=tmp_path)
        assert changed.returncode == 2 and "different tool" in " ".join(changed.stderr.split()), other


def test_eval_under_trl_call_rules_records_them_and_a_resume_must_keep_them(tmp_path: Path) -> None:
    """A raw newline in the call's JSON: repaired under the default rules, the end of the episode under TRL's."""
    broken = '<tool_call>{"name": "code_image_tool", "arguments": {"code": "x = 1\nprint(x)"}}</tool_call>'
    (tmp_path / "replies.json").write_text(json.dumps([broken, "<answer>1</answer>"]))
    args = ["eval", "-m", "scripted:replies.json", "-b", "synthetic:2"]
    for rules in ("lenient", "trl"):
        done = run_cli(*args, "-o", rules, "--calls", rules, cwd=tmp_path)
        assert done.returncode == 0, done.stderr
        assert json.loads((tmp_path / rules / CONFIG_FILE).read_text())["calls"] == rules
        record = json.loads((tmp_path / rules / "results.jsonl").read_text().splitlines()[0])
        trajectory = Trajectory.load(tmp_path / rules / record["trajectory"])
        assert len(trajectory.turns) == (2 if rules == "lenient" else 1)
        assert trajectory.stop_reason == ("answered" if rules == "lenient" else "no_action")
    changed = run_cli(*args, "-o", "trl", "--resume", cwd=tmp_path)
    assert changed.returncode == 2 and "different calls" in " ".join(changed.stderr.split())
