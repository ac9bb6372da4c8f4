"""Every command, given bad input, says which input and what is wrong: exit code 2, never a traceback.

The command list comes from the CLI itself, so a command added later must bring its own bad inputs
(the coverage test fails until it does) and is probed with nonexistent paths automatically.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import typer.main
from typer.testing import CliRunner

from codevision.cli.app import app
from tests.conftest import gradient_image

# Relative to the test's folder, so an output created by mistake stays inside it.
MISSING = "missing/bad-input"


def commands() -> Iterator[tuple[str, Any]]:
    """Every runnable command as ``("eval compare", command)``, walked from the CLI's own groups."""

    def walk(command: Any, path: tuple[str, ...]) -> Iterator[tuple[str, Any]]:
        if hasattr(command, "commands"):
            for name, sub in command.commands.items():
                yield from walk(sub, (*path, name))
            if getattr(command, "invoke_without_command", False):
                yield " ".join(path), command
        else:
            yield " ".join(path), command

    return walk(typer.main.get_command(app), ())


def dead_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{sock.getsockname()[1]}/v1"


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A folder with one good image, a scripted model, broken JSONL files and a plain file."""
    gradient_image(40, 30).save(tmp_path / "photo.png")
    (tmp_path / "replies.json").write_text(json.dumps(["<answer>1</answer>"]))
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "rows.jsonl").write_text('{"messages": []}\n{"messages": [\n')
    (tmp_path / "latin1").mkdir()
    (tmp_path / "latin1" / "rows.jsonl").write_bytes(b'{"messages": []}\n{"q": "caf\xe9"}\n')
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty-tasks").mkdir()
    (tmp_path / "empty-tasks" / "manifest.jsonl").write_text("")
    (tmp_path / "a-file").write_text("not a folder")
    (tmp_path / "empty-prompt.txt").write_text(" \n")
    (tmp_path / "nameless-tools.json").write_text('[{"type": "function", "function": {"description": "d"}}]')
    (tmp_path / "run-a").mkdir()
    train = "model: tiny\ndata: [empty]\noutput_dir: {out}\n"
    (tmp_path / "sft.yaml").write_text(train.format(out="sft-out"))
    (tmp_path / "sft-typo.yaml").write_text(train.format(out="sft-out") + "learnig_rate: 1.0e-5\n")
    (tmp_path / "sft-used.yaml").write_text(train.format(out="broken"))
    (tmp_path / "sft-list.yaml").write_text("- model\n")
    (tmp_path / "run-a" / "results.jsonl").write_text("")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("COLUMNS", "200")
    monkeypatch.setenv("NO_COLOR", "1")
    return tmp_path


SCRIPTED = ["-m", "scripted:replies.json"]
RUN = ["run", "photo.png", "q", *SCRIPTED]
EVAL = ["eval", *SCRIPTED, "-b", "synthetic:2", "--protocol", "direct"]

# Per command: (arguments, text the error must contain: the input it names). Arguments that need a
# value made at run time hold a callable.
BAD_INPUTS: dict[str, list[tuple[list[Any], str]]] = {
    "run": [
        ([*RUN, "--max-turns", "0"], "--max-turns"),
        ([*RUN, "--timeout", "0"], "--timeout"),
        ([*RUN, "-o", "a-file/sub"], "a-file/sub"),
        ([*RUN, "-o", "a-file"], "a-file"),
        (["run", "a-file", "q", *SCRIPTED], "a-file"),
        (["run", "photo.png", "q", "-m", "scripted:nothing.json"], "nothing.json"),
        ([*RUN, "--protocol", "nosuch"], "nosuch"),
        ([*RUN, "--system-prompt", "nothing.txt"], "nothing.txt"),
        ([*RUN, "--system-prompt", "latin1/rows.jsonl"], "not UTF-8"),
        ([*RUN, "--system-prompt", "empty-prompt.txt"], "empty"),
        ([*RUN, "--tools", "nothing.json"], "nothing.json"),
        ([*RUN, "--tools", "replies.json"], "replies.json: tools[0] must be an object"),
        ([*RUN, "--tools", "nameless-tools.json"], "tools[0].function.name is missing"),
        ([*RUN, "--tools", "protocol", "--protocol", "direct"], "the direct protocol has no function tool"),
        ([*RUN, "--tool-choice", "none"], "add --tools"),
        ([*RUN, "--tools", "protocol", "--tool-choice", "required"], "--tool-choice"),
        ([*RUN, "--tools", "protocol", "--tool-choice", "none"], "--tool-choice is sent to a server"),
    ],
    "view": [(["view", "empty"], "empty"), (["view", "photo.png", "-o", "a-file/x.html"], "a-file")],
    "demo": [(["demo", "--out", "a-file"], "a-file"), (["demo", "--out", "broken"], "--overwrite")],
    "demo train": [
        (["demo", "train", "--resume", "--overwrite"], "choose one"),
        (["demo", "train", "--out", "a-file"], "a-file"),
        (["demo", "train", "--out", "broken"], "--overwrite"),
        (["demo", "train", "--resume", "--out", "broken"], "no demo run"),
        (["demo", "train", "--seed", "x"], "--seed"),
    ],
    "sandbox exec": [
        (["sandbox", "exec", "photo.png", "-e", "print(1)", "--timeout", "0"], "--timeout"),
        (["sandbox", "exec", "photo.png", "-e", "print(1)", "--memory-mb", "0"], "--memory-mb"),
        (["sandbox", "exec", "a-file", "-e", "print(1)"], "a-file"),
        (["sandbox", "exec", "photo.png", "-c", "nothing.py"], "nothing.py"),
        (["sandbox", "exec", "photo.png", "-e", "print(1)", "--json", "--timeout", "-1"], "--timeout"),
        (["sandbox", "exec", "a-file", "-e", "print(1)", "--json"], "a-file"),
    ],
    "sandbox status": [(["sandbox", "status", "--bogus"], "--bogus")],
    "sandbox serve": [
        (["sandbox", "serve", "--workers", "0"], "--workers"),
        (["sandbox", "serve", "--port", "99999"], "--port"),
        (["sandbox", "serve", "--max-sessions", "0"], "--max-sessions"),
        (["sandbox", "serve", "--timeout", "0"], "--timeout"),
    ],
    "eval": [
        ([*EVAL, "-o", "a-file"], "a-file"),
        ([*EVAL, "-o", "a-file/sub"], "a-file/sub"),
        ([*EVAL, "-o", "broken"], "--overwrite"),
        ([*EVAL, "-o", "r", "--max-turns", "0"], "--max-turns"),
        (["eval", *SCRIPTED, "-b", "nosuch:x", "-o", "r"], "nosuch"),
        (["eval", *SCRIPTED, "-b", "tasks:empty-tasks", "-o", "r"], "empty-tasks"),
        (["eval", *SCRIPTED, "-b", "synthetic:2", "-o", "r", "--transforms", "rotate_91x"], "rotate_91x"),
        ([*EVAL, "-o", "r", "--judge", dead_url], "--judge-model"),
        ([*EVAL, "-o", "r", "--judge-model", "gpt-judge"], "--judge URL"),
        ([*EVAL, "-o", "r", "--resume", "--overwrite"], "--overwrite"),
        (["eval", "-b", "synthetic:2", "-o", "r"], "--model"),
        ([*EVAL, "-o", "r", "--tools", "nameless-tools.json"], "nameless-tools.json"),
        ([*EVAL, "-o", "r", "--tools", "protocol"], "the direct protocol has no function tool"),
    ],
    "eval report": [(["eval", "report", "empty"], "empty")],
    "eval compare": [
        (["eval", "compare", "empty", "run-a"], "empty"),
        (["eval", "compare", "empty", "run-a", "--json"], "empty"),
    ],
    "bench build transformed": [
        (
            ["bench", "build", "transformed", "--source", "synthetic:2", "--transforms", "rotate_91x", "-o", "o"],
            "rotate_91x",
        ),
        (
            ["bench", "build", "transformed", "--source", "tasks:empty-tasks", "--transforms", "rotate_90", "-o", "o"],
            "empty-tasks",
        ),
        (
            ["bench", "build", "transformed", "--source", "synthetic:2", "--transforms", "rotate_90", "-o", "broken"],
            "--overwrite",
        ),
    ],
    "data stats": [
        (["data", "stats", "broken"], "rows.jsonl, line 2"),
        (["data", "stats", "latin1"], "rows.jsonl, line 2"),
        (["data", "stats", "photo.png"], "photo.png"),
    ],
    "data synth": [
        (["data", "synth", "--teacher", "scripted:replies.json", "--source", "nosuch:x", "-o", "s"], "nosuch"),
        (
            ["data", "synth", "--teacher", "scripted:replies.json", "--source", "synthetic:2", "-o", "broken"],
            "--overwrite",
        ),
        (
            [
                "data",
                "synth",
                "--teacher",
                "scripted:replies.json",
                "--source",
                "synthetic:2",
                "-o",
                "s",
                "--kinds",
                "nosuch",
            ],
            "nosuch",
        ),
        (
            ["data", "synth", "--teacher", "scripted:replies.json", "--source", "tasks:empty-tasks", "-o", "s"],
            "empty-tasks",
        ),
        (
            [
                "data",
                "synth",
                "--teacher",
                "scripted:replies.json",
                "--source",
                "synthetic:2",
                "-o",
                "s",
                "--tools",
                "nameless-tools.json",
            ],
            "nameless-tools.json",
        ),
    ],
    "data export rl": [
        (["data", "export", "rl", "--source", "synthetic:2", "--no-original", "-o", "x.parquet"], "--no-original"),
        (["data", "export", "rl", "--source", "synthetic:2", "--format", "nosuch", "-o", "x.parquet"], "nosuch"),
        (["data", "export", "rl", "--source", "synthetic:2", "-o", "a-file"], "--overwrite"),
        (["data", "export", "rl", "--source", "tasks:empty-tasks", "-o", "x.parquet"], "empty-tasks"),
        (["data", "export", "rl", "--source", "synthetic:2", "-o", "x.parquet", "--tools", "x.json"], "x.json"),
        (
            ["data", "export", "rl", "--source", "synthetic:2", "-o", "x.parquet", "--tools", "nameless-tools.json"],
            "tools[0].function.name is missing",
        ),
    ],
    "data filter": [
        (
            [
                "data",
                "filter",
                *SCRIPTED,
                "--source",
                "synthetic:2",
                "-o",
                "f.parquet",
                "--low",
                "0.8",
                "--high",
                "0.2",
            ],
            "--low",
        ),
        (["data", "filter", *SCRIPTED, "--source", "synthetic:2", "-o", "f.parquet", "--format", "nosuch"], "nosuch"),
        (["data", "filter", *SCRIPTED, "--source", "synthetic:2", "-o", "f.parquet", "--no-original"], "--no-original"),
        (["data", "filter", *SCRIPTED, "--source", "tasks:empty-tasks", "-o", "f.parquet"], "empty-tasks"),
        (["data", "filter", *SCRIPTED, "--source", "synthetic:2", "-o", "a-file"], "--overwrite"),
        (
            ["data", "filter", *SCRIPTED, "--source", "synthetic:2", "-o", "f.parquet", "--runs-dir", "broken"],
            "--overwrite",
        ),
        (
            ["data", "filter", *SCRIPTED, "--source", "synthetic:2", "-o", "f.parquet", "--resume", "--overwrite"],
            "--resume",
        ),
    ],
    "train sft": [
        (["train", "sft", "--config", "sft-typo.yaml"], "learnig_rate"),
        (["train", "sft", "--config", "sft-list.yaml"], "sft-list.yaml"),
        (["train", "sft", "--config", "sft.yaml", "batch_size=two"], "batch_size"),
        (["train", "sft", "--config", "sft.yaml", "lora.rank=8"], "rank"),
        (["train", "sft", "--config", "sft.yaml", "learning_rate"], "learning_rate"),
        (["train", "sft", "--config", "sft.yaml", "overflow=cut"], "overflow"),
        (["train", "sft", "--config", "sft-used.yaml"], "--overwrite"),
        (["train", "sft", "--config", "sft.yaml", "--resume"], "sft-out"),
        (["train", "sft", "--config", "sft-used.yaml", "--resume", "--overwrite"], "--resume"),
    ],
    "train grpo": [
        (["train", "grpo", "--config", "sft-typo.yaml"], "learnig_rate"),
        (["train", "grpo", "--config", "sft.yaml", "num_generations=many"], "num_generations"),
        (["train", "grpo", "--config", "sft.yaml", "vllm_mode=remote"], "vllm_mode"),
        (["train", "grpo", "--config", "sft.yaml", "max_length=10"], "max_length"),
        (["train", "grpo", "--config", "sft-used.yaml"], "--overwrite"),
        (["train", "grpo", "--config", "sft.yaml", "--resume"], "sft-out"),
    ],
    "train merge": [
        (["train", "merge", "empty", "-o", "merged"], "empty"),
        (["train", "merge", "empty", "-o", "merged", "--dtype", "int4"], "int4"),
    ],
    "data export sft": [
        (["data", "export", "sft", "empty", "-o", "sft"], "empty"),
        (["data", "export", "sft", "empty", "-o", "broken"], "--overwrite"),
        (["data", "export", "sft", "empty", "-o", "sft", "--format", "nosuch"], "nosuch"),
    ],
}

CASES = [(name, index) for name, cases in BAD_INPUTS.items() for index in range(len(cases))]


def invoke(args: list[Any]) -> tuple[int, str]:
    resolved = [arg() if callable(arg) else arg for arg in args]
    result = CliRunner().invoke(app, resolved)
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise AssertionError(f"{resolved} raised {result.exception!r}") from result.exception
    return result.exit_code, " ".join(result.output.split())


def test_every_command_has_bad_inputs() -> None:
    listed = {name for name, _ in commands()}
    assert listed - set(BAD_INPUTS) == set(), "add bad inputs for the new commands to BAD_INPUTS"
    assert set(BAD_INPUTS) - listed == set(), "BAD_INPUTS names commands the CLI no longer has"


@pytest.mark.parametrize(("name", "index"), CASES, ids=[f"{name}-{index}" for name, index in CASES])
def test_bad_input_is_named_with_exit_2(workdir: Path, name: str, index: int) -> None:
    args, named = BAD_INPUTS[name][index]
    code, output = invoke(args)
    assert code == 2, output
    assert named in output, output
    assert "Traceback" not in output
    if "--json" in args:
        assert "error" in json.loads(output), output


@pytest.mark.parametrize("name", [name for name, command in commands() if any(p.required for p in command.params)])
def test_nonexistent_paths_for_every_required_input(workdir: Path, name: str) -> None:
    """Each required input given a path that does not exist (or a spec naming one): named, exit 2."""
    command = dict(commands())[name]
    args: list[str] = name.split()
    for param in command.params:
        if not param.required:
            continue
        value = f"tasks:{MISSING}" if param.name == "source" else MISSING
        if param.param_type_name == "argument":
            args.append(value)
        else:
            args += [param.opts[0], value]
    code, output = invoke(args)
    assert code == 2, output
    assert MISSING in output, output
    assert "Traceback" not in output
