"""RL data selection: items run N times, kept when the model solves them sometimes, resumable, written with rates."""

from __future__ import annotations

import asyncio
import itertools
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from codevision.benchmarks import load_benchmark
from codevision.cli.app import app
from codevision.data.filter import add_pass_rates, repeated, select
from codevision.data.rl import rl_items, write_trl_grpo
from codevision.eval import evaluate
from codevision.eval.scorer import make_scorer
from codevision.policies import ScriptedPolicy
from codevision.protocols import get_protocol
from codevision.sandbox import Sandbox
from codevision.trajectory import Message


@pytest.fixture(scope="module")
def sandbox() -> Iterator[Sandbox]:
    with Sandbox(workers=1, timeout=5.0, memory_mb=1024) as sb:
        yield sb


def items() -> list:
    benchmark = load_benchmark("synthetic:3")
    return list(rl_items(benchmark, [], base_dir=benchmark.base_dir, include_original=True, seed=0))


def test_pass_rates_keep_the_items_solved_sometimes(sandbox: Sandbox, tmp_path: Path) -> None:
    pytest.importorskip("datasets")
    from datasets import Dataset

    candidates = items()
    answers = {item.entry.question: item.entry.answers[0] for item in candidates}
    # Item 0 always right, item 1 never, item 2 right on every other run.
    counter = itertools.count()

    def reply(messages: list[Message]) -> str:
        question = next(m.text for m in messages if m.role == "user")
        item = next(i for i, c in enumerate(candidates) if c.entry.question in question)
        right = item == 0 or (item == 2 and next(counter) % 2 == 0)
        return f"<answer>{answers[candidates[item].entry.question] if right else 'nothing'}</answer>"

    runs = repeated(candidates, 4)
    assert len({run.key for run in runs}) == 12
    protocol = get_protocol("direct")
    work = evaluate(
        runs, policy=ScriptedPolicy(reply), sandbox=sandbox, protocol=protocol, scorer=make_scorer(), out=tmp_path / "r"
    )
    store = asyncio.run(work)
    selection = select(candidates, store.records, 4, low=0.0, high=1.0)
    keys = [item.key for item in candidates]
    assert selection.rates == {keys[0]: 1.0, keys[1]: 0.0, keys[2]: 0.5}
    assert (selection.kept, selection.too_easy, selection.too_hard) == ([keys[2]], [keys[0]], [keys[1]])
    # A missing run leaves its item undecided, never guessed.
    partial = {key: record for key, record in store.records.items() if not key.startswith(keys[2] + "#run3")}
    assert select(candidates, partial, 4, low=0.0, high=1.0).undecided == [keys[2]]
    with pytest.raises(ValueError, match="band"):
        select(candidates, store.records, 4, low=0.5, high=0.5)

    out = tmp_path / "rl.parquet"
    kept = [item for item in candidates if item.key in selection.kept]
    write_trl_grpo(kept, out, protocol)
    add_pass_rates(str(out), [item.key for item in kept], selection.rates)
    rows = Dataset.from_parquet(str(out))
    assert rows["pass_rate"] == [0.5] and rows[0]["images"][0].size


def test_the_command_counts_easy_and_hard_items_and_resumes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    answer = items()[0].entry.answers[0]
    Path("replies.json").write_text(json.dumps([f"<answer>{answer}</answer>"]))
    command = ["data", "filter", "-m", "scripted:replies.json", "--source", "synthetic:3", "--runs", "2"]
    command += ["--protocol", "direct", "-o", "rl.parquet"]
    result = CliRunner().invoke(app, command)
    assert result.exit_code == 0, result.output
    selection = json.loads(Path("rl.parquet.runs/selection.json").read_text())
    assert (selection["too_easy"], selection["kept"]) == (1, 0) and selection["too_hard"] == 2
    assert "nothing written" in " ".join(result.output.split())
    again = CliRunner().invoke(app, command)
    assert again.exit_code == 2 and "--resume" in " ".join(again.output.split())
    before = Path("rl.parquet.runs/results.jsonl").read_text()
    resumed = CliRunner().invoke(app, [*command, "--resume"])
    assert resumed.exit_code == 0, resumed.output
    # Every run was done: nothing ran again, and the same selection was made.
    assert Path("rl.parquet.runs/results.jsonl").read_text() == before
    assert len(before.splitlines()) == 6 and "0 of 3 items kept" in " ".join(resumed.output.split())
