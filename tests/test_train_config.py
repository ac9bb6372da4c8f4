"""Training settings files: every key checked by name and type, overrides, paths, the shipped recipes.

A misspelt key that silently fell back to its default would cost a whole training run, so these
run in the core environment (no torch) and pin the errors a user sees.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from codevision.train.common import TrainingError
from codevision.train.config import ConfigError, GRPOSettings, SFTSettings, as_dict, build, load_config
from codevision.train.grpo import step_shape, with_step_shape

REPO = Path(__file__).resolve().parents[1]
REQUIRED = {"model": "m", "data": ["d"], "output_dir": "o"}


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "sft.yaml"
    path.write_text(text)
    return path


def test_unknown_keys_are_named_with_the_closest_known_one() -> None:
    with pytest.raises(ConfigError, match=r"unknown key 'learnig_rate' \(did you mean 'learning_rate'\?\)"):
        build(SFTSettings, {**REQUIRED, "learnig_rate": 1e-5}, where="f.yaml")
    with pytest.raises(ConfigError, match=r"f.yaml: lora: unknown key 'rank'"):
        build(SFTSettings, {**REQUIRED, "lora": {"rank": 8}}, where="f.yaml")
    with pytest.raises(ConfigError, match="'model' is required"):
        build(SFTSettings, {"data": ["d"], "output_dir": "o"}, where="f.yaml")


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("batch_size", "two", "batch_size must be a whole number"),
        ("batch_size", 1.5, "batch_size must be a whole number"),
        ("batch_size", True, "batch_size must be a whole number"),
        ("freeze_vision", "yes", "freeze_vision must be true or false"),
        ("overflow", "cut", "overflow must be one of drop, truncate"),
        ("finetune", "qlora", "finetune must be one of full, lora"),
        ("learning_rate", "fast", "learning_rate must be a number"),
        ("data", {"a": 1}, "data must be a list"),
        ("lora", 8, "lora must be a mapping"),
        ("max_pixels", [1], "max_pixels must be a whole number"),
    ],
)
def test_values_of_the_wrong_type_are_named(key: str, value: object, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        build(SFTSettings, {**REQUIRED, key: value}, where="f.yaml")


def test_values_are_typed_and_defaults_kept() -> None:
    settings = build(SFTSettings, {**REQUIRED, "learning_rate": 1, "data": "one", "max_pixels": None}, where="f")
    assert settings.learning_rate == 1.0 and isinstance(settings.learning_rate, float)
    assert settings.data == ["one"]
    assert settings.lora.r == 16 and settings.freeze_vision is True and settings.max_pixels is None
    assert as_dict(settings)["lora"]["alpha"] == 32


def test_overrides_are_yaml_values_and_reach_nested_keys(tmp_path: Path) -> None:
    path = write(tmp_path, "model: m\ndata: [d]\noutput_dir: o\nlearning_rate: 1.0e-5\n")
    settings = load_config(
        SFTSettings, path, ["learning_rate=2e-5", "lora.r=8", "finetune=lora", "data=[a, b]", "max_pixels="]
    )
    assert settings.learning_rate == 2e-5 and settings.lora.r == 8 and settings.finetune == "lora"
    assert settings.data == ["a", "b"] and settings.max_pixels is None
    with pytest.raises(ConfigError, match="not key=value"):
        load_config(SFTSettings, path, ["learning_rate"])
    with pytest.raises(ConfigError, match="'learning_rate' is not a group"):
        load_config(SFTSettings, path, ["learning_rate.x=1"])


def test_paths_in_the_file_are_relative_to_it_and_a_hub_id_stays_one(tmp_path: Path) -> None:
    (tmp_path / "models" / "local").mkdir(parents=True)
    nested = tmp_path / "recipes"
    nested.mkdir()
    (nested / "t.jinja").write_text("{{ messages }}")
    path = nested / "sft.yaml"
    path.write_text("model: ../models/local\ndata: [../runs/a, /abs/b]\noutput_dir: ../out\nchat_template: t.jinja\n")
    settings = load_config(SFTSettings, path)
    assert settings.model == str(tmp_path / "models" / "local")
    assert settings.data == [str(tmp_path / "runs" / "a"), "/abs/b"]
    assert settings.output_dir == str(tmp_path / "out") and settings.chat_template == str(nested / "t.jinja")
    path.write_text("model: Qwen/Qwen2.5-VL-7B-Instruct\ndata: [d]\noutput_dir: o\nchat_template: shipped\n")
    words = load_config(SFTSettings, path)
    assert (words.model, words.chat_template) == ("Qwen/Qwen2.5-VL-7B-Instruct", "shipped")


@pytest.mark.parametrize(
    ("text", "message"),
    [("- a\n", "must hold a mapping"), ("model: [\n", "not valid YAML")],
)
def test_files_that_are_not_settings_are_named(tmp_path: Path, text: str, message: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError, match=message) as error:
        load_config(SFTSettings, path)
    assert str(path) in str(error.value)
    with pytest.raises(ConfigError, match="cannot be read"):
        load_config(SFTSettings, tmp_path / "missing.yaml")


@pytest.mark.parametrize("name", ["qwen2_5_vl_7b", "qwen3_vl_8b", "tiny_cpu"])
def test_the_shipped_recipes_load(name: str) -> None:
    settings = load_config(SFTSettings, REPO / "recipes" / "sft" / f"{name}.yaml")
    if name != "tiny_cpu":
        # CodeVision's published SFT: full fine-tuning, vision tower frozen, lr 1e-5, 2 epochs, 32k cutoff.
        assert (settings.finetune, settings.freeze_vision, settings.learning_rate) == ("full", True, 1e-5)
        assert (settings.num_epochs, settings.max_length, settings.gradient_checkpointing) == (2.0, 32768, True)


@pytest.mark.parametrize("name", ["qwen2_5_vl_7b", "qwen3_vl_8b", "tiny_cpu"])
def test_the_shipped_grpo_recipes_load(name: str) -> None:
    settings = load_config(GRPOSettings, REPO / "recipes" / "grpo" / f"{name}.yaml")
    if name != "tiny_cpu":
        # CodeVision's published RL: n=8, 64 prompts (512 completions on 8 GPUs), lr 1e-6, KL 0.001, clip 0.2/0.28.
        assert (settings.num_generations, settings.learning_rate, settings.beta) == (8, 1e-6, 0.001)
        assert (settings.epsilon, settings.epsilon_high, settings.loss_type) == (0.2, 0.28, "dapo")
        assert (settings.max_turns, settings.max_completion_length) == (12, 16384)
        # 64 prompts on the documented launch (4 training processes beside 4 vLLM GPUs) and on 8.
        for processes, accumulation in ((4, 16), (8, 8)):
            shaped = with_step_shape(settings, processes)
            assert shaped.gradient_accumulation_steps == accumulation
            assert shaped.batch_size * accumulation * processes == 64 * settings.num_generations
    assert settings.chat_template == "shipped"


def test_a_launch_that_cannot_hold_the_published_batch_is_refused() -> None:
    settings = build(GRPOSettings, {**REQUIRED, "batch_size": 8, "prompts_per_step": 64}, where="f.yaml")
    with pytest.raises(
        TrainingError, match=r"512 completions per step do not split over 7 processes.*launch 1, 2, 4, 8"
    ):
        with_step_shape(settings, 7)
    assert "64 prompts × 8 rollouts = 512 completions per step: 4 processes" in step_shape(
        with_step_shape(settings, 4), 4
    )
    both = build(GRPOSettings, {**REQUIRED, "prompts_per_step": 64, "gradient_accumulation_steps": 4}, where="f")
    with pytest.raises(TrainingError, match="prompts_per_step or gradient_accumulation_steps, not both"):
        with_step_shape(both, 8)
    unshaped = build(GRPOSettings, {**REQUIRED, "batch_size": 2, "gradient_accumulation_steps": 3}, where="f.yaml")
    assert with_step_shape(unshaped, 7) == unshaped
    with pytest.raises(TrainingError, match="max_turns 1 lets no tool call run"):
        with_step_shape(build(GRPOSettings, {**REQUIRED, "max_turns": 1}, where="f.yaml"), 1)


def test_sft_only_keys_are_unknown_to_grpo() -> None:
    with pytest.raises(ConfigError, match="unknown key 'max_length'"):
        build(GRPOSettings, {**REQUIRED, "max_length": 10}, where="f.yaml")


def test_the_local_sandbox_has_a_session_for_every_rollout_in_flight() -> None:
    from codevision.train.grpo import open_sandbox

    shaped = with_step_shape(build(GRPOSettings, {**REQUIRED, "batch_size": 8, "prompts_per_step": 64}, where="f"), 2)
    with open_sandbox(shaped) as sandbox:
        assert sandbox.config.max_sessions == 2 * 8 * 32
    with open_sandbox(build(GRPOSettings, REQUIRED, where="f")) as sandbox:
        assert sandbox.config.max_sessions == 256
