"""The training demo's closing report, from a hand-made output folder (no training, no evaluation)."""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path
from typing import Any

import pytest

from codevision.training_demo.report import reward_chart, summarize, summary_lines, write_report
from codevision.trajectory import Trajectory

STAGES = {"tasks": 0.5, "data synth": 5.0, "train sft": 90.0, "train grpo": 60.0, "eval grpo": 30.0}
SFT_LOSSES = [6.0, 5.0, 4.0, 3.0, 2.0, 1.5, 1.0, 0.5, 0.4, 0.3, 0.2, 0.1]
GRPO_REWARDS = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0]
ACCURACY = {"initial": 0.0, "sft": 30.47, "grpo": 62.5}


def write_json(path: Path, value: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(value), encoding="utf-8")


def sft_history() -> list[dict[str, Any]]:
    logged = [{"loss": loss, "learning_rate": 1e-3, "step": 2 * (i + 1)} for i, loss in enumerate(SFT_LOSSES)]
    return [*logged, {"train_runtime": 17.0, "train_loss": 2.0, "step": 24}]


def grpo_history() -> list[dict[str, Any]]:
    logged = [
        {
            "step": 2 * (i + 1),
            "reward": reward,
            "reward_std": 0.1,
            "reward/codevision.accuracy": reward / 2,
            "reward/codevision.mandatory": reward / 2,
            "reward/codevision.emergent": 0.0,
            "rollout/tool_calls": 1.0 + i / 10,
            "rollout/answer_rate": 0.75,
            "rollout/tool_error_rate": 0.25,
        }
        for i, reward in enumerate(GRPO_REWARDS)
    ]
    return [*logged, {"train_runtime": 50.0, "train_loss": 0.0, "step": 20}]


def eval_report(accuracy: float) -> dict[str, Any]:
    """The keys of ``build_report`` that the demo's report reads."""
    return {
        "accuracy": accuracy,
        "scored": 128,
        "robustness": [
            {"transform": transform, "accuracy": accuracy + offset, "n": 32}
            for transform, offset in (("none", 0.0), ("rotate_180", 1.0), ("rotate_270", 2.0), ("rotate_90", 3.0))
        ],
        "tool_use": {"share_using_tools": 100.0 if accuracy else 0.0},
        "faithfulness": {"containing": 87.5, "overlapping": 100.0} if accuracy else None,
        "rewards": {"mean": accuracy / 50, "answered_in_format": 97.66, "mean codevision.accuracy": accuracy / 100},
    }


def write_eval(root: Path, stage: str) -> None:
    folder = root / "eval" / stage
    write_json(folder / "report.json", eval_report(ACCURACY[stage]))
    for page in ("report.html", "trajectories.html"):
        (folder / page).write_text("<!DOCTYPE html>", encoding="utf-8")


def write_rollout(root: Path, step: int) -> None:
    folder = root / "models" / "grpo" / "rollouts" / f"step-{step:06d}" / "00-rl-0001"
    Trajectory(task_id="rl-0001", protocol="trl", final_answer="red", score={"reward": 1.0}).save(folder)


@pytest.fixture
def root(tmp_path: Path) -> Path:
    """A finished demo run's files: both trainers' logs, three evaluations, the teacher's yield, rollouts."""
    write_json(tmp_path / "models" / "sft" / "log_history.json", sft_history())
    write_json(tmp_path / "models" / "grpo" / "log_history.json", grpo_history())
    for stage in ACCURACY:
        write_eval(tmp_path, stage)
    write_json(tmp_path / "synth" / "yield.json", {"single": {"attempted": 16, "accepted": 12, "yield": 0.75}})
    for step in (0, 10):
        write_rollout(tmp_path, step)
    return tmp_path


def figures(page: str) -> dict[str, str]:
    """Each embedded plot's SVG document, by its alt text."""
    found = re.findall(r'<img src="data:image/svg\+xml;base64,([^"]+)" alt="([^"]+)"', page)
    return {alt: base64.b64decode(data).decode("utf-8") for data, alt in found}


def row(page: str, name: str) -> list[str]:
    """The cells after the first of the first table row named ``name``."""
    match = re.search(rf"<tr><td>{re.escape(name)}</td>(.*?)</tr>", page)
    assert match, name
    return re.findall(r"<td[^>]*>([^<]*)</td>", match.group(1))


def test_summary_holds_each_checkpoint_and_both_curves(root: Path) -> None:
    summary = summarize(root, {**STAGES, "total": 200.0})

    assert summary["stages"] == STAGES
    assert summary["total_seconds"] == 200.0
    assert summary["chance"] == pytest.approx(33.33)
    assert {stage: numbers["accuracy"] for stage, numbers in summary["checkpoints"].items()} == ACCURACY
    grpo = summary["checkpoints"]["grpo"]
    assert grpo["answered_in_format"] == 97.66
    assert grpo["mean_reward"] == pytest.approx(1.25)
    assert grpo["tool_use"] == 100.0
    assert grpo["crops_containing_target"] == 87.5
    assert grpo["orientations"] == {"none": 62.5, "rotate_90": 65.5, "rotate_180": 63.5, "rotate_270": 64.5}
    assert summary["checkpoints"]["initial"]["crops_containing_target"] is None
    # First and last are means of five logged values; the trainers' closing entries carry no loss or reward.
    assert summary["sft"] == {"steps": 24, "first_loss": pytest.approx(4.0), "last_loss": pytest.approx(0.3)}
    assert summary["grpo"] == {"steps": 20, "first_reward": pytest.approx(0.3), "last_reward": pytest.approx(0.8)}
    assert summary["synth"]["single"]["accepted"] == 12
    assert json.loads((root / "summary.json").read_text(encoding="utf-8")) == summary


def test_total_is_the_stages_sum_without_a_measured_total(root: Path) -> None:
    assert summarize(root, STAGES)["total_seconds"] == pytest.approx(sum(STAGES.values()))


def test_page_shows_the_three_plots_and_the_tables(root: Path) -> None:
    page = write_report(root, summarize(root, STAGES)).read_text(encoding="utf-8")

    plots = figures(page)
    assert len(plots) == 3
    assert [caption.split(":")[0] for caption in plots] == ["SFT", "GRPO", "GRPO"]
    assert all(svg.lstrip().startswith("<?xml") and "<svg" in svg for svg in plots.values())
    assert row(page, "after SFT")[:5] == ["30.5%", "97.7%", "0.609", "100.0%", "87.5%"]
    assert row(page, "initial")[4] == "–"
    assert row(page, "chance")[0] == "33.3%"
    orientations = page.split('id="orientations"')[1]
    assert row(orientations, "after GRPO") == ["62.5%", "65.5%", "63.5%", "64.5%"]
    assert row(page, "train sft") == ["1 min 30 s"]
    assert "ran 24 steps; its loss fell from 4.000 to 0.300" in page
    assert "http" not in page.replace("http-equiv", "")


def test_reward_plot_leaves_out_terms_that_never_paid() -> None:
    fig = reward_chart(grpo_history())
    assert fig is not None
    labels = [text.get_text() for text in fig.legends[0].get_texts()]
    assert labels == [
        "mean reward, each step",
        "mean reward, last 10 steps",
        "codevision.accuracy",
        "codevision.mandatory",
    ]


def test_links_are_relative_and_lead_to_the_pages(root: Path) -> None:
    page = write_report(root, summarize(root, STAGES)).read_text(encoding="utf-8")

    hrefs = re.findall(r'href="([^"]+)"', page)
    assert "eval/sft/trajectories.html" in hrefs
    assert "eval/grpo/report.html" in hrefs
    assert "rollouts.html" in hrefs
    for href in hrefs:
        assert not href.startswith("/") and ":" not in href, href
        assert (root / href).is_file(), href
    viewer = (root / "rollouts.html").read_text(encoding="utf-8")
    assert "2 trajectories" in viewer


def test_missing_stages_give_none_and_the_page_still_renders(tmp_path: Path) -> None:
    write_json(tmp_path / "models" / "sft" / "log_history.json", sft_history())
    write_eval(tmp_path, "sft")

    summary = summarize(tmp_path, {"tasks": 0.5, "train sft": 90.0})

    assert summary["checkpoints"]["initial"] is None
    assert summary["checkpoints"]["grpo"] is None
    assert summary["checkpoints"]["sft"]["accuracy"] == 30.47
    assert summary["grpo"] is None
    assert summary["synth"] is None
    page = write_report(tmp_path, summary).read_text(encoding="utf-8")
    assert list(figures(page)) == ["SFT: training loss per step"]
    assert page.count("GRPO has not been run.") == 2
    assert row(page, "after GRPO") == ["–"] * 5
    assert "GRPO then trained" not in page
    assert not (tmp_path / "rollouts.html").exists()
    assert all("rollouts" not in href for href in re.findall(r'href="([^"]+)"', page))
    assert summary_lines(summary)


def test_nothing_run_yet_still_gives_a_page(tmp_path: Path) -> None:
    summary = summarize(tmp_path, {})

    assert set(summary["checkpoints"].values()) == {None}
    page = write_report(tmp_path, summary).read_text(encoding="utf-8")
    assert not figures(page)
    assert "No evaluation has been written yet." in page


def test_text_from_the_files_is_escaped(root: Path) -> None:
    page = write_report(root, summarize(root, {"<b>odd</b> stage": 1.0})).read_text(encoding="utf-8")

    assert "<b>odd</b>" not in page
    assert "&lt;b&gt;odd&lt;/b&gt; stage" in page


def test_terminal_lines_hold_the_table_chance_and_times(root: Path) -> None:
    lines = summary_lines(summarize(root, {**STAGES, "total": 200.0}))

    table = lines[:5]
    assert [line.split()[0] for line in table] == ["checkpoint", "initial", "after", "after", "chance"]
    assert len({len(line) for line in table}) == 1
    assert "30.5%" in table[2] and "62.5%" in table[3] and "33.3%" in table[4]
    assert any(line.split() == ["train", "sft", "1", "min", "30", "s"] for line in lines)
    assert lines[-1].split() == ["total", "3", "min", "20", "s"]
