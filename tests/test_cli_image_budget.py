"""``--processor`` / ``--max-pixels``: a served model gets images sized as its own processor sizes them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from codevision.benchmarks import load_benchmark
from codevision.chat.budget import ImageBudget
from codevision.eval.store import CONFIG_FILE
from codevision.policies.fake_server import FakeOpenAIServer
from codevision.trajectory import Trajectory
from tests.test_cli import run_cli

# The image parts of the released checkpoints' preprocessor_config.json.
QWEN3_VL = {"patch_size": 16, "merge_size": 2, "size": {"shortest_edge": 65536, "longest_edge": 16777216}}
QWEN2_5_VL = {"patch_size": 14, "merge_size": 2, "min_pixels": 3136, "max_pixels": 12845056}


def write_config(folder: Path, config: object) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "preprocessor_config.json").write_text(json.dumps(config))
    return folder


def test_budgets_read_from_the_released_config_files(tmp_path: Path) -> None:
    qwen3 = write_config(tmp_path / "q3", QWEN3_VL)
    assert ImageBudget.from_config(qwen3) == ImageBudget(32, 65536, 16777216)
    assert ImageBudget.from_config(qwen3 / "preprocessor_config.json") == ImageBudget(32, 65536, 16777216)
    assert ImageBudget.from_config(write_config(tmp_path / "q25", QWEN2_5_VL)) == ImageBudget(28, 3136, 12845056)
    with pytest.raises(ValueError, match="does not exist: give the served model's folder"):
        ImageBudget.from_config(tmp_path / "nothing")
    with pytest.raises(ValueError, match="has no Qwen-VL pixel budget"):
        ImageBudget.from_config(write_config(tmp_path / "clip", {"crop_size": 224, "size": {"shortest_edge": 224}}))
    with pytest.raises(ValueError, match="cannot read"):
        (tmp_path / "broken").mkdir()
        (tmp_path / "broken" / "preprocessor_config.json").write_text("{")
        ImageBudget.from_config(tmp_path / "broken")


def test_a_served_qwen3_vl_gets_its_processors_sizes_and_the_run_records_them(tmp_path: Path) -> None:
    write_config(tmp_path / "qwen3", QWEN3_VL)
    budget = ImageBudget(32, 65536, 16777216)
    common = ["-b", "synthetic:2", "--protocol", "direct"]
    with FakeOpenAIServer(lambda body: "<answer>0</answer>", model="Qwen3-VL-8B-Instruct") as server:
        unsized = run_cli("eval", "-m", server.url, *common, "-o", "unsized", cwd=tmp_path)
        assert unsized.returncode == 0, unsized.stderr
        assert "looks like a Qwen3-VL" in " ".join(unsized.stdout.split())
        server.requests.clear()
        done = run_cli("eval", "-m", server.url, "--processor", "qwen3", *common, "-o", "run", cwd=tmp_path)
        assert done.returncode == 0, done.stderr
        assert "looks like a Qwen3-VL" not in done.stdout
        shown = [image.size for request in server.requests for image in request.images()]
        changed = run_cli("eval", "-m", server.url, *common, "-o", "run", "--resume", cwd=tmp_path)
    assert changed.returncode == 2 and "different image_budget" in " ".join(changed.stderr.split())
    benchmark = load_benchmark("synthetic:2")
    originals = [task.load_images(benchmark.base_dir)[0].size for task in benchmark]
    assert sorted(shown) == sorted(budget.target(*size) for size in originals)
    assert all(w % 32 == 0 and h % 32 == 0 and w * h >= 65536 for w, h in shown)
    config = json.loads((tmp_path / "run" / CONFIG_FILE).read_text())
    assert config["image_budget"] == budget.to_dict()
    record = json.loads((tmp_path / "run" / "results.jsonl").read_text().splitlines()[0])
    assert Trajectory.load(tmp_path / "run" / record["trajectory"]).metadata["image_budget"] == budget.to_dict()


def test_max_pixels_caps_the_default_budget_and_a_model_folder_refuses_processor(tmp_path: Path) -> None:
    (tmp_path / "replies.json").write_text(json.dumps(["<answer>0</answer>"]))
    args = ["eval", "-m", "scripted:replies.json", "-b", "synthetic:1", "--protocol", "direct"]
    done = run_cli(*args, "--max-pixels", "50000", "-o", "small", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    record = json.loads((tmp_path / "small" / "results.jsonl").read_text().splitlines()[0])
    trajectory = Trajectory.load(tmp_path / "small" / record["trajectory"])
    assert trajectory.metadata["image_budget"] == {"factor": 28, "min_pixels": 3136, "max_pixels": 50000}
    width, height = trajectory.images[0].model_size or trajectory.images[0].size
    assert width * height <= 50000
    low = run_cli(*args, "--max-pixels", "1000", "-o", "low", cwd=tmp_path)
    assert low.returncode == 2 and "below the processor's minimum of 3,136" in " ".join(low.stderr.split())
    folder = write_config(tmp_path / "model", QWEN3_VL)
    both = run_cli("run", "x.png", "q", "-m", str(folder), "--processor", str(folder), cwd=tmp_path)
    assert both.returncode == 2 and "whose own processor sizes images" in " ".join(both.stderr.split())


def test_data_synth_sizes_the_teachers_images_with_the_students_processor(tmp_path: Path) -> None:
    write_config(tmp_path / "student", QWEN3_VL)
    (tmp_path / "replies.json").write_text(json.dumps(["<answer>0</answer>"]))
    done = run_cli(
        "data", "synth", "--teacher", "scripted:replies.json", "--source", "synthetic:2", "--kinds", "direct",
        "--n", "2", "--processor", "student", "-o", "synth", cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode in (0, 1), done.stdout + done.stderr
    paths = list((tmp_path / "synth").rglob("trajectory.json"))
    assert paths
    for path in paths:
        assert Trajectory.load(path.parent).metadata["image_budget"] == ImageBudget(32, 65536, 16777216).to_dict()


def test_sft_exports_write_images_at_the_students_size(tmp_path: Path) -> None:
    from PIL import Image

    assert run_cli("demo", "--out", "runs", cwd=tmp_path).returncode == 0
    done = run_cli("data", "export", "sft", "runs", "-o", "sft", "--max-pixels", "50000", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "images at the model's size: sides a multiple of 28, 3,136 to 50,000 pixels" in done.stdout
    sizes = [Image.open(path).size for path in (tmp_path / "sft" / "images").rglob("*.png")]
    assert sizes and all(w % 28 == 0 and h % 28 == 0 and 3136 <= w * h <= 50000 for w, h in sizes)
    plain = run_cli("data", "export", "sft", "runs", "-o", "plain", cwd=tmp_path)
    assert plain.returncode == 0 and "model's size" not in plain.stdout
    assert (420, 640) in [Image.open(path).size for path in (tmp_path / "plain" / "images").rglob("*.png")]
