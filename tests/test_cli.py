"""The command line as a user runs it: a real subprocess, real files, real exit codes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from codevision.policies.fake_server import FakeOpenAIServer
from codevision.trajectory import Trajectory
from tests.conftest import gradient_image

CLI = [sys.executable, "-m", "codevision.cli"]


def run_cli(*args: str, cwd: Path, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "COLUMNS": "200", "NO_COLOR": "1"}
    return subprocess.run(
        [*CLI, *args], check=False, cwd=cwd, input=stdin, capture_output=True, text=True, env=env, timeout=180
    )


def test_demo_runs_the_agent_end_to_end(tmp_path: Path) -> None:
    done = run_cli("demo", "--out", "demo-out", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "What is the total on this receipt?" in done.stdout
    assert "3 of 3 answered correctly" in done.stdout
    for name in ("op rotate", "op crop", "op enhance", "op resize", "op flip"):
        assert name in done.stdout
    trajectory = Trajectory.load(tmp_path / "demo-out" / "example-receipt")
    assert trajectory.final_answer == "22.00" and trajectory.score == {"correct": True}
    assert [img.size for img in trajectory.images] == [(420, 640), (640, 420), (480, 140)]
    page = (tmp_path / "demo-out" / "index.html").read_text()
    assert all(name in page for name in ("example-receipt", "example-sign", "example-label"))
    assert page.count("data:image/") >= 7


def test_run_streams_a_scripted_trajectory_and_saves_it(tmp_path: Path) -> None:
    gradient_image(60, 40).save(tmp_path / "photo.png")
    replies = [
        '<tool_call>{"name": "code_image_tool", "arguments": {"code": "display(image.rotate(90, expand=True))"}}'
        "</tool_call>",
        "<answer>portrait</answer>",
    ]
    (tmp_path / "replies.json").write_text(json.dumps(replies))
    done = run_cli(
        "run", "photo.png", "Is it portrait?", "--model", "scripted:replies.json", "--out", "runs", cwd=tmp_path
    )
    assert done.returncode == 0, done.stderr
    assert "turn 1" in done.stdout and "image 1: 40x60" in done.stdout
    assert "stop reason: answered; answer: 'portrait'" in done.stdout
    trajectory = Trajectory.load(tmp_path / "runs" / "photo")
    assert trajectory.turns[0].outcomes[0].ops[0].name == "rotate"
    assert (tmp_path / "runs" / "index.html").exists()


def test_run_against_an_openai_compatible_server(tmp_path: Path) -> None:
    gradient_image(60, 40).save(tmp_path / "photo.png")
    with FakeOpenAIServer(["<answer>blue</answer>"], model="tiny") as server:
        done = run_cli("run", "photo.png", "Which colour?", "--model", server.url, "--model-name", "tiny", cwd=tmp_path)
        assert done.returncode == 0, done.stderr
        assert "answer: 'blue'" in done.stdout
        assert len(server.requests[0].images()) == 1


def test_a_question_in_another_encoding_is_read_not_crashed_on(tmp_path: Path) -> None:
    gradient_image(60, 40).save(tmp_path / "photo.png")
    env = {**os.environ, "COLUMNS": "200", "NO_COLOR": "1"}
    with FakeOpenAIServer(["<answer>blue</answer>"], model="tiny") as server:
        # Latin-1 bytes on a UTF-8 command line: Python hands them over as lone surrogates.
        done = subprocess.run(
            [*(os.fsencode(a) for a in CLI), b"run", b"photo.png", "Quelle couleur caf\xe9 ?".encode("latin-1"),
             b"--model", server.url.encode(), b"--model-name", b"tiny", b"--protocol", b"direct"],
            check=False, cwd=tmp_path, capture_output=True, env=env, timeout=180,
        )  # fmt: skip
    assert done.returncode == 0, done.stderr.decode(errors="replace")
    (saved,) = (tmp_path / "codevision-runs").rglob("trajectory.json")
    assert Trajectory.load(saved).question == "Quelle couleur caf\ufffd ?"
    assert not list((tmp_path / "codevision-runs").rglob(".trajectory-*")), "no temporary file is left behind"


def test_run_asks_the_server_for_its_model_when_none_is_named(tmp_path: Path) -> None:
    gradient_image(60, 40).save(tmp_path / "photo.png")
    with FakeOpenAIServer(["<answer>blue</answer>"], model="only-model") as server:
        done = run_cli("run", "photo.png", "Which colour?", "--model", server.url, "--protocol", "direct", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "answer: 'blue'" in done.stdout


def test_run_reports_an_unreachable_server(tmp_path: Path) -> None:
    gradient_image(60, 40).save(tmp_path / "photo.png")
    args = ["--model", "http://127.0.0.1:9/v1", "--model-name", "m", "--protocol", "direct"]
    done = run_cli("run", "photo.png", "q", *args, cwd=tmp_path)
    assert done.returncode == 1
    assert "stop reason: model_error" in " ".join(done.stdout.split())
    unnamed = run_cli("run", "photo.png", "q", "--model", "http://127.0.0.1:9/v1", cwd=tmp_path)
    assert unnamed.returncode == 2
    assert "pass --model-name" in " ".join((unnamed.stdout + unnamed.stderr).split())


def test_exec_with_code_from_stdin_and_several_images(tmp_path: Path) -> None:
    gradient_image(30, 20).save(tmp_path / "a.png")
    gradient_image(10, 10, "L").save(tmp_path / "b.png")
    code = "print(len(images), image.size)\ndisplay(images[1].transpose(Image.Transpose.FLIP_LEFT_RIGHT))"
    done = run_cli(
        "sandbox", "exec", "a.png", "b.png", "--code", "-", "--json", "--out", "out", cwd=tmp_path, stdin=code
    )
    assert done.returncode == 0, done.stderr
    payload = json.loads(done.stdout)
    assert payload["stdout"] == "2 (30, 20)\n"
    assert payload["ops"][0]["name"] == "flip" and payload["ops"][0]["operand"]["origin"] == 1
    flipped = np.asarray(Image.open(tmp_path / "out" / "output_0.png"))
    np.testing.assert_array_equal(flipped, np.asarray(gradient_image(10, 10, "L"))[:, ::-1])


def test_exec_reports_model_errors_with_exit_code_1(tmp_path: Path) -> None:
    gradient_image().save(tmp_path / "a.png")
    (tmp_path / "fix.py").write_text("x = 1\nraise ValueError('bad crop box')\n")
    done = run_cli("sandbox", "exec", "a.png", "--code", "fix.py", cwd=tmp_path)
    assert done.returncode == 1
    assert "ValueError: bad crop box" in done.stdout
    assert 'File "<cell 1>", line 2' in done.stdout


def test_exec_reports_a_crash_with_exit_code_4(tmp_path: Path) -> None:
    gradient_image().save(tmp_path / "a.png")
    done = run_cli("sandbox", "exec", "a.png", "--exec", "import os; os._exit(0)", "--json", cwd=tmp_path)
    assert done.returncode == 4
    assert json.loads(done.stdout)["status"] == "crashed"


@pytest.mark.parametrize(
    ("setup", "args", "message"),
    [
        (None, ["missing.png", "--exec", "pass"], "missing.png: no such file"),
        ("garbage", ["bad.png", "--exec", "pass"], "bad.png: not a readable image"),
        ("image", ["a.png"], "give exactly one of --code FILE|- or --exec CODE"),
        ("image", ["a.png", "--code", "nowhere.py"], "cannot read nowhere.py"),
    ],
)
def test_exec_bad_input_names_the_input_with_exit_code_2(
    tmp_path: Path, setup: str | None, args: list[str], message: str
) -> None:
    if setup == "garbage":
        (tmp_path / "bad.png").write_bytes(b"\x89PNG not really")
    elif setup == "image":
        gradient_image().save(tmp_path / "a.png")
    done = run_cli("sandbox", "exec", *args, cwd=tmp_path)
    assert done.returncode == 2
    assert message in " ".join((done.stdout + done.stderr).split())


def test_exec_refuses_a_decompression_bomb(tmp_path: Path) -> None:
    Image.new("1", (20_000, 20_000)).save(tmp_path / "bomb.png")
    done = run_cli("sandbox", "exec", "bomb.png", "--exec", "pass", cwd=tmp_path)
    assert done.returncode == 2
    assert "decompression bomb" in " ".join((done.stdout + done.stderr).split())


def test_status_lists_every_layer(tmp_path: Path) -> None:
    done = run_cli("sandbox", "status", "--json", cwd=tmp_path)
    payload = json.loads(done.stdout)
    layers = payload["isolation"]["available"]
    assert {"pid_namespace", "network_namespace", "mount_namespace", "seccomp", "rlimits"} <= set(layers)
    assert done.returncode == (3 if payload["missing_layers"] else 0)


def test_help_shows_examples(tmp_path: Path) -> None:
    done = run_cli("sandbox", "exec", "--help", cwd=tmp_path)
    assert done.returncode == 0
    assert "codevision sandbox exec photo.jpg --exec" in done.stdout
    assert "--version" in run_cli("--help", cwd=tmp_path).stdout
    evaluate = " ".join(run_cli("eval", "--help", cwd=tmp_path).stdout.split())
    assert (
        "Examples:" in evaluate and "codevision eval -m http://localhost:8000/v1 -b ocrbench:data/OCRBench" in evaluate
    )
    assert "Benchmarks (-b): ocrbench:PATH" in evaluate and "Scoring rules: anls, chartqa" in evaluate
