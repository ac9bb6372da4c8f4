"""``codevision train grpo`` end to end on CPU: the tiny recipe, its checkpoints, and resuming after a kill.

The tiny model is random, so it writes no tool call and earns nothing; what is checked here is the
command around TRL's trainer (rows, sandbox, environment, reward terms logged, checkpoints with the
manifest, ``final/``, ``--resume``). Tool calls inside GRPO are checked with scripted generations in
tests/test_train_environment.py.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("torch", reason="needs torch (see .venv-transformers)")
pytest.importorskip("trl", reason="needs trl (see .venv-transformers)")

from codevision.testing import build_tiny_qwen_vl
from codevision.train.checkpoint import MANIFEST_FILE
from codevision.train.common import last_checkpoint
from codevision.trajectory import Trajectory

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def recipe(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The shipped tiny recipe pointed at a tiny Qwen3-VL and four exported synthetic rows."""
    root = tmp_path_factory.mktemp("grpo")
    model = build_tiny_qwen_vl(root / "tiny", family="qwen3_vl")
    rows = root / "rl.parquet"
    export = [sys.executable, "-m", "codevision.cli", "data", "export", "rl", "--source", "synthetic:4"]
    subprocess.run([*export, "--format", "trl", "-o", str(rows)], check=True, capture_output=True, timeout=300)
    path = root / "grpo.yaml"
    base = (REPO / "recipes" / "grpo" / "tiny_cpu.yaml").read_text()
    # YAML keeps the last of a repeated key: the test's paths win over the recipe's.
    path.write_text(base + f"\nmodel: {model}\ndata: [{rows}]\n")
    return path


def run_cli(recipe: Path, *args: str) -> subprocess.Popen[str]:
    command = [sys.executable, "-m", "codevision.cli", "train", "grpo", "--config", str(recipe), *args]
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_the_tiny_recipe_trains_evaluates_and_logs_every_reward_term(recipe: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    # The held-out rows come from a benchmark source, made into the protocol's prompts as they are read.
    run = run_cli(recipe, f"output_dir={out}", "eval_data=[synthetic:2]", "eval_steps=1", "--json")
    output, errors = run.communicate(timeout=600)
    assert run.returncode == 0, errors[-3000:]
    outcome = json.loads(output)["outcome"]
    assert outcome["steps"] == 2 and Path(outcome["final"]) == out / "final"
    manifest = json.loads((out / "final" / MANIFEST_FILE).read_text())
    assert manifest["config"]["num_generations"] == 2 and manifest["data"]["rows"] == 4
    assert (out / "final" / "chat_template.jinja").exists()
    state = json.loads((out / "checkpoint-2" / "trainer_state.json").read_text())
    logged = {key for entry in state["log_history"] for key in entry}
    terms = {"codevision.accuracy", "codevision.format", "codevision.mandatory", "codevision.necessity"}
    assert {f"reward/{term}" for term in terms} <= logged, sorted(logged)
    assert {"rollout/tool_calls", "rollout/tool_error_rate", "rollout/answer_rate"} <= logged
    # The held-out rows were rolled out and scored with the same terms.
    assert {"eval_reward", "eval_reward/codevision.accuracy", "eval_rollout/tool_calls"} <= logged
    # A sample of each step's rollouts, saved as trajectories the viewer reads.
    saved = sorted((out / "rollouts").glob("step-*/*/trajectory.json"))
    steps = [path.parent.parent.name for path in saved]
    # Steps 0 and 1 from training; the evaluation after the last step saves its own at step 2.
    assert steps == ["step-000000"] * 2 + ["step-000001"] * 2 + ["step-000002"] * 2
    trajectory = Trajectory.load(saved[0])
    assert trajectory.score is not None and "reward" in trajectory.score and trajectory.image(0).size


def test_a_verl_parquet_under_transforms_trains_as_its_trl_rows_would(recipe: Path, tmp_path: Path) -> None:
    verl = tmp_path / "verl.parquet"
    export = [sys.executable, "-m", "codevision.cli", "data", "export", "rl", "--source", "synthetic:2"]
    subprocess.run([*export, "-o", str(verl)], check=True, capture_output=True, timeout=300)
    out = tmp_path / "run"
    overrides = [f"output_dir={out}", f"data=[{verl}]", "data_transforms=rotate_90", "max_steps=1", "--json"]
    run = run_cli(recipe, *overrides)
    _, errors = run.communicate(timeout=600)
    assert run.returncode == 0, errors[-3000:]
    # The step's shape, printed before training (on stderr with --json).
    assert "1 prompt × 2 rollouts = 2 completions per step: 1 process" in errors
    manifest = json.loads((out / "final" / MANIFEST_FILE).read_text())
    assert manifest["data"]["rows"] == 4 and manifest["config"]["data_transforms"] == "rotate_90"


def test_a_run_killed_mid_training_resumes_from_its_checkpoint(recipe: Path, tmp_path: Path) -> None:
    out = tmp_path / "killed"
    killed = run_cli(recipe, f"output_dir={out}", "max_steps=30", "save_steps=2")
    deadline = time.monotonic() + 300
    while last_checkpoint(out) is None:
        assert killed.poll() is None, killed.communicate()[1][-3000:]
        assert time.monotonic() < deadline
        time.sleep(0.05)
    os.kill(killed.pid, signal.SIGKILL)
    killed.wait()
    interrupted_at = last_checkpoint(out)
    assert interrupted_at is not None and not (out / "final").exists()
    resumed = run_cli(recipe, f"output_dir={out}", "max_steps=30", "save_steps=2", "--resume", "--json")
    output, errors = resumed.communicate(timeout=600)
    assert resumed.returncode == 0, errors[-3000:]
    outcome = json.loads(output)["outcome"]
    assert outcome["resumed_from"] == str(interrupted_at) and outcome["steps"] == 30
    state = json.loads((out / "checkpoint-30" / "trainer_state.json").read_text())
    steps = [entry["step"] for entry in state["log_history"] if "loss" in entry]
    assert steps == sorted(set(steps)) and steps[-1] == 30


def test_max_turns_counts_replies_as_evaluation_does() -> None:
    """12 turns is 12 replies in evaluation and verl; TRL runs a tool round before every reply but the first."""
    from codevision.train.config import GRPOSettings, build
    from codevision.train.grpo import grpo_config

    options = {"model": "m", "data": ["d"], "output_dir": "o", "max_turns": 12, "batch_size": 8}
    settings = build(GRPOSettings, options, where="f")
    assert grpo_config(settings).max_tool_calling_iterations == 11
