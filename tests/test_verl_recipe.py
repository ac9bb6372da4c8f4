"""The verl recipe's settings, checked against verl's own schema (runs where verl is installed: ``make test-verl``).

``recipes/verl/qwen2_5_vl_7b.sh`` and ``qwen3_vl_8b.sh`` build their Hydra overrides in one place
(``common.sh``) and print them with ``--dry-run``, after writing the run's agent-loop YAML. These
tests take exactly those lines, compose verl's ``ppo_trainer`` config with them through Hydra's
compose API (which refuses a key the schema lacks, as ``python -m verl.trainer.main_ppo`` does),
run the checks ``main_ppo`` runs before it starts Ray (``validate_config``), build the dataclasses
the workers build (actor, rollout, algorithm), and compare the result with CodeVision's published
RL settings. Nothing here needs a GPU or a model.
"""

from __future__ import annotations

import inspect
import os
import stat
import subprocess
import sys
import warnings
from pathlib import Path
from typing import Any

import pytest
import yaml

verl = pytest.importorskip("verl", reason="verl is not installed in this environment")
hydra = pytest.importorskip("hydra", reason="verl's Hydra is not installed")
OmegaConf = pytest.importorskip("omegaconf").OmegaConf

ROOT = Path(__file__).resolve().parents[1]
RECIPES = ROOT / "recipes" / "verl"
VERL_CONFIG_DIR = Path(verl.__file__).resolve().parent / "trainer" / "config"
SCRIPTS = ["qwen2_5_vl_7b.sh", "qwen3_vl_8b.sh"]

# CodeVision's published RL run (ANCHORS: GRPO n=8, batch 64, lr 1e-6, KL loss 0.001, clip
# 0.2/0.28, token-mean, 12 turns, 16k response tokens).
PUBLISHED = {
    "n": 8,
    "prompts": 64,
    "lr": 1e-6,
    "kl": 0.001,
    "clip_low": 0.2,
    "clip_high": 0.28,
    "loss_agg_mode": "token-mean",
    "turns": 12,
    "response_length": 16384,
}

SANDBOX_URL = "http://sandbox-host:8765"
SANDBOX_TOKEN = "s3cret-token"
JUDGE_URL = "http://judge-host:8000/v1"


@pytest.fixture(scope="module")
def adapter() -> Any:
    try:
        import codevision.integrations.verl as adapter
    except ImportError as exc:  # pragma: no cover - depends on the environment
        pytest.skip(f"the verl adapter is not importable: {exc}")
    if not Path(adapter.agent_loop_config_path()).is_file() or not Path(adapter.reward_function_path()).is_file():
        pytest.skip("the verl adapter's agent-loop YAML or reward module is missing")
    return adapter


def dry_run(script: str, run_dir: Path, *args: str, **env: str) -> list[str]:
    """The overrides the script would pass to ``verl.trainer.main_ppo``, one per line."""
    environ = {
        **os.environ,
        "PYTHON": sys.executable,
        "RUN_DIR": str(run_dir),
        "CODEVISION_SANDBOX_URL": SANDBOX_URL,
        "CODEVISION_SANDBOX_TOKEN": SANDBOX_TOKEN,
        "JUDGE_URL": JUDGE_URL,
        "JUDGE_MODEL": "judge",
        **env,
    }
    done = subprocess.run(
        ["bash", str(RECIPES / script), "--dry-run", *args],
        env=environ,
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.splitlines()


def compose(overrides: list[str]) -> Any:
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    with initialize_config_dir(config_dir=str(VERL_CONFIG_DIR), version_base=None):
        return hydra_compose(config_name="ppo_trainer", overrides=overrides)


def validate(config: Any) -> dict[str, Any]:
    """What ``main_ppo`` checks before Ray starts, what its trainer resolves, and its workers' dataclasses."""
    from verl.trainer.ppo.utils import need_critic, need_reference_policy
    from verl.utils.config import omega_conf_to_dataclass, validate_config

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "Disabled critic as algorithm.adv_estimator != gae"
        use_reference, use_critic = need_reference_policy(config), need_critic(config)
        validate_config(config, use_reference_policy=use_reference, use_critic=use_critic)
    # The trainer actor prints and resolves the whole config before anything else: every
    # interpolation must resolve.
    OmegaConf.to_container(config, resolve=True)
    return {
        "reference": use_reference,
        "critic": use_critic,
        "actor": omega_conf_to_dataclass(config.actor_rollout_ref.actor),
        "rollout": omega_conf_to_dataclass(config.actor_rollout_ref.rollout),
        "algorithm": omega_conf_to_dataclass(config.algorithm),
    }


@pytest.fixture(scope="module", params=SCRIPTS)
def recipe(request: pytest.FixtureRequest, adapter: Any, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    run_dir = tmp_path_factory.mktemp(request.param.removesuffix(".sh"))
    overrides = dry_run(request.param, run_dir)
    config = compose(overrides)
    return {
        "script": request.param,
        "run_dir": run_dir,
        "overrides": overrides,
        "config": config,
        **validate(config),
    }


def test_verl_accepts_the_overrides_and_they_are_the_published_settings(recipe: dict[str, Any]) -> None:
    config, actor, rollout = recipe["config"], recipe["actor"], recipe["rollout"]
    assert config.algorithm.adv_estimator == recipe["algorithm"].adv_estimator == "grpo"
    assert rollout.n == PUBLISHED["n"]
    assert config.data.train_batch_size == PUBLISHED["prompts"]
    assert actor.optim.lr == PUBLISHED["lr"]
    # KL as a loss term against the reference policy, not in the reward.
    assert actor.use_kl_loss is True and actor.kl_loss_coef == PUBLISHED["kl"]
    assert recipe["algorithm"].use_kl_in_reward is False
    assert recipe["reference"] is True and recipe["critic"] is False
    assert (actor.clip_ratio_low, actor.clip_ratio_high) == (PUBLISHED["clip_low"], PUBLISHED["clip_high"])
    assert actor.loss_agg_mode == PUBLISHED["loss_agg_mode"]
    assert rollout.response_length == config.data.max_response_length == PUBLISHED["response_length"]
    assert rollout.multi_turn.max_assistant_turns == PUBLISHED["turns"]
    # One optimiser step per batch of 64 prompts, as the TRL recipe does.
    assert actor.ppo_mini_batch_size == PUBLISHED["prompts"] and actor.ppo_epochs == 1
    assert actor.freeze_vision_tower is True
    # The longest sequence fits one dynamic micro-batch, and vLLM's context holds it.
    assert actor.use_dynamic_bsz and actor.ppo_max_token_len_per_gpu >= rollout.prompt_length + rollout.response_length
    assert rollout.max_model_len == rollout.prompt_length + rollout.response_length
    assert (rollout.name, rollout.mode) == ("vllm", "async")
    assert rollout.limit_images == 24
    # verl splits each batch evenly among the agent-loop workers.
    assert (PUBLISHED["prompts"] * PUBLISHED["n"]) % rollout.agent.num_workers == 0
    assert (config.trainer.nnodes, config.trainer.n_gpus_per_node) == (2, 8)


def test_the_rollout_runs_the_codevision_agent_loop_with_the_sandbox_service(
    recipe: dict[str, Any], adapter: Any
) -> None:
    from hydra.utils import get_class

    agent = recipe["rollout"].agent
    assert agent.default_agent_loop == adapter.AGENT_NAME == "codevision_agent"
    path = Path(agent.agent_loop_config_path)
    assert path == recipe["run_dir"].resolve() / "agent_loop.yaml"
    # It may hold the sandbox token: readable by its owner only.
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    # verl reads the file as AgentLoopWorker does: OmegaConf.load, then one registry entry per name.
    entries = {entry.name: entry for entry in OmegaConf.load(path)}
    shipped = {entry["name"]: entry for entry in yaml.safe_load(Path(adapter.agent_loop_config_path()).read_text())}
    assert entries.keys() == shipped.keys()
    entry = entries["codevision_agent"]
    assert entry.sandbox_url == SANDBOX_URL and entry.sandbox_token == SANDBOX_TOKEN
    assert entry.max_turns == PUBLISHED["turns"] and entry.protocol == "codevision"
    # Only the run's values differ from the shipped entry, and the token never reaches the Hydra config.
    changed = {key for key in shipped["codevision_agent"] if shipped["codevision_agent"][key] != entry[key]}
    assert changed <= {"protocol", "sandbox_url", "sandbox_token", "sandbox_workers", "sandbox_timeout", "max_turns"}
    assert not any(SANDBOX_TOKEN in line for line in recipe["overrides"])
    # The class verl instantiates takes every key of the entry.
    loop_class = get_class(entry._target_)
    parameters = inspect.signature(loop_class.__init__).parameters
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values())
    assert takes_any or set(entry) - {"name", "_target_"} <= set(parameters)


def test_the_reward_is_codevisions_with_the_judge(recipe: dict[str, Any], adapter: Any) -> None:
    from verl.trainer.ppo.reward import get_custom_reward_fn
    from verl.utils.import_utils import load_extern_object

    reward = recipe["config"].reward.custom_reward_function
    assert Path(reward.path) == Path(adapter.reward_function_path()) and reward.name == adapter.REWARD_FUNCTION
    assert dict(reward.reward_kwargs) == {"judge_url": JUDGE_URL, "judge_model": "judge"}
    # verl binds reward_kwargs to the function with functools.partial: each must be one it reads
    # (a parameter, or one of the options a **kwargs function declares).
    function = load_extern_object(module_path=reward.path, object_name=reward.name)
    parameters = inspect.signature(function).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()):
        accepted = set(function.__globals__["OPTIONS"])
    else:
        accepted = set(parameters)
    assert set(reward.reward_kwargs) <= accepted
    assert get_custom_reward_fn(recipe["config"]) is not None


def test_the_tensorboard_folder_reaches_the_ray_workers(recipe: dict[str, Any]) -> None:
    from verl.trainer.constants_ppo import get_ppo_ray_runtime_env

    # main_ppo merges ray_kwargs.ray_init.runtime_env over verl's own runtime env before ray.init.
    config = recipe["config"]
    merged = OmegaConf.merge(get_ppo_ray_runtime_env(config), config.ray_kwargs.ray_init.runtime_env)
    tensorboard_dir = merged.env_vars["TENSORBOARD_DIR"]
    assert tensorboard_dir == str(recipe["run_dir"].resolve() / "tensorboard")
    assert "TOKENIZERS_PARALLELISM" in merged.env_vars


def test_an_unknown_key_or_value_is_refused(adapter: Any, tmp_path: Path) -> None:
    from hydra.errors import ConfigCompositionException

    script = SCRIPTS[0]  # both model scripts source the same common.sh

    # A misspelt key (clip_ratio_hi) fails as it fails at launch, not silently ignored.
    with pytest.raises(ConfigCompositionException, match="clip_ratio_hi"):
        compose(dry_run(script, tmp_path, "actor_rollout_ref.actor.clip_ratio_hi=0.3"))
    # A value the dataclasses refuse fails in validation.
    with pytest.raises(Exception, match="sync"):
        validate(compose(dry_run(script, tmp_path, "actor_rollout_ref.rollout.mode=sync")))


def test_optional_reward_settings_and_a_local_sandbox(adapter: Any, tmp_path: Path) -> None:
    spec = tmp_path / "tapo.yaml"
    spec.write_text("weights: {outcome: 1.0, format: 0.3, faithfulness: 0.5}\n")
    overrides = dry_run(
        SCRIPTS[0],
        tmp_path / "run",
        CODEVISION_SANDBOX_URL="",
        CODEVISION_SANDBOX_TOKEN="",
        JUDGE_URL="",
        JUDGE_MODEL="",
        REWARD_SPEC=str(spec),
        SANDBOX_WORKERS="6",
    )
    config = compose(overrides)
    validate(config)
    assert dict(config.reward.custom_reward_function.reward_kwargs) == {"reward_spec": str(spec)}
    entry = next(e for e in OmegaConf.load(tmp_path / "run" / "agent_loop.yaml") if e.name == "codevision_agent")
    # No service: each agent-loop worker runs its own sandbox.
    assert entry.sandbox_url is None and entry.sandbox_token is None and entry.sandbox_workers == 6


def test_the_verl_and_trl_recipes_agree() -> None:
    """Both RL recipes are the same published run: recipes/grpo/ maps it onto TRL's names."""
    for name in SCRIPTS:
        trl = yaml.safe_load((ROOT / "recipes" / "grpo" / name.replace(".sh", ".yaml")).read_text())
        assert trl["num_generations"] == PUBLISHED["n"]
        assert trl["learning_rate"] == PUBLISHED["lr"] and trl["beta"] == PUBLISHED["kl"]
        assert (trl["epsilon"], trl["epsilon_high"]) == (PUBLISHED["clip_low"], PUBLISHED["clip_high"])
        assert trl["max_turns"] == PUBLISHED["turns"]
        assert trl["max_completion_length"] == PUBLISHED["response_length"]
        assert trl["loss_type"] == "dapo"  # TRL's token mean over the batch
