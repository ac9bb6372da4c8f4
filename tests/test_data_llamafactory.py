"""The sharegpt SFT export read by LLaMA-Factory's own data pipeline, not by our reading of its docs.

Agent runs of the bundled examples (scripted replies, the real sandbox) are exported with
``export_sft(..., "sharegpt")`` and loaded through ``llamafactory.data.get_dataset`` with the
``dataset_info.json`` the export writes, the ``qwen2_vl`` template and a tiny Qwen2.5-VL processor.
That checks what a training run depends on: the converter accepts the columns and tags, the
``<image>`` placeholders match the image files (LLaMA-Factory's mm plugin validates the count and
expands each one into the processor's image tokens), and observation turns get no loss.

LLaMA-Factory pins an older transformers than the main environment, so this runs in its own
virtualenv (``make test-llamafactory``) and is skipped wherever ``llamafactory`` is not installed.
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import json
import sys
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

if importlib.util.find_spec("llamafactory") is None:
    pytest.skip(
        "llamafactory is not installed; run `make test-llamafactory` (its own virtualenv)", allow_module_level=True
    )

if importlib.util.find_spec("torchaudio") is None:
    # llamafactory.data.mm_plugin imports torchaudio at module level but only calls it for audio
    # inputs. No torchaudio wheel loads against the CPU torch used here, so a stand-in that fails
    # on any attribute keeps audio unusable while images and text go through the real code.
    def _no_audio(name: str) -> Any:
        raise AttributeError(f"torchaudio.{name}: torchaudio is not installed (audio is not supported here)")

    _torchaudio = types.ModuleType("torchaudio")
    _torchaudio.__spec__ = importlib.machinery.ModuleSpec("torchaudio", None)
    _torchaudio.__getattr__ = _no_audio  # type: ignore[method-assign]
    sys.modules["torchaudio"] = _torchaudio

import transformers
from llamafactory.data import get_dataset, get_template_and_fix_tokenizer
from llamafactory.extras.constants import IGNORE_INDEX
from llamafactory.hparams import get_train_args
from llamafactory.model import load_tokenizer

from codevision.agent import run_agent
from codevision.chat import ChatRenderer, ImageBudget
from codevision.data.sft import export_sft
from codevision.demo import EXAMPLES
from codevision.policies import ScriptedPolicy
from codevision.protocols import get_protocol
from codevision.sandbox import Sandbox
from codevision.testing import build_tiny_qwen_vl
from codevision.trajectory import Trajectory

NAME = "codevision_sft"


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Trajectory]]:
    """The bundled examples run end to end and saved; returns the folder and the trajectories by name."""
    folder = tmp_path_factory.mktemp("runs")
    played = {}
    with Sandbox(workers=2, timeout=10.0, memory_mb=1024) as sandbox:
        for example in EXAMPLES:
            trajectory = run_agent(
                example.task(), ScriptedPolicy(list(example.replies)), sandbox, get_protocol("codevision")
            )
            assert trajectory.stop_reason == "answered", trajectory.error
            trajectory.save(folder / example.id)
            played[example.id] = trajectory
    return folder, played


@pytest.fixture(scope="module")
def export(runs: tuple[Path, dict[str, Trajectory]], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The runs exported as sharegpt; returns the export folder."""
    out = tmp_path_factory.mktemp("sharegpt")
    result = export_sft([runs[0]], out, "sharegpt", name=NAME)
    assert result.rows == len(EXAMPLES) and not result.skipped
    return out


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_qwen_vl(tmp_path_factory.mktemp("tiny"))


def _load(export: Path, model_dir: Path, output: Path, **options: Any) -> tuple[Any, dict[str, Any]]:
    """LLaMA-Factory's SFT data path, as ``llamafactory-cli train`` runs it, up to the tokenized set."""
    model_args, data_args, training_args, *_ = get_train_args(
        {
            "stage": "sft",
            "do_train": True,
            "finetuning_type": "lora",
            "model_name_or_path": str(model_dir),
            "trust_remote_code": True,
            "dataset_dir": str(export),
            "dataset": NAME,
            "template": "qwen2_vl",
            "cutoff_len": 8192,
            "image_max_pixels": 128 * 128,
            "preprocessing_num_workers": None,
            "overwrite_cache": True,
            "output_dir": str(output),
            "report_to": "none",
            **options,
        }
    )
    modules = load_tokenizer(model_args)
    template = get_template_and_fix_tokenizer(modules["tokenizer"], data_args)
    dataset = get_dataset(template, model_args, data_args, training_args, stage="sft", **modules)
    return dataset["train_dataset"], modules


@pytest.fixture(scope="module")
def loaded(export: Path, model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, dict[str, Any]]:
    return _load(export, model_dir, tmp_path_factory.mktemp("output"))


def _rows(export: Path) -> list[dict[str, Any]]:
    return json.loads((export / f"{NAME}.json").read_text(encoding="utf-8"))


def test_converter_reads_every_row(export: Path) -> None:
    """The sharegpt converter (``align_dataset``) maps our roles and finds every image file."""
    from llamafactory.data.data_utils import Role
    from llamafactory.data.loader import _load_single_dataset
    from llamafactory.data.parser import get_dataset_list

    model_args, data_args, training_args, *_ = get_train_args(
        {
            "stage": "sft",
            "do_train": True,
            "model_name_or_path": "unused",
            "dataset_dir": str(export),
            "dataset": NAME,
            "template": "qwen2_vl",
            "output_dir": str(export / "unused"),
            "report_to": "none",
        }
    )
    (attr,) = get_dataset_list([NAME], str(export))
    aligned = _load_single_dataset(attr, model_args, data_args, training_args)
    rows = _rows(export)
    assert len(aligned) == len(rows)
    for row, got in zip(rows, aligned, strict=True):
        turns = row["conversations"]
        # The last assistant turn is the response; everything before it is the prompt.
        assert [m["role"] for m in got["_prompt"]] == [
            {"human": Role.USER.value, "gpt": Role.ASSISTANT.value, "observation": Role.OBSERVATION.value}[t["from"]]
            for t in turns[:-1]
        ]
        assert Role.OBSERVATION.value in {m["role"] for m in got["_prompt"]}
        assert [m["content"] for m in got["_response"]] == [turns[-1]["value"]]
        assert got["_system"] == row["system"] and got["_system"]
        assert got["_images"] == [str(export / path) for path in row["images"]]
        assert all(Path(path).is_file() for path in got["_images"])


def test_supervised_dataset_masks_observations(export: Path, loaded: tuple[Any, dict[str, Any]]) -> None:
    """Tokenized rows: one image-token run per image, loss on assistant replies only."""
    dataset, modules = loaded
    tokenizer = modules["tokenizer"]
    rows = _rows(export)
    assert len(dataset) == len(rows), "LLaMA-Factory dropped rows (invalid alternation or image count)"
    vision_start = tokenizer.convert_tokens_to_ids("<|vision_start|>")
    for row, example in zip(rows, dataset, strict=True):
        ids, labels = example["input_ids"], example["labels"]
        assert len(ids) == len(labels) and example["images"] == [str(export / p) for p in row["images"]]
        assert ids.count(vision_start) == len(row["images"]) >= 2  # the input image and a tool image at least
        trained = tokenizer.decode([t for t, label in zip(ids, labels, strict=True) if label != IGNORE_INDEX])
        masked = tokenizer.decode([t for t, label in zip(ids, labels, strict=True) if label == IGNORE_INDEX])
        for turn in row["conversations"]:
            text = turn["value"].replace("<image>", "").strip()
            for line in _iter_lines(text):
                if turn["from"] == "gpt":
                    assert line in trained, f"assistant text not trained: {line!r}"
                else:
                    assert line in masked, f"{turn['from']} text not masked: {line!r}"
        assert "<tool_response>" in masked and "<tool_response>" not in trained
        assert "<|image_pad|>" not in trained


def _iter_lines(text: str) -> Iterator[str]:
    """Non-blank lines: a turn's tokens are compared line by line, as template markup splits lines."""
    return filter(None, (piece.strip() for piece in text.splitlines()))


def test_image_count_mismatch_is_rejected(export: Path, model_dir: Path, tmp_path: Path) -> None:
    """The image check above is live: LLaMA-Factory refuses a row with one image file too few."""
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "images").symlink_to(export / "images")
    (broken / "dataset_info.json").write_text((export / "dataset_info.json").read_text(encoding="utf-8"))
    rows = _rows(export)
    rows[0]["images"] = rows[0]["images"][:-1]
    (broken / f"{NAME}.json").write_text(json.dumps(rows), encoding="utf-8")
    with pytest.raises(ValueError, match="does not match the number of"):
        _load(broken, model_dir, tmp_path / "output")


def test_images_exported_at_the_models_size_give_the_tokens_evaluation_renders(
    runs: tuple[Path, dict[str, Trajectory]], model_dir: Path, tmp_path: Path
) -> None:
    """LLaMA-Factory scales an image above ``image_max_pixels`` by a factor that ignores the patch grid,
    then the processor snaps it to the grid: other image tokens than evaluation's single resize. An
    export at the model's size (``--processor``) leaves it nothing to resize: token for token the
    sequence the renderer gives evaluation, the newline after the last turn aside."""
    processor = transformers.AutoProcessor.from_pretrained(model_dir, trust_remote_code=True)
    budget = ImageBudget.from_processor(processor)
    renderer = ChatRenderer(processor, get_protocol())
    newline = renderer.tokenizer("\n", add_special_tokens=False)["input_ids"]
    limits = {"image_max_pixels": budget.max_pixels, "image_min_pixels": budget.min_pixels}
    sequences = {}
    for name, fitted in (("original", None), ("fitted", budget)):
        export_sft([runs[0]], tmp_path / name, "sharegpt", name=NAME, budget=fitted)
        dataset, _ = _load(tmp_path / name, model_dir, tmp_path / f"output-{name}", **limits)
        rows = _rows(tmp_path / name)
        sequences[name] = {row["id"]: example["input_ids"] for row, example in zip(rows, dataset, strict=True)}
    rendered = {}
    for key, trajectory in runs[1].items():
        images = [budget.fit(trajectory.image(i)) for i in range(len(trajectory.images))]
        rendered[key] = [*renderer.render(trajectory.conversation(), images).input_ids, *newline]
    assert sequences["fitted"] == rendered
    assert any(sequences["original"][key] != rendered[key] for key in rendered)
