"""The demo's student: a tokenizer trained on the demo's own text, and generation that may call tools."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("transformers")

from transformers import AutoModelForImageTextToText, AutoProcessor

from codevision.testing.tiny_vlm import build_tiny_qwen_vl
from codevision.training_demo import tasks
from codevision.training_demo.model import LAYERS, WIDTH, build_student
from codevision.training_demo.teacher import solution
from tests.test_cli import run_cli


@pytest.fixture(scope="module")
def student(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("student")
    split = tasks.write_split(root / "tasks", "sft", 6, seed=0)
    (root / "prompt.txt").write_text(tasks.SYSTEM_PROMPT)
    done = run_cli(
        "data", "synth", "--teacher", "builtin:quadrants", "--source", f"jsonl:{split}",
        "--transforms", tasks.TRANSFORMS, "--kinds", "single,multi,recovery", "--n", "9",
        "--system-prompt", "prompt.txt", "--calls", "trl", "--out", "synth", cwd=root,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    return build_student(root / "model", [root / "synth" / "accepted"], seed=0)


def test_the_demo_tokenizer_makes_a_tool_call_a_few_dozen_tokens(student: Path, tmp_path: Path) -> None:
    reply = solution("single", 90, "green")[0]
    demo = AutoProcessor.from_pretrained(student, trust_remote_code=True).tokenizer
    generic = AutoProcessor.from_pretrained(build_tiny_qwen_vl(tmp_path / "generic"), trust_remote_code=True).tokenizer
    ours, theirs = len(demo(reply)["input_ids"]), len(generic(reply)["input_ids"])
    assert ours <= 70 and 3 * ours < 2 * theirs, (ours, theirs)
    assert demo.decode(demo(reply)["input_ids"]) == reply


def test_the_student_may_emit_tool_calls_but_no_image_pad(student: Path) -> None:
    config = json.loads((student / "generation_config.json").read_text())
    tokenizer = AutoProcessor.from_pretrained(student, trust_remote_code=True).tokenizer
    suppressed = set(config["suppress_tokens"])
    assert tokenizer.convert_tokens_to_ids("<tool_call>") not in suppressed
    assert tokenizer.convert_tokens_to_ids("</tool_call>") not in suppressed
    assert {tokenizer.convert_tokens_to_ids(t) for t in ("<|image_pad|>", "<tool_response>")} <= suppressed
    model = AutoModelForImageTextToText.from_pretrained(student)
    assert model.config.text_config.hidden_size == WIDTH and model.config.text_config.num_hidden_layers == LAYERS
    assert model.config.vision_config.out_hidden_size == WIDTH
