"""The trajectory viewer: what it finds, what it writes, and how the page behaves in a real Chromium.

The browser part drives Debian's ``chromium`` through ``chromedriver`` with a few lines of
WebDriver over ``urllib``: it is what a reader sees, scripts, Content-Security-Policy and all.
"""

from __future__ import annotations

import json
import re
import select
import shutil
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from codevision.cli import app
from codevision.sandbox.results import ImageOp, ImageRef
from codevision.trajectory import Action, Lineage, Message, ToolOutcome, Trajectory, Turn, Usage
from codevision.viewer import NoTrajectoriesFound, collect, write_viewer
from codevision.viewer.html import split_think
from tests.conftest import gradient_image

PAYLOAD = "</script><img src=x onerror=alert(1)>"
QUOTED_SOURCE = 'docvqa "hard"'
CHROMIUM = shutil.which("chromium")
CHROMEDRIVER = shutil.which("chromedriver")
INSTALL_HINT = "apt-get install -y chromium chromium-driver"


def _cell(code: str) -> tuple[str, Action]:
    raw = f"```python\n{code}\n```"
    return raw, Action(kind="code", code=code, raw=raw)


def _correct_chart() -> Trajectory:
    """Two tool turns, thinking, ops, a large input (downscaled on the page) and a right answer."""
    t = Trajectory(task_id="chart-1", protocol="code", model="m", source="chartqa", question="What is the peak?")
    t.references = ["42"]
    t.add_image(gradient_image(2000, 1200), "input")
    t.messages = [Message.of("system", "You write code."), Message.of("user", "What is the peak?", 0)]
    raw, action = _cell("crop = image.crop((0, 0, 100, 80))\ndisplay(crop)\nprint(crop.size)")
    crop = t.add_image(gradient_image(100, 80), "tool", turn=0)
    op = ImageOp(
        name="crop",
        args={"box": [0, 0, 100, 80]},
        call="Image.crop",
        line=1,
        operand=ImageRef(id=0, size=(2000, 1200), origin=0),
        result=ImageRef(id=3, size=(100, 80), origin=0),
    )
    t.turns.append(
        Turn(
            index=0,
            text=f"<think>zoom on the top left first</think>Let me crop.\n{raw}\nThen read it.",
            actions=[action],
            outcomes=[ToolOutcome(action=0, status="ok", stdout="(100, 80)\n", image_indices=[crop], ops=[op])],
            observation=[Message.of("tool", "(100, 80)", crop)],
            usage=Usage(prompt_tokens=900, completion_tokens=40),
            model_seconds=1.2,
            tool_seconds=0.05,
        )
    )
    t.turns.append(Turn(index=1, text="The peak is <answer>42</answer>", answer="42", usage=Usage(completion_tokens=8)))
    t.final_answer, t.score = "42", {"correct": True, "reward": 1.0}
    t.usage = Usage(prompt_tokens=1900, completion_tokens=48)
    return t


def _hostile() -> Trajectory:
    """Markup everywhere a model, a sandbox or a benchmark can put text; all of it must stay text."""
    t = Trajectory(task_id="doc-7", protocol="code", source=QUOTED_SOURCE, question=f"Read the form {PAYLOAD}")
    t.references = [PAYLOAD]
    t.add_image(gradient_image(64, 48), "input")
    raw, action = _cell(f"print({PAYLOAD!r})")
    t.turns.append(
        Turn(
            index=0,
            text=f"<think>{PAYLOAD}</think>{raw}",
            actions=[action],
            outcomes=[
                ToolOutcome(
                    action=0,
                    status="error",
                    stdout=PAYLOAD,
                    stderr=PAYLOAD,
                    error=f"ValueError: {PAYLOAD}",
                    ops=[ImageOp(name="rotate", args={"angle": PAYLOAD}, line=1)],
                    warnings=[PAYLOAD],
                )
            ],
            issues=[PAYLOAD],
        )
    )
    t.final_answer, t.stop_reason, t.score = PAYLOAD, "max_turns", {"correct": False, "reward": 0.0}
    return t


def _unscored() -> Trajectory:
    t = Trajectory(task_id="chart-2", protocol="code", source="chartqa", question="How many bars?")
    t.stop_reason, t.error = "model_error", "server answered 503"
    return t


def _lost_image() -> Trajectory:
    """A right answer whose image file went missing: the page says so where the image would be."""
    t = Trajectory(task_id="receipt-3", protocol="direct", question="What is the total on this receipt?")
    t.add_image(gradient_image(40, 30), "input")
    t.turns.append(Turn(index=0, text="</think>17.50", answer="17.50"))
    t.final_answer, t.stop_reason, t.score = "17.50", "max_tokens", {"correct": True}
    return t


@pytest.fixture(scope="module")
def run_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A run folder with trajectories at several depths, and two files that are not trajectories."""
    root = tmp_path_factory.mktemp("run")
    _correct_chart().save(root / "chartqa" / "chart-1")
    _hostile().save(root / "docvqa" / "doc-7")
    _unscored().save(root / "chartqa" / "chart-2")
    _lost_image().save(root / "deep" / "er" / "receipt-3")
    (root / "deep" / "er" / "receipt-3" / "images" / "0000.png").unlink()
    (root / "broken").mkdir()
    (root / "broken" / "trajectory.json").write_text("{not json", encoding="utf-8")
    (root / "old-schema").mkdir()
    (root / "old-schema" / "trajectory.json").write_text(json.dumps({"task": "x"}), encoding="utf-8")
    return root


@pytest.fixture(scope="module")
def page(run_folder: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_viewer([run_folder], tmp_path_factory.mktemp("page") / "view.html")


# ---------------------------------------------------------------------------------------- finding


def test_collect_finds_trajectories_at_any_depth_and_lists_bad_files(run_folder: Path) -> None:
    collection = collect([run_folder, run_folder / "chartqa" / "chart-1" / "trajectory.json", run_folder / "nope"])
    assert sorted(item.trajectory.task_id for item in collection.loaded) == ["chart-1", "chart-2", "doc-7", "receipt-3"]
    reasons = {failure.path.parent.name: failure.reason for failure in collection.failures}
    assert set(reasons) == {"broken", "old-schema", run_folder.name}
    assert "not a valid trajectory" in reasons["broken"] and "task_id" in reasons["old-schema"]
    assert reasons[run_folder.name] == "no such file or folder"


def test_nothing_to_show_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(NoTrajectoriesFound):
        write_viewer([tmp_path], tmp_path / "view.html")
    assert not (tmp_path / "view.html").exists()


@pytest.mark.parametrize(
    ("text", "parts"),
    [
        ("plain", [(False, "plain")]),
        ("<think>a</think>b", [(True, "a"), (False, "b")]),
        ("a</think>b", [(True, "a"), (False, "b")]),
        ("x<think>still going", [(False, "x"), (True, "still going")]),
        ("<think></think>only", [(False, "only")]),
    ],
)
def test_split_think(text: str, parts: list[tuple[bool, str]]) -> None:
    assert split_think(text) == parts


# ---------------------------------------------------------------------------------------- the file


class _Tags(HTMLParser):
    """Every start tag of a page with its attributes, as a browser's tokenizer sees them."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))


def test_page_is_self_contained_and_escapes_everything(page: Path) -> None:
    text = page.read_text(encoding="utf-8")
    parser = _Tags()
    parser.feed(text)
    assert [tag for tag, _ in parser.tags].count("script") == 1
    assert text.count("</script>") == 1, "only the page's own script may close a script element"
    attributes = [(tag, name, value or "") for tag, attrs in parser.tags for name, value in attrs.items()]
    assert not [a for a in attributes if a[1].startswith("on")], "no inline event handlers"
    assert not [a for a in attributes if a[1] in ("href", "action", "srcset")], "no links"
    assert all(value.startswith("data:image/") for _, name, value in attributes if name == "src")
    assert "&lt;/script&gt;&lt;img src=x onerror=alert(1)&gt;" in text
    assert "Content-Security-Policy" in text
    assert 'width="1024" height="614"' in text, "the 2000x1200 input is embedded at most 1024 px wide"
    assert "could not load (2)" in text


def test_cli_writes_the_page_and_prints_its_path(run_folder: Path, tmp_path: Path) -> None:
    out = tmp_path / "sub" / "page.html"
    done = CliRunner().invoke(app, ["view", str(run_folder / "chartqa"), "--out", str(out)])
    assert done.exit_code == 0, done.output
    assert done.stdout.strip() == str(out) and out.stat().st_size > 0


def test_cli_exits_2_when_no_trajectory_loads(run_folder: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    empty = runner.invoke(app, ["view", str(tmp_path), "--out", str(tmp_path / "a.html")])
    assert empty.exit_code == 2 and "no trajectory.json" in empty.stderr
    assert not (tmp_path / "a.html").exists()
    broken = runner.invoke(app, ["view", str(run_folder / "broken"), "--out", str(tmp_path / "b.html")])
    assert broken.exit_code == 2 and "could not be loaded" in broken.stderr
    assert "could not load (1)" in (tmp_path / "b.html").read_text(encoding="utf-8")


def test_cli_help_has_examples() -> None:
    done = CliRunner().invoke(app, ["view", "--help"], env={"COLUMNS": "160"})
    assert done.exit_code == 0 and "codevision view runs/a runs/b --out compare.html" in done.stdout


# ---------------------------------------------------------------------------------------- the browser

ELEMENT = "element-6066-11e4-a52e-4f735466cecf"
BACKSPACE = "\ue003"


class WebDriver:
    """Just enough of the W3C WebDriver protocol, spoken to chromedriver over HTTP."""

    def __init__(self, profile: Path) -> None:
        self.process = subprocess.Popen(
            [CHROMEDRIVER or "chromedriver", "--port=0"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
        )
        self.base = f"http://127.0.0.1:{self._port()}"
        # Drain chromedriver's stdout so that it never blocks on a full pipe.
        threading.Thread(target=self.process.stdout.read, daemon=True).start()  # type: ignore[union-attr]
        arguments = [
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--window-size=1280,900",
            f"--user-data-dir={profile}",
        ]
        capabilities = {
            "browserName": "chrome",
            "unhandledPromptBehavior": "ignore",  # an alert() stays open, so the test can see it
            "goog:loggingPrefs": {"browser": "ALL"},
            "goog:chromeOptions": {"binary": CHROMIUM, "args": arguments},
        }
        session = self._request("POST", "/session", {"capabilities": {"alwaysMatch": capabilities}})
        self.base += f"/session/{session['sessionId']}"
        self.call("POST", "/timeouts", {"script": 20_000})

    def _port(self) -> int:
        """chromedriver picks a free port itself (``--port=0``) and prints it."""
        deadline = time.monotonic() + 20
        assert self.process.stdout is not None
        while time.monotonic() < deadline:
            ready, _, _ = select.select([self.process.stdout], [], [], 0.5)
            line = self.process.stdout.readline() if ready else ""
            if match := re.search(r"started successfully on port (\d+)", line):
                return int(match.group(1))
            if self.process.poll() is not None:
                break
        raise RuntimeError("chromedriver did not start")

    def _request(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(
            self.base + path, data=data, method=method, headers={"Content-Type": "application/json"}
        )
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                return json.load(response)["value"]
        except urllib.error.HTTPError as exc:
            error = json.load(exc)["value"]
            raise WebDriverError(error["error"], error.get("message", "")) from None

    def call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        return self._request(method, path, body if body is not None or method != "POST" else {})

    def script(self, source: str, *args: Any) -> Any:
        return self.call("POST", "/execute/sync", {"script": source, "args": list(args)})

    def async_script(self, source: str) -> Any:
        return self.call("POST", "/execute/async", {"script": source, "args": []})

    def find(self, css: str) -> str:
        return self.call("POST", "/element", {"using": "css selector", "value": css})[ELEMENT]

    def click(self, css: str) -> None:
        self.call("POST", f"/element/{self.find(css)}/click")

    def choose(self, select_css: str, value: str) -> None:
        """Pick the option whose value is ``value``, by clicking it as a user would."""
        options = {"using": "css selector", "value": "option"}
        for option in self.call("POST", f"/element/{self.find(select_css)}/elements", options):
            if self.call("GET", f"/element/{option[ELEMENT]}/property/value") == value:
                self.call("POST", f"/element/{option[ELEMENT]}/click")
                return
        raise AssertionError(f"{select_css} has no option {value!r}")

    def type(self, css: str, text: str) -> None:
        """Replace the field's text key by key (backspaces first), so the page sees ``input`` events."""
        element = self.find(css)
        erase = BACKSPACE * len(self.call("GET", f"/element/{element}/property/value"))
        self.call("POST", f"/element/{element}/value", {"text": erase + text})

    def alert(self) -> str | None:
        try:
            return self.call("GET", "/alert/text")
        except WebDriverError as exc:
            if exc.code == "no such alert":
                return None
            raise

    def console(self) -> list[dict[str, Any]]:
        return self.call("POST", "/se/log", {"type": "browser"})

    def quit(self) -> None:
        try:
            self.call("DELETE", "")
        finally:
            self.process.terminate()
            self.process.wait(timeout=10)


class WebDriverError(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message.splitlines()[0] if message else ''}")
        self.code = code


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WebDriver]:
    if CHROMIUM is None or CHROMEDRIVER is None:
        pytest.skip(f"needs Chromium and ChromeDriver ({INSTALL_HINT})")
    driver = WebDriver(tmp_path_factory.mktemp("chromium-profile"))
    try:
        yield driver
    finally:
        driver.quit()


VISIBLE = (
    "return [...document.querySelectorAll('details.traj')].filter((d) => !d.hidden)"
    ".map((d) => d.querySelector('.id').textContent)"
)
COUNT = "return Number(document.getElementById('visible-count').textContent)"
WAIT_FOR_IMAGES = """
const done = arguments[arguments.length - 1];
const deadline = Date.now() + 15000;
const step = () => {
  const pending = [...document.images].filter((img) => !img.complete);
  if (pending.length === 0 || Date.now() > deadline) {
    done([...document.images].map((img) => [img.alt, img.complete, img.naturalWidth, img.naturalHeight]));
    return;
  }
  pending[0].scrollIntoView();  // images load lazily, when they come into view
  setTimeout(step, 20);
};
step();
"""


def test_page_in_chromium(browser: WebDriver, page: Path) -> None:
    browser.call("POST", "/url", {"url": page.as_uri()})
    assert browser.script("return document.readyState") == "complete"
    assert browser.script(COUNT) == 4
    assert sorted(browser.script(VISIBLE)) == ["chart-1", "chart-2", "doc-7", "receipt-3"]
    failures = browser.script("return document.querySelectorAll('#failures li').length")
    assert failures == 2

    # Every embedded image renders, at most 1024 px on its long side; the lost file is reported in its place.
    browser.click("#expand-all")
    images = browser.async_script(WAIT_FOR_IMAGES)
    assert len(images) == 3, images  # chart input and crop, hostile input; the receipt's file is gone
    assert all(complete and 0 < max(width, height) <= 1024 for _, complete, width, height in images), images
    assert browser.script("return document.querySelectorAll('figure.shot.missing').length") == 1

    # The payload is on the page as text and nowhere as markup.
    assert browser.alert() is None
    assert browser.script("return document.querySelectorAll('img:not([src^=\"data:\"])').length") == 0
    assert browser.script("return document.scripts.length") == 1
    question = browser.script(
        "return [...document.querySelectorAll('details.traj')]"
        ".find((d) => d.querySelector('.id').textContent === arguments[0]).querySelector('.question').textContent",
        "doc-7",
    )
    assert question.endswith(PAYLOAD)

    # Filters: correctness check boxes, stop reason, benchmark, text search.
    browser.click('input[name="outcome"][value="correct"]')
    assert browser.script(COUNT) == 2 and sorted(browser.script(VISIBLE)) == ["chart-2", "doc-7"]
    browser.click('input[name="outcome"][value="incorrect"]')
    browser.click('input[name="outcome"][value="unknown"]')
    assert browser.script(COUNT) == 0
    assert browser.script("return document.getElementById('no-match').hidden") is False
    for outcome in ("correct", "incorrect", "unknown"):
        browser.click(f'input[name="outcome"][value="{outcome}"]')
    assert browser.script(COUNT) == 4

    browser.choose("#f-stop", "=max_turns")
    assert browser.script(VISIBLE) == ["doc-7"] and browser.script(COUNT) == 1
    browser.choose("#f-stop", "")
    browser.choose("#f-source", "=chartqa")
    assert sorted(browser.script(VISIBLE)) == ["chart-1", "chart-2"]
    browser.choose("#f-source", f"={QUOTED_SOURCE}")
    assert browser.script(VISIBLE) == ["doc-7"]
    browser.choose("#f-source", "")

    browser.type("#f-search", "RECEIPT total")
    assert browser.script(VISIBLE) == ["receipt-3"]
    browser.type("#f-search", "onerror=alert")
    assert browser.script(VISIBLE) == ["doc-7"]
    browser.type("#f-search", "")
    assert browser.script(COUNT) == 4

    assert browser.alert() is None
    errors = [entry for entry in browser.console() if entry["level"] in ("SEVERE", "WARNING")]
    assert errors == [], errors


def test_captions_say_what_a_tool_image_shows_or_why_it_is_not_believed(tmp_path: Path) -> None:
    t = Trajectory(task_id="lineage", protocol="codevision", question="q")
    t.add_image(gradient_image(), "input")
    shown = t.add_image(gradient_image(48, 64), "tool", 0)
    forged = t.add_image(gradient_image(48, 64), "tool", 0)
    t.images[shown].lineage = Lineage(
        status="verified", input=0, matrix=(0, -1, 64, 1, 0, 0), box=(0, 0, 64, 48), angle=90.0, mirrored=False
    )
    t.images[forged].lineage = Lineage(status="mismatch", reason="its pixels do not match the replayed trace")
    t.turns = [Turn(index=0, text="x", outcomes=[ToolOutcome(action=0, status="ok", image_indices=[shown, forged])])]
    t.save(tmp_path / "t")
    text = write_viewer([tmp_path / "t"], tmp_path / "view.html").read_text(encoding="utf-8")
    assert "shows [0, 0, 64, 48] of input 0, turned 90°" in text
    assert "not verified (mismatch): its pixels do not match the replayed trace" in text
