"""``codevision demo train --quick``: the whole pipeline learns, measurably, and says so in its report.

One run of the shortened demo (data synth, train sft, train grpo, eval of three checkpoints) on
fixed seeds. The margins are wider than the spread measured over three seeds (docs/demo-train.md),
so a regression anywhere on the path (the loss mask, the tool images in the batch, the renderer,
the rewards, the sandbox environment) turns this red rather than moving a number a little.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("trl")

# The shortened demo takes about 5 minutes alone, more beside other tests.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(1500)]


ENV = {**os.environ, "COLUMNS": "200"}
# The seed-to-seed spread of the quick run (docs/demo-train.md) is well inside these margins.
GRPO_REWARD_MARGIN = 0.4
GRPO_ACCURACY_MARGIN = 15
DEMO = [sys.executable, "-m", "codevision.cli", "demo", "train", "--quick"]


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("demo-train") / "run"
    done = subprocess.run(
        [*DEMO, "--out", str(out)],
        capture_output=True, text=True, timeout=1400, check=False, env=ENV,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    (out / "stdout.txt").write_text(done.stdout)
    return out


def checkpoint(out: Path, stage: str) -> dict:
    return json.loads((out / "summary.json").read_text())["checkpoints"][stage]


def test_sft_learns_the_format_and_the_task_well_above_chance(demo: Path) -> None:
    initial, sft = checkpoint(demo, "initial"), checkpoint(demo, "sft")
    chance = json.loads((demo / "summary.json").read_text())["chance"]
    assert sft["answered_in_format"] >= 90
    assert sft["accuracy"] >= initial["accuracy"] + 30
    assert sft["accuracy"] >= chance + 15


def test_grpo_raises_the_dense_reward_and_the_accuracy_beyond_sft(demo: Path) -> None:
    sft, grpo = checkpoint(demo, "sft"), checkpoint(demo, "grpo")
    assert grpo["mean_reward"] >= sft["mean_reward"] + GRPO_REWARD_MARGIN
    assert grpo["accuracy"] >= sft["accuracy"] + GRPO_ACCURACY_MARGIN


def test_the_demo_prints_its_stages_and_writes_its_report(demo: Path) -> None:
    stdout = (demo / "stdout.txt").read_text()
    for stage in ("data synth", "train sft", "train grpo", "eval initial", "eval sft", "eval grpo"):
        assert f"✓ {stage}:" in stdout
    assert "$ codevision data synth --teacher builtin:quadrants" in stdout
    page = (demo / "report.html").read_text()
    assert page.count("data:image/svg+xml") >= 3 and "after GRPO" in page
    for stage in ("initial", "sft", "grpo"):
        assert (demo / "eval" / stage / "trajectories.html").exists()
    assert (demo / "rollouts.html").exists()


def test_a_second_run_into_the_same_folder_needs_resume_or_overwrite(demo: Path) -> None:
    again = subprocess.run(
        [*DEMO, "--out", str(demo)],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert again.returncode == 2 and "--resume" in " ".join(again.stderr.split())
    other_seed = subprocess.run(
        [*DEMO, "--resume", "--seed", "5", "--out", str(demo)],
        capture_output=True, text=True, timeout=120, check=False, env=ENV,
    )  # fmt: skip
    assert other_seed.returncode == 2 and "other settings (seed)" in " ".join(other_seed.stdout.split())
    assert json.loads((demo / "plan.json").read_text())["seed"] == 0  # the run in it is left as it was
    resumed = subprocess.run(
        [*DEMO, "--resume", "--out", str(demo)],
        capture_output=True, text=True, timeout=300, check=False, env=ENV,
    )  # fmt: skip
    assert resumed.returncode == 0, resumed.stderr
    assert resumed.stdout.count("done earlier") == 10
    stages = json.loads((demo / "summary.json").read_text())["stages"]
    assert stages["train sft"] > 0 and stages["train grpo"] > 0  # the first run's times are kept
