"""The training demo's task family and teacher, through the real commands (``data synth``, ``eval``)."""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest

from codevision.benchmarks import load_benchmark
from codevision.eval.items import build_items
from codevision.rewards.spec import RewardSpec
from codevision.task import Task
from codevision.training_demo import tasks
from codevision.training_demo.teacher import colour_at_target, solution, upright_angle
from codevision.trajectory import Trajectory
from codevision.transforms import parse_transforms
from tests.test_cli import run_cli

ORIENTATIONS = ("none", "rotate_90", "rotate_180", "rotate_270")


def items(folder: Path, count: int) -> list[Task]:
    path = tasks.write_split(folder, "probe", count, seed=3)
    benchmark = load_benchmark(f"jsonl:{path}")
    built = build_items(list(benchmark), parse_transforms(tasks.TRANSFORMS), base_dir=benchmark.base_dir)
    return [item.task for item in built]


def test_the_teacher_reads_every_orientation_from_the_pixels(tmp_path: Path) -> None:
    probes = items(tmp_path, 12)
    assert len(probes) == 48
    for task in probes:
        angle = upright_angle(task.load_images()[0])
        turned = task.load_images()[0].rotate(angle, expand=True)
        assert np.asarray(turned)[:56, :56].min(axis=2).mean() > 100  # the white square is at the top left
        assert colour_at_target(task.load_images()[0], angle) == task.answers[0]


def test_answering_from_the_picture_as_shown_is_wrong_unless_it_is_upright(tmp_path: Path) -> None:
    """The task needs the turn: the top-right quadrant of a turned picture holds another colour."""
    for task in items(tmp_path, 8):
        image = task.load_images()[0]
        as_shown = np.asarray(image.crop(tasks.TARGET_BOX), dtype=float).mean(axis=(0, 1))
        target = np.asarray(image.rotate(upright_angle(image), expand=True).crop(tasks.TARGET_BOX), dtype=float)
        same_quadrant = bool(np.abs(as_shown - target.mean(axis=(0, 1))).max() < 40)
        assert same_quadrant is (not task.transforms), task.id


def test_splits_never_share_a_picture_and_rerun_the_same(tmp_path: Path) -> None:
    first = tasks.write_split(tmp_path / "a", "held-out", 6, seed=0).read_text()
    again = tasks.write_split(tmp_path / "b", "held-out", 6, seed=0).read_text()
    assert first == again
    for name in ("images/held-out-0000.png", "images/held-out-0005.png"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    train = tasks.write_split(tmp_path / "a", "sft", 40, seed=0)
    pictures = [np.asarray(t.load_images(train.parent)[0]) for t in load_benchmark(f"jsonl:{train}")]
    held_out = load_benchmark(f"jsonl:{tmp_path / 'a' / 'held-out.jsonl'}")
    held = [np.asarray(t.load_images(tmp_path / "a")[0]) for t in held_out]
    assert not any(np.array_equal(h, p) for h in held for p in pictures)


def test_pictures_use_three_distinct_colours_and_the_chance_level_is_one_in_three() -> None:
    rng = random.Random(0)
    for _ in range(20):
        image, answer = tasks.draw(rng)
        assert answer in tasks.COLOURS and image.size == (tasks.SIDE, tasks.SIDE)
    assert pytest.approx(1 / 3) == tasks.CHANCE


@pytest.mark.parametrize("angle", [0, 90, 180, 270])
def test_each_kind_of_solution_has_its_shape(angle: int) -> None:
    assert solution("direct", angle, "red") == ["<answer>red</answer>"]
    assert len(solution("single", angle, "red")) == 2
    multi = solution("multi", angle, "red")
    assert len(multi) == 3 and '"image_index": 1' in multi[1]
    recovery = solution("recovery", angle, "red")
    assert ".crop(56, 0, 112, 56)" in recovery[0] and ".crop((56, 0, 112, 56))" in recovery[1]


def test_data_synth_with_the_builtin_teacher_keeps_every_kind(tmp_path: Path) -> None:
    split = tasks.write_split(tmp_path / "tasks", "sft", 6, seed=0)
    (tmp_path / "prompt.txt").write_text(tasks.SYSTEM_PROMPT)
    done = run_cli(
        "data", "synth", "--teacher", "builtin:quadrants", "--source", f"jsonl:{split}",
        "--transforms", tasks.TRANSFORMS, "--original", "--kinds", "single,multi,recovery,direct",
        "--n", "16", "--system-prompt", "prompt.txt", "--calls", "trl", "--out", "synth", cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    report = json.loads((tmp_path / "synth" / "yield.json").read_text())
    assert {kind: stats["accepted"] for kind, stats in report.items()} == {
        "direct": 4, "multi": 4, "recovery": 4, "single": 4,
    }  # fmt: skip
    kept = [Trajectory.load(p.parent) for p in (tmp_path / "synth" / "accepted").rglob("trajectory.json")]
    transforms = {t.metadata["transform"] for t in kept}
    assert "none" in transforms and len(transforms) > 2  # --original adds the upright pictures
    recovery = [t for t in kept if t.metadata["kind"] == "recovery"]
    assert all(t.turns[0].outcomes[0].status != "ok" and t.turns[1].outcomes[0].status == "ok" for t in recovery)
    # The guidance reached the teacher only: the saved conversation starts with the plain system prompt.
    assert all(t.messages[0].text == tasks.SYSTEM_PROMPT for t in kept)


def test_eval_records_the_training_reward_of_each_episode(tmp_path: Path) -> None:
    split = tasks.write_split(tmp_path / "tasks", "held-out", 3, seed=0)
    (tmp_path / "prompt.txt").write_text(tasks.SYSTEM_PROMPT)
    args = [
        "eval", "-m", "builtin:quadrants", "-b", f"jsonl:{split}", "--transforms", tasks.TRANSFORMS,
        "--system-prompt", "prompt.txt", "--calls", "trl", "--max-tokens", "64", "--reward", "codevision",
    ]  # fmt: skip
    done = run_cli(*args, "-o", "run", cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    run = tmp_path / "run"
    records = [json.loads(line) for line in (run / "results.jsonl").read_text().splitlines()]
    assert len(records) == 12 and all(r["correct"] for r in records)
    config = json.loads((run / "run.json").read_text())
    assert config["max_tokens"] == 64 and config["reward"] == "codevision"
    benchmark = load_benchmark(f"jsonl:{split}")
    by_key = {item.key: item for item in build_items(list(benchmark), parse_transforms(tasks.TRANSFORMS),
                                                      base_dir=benchmark.base_dir)}  # fmt: skip
    for record in records:
        trajectory = Trajectory.load(run / record["trajectory"])
        expected = RewardSpec().compute(by_key[record["key"]].task, trajectory)
        assert record["reward"] == pytest.approx(expected.total, abs=1e-4)
        assert record["reward_terms"] == pytest.approx(expected.breakdown, abs=1e-4)
    report = json.loads((run / "report.json").read_text())["rewards"]
    assert report["mean"] == pytest.approx(sum(r["reward"] for r in records) / 12, abs=1e-3)
    assert report["answered_in_format"] == 100.0 and report["items"] == 12
    assert "Training reward" in (run / "report.md").read_text()
    changed = run_cli(*args[:-1], "tapo", "-o", "run", "--resume", cwd=tmp_path)
    assert changed.returncode == 2 and "reward" in changed.stderr


def test_a_bad_reward_spec_is_a_usage_error(tmp_path: Path) -> None:
    done = run_cli("eval", "-m", "builtin:quadrants", "-b", "synthetic:1", "--reward", "nosuch.yaml", "-o", "r",
                   cwd=tmp_path)  # fmt: skip
    assert done.returncode == 2 and "neither codevision, tapo nor a file" in " ".join(done.stderr.split())
    unknown = run_cli("eval", "-m", "builtin:nosuch", "-b", "synthetic:1", "-o", "r", cwd=tmp_path)
    assert unknown.returncode == 2 and "built-in policies are: quadrants" in " ".join(unknown.stderr.split())


def test_a_folder_holding_a_run_with_other_settings_is_refused_before_any_stage(tmp_path: Path) -> None:
    from dataclasses import replace

    from codevision.training_demo.pipeline import QUICK, Demo, PlanMismatch

    Demo(tmp_path, QUICK)._check_plan()
    started: list[str] = []
    with pytest.raises(PlanMismatch, match=r"other settings \(rl_pictures, seed\)"):
        Demo(tmp_path, replace(QUICK, seed=4, rl_pictures=8), on_start=started.append).run()
    assert started == [] and json.loads((tmp_path / "plan.json").read_text())["seed"] == QUICK.seed
