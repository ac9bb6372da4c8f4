"""Training-data exports: verl/TRL RL sets, sharegpt/ms-swift/TRL SFT sets, read back by their consumers' loaders."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from codevision.benchmarks import load_benchmark
from codevision.data.rl import rl_items, write_trl_grpo, write_verl_parquet
from codevision.data.sft import export_sft, import_sharegpt
from codevision.protocols import get_protocol
from codevision.trajectory import ToolOutcome, Trajectory, Turn
from codevision.transforms import parse_transforms

datasets = pytest.importorskip("datasets", reason="the exports are read back with Hugging Face datasets")


def _trajectory(directory: Path, task_id: str) -> Path:
    protocol = get_protocol("codevision")
    trajectory = Trajectory(task_id=task_id, protocol="codevision", question="What does it say?")
    first = trajectory.add_image(Image.new("RGB", (40, 30), "white"), "input")
    trajectory.messages = protocol.initial_messages("What does it say?", [first])
    call = (
        '<tool_call>{"name": "code_image_tool", "arguments": {"code": "display(image)", "image_index": 0}}</tool_call>'
    )
    crop = trajectory.add_image(Image.new("RGB", (20, 10), "red"), "tool", 0)
    outcome = ToolOutcome(action=0, status="ok", stdout="done", image_indices=[crop])
    trajectory.turns = [
        Turn(index=0, text=f"<think>look</think>{call}", observation=protocol.render_observation([outcome], [])),
        Turn(index=1, text="<think>ok</think><answer>STOP</answer>", answer="STOP"),
    ]
    trajectory.final_answer = "STOP"
    return trajectory.save(directory / task_id).parent


@pytest.fixture
def runs(tmp_path: Path) -> Path:
    for name in ("a", "b"):
        _trajectory(tmp_path / "runs", name)
    return tmp_path / "runs"


def test_verl_round_trip(tmp_path: Path) -> None:
    benchmark = load_benchmark("synthetic:2")
    items = list(rl_items(benchmark, parse_transforms("rotate_90"), base_dir=benchmark.base_dir))
    path = tmp_path / "rl.parquet"
    assert write_verl_parquet(items, path, get_protocol()) == 4
    row = datasets.load_dataset("parquet", data_files=str(path))["train"][1]
    assert row["prompt"][0]["role"] == "system"
    assert sum(m["content"].count("<image>") for m in row["prompt"]) == len(row["images"]) == 1
    assert row["extra_info"]["transform"] == ["rotate_90"] and row["extra_info"]["expected_ops"] == ["rotate_270"]
    loaded = list(load_benchmark(f"verl:{path}", cache_dir=tmp_path / "cache"))
    for item, task in zip(items, loaded, strict=True):
        original = item.task
        assert task.id == (original.id if item.transform == "none" else item.key)
        assert (task.question, task.answers, task.source) == (original.question, original.answers, original.source)
        assert task.bboxes == original.bboxes and task.expected_ops == original.expected_ops
        assert task.load_images()[0].tobytes() == original.load_images()[0].tobytes()


def test_rl_prompts_carry_a_given_system_prompt(tmp_path: Path) -> None:
    benchmark = load_benchmark("synthetic:1")
    path = tmp_path / "rl.parquet"
    write_verl_parquet(rl_items(benchmark, []), path, get_protocol(system_prompt="Released prompt."))
    row = datasets.load_dataset("parquet", data_files=str(path))["train"][0]
    assert row["prompt"][0] == {"role": "system", "content": "Released prompt."}
    with pytest.raises(ValueError, match="empty"):
        get_protocol(system_prompt="  ")


def test_trl_grpo_export(tmp_path: Path) -> None:
    benchmark = load_benchmark("synthetic:2")
    path = tmp_path / "grpo.parquet"
    write_trl_grpo(rl_items(benchmark, parse_transforms("flip_h")), path, get_protocol())
    from codevision.data.hf import load_trl_dataset

    dataset = load_trl_dataset(path)
    assert len(dataset) == 4
    row = dataset[3]
    images = [p for m in row["prompt"] for p in m["content"] if p["type"] == "image"]
    assert len(images) == len(row["images"]) == 1 and "text" not in images[0]
    assert isinstance(row["images"][0], Image.Image) and row["transform"] == "flip_h"
    assert row["expected_ops"] == ["flip_h"] and row["answers"]


def test_rl_rows_carry_given_tool_schemas_as_json_and_none_otherwise(tmp_path: Path) -> None:
    benchmark = load_benchmark("synthetic:1")
    tools = get_protocol("crop").tool_schemas()
    write_verl_parquet(rl_items(benchmark, []), tmp_path / "verl.parquet", get_protocol("crop"), tools=tools)
    write_trl_grpo(rl_items(benchmark, []), tmp_path / "grpo.parquet", get_protocol("crop"), tools=tools)
    write_trl_grpo(rl_items(benchmark, []), tmp_path / "plain.parquet", get_protocol("crop"))
    verl = datasets.load_dataset("parquet", data_files=str(tmp_path / "verl.parquet"))["train"][0]
    from codevision.data.hf import load_trl_dataset

    grpo = load_trl_dataset(tmp_path / "grpo.parquet")[0]
    assert json.loads(verl["extra_info"]["tools"]) == json.loads(grpo["tools"]) == tools
    assert grpo["tools"] == json.dumps(tools, ensure_ascii=False), "key order is kept: it is what a template renders"
    assert "tools" not in load_trl_dataset(tmp_path / "plain.parquet").column_names


def test_sharegpt_export_and_import(runs: Path, tmp_path: Path) -> None:
    result = export_sft([runs], tmp_path / "lf", "sharegpt")
    assert result.rows == 2 and not result.skipped
    info = json.loads((tmp_path / "lf" / "dataset_info.json").read_text())["codevision_sft"]
    assert info["formatting"] == "sharegpt" and info["tags"]["observation_tag"] == "observation"
    rows = json.loads(result.path.read_text())
    for row in rows:
        roles = [turn["from"] for turn in row["conversations"]]
        assert roles == ["human", "gpt", "observation", "gpt"]
        assert sum(t["value"].count("<image>") for t in row["conversations"]) == len(row["images"]) == 2
        assert all((tmp_path / "lf" / image).exists() for image in row["images"])
    loaded = datasets.load_dataset("json", data_files=str(result.path))["train"]
    assert loaded[0]["conversations"][2]["from"] == "observation"
    back = list(import_sharegpt(result.path))
    original = Trajectory.load(runs / "a")
    assert [m.model_dump() for m in back[0].conversation()] == [m.model_dump() for m in original.conversation()]
    assert back[0].final_answer == "STOP" and back[0].turns[0].actions[0].kind == "code"
    assert back[0].image(1).tobytes() == original.image(1).tobytes()


def test_swift_export(runs: Path, tmp_path: Path) -> None:
    result = export_sft([runs], tmp_path / "swift", "swift")
    loaded = datasets.load_dataset("json", data_files=str(result.path))["train"]
    for row in loaded:
        assert [m["role"] for m in row["messages"]] == ["system", "user", "assistant", "tool_response", "assistant"]
        assert sum(m["content"].count("<image>") for m in row["messages"]) == len(row["images"]) == 2


def test_trl_sft_export(runs: Path, tmp_path: Path) -> None:
    from codevision.data.hf import load_trl_dataset

    result = export_sft([runs], tmp_path / "trl", "trl")
    dataset = load_trl_dataset(result.path)
    for row in dataset:
        parts = {m["role"]: [p for p in m["content"] if p["type"] == "image"] for m in row["messages"]}
        assert len(parts["user"]) == len(row["images"]) == 1 and "image" not in parts["user"][0]
        assert isinstance(parts["tool"][0]["image"], Image.Image)
        assert all("image" not in p for m in row["messages"] for p in m["content"] if p["type"] == "text")


def test_wrong_answers_are_left_out_unless_asked_for(runs: Path, tmp_path: Path) -> None:
    for name, correct in (("a", True), ("b", False)):
        trajectory = Trajectory.load(runs / name)
        trajectory.score = {"correct": correct}
        trajectory.save(runs / name)
    _trajectory(runs, "c")  # never scored
    result = export_sft([runs], tmp_path / "lf", "sharegpt")
    assert result.rows == 2 and result.unscored == 1
    assert len(result.left_out) == 1 and "b/trajectory.json: wrong answer 'STOP'" in result.left_out[0]
    everything = export_sft([runs], tmp_path / "all", "sharegpt", include_incorrect=True)
    assert everything.rows == 3 and everything.left_out == []


def test_trajectory_without_reply_is_skipped(tmp_path: Path) -> None:
    protocol = get_protocol()
    empty = Trajectory(task_id="empty", protocol="codevision")
    empty.messages = protocol.initial_messages("q", [])
    empty.save(tmp_path / "runs" / "empty")
    result = export_sft([tmp_path / "runs"], tmp_path / "out", "swift")
    assert result.rows == 0 and "no assistant reply" in result.skipped[0]


def test_cli_export_and_stats(runs: Path, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from codevision.cli.app import app

    runner = CliRunner()
    result = runner.invoke(
        app, ["data", "export", "rl", "--source", "synthetic:2", "-o", str(tmp_path / "rl" / "a.parquet")]
    )
    assert result.exit_code == 0, result.output
    result = runner.invoke(app, ["data", "export", "sft", str(runs), "-o", str(tmp_path / "sft")])
    assert result.exit_code == 0, result.output
    stats = json.loads(runner.invoke(app, ["data", "stats", str(tmp_path / "sft")]).output)
    assert stats["rows"] == {"sharegpt": 2} and stats["turns"]["max"] == 2
    assert json.loads(runner.invoke(app, ["data", "stats", str(runs)]).output)["rows"] == {"trajectory": 2}
    bad = runner.invoke(app, ["data", "export", "rl", "--source", "nope:x", "-o", str(tmp_path / "x.parquet")])
    assert bad.exit_code == 2 and "unknown benchmark" in bad.output
