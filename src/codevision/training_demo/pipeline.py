"""The demo's stages: each one a real ``codevision`` command (or a few lines of Python), timed.

The commands are run as child processes with this interpreter, exactly as a user would type
them, so the demo goes through the same argument parsing, files and exit codes; each command
line is printed and its output kept in ``logs/``. A stage whose output is complete is not run
again (a killed demo continues where it stopped); a failing command stops the demo with its log.
"""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
import time
from collections.abc import Callable
from contextlib import redirect_stderr, redirect_stdout
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import yaml

from codevision.training_demo import tasks

TOOL_KINDS = "single,multi,recovery"


@dataclass(frozen=True)
class Plan:
    """Sizes and settings of one demo run; the full and the quick run differ only here.

    The SFT data budget is fixed and stated: ``tool_items`` teacher solutions that use the tool (one
    call, two calls, or an error then a fix) on pictures in every orientation, and ``direct_items``
    answers given without looking closer, on upright and upside-down pictures (``direct_transforms``).
    The direct answers are the shortcut GRPO has to unlearn: they are often wrong, and the dense
    reward pays a turned, cropped view more than a lucky guess.
    """

    seed: int = 0
    #: Pictures per split (each is used upright and turned three ways).
    sft_pictures: int = 96
    rl_pictures: int = 64
    eval_pictures: int = 32
    tool_items: int = 128
    direct_items: int = 192
    direct_transforms: str = "rotate_180"
    sft_epochs: float = 12.0
    sft_learning_rate: float = 1e-3
    grpo_steps: int = 200
    grpo_learning_rate: float = 1e-4
    grpo_temperature: float = 1.0
    num_generations: int = 4
    #: Completions per GRPO step (TRL counts completions): ``batch_size / num_generations`` prompts.
    grpo_batch_size: int = 8
    max_turns: int = 4
    max_tokens: int = 96
    max_completion_length: int = 384


FULL = Plan()
QUICK = Plan(eval_pictures=12)


def replace_seed(plan: Plan, seed: int) -> Plan:
    return replace(plan, seed=seed)


@dataclass
class StageResult:
    name: str
    seconds: float
    skipped: bool


class StageFailed(RuntimeError):
    """A command of the demo exited with an error; the message names it and its log."""


class PlanMismatch(ValueError):
    """The output folder holds a run made with other settings: a usage error, nothing was run."""


@dataclass
class Layout:
    """Where every stage reads and writes, under the demo's output folder."""

    root: Path

    def __post_init__(self) -> None:
        self.root = self.root.resolve()

    @property
    def tasks(self) -> Path:
        return self.root / "tasks"

    @property
    def system_prompt(self) -> Path:
        return self.root / "system_prompt.txt"

    @property
    def synth(self) -> Path:
        return self.root / "synth"

    @property
    def synth_direct(self) -> Path:
        return self.root / "synth-direct"

    @property
    def initial(self) -> Path:
        return self.root / "models" / "initial"

    @property
    def sft(self) -> Path:
        return self.root / "models" / "sft"

    @property
    def rl_rows(self) -> Path:
        return self.root / "rl.parquet"

    @property
    def grpo(self) -> Path:
        return self.root / "models" / "grpo"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def configs(self) -> Path:
        return self.root / "configs"

    def split(self, name: str) -> Path:
        return self.tasks / f"{name}.jsonl"

    def evaluation(self, stage: str) -> Path:
        return self.root / "eval" / stage

    def model(self, stage: str) -> Path:
        return {"initial": self.initial, "sft": self.sft / "final", "grpo": self.grpo / "final"}[stage]


STAGES = ("initial", "sft", "grpo")


def codevision_command(*args: str | Path) -> list[str]:
    return [sys.executable, "-m", "codevision.cli", *(str(a) for a in args)]


def run_command(command: list[str], log: Path, on_line: Callable[[str], None] | None = None) -> None:
    """Run one command, its output into ``log`` (and each line to ``on_line``); StageFailed on an error.

    A demo that is stopped (Ctrl-C, a terminate signal) stops its command too, so no trainer is left
    running on its own; ``--resume`` runs the stage again.
    """
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("w", encoding="utf-8") as sink:
        sink.write("$ " + shlex.join(command) + "\n")
        sink.flush()
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1)
        assert process.stdout is not None
        try:
            for line in process.stdout:
                sink.write(line)
                if on_line is not None:
                    on_line(line.rstrip("\n"))
            code = process.wait()
        except BaseException:
            process.terminate()
            process.wait()
            raise
    if code != 0:
        tail = "".join(log.read_text(encoding="utf-8").splitlines(keepends=True)[-15:])
        raise StageFailed(f"{shlex.join(command[2:])} exited with {code}; its log is {log}:\n{tail}")


class Demo:
    """The stages in order; :meth:`run` runs those not yet done and returns their timings."""

    def __init__(
        self,
        out: Path,
        plan: Plan,
        *,
        on_line: Callable[[str], None] | None = None,
        on_start: Callable[[str], None] | None = None,
        on_command: Callable[[list[str]], None] | None = None,
    ) -> None:
        self.layout = Layout(out)
        self.plan = plan
        self.on_line = on_line
        self.on_start = on_start
        self.on_command = on_command

    # ----------------------------------------------------------------- stages

    def stages(self) -> list[tuple[str, Path, Callable[[], None]]]:
        """(name, the file whose presence means the stage is done, the action)."""
        lay = self.layout
        stages: list[tuple[str, Path, Callable[[], None]]] = [
            ("tasks", lay.split("held-out"), self.write_tasks),
            ("data synth", lay.synth / "yield.json", self.synthesise),
            ("data synth direct", lay.synth_direct / "yield.json", self.synthesise_direct),
            ("initial model", lay.initial / "config.json", self.build_initial),
            ("train sft", lay.sft / "final" / "config.json", self.train_sft),
            ("data export rl", lay.rl_rows, self.export_rl),
            ("train grpo", lay.grpo / "final" / "config.json", self.train_grpo),
        ]
        for stage in STAGES:
            stages.append((f"eval {stage}", lay.evaluation(stage) / "report.json", lambda s=stage: self.evaluate(s)))
        return stages

    def run(self, on_stage: Callable[[str, StageResult], None] | None = None) -> list[StageResult]:
        self.layout.root.mkdir(parents=True, exist_ok=True)
        self._check_plan()
        results = []
        for name, done_marker, action in self.stages():
            started = time.monotonic()
            if done_marker.exists():
                result = StageResult(name, 0.0, skipped=True)
            else:
                if self.on_start is not None:
                    self.on_start(name)
                action()
                result = StageResult(name, time.monotonic() - started, skipped=False)
            results.append(result)
            if on_stage is not None:
                on_stage(name, result)
        return results

    def _check_plan(self) -> None:
        """A folder holds one plan's run: continuing it with another plan would mix their numbers."""
        path = self.layout.root / "plan.json"
        plan = asdict(self.plan)
        if path.exists():
            earlier = json.loads(path.read_text(encoding="utf-8"))
            if earlier != plan:
                changed = sorted(k for k in plan if earlier.get(k) != plan[k])
                raise PlanMismatch(
                    f"{self.layout.root} holds a demo run with other settings ({', '.join(changed)}); "
                    "use another --out, or --overwrite to start again"
                )
        path.write_text(json.dumps(plan, indent=1))

    def _command(self, name: str, *args: str | Path) -> None:
        command = codevision_command(*args)
        if self.on_command is not None:
            self.on_command(command)
        run_command(command, self.layout.logs / f"{name.replace(' ', '-')}.log", self.on_line)

    def write_tasks(self) -> None:
        lay, plan = self.layout, self.plan
        lay.system_prompt.write_text(tasks.SYSTEM_PROMPT + "\n", encoding="utf-8")
        for name, count in (("sft", plan.sft_pictures), ("rl", plan.rl_pictures), ("held-out", plan.eval_pictures)):
            tasks.write_split(lay.tasks, name, count, plan.seed)

    def synthesise(self) -> None:
        self._synth("data synth", self.layout.synth, tasks.TRANSFORMS, TOOL_KINDS, self.plan.tool_items)

    def synthesise_direct(self) -> None:
        plan = self.plan
        self._synth("data synth direct", self.layout.synth_direct, plan.direct_transforms, "direct", plan.direct_items)

    def _synth(self, name: str, out: Path, transforms: str, kinds: str, count: int) -> None:
        lay = self.layout
        self._command(
            name,
            "data", "synth",
            "--teacher", "builtin:quadrants",
            "--source", f"jsonl:{lay.split('sft')}",
            "--transforms", transforms, "--original",
            "--kinds", kinds,
            "--n", str(count),
            "--system-prompt", lay.system_prompt,
            "--calls", "trl",
            "--seed", str(self.plan.seed),
            "--out", out, "--overwrite",
        )  # fmt: skip

    def build_initial(self) -> None:
        from codevision.training_demo.model import build_student

        lay = self.layout
        lay.logs.mkdir(parents=True, exist_ok=True)
        # transformers' progress bars go to the stage's log, like the commands' output.
        with (lay.logs / "initial-model.log").open("w") as log, redirect_stdout(log), redirect_stderr(log):
            build_student(lay.initial, [lay.synth / "accepted", lay.synth_direct / "accepted"], seed=self.plan.seed)

    def _config(self, name: str, settings: dict[str, Any]) -> Path:
        path = self.layout.configs / f"{name}.yaml"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(yaml.safe_dump(settings, sort_keys=False), encoding="utf-8")
        return path

    def train_sft(self) -> None:
        lay, plan = self.layout, self.plan
        config = self._config(
            "sft",
            {
                "model": str(lay.initial),
                "data": [str(lay.synth / "accepted"), str(lay.synth_direct / "accepted")],
                "output_dir": str(lay.sft),
                "trust_remote_code": True,
                "learning_rate": plan.sft_learning_rate,
                "num_epochs": plan.sft_epochs,
                "batch_size": 8,
                "warmup_ratio": 0.05,
                "max_length": 2048,
                "freeze_vision": False,
                "finetune": "full",
                "dtype": "float32",
                "save_steps": 0,
                "logging_steps": 2,
                "seed": plan.seed,
                "chat_template": "shipped",
            },
        )
        self._command("train sft", "train", "sft", "--config", config, "--overwrite")

    def export_rl(self) -> None:
        lay, plan = self.layout, self.plan
        self._command(
            "data export rl",
            "data", "export", "rl",
            "--source", f"jsonl:{lay.split('rl')}",
            "--transforms", tasks.TRANSFORMS,
            "--format", "trl",
            "--system-prompt", lay.system_prompt,
            "--seed", str(plan.seed),
            "--out", lay.rl_rows, "--overwrite",
        )  # fmt: skip

    def train_grpo(self) -> None:
        lay, plan = self.layout, self.plan
        config = self._config(
            "grpo",
            {
                "model": str(lay.sft / "final"),
                "data": [str(lay.rl_rows)],
                "output_dir": str(lay.grpo),
                "trust_remote_code": True,
                "learning_rate": plan.grpo_learning_rate,
                "max_steps": plan.grpo_steps,
                "batch_size": plan.grpo_batch_size,
                "num_generations": plan.num_generations,
                "max_turns": plan.max_turns,
                "max_completion_length": plan.max_completion_length,
                "temperature": plan.grpo_temperature,
                "beta": 0.0,
                "dtype": "float32",
                "freeze_vision": False,
                "sandbox_workers": 2,
                "sandbox_timeout": 10,
                "save_steps": 0,
                "logging_steps": 2,
                "save_rollouts_steps": max(1, plan.grpo_steps // 3),
                "save_rollouts_count": 4,
                "seed": plan.seed,
                "chat_template": "shipped",
            },
        )
        self._command("train grpo", "train", "grpo", "--config", config, "--overwrite")

    def evaluate(self, stage: str) -> None:
        lay, plan = self.layout, self.plan
        self._command(
            f"eval {stage}",
            "eval",
            "--model", lay.model(stage), "--trust-remote-code",
            "--benchmark", f"jsonl:{lay.split('held-out')}",
            "--transforms", tasks.TRANSFORMS,
            "--system-prompt", lay.system_prompt,
            "--calls", "trl",
            "--max-turns", str(plan.max_turns),
            "--max-tokens", str(plan.max_tokens),
            "--reward", "codevision",
            "--seed", str(plan.seed),
            "--concurrency", "4", "--workers", "2",
            "--out", lay.evaluation(stage), "--overwrite",
        )  # fmt: skip
