"""The verl reward function and the row reading it relies on; no verl needed, so these run everywhere.

verl calls ``compute_score`` with the row's ``extra_info`` merged with the agent loop's
``extra_fields``. The reward must be the one evaluation computes for the same episode, must report
the same keys for every rollout (verl stacks each key over the batch and fails on a missing one),
and must say clearly what is wrong when the row was rolled out by another agent loop. The end-to-end
path through verl itself is in ``test_verl_agent_loop.py``.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from PIL import Image

from codevision.data.rl import DEFAULT_AGENT_NAME, verl_row
from codevision.eval.runner import EvalItem
from codevision.integrations.verl import AGENT_NAME, agent_loop_config_path, reward_function_path
from codevision.integrations.verl.episode import (
    TRAJECTORY_FIELD,
    MissingEpisodeError,
    episode_fields,
    prompt_of,
    task_from_row,
)
from codevision.integrations.verl.reward import compute_score
from codevision.policies.fake_server import FakeOpenAIServer
from codevision.protocols import get_protocol
from codevision.rewards.spec import RewardSpec
from codevision.sandbox import Sandbox
from codevision.task import Task
from codevision.testing.images import scene_image
from codevision.trajectory import Trajectory
from tests.conftest import episode, final, tool_call


def make_task(answer: str = "42") -> Task:
    return Task.from_images(
        [scene_image(120, 80, seed=3)],
        id="synthetic-3",
        question="What is written on the sign?",
        answers=[answer],
        source="synthetic",
        bboxes=[(10.0, 10.0, 60.0, 40.0)],
        expected_ops=["rotate_90", "crop"],
    )


def row_extra(task: Task) -> dict:
    return verl_row(EvalItem(task), get_protocol())["extra_info"]


def fields_of(task: Task, trajectory: Trajectory) -> dict:
    """``extra_info`` as verl's reward manager builds it: the row's, updated with the loop's fields."""
    return {**row_extra(task), **json.loads(json.dumps(episode_fields(task, trajectory)))}


ROTATE_AND_CROP = (
    tool_call("up = image.rotate(90, expand=True)\ndisplay(up.crop((5, 5, 60, 50)))"),
    final("42"),
)


def test_reward_is_reward_spec_compute_on_the_episode(sandbox: Sandbox) -> None:
    task = make_task()
    trajectory = episode(sandbox, task, *ROTATE_AND_CROP)
    want = RewardSpec().compute(task, trajectory)
    got = compute_score("synthetic", "decoded response, not read", "42", fields_of(task, trajectory))
    assert got["score"] == pytest.approx(want.total)
    assert {key: got[key] for key in want.breakdown} == pytest.approx(want.breakdown)
    assert got["acc"] == 1.0 and got["pred"] == "42" and got["answered"] == 1.0
    assert got["tool_calls"] == 1 and got["tool_errors"] == 0 and got["turns"] == 2
    assert got["sandbox_error"] == 0.0 and got["judge_fallback"] == 0.0


def test_every_rollout_reports_the_same_keys(sandbox: Sandbox) -> None:
    task = make_task()
    tools = compute_score("synthetic", "", "42", fields_of(task, episode(sandbox, task, *ROTATE_AND_CROP)))
    idle = compute_score("synthetic", "", "42", fields_of(task, episode(sandbox, task, "I cannot tell.")))
    assert list(tools) == list(idle)
    assert idle["answered"] == 0.0 and idle["tool_calls"] == 0 and idle["pred"] == ""
    assert all(isinstance(value, int | float | str) for value in idle.values())


def test_a_reward_spec_file_is_used(sandbox: Sandbox, tmp_path: Path) -> None:
    task = make_task()
    trajectory = episode(sandbox, task, *ROTATE_AND_CROP)
    path = tmp_path / "tapo.yaml"
    path.write_text(RewardSpec.tapo().to_yaml(), encoding="utf-8")
    got = compute_score("synthetic", "", "42", fields_of(task, trajectory), reward_spec=str(path))
    want = RewardSpec.tapo().compute(task, trajectory)
    assert got["score"] == pytest.approx(want.total)
    assert "faithfulness.process" in got and "codevision.accuracy" not in got


def test_a_spec_with_the_group_necessity_term_is_refused(sandbox: Sandbox, tmp_path: Path) -> None:
    """verl scores one rollout at a time: beta > 0 would silently pay a per-rollout necessity instead."""
    task = make_task()
    trajectory = episode(sandbox, task, *ROTATE_AND_CROP)
    spec = RewardSpec()
    spec.codevision.beta = 0.5
    path = tmp_path / "beta.yaml"
    path.write_text(spec.to_yaml(), encoding="utf-8")
    with pytest.raises(ValueError, match="computed over each prompt's group of rollouts"):
        compute_score("synthetic", "", "42", fields_of(task, trajectory), reward_spec=str(path))


def test_rows_of_another_agent_loop_are_refused_with_what_is_missing() -> None:
    extra = {**row_extra(make_task()), "agent_name": "single_turn_agent"}
    with pytest.raises(MissingEpisodeError) as raised:
        compute_score("synthetic", "<answer>42</answer>", "42", extra)
    message = str(raised.value)
    assert "'codevision_task'" in message and "'codevision_trajectory'" in message
    assert "single_turn_agent" in message and "agent_loop_config_path" in message


def test_unknown_reward_kwargs_are_refused(sandbox: Sandbox) -> None:
    task = make_task()
    with pytest.raises(ValueError, match="reward_specs"):
        compute_score("synthetic", "", "42", fields_of(task, episode(sandbox, task, final("42"))), reward_specs="x")


def test_a_judge_settles_open_answers_and_an_outage_falls_back_to_the_rules(sandbox: Sandbox) -> None:
    # CodeVision's answer rule leaves a non-matching answer to the judge.
    task = make_task(answer="GO")
    task.metadata["scoring"] = "codevision"
    trajectory = episode(sandbox, task, final("STOP"))
    extra = fields_of(task, trajectory)
    with FakeOpenAIServer(lambda body: "Correct") as judge:
        judged = compute_score("synthetic", "", "GO", extra, judge_url=judge.url, judge_model=judge.model)
    assert judged["acc"] == 1.0 and judged["judge_fallback"] == 0.0
    with FakeOpenAIServer(lambda body: "Correct", faults=[400]) as judge:
        fallback = compute_score(
            "synthetic", "", "GO", extra, judge_url=judge.url, judge_model=judge.model, judge_retries=0
        )
    assert fallback["acc"] == 0.0 and fallback["judge_fallback"] == 1.0
    assert list(fallback) == list(judged)


def test_rows_of_the_export_give_back_their_task() -> None:
    task = make_task()
    row = verl_row(EvalItem(task), get_protocol())
    images = [Image.open(io.BytesIO(image["bytes"])) for image in row["images"]]
    read = task_from_row(row["extra_info"], images, data_source=row["data_source"], reward_model=row["reward_model"])
    assert read.model_dump(exclude={"metadata"}) == task.model_dump(exclude={"metadata"})
    assert "scoring" not in read.metadata  # scored by its source's rule, as evaluation scores it


def test_codevision_rl_rows_get_expected_ops_from_their_transform() -> None:
    extra = {"answer": "7", "bbox": [1, 2, 30, 40], "dataset_name": "vstar", "index": 12, "question": "How many?"}
    read = task_from_row({**extra, "transform": ["rotate_90", "crop"]}, [], data_source="vstar")
    assert read.id == "vstar-12" and read.answers == ["7"] and read.bboxes == [(1.0, 2.0, 30.0, 40.0)]
    assert read.expected_ops == ["crop", "rotate_270"]
    assert read.metadata["scoring"] == "codevision"


def test_the_prompt_is_read_from_verl_structured_parts() -> None:
    buffer = io.BytesIO()
    scene_image(40, 30).save(buffer, format="PNG")
    raw_prompt = [
        {"role": "system", "content": "Be careful."},
        {
            "role": "user",
            "content": [
                {"type": "image", "bytes": buffer.getvalue(), "path": None, "image": Image.open(buffer)},
                {"type": "text", "text": "What is it?"},
            ],
        },
    ]
    messages, images = prompt_of(raw_prompt)
    assert [message.role for message in messages] == ["system", "user"]
    assert messages[1].image_indices == [0] and messages[1].text == "What is it?"
    assert images[0].size == (40, 30)
    with pytest.raises(ValueError, match="video"):
        prompt_of([{"role": "user", "content": [{"type": "video", "video": "x.mp4"}]}])


def test_the_shipped_files_exist_and_the_package_needs_no_verl() -> None:
    import subprocess
    import sys

    assert agent_loop_config_path().is_file() and reward_function_path().is_file()
    text = agent_loop_config_path().read_text(encoding="utf-8")
    assert AGENT_NAME == DEFAULT_AGENT_NAME and f"name: {AGENT_NAME}\n" in text, "the export selects the shipped loop"
    assert "_target_: codevision.integrations.verl.agent_loop.CodeVisionAgentLoop" in text
    code = (
        "import sys, runpy; runpy.run_module('codevision.integrations.verl', run_name='__main__'); "
        "import codevision.integrations.verl.reward; assert 'verl' not in sys.modules"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert f"agent_loop_config_path={agent_loop_config_path()}" in out
    assert f"reward.custom_reward_function.path={reward_function_path()}" in out
    assert TRAJECTORY_FIELD not in out
