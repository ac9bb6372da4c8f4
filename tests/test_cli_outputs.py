"""Commands never replace earlier results silently: a non-empty output needs --overwrite, which clears it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from codevision.cli.app import app
from tests.conftest import gradient_image


def invoke(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, list(args))
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, " ".join(result.output.split())


@pytest.fixture(autouse=True)
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("COLUMNS", "200")
    return tmp_path


def test_each_run_gets_its_own_folder(workdir: Path) -> None:
    gradient_image(40, 30).save("photo.png")
    Path("replies.json").write_text(json.dumps(["<answer>a</answer>"]))
    for _ in range(2):
        code, output = invoke("run", "photo.png", "q", "-m", "scripted:replies.json", "--protocol", "direct")
        assert code == 0, output
    runs = sorted((workdir / "codevision-runs").iterdir())
    assert len(runs) == 2 and all((run / "photo" / "trajectory.json").exists() for run in runs)
    code, output = invoke("run", "photo.png", "q", "-m", "scripted:replies.json", "-o", str(runs[0]))
    assert code == 2 and "--overwrite" in output


def test_a_rebuilt_benchmark_replaces_the_old_one_only_when_asked(workdir: Path) -> None:
    build = ["bench", "build", "transformed", "--source", "synthetic:3", "-o", "built"]
    assert invoke(*build, "--transforms", "rotate_90,flip_h")[0] == 0
    before = sorted(p.name for p in (workdir / "built").rglob("*.png"))
    code, output = invoke(*build, "--transforms", "rotate_180")
    assert code == 2 and "built is not empty" in output and "--overwrite" in output
    assert sorted(p.name for p in (workdir / "built").rglob("*.png")) == before  # untouched
    assert invoke(*build, "--transforms", "rotate_180", "--overwrite")[0] == 0
    lines = (workdir / "built" / "manifest.jsonl").read_text().splitlines()
    assert len(lines) == 3 and len(list((workdir / "built").rglob("*.png"))) == 3  # no stale image


def test_exports_refuse_to_replace_earlier_ones(workdir: Path) -> None:
    assert invoke("demo", "-o", "demo")[0] == 0
    assert invoke("demo", "-o", "demo")[0] == 0  # a demo folder is the demo's to replace
    assert invoke("data", "export", "sft", "demo", "-o", "sft")[0] == 0
    code, output = invoke("data", "export", "sft", "demo", "-o", "sft")
    assert code == 2 and "--overwrite" in output
    assert invoke("data", "export", "sft", "demo", "-o", "sft", "--overwrite")[0] == 0
    rl = ["data", "export", "rl", "--source", "synthetic:2", "-o", "rl.parquet"]
    assert invoke(*rl)[0] == 0
    assert invoke(*rl)[0] == 2
    assert invoke(*rl, "--overwrite")[0] == 0
    code, output = invoke("demo", "-o", "sft")
    assert code == 2 and "--overwrite" in output  # not a demo folder


def test_overwrite_never_clears_the_current_folder(workdir: Path) -> None:
    Path("keep.txt").write_text("mine")
    code, output = invoke("bench", "build", "transformed", "--source", "synthetic:2", "--transforms", "rotate_90",
                          "-o", ".", "--overwrite")  # fmt: skip
    assert code == 2 and "current folder" in output
    assert Path("keep.txt").read_text() == "mine"
