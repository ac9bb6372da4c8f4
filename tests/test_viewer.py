"""The trajectory viewer: what it finds, what it writes, and how the page behaves in a real Chromium.

Both kinds of page are tried: the default one, with its files folder, and the self-contained one.
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
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from codevision.cli import app
from codevision.eval.store import item_folder, item_key
from codevision.sandbox.results import ImageOp, ImageRef
from codevision.testing.runs import TRANSFORMS, synthetic_image, write_synthetic_run
from codevision.trajectory import Action, Lineage, Message, ToolOutcome, Trajectory, Turn, Usage
from codevision.viewer import ForeignFilesFolder, NoTrajectoriesFound, collect, files_folder_of, write_viewer
from codevision.viewer.files import MARKER
from codevision.viewer.html import split_think
from codevision.viewer.images import THUMB_SIDE
from codevision.viewer.page import RECEIVER
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
    """The default page: summaries in the page, bodies and images in ``view_files/`` beside it."""
    return write_viewer([run_folder], tmp_path_factory.mktemp("page") / "view.html")


@pytest.fixture(scope="module")
def single_file(run_folder: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The self-contained page of the same trajectories."""
    return write_viewer([run_folder], tmp_path_factory.mktemp("single") / "view.html", self_contained=True)


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


def test_self_contained_page_embeds_and_escapes_everything(single_file: Path) -> None:
    text = single_file.read_text(encoding="utf-8")
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
    assert not files_folder_of(single_file).exists()


BODY_FILE = re.compile(rf"{RECEIVER}\((\d+), (.*)\);\n", re.DOTALL)


def _bodies(page: Path) -> list[str]:
    """The trajectory bodies of a page with a files folder, from its body files, in page order."""
    bodies = []
    for script in sorted(files_folder_of(page).glob("*.js")):
        match = BODY_FILE.fullmatch(script.read_text(encoding="ascii"))
        assert match is not None, script
        bodies.append((int(match.group(1)), json.loads(match.group(2))))
    return [body for _, chunk in sorted(bodies) for body in chunk]


def test_page_with_files_escapes_everything_and_refers_only_to_its_files(page: Path, run_folder: Path) -> None:
    text = page.read_text(encoding="utf-8")
    assert text.count("</script>") == 1 and "What is the peak?" not in text, "the page holds summaries only"
    assert "&#x27;strict-dynamic&#x27;" in text and "img-src &#x27;self&#x27;" in text
    bodies = _bodies(page)
    assert len(bodies) == 4
    tags = []
    for markup in (text, *bodies):
        parser = _Tags()
        parser.feed(markup)
        tags += parser.tags
    assert [(tag, attrs) for tag, attrs in tags if tag == "script"] == [("script", {})], "only the page's own script"
    attributes = [(tag, name, value or "") for tag, attrs in tags for name, value in attrs.items()]
    assert not [a for a in attributes if a[1].startswith("on")], "no inline event handlers"
    assert not [a for a in attributes if a[1] in ("href", "action", "srcset")], "no links"
    images = [value for _, name, value in attributes if name in ("src", "data-full")]
    assert len(images) == 4  # the chart input (thumbnail and full) and its crop, the hostile input; the lost file none
    assert all(value.startswith("view_files/") and (page.parent / value).is_file() for value in images), images
    assert any("&lt;/script&gt;&lt;img src=x onerror=alert(1)&gt;" in body for body in bodies)
    chart = next(body for body in bodies if "What is the peak?" in body)
    assert f'width="{THUMB_SIDE}" height="288"' in chart, "the 2000x1200 input is shown as a thumbnail"
    full = re.search(r'data-full="([^"]+)"', chart)
    assert full is not None
    original = run_folder / "chartqa" / "chart-1" / "images" / "0000.png"
    assert (page.parent / full.group(1)).read_bytes() == original.read_bytes(), "full images are the originals"
    assert "could not load (2)" in text


def test_rebuild_reuses_its_files_and_removes_stale_ones(run_folder: Path, tmp_path: Path) -> None:
    out = tmp_path / "view.html"
    files = files_folder_of(write_viewer([run_folder], out))
    written = {path.name: path.stat().st_mtime_ns for path in files.iterdir()}
    (files / "0123abcd.png").write_bytes(b"from an earlier build")
    (files / ".tmp-cut-short").write_bytes(b"")
    write_viewer([run_folder], out)
    assert {path.name: path.stat().st_mtime_ns for path in files.iterdir()} == written, "nothing rewritten"

    write_viewer([run_folder / "docvqa"], out)
    left = {path.name for path in files.iterdir()}
    assert MARKER in left and len(left) == 3  # the marker, the hostile input, one body file
    write_viewer([run_folder / "docvqa"], out, self_contained=True)
    assert not files.exists(), "a self-contained page takes away the files of the page it replaces"


def test_only_images_heavy_to_fetch_or_decode_get_a_thumbnail(tmp_path: Path) -> None:
    t = Trajectory(task_id="sizes", protocol="code", question="q")
    t.add_image(synthetic_image(600, 400, 1), "input")  # a few kilobytes: shown as it is
    t.add_image(synthetic_image(600, 400, 2, noise=30.0), "input")  # a photograph's weight
    t.add_image(gradient_image(1100, 900), "input")  # light, but a megapixel to decode
    t.save(tmp_path / "t")
    body = _bodies(write_viewer([tmp_path / "t"], tmp_path / "view.html"))[0]
    shown = re.findall(r'<img src="[^"]+" alt="image #(\d)" width="(\d+)" height="(\d+)"([^>]*)>', body)
    sizes = [(index, width, height, "data-full" in rest) for index, width, height, rest in shown]
    assert sizes == [("0", "600", "400", False), ("1", "480", "320", True), ("2", "480", "393", True)]


def test_an_image_file_cut_short_is_reported_in_its_place(tmp_path: Path) -> None:
    t = Trajectory(task_id="cut", protocol="code", question="q")
    t.add_image(synthetic_image(600, 400, 1), "input")
    t.save(tmp_path / "t")
    image = tmp_path / "t" / "images" / "0000.png"
    image.write_bytes(image.read_bytes()[:-100])
    page = write_viewer([tmp_path / "t"], tmp_path / "view.html")
    assert '<figure class="shot missing" data-index="0"><div>image could not be shown: ' in _bodies(page)[0]
    assert [path.name for path in files_folder_of(page).iterdir() if not path.name.endswith(".js")] == [MARKER]


def test_a_files_folder_that_is_not_the_viewers_is_left_alone(run_folder: Path, tmp_path: Path) -> None:
    (tmp_path / "view_files").mkdir()
    (tmp_path / "view_files" / "notes.txt").write_text("mine", encoding="utf-8")
    with pytest.raises(ForeignFilesFolder):
        write_viewer([run_folder], tmp_path / "view.html")
    done = CliRunner().invoke(app, ["view", str(run_folder), "--out", str(tmp_path / "view.html")])
    assert done.exit_code == 2 and "not a codevision viewer" in done.stderr
    assert [path.name for path in (tmp_path / "view_files").iterdir()] == ["notes.txt"]
    assert not (tmp_path / "view.html").exists()


def test_transform_and_run_come_from_the_runs_results(tmp_path: Path) -> None:
    """Two runs of the same name are told apart; a trajectory outside any run keeps its metadata's transform."""
    first = write_synthetic_run(tmp_path / "june" / "ocr", 8)
    second = write_synthetic_run(tmp_path / "july" / "ocr", 4)
    with open(second / "results.jsonl", "a", encoding="utf-8") as results:
        results.write('{"key": "task-0@none", "transform": "cut sh')  # a run still writing its next line
    before = (second / "results.jsonl").read_bytes()
    loose = _unscored()
    loose.metadata = {"transform": "rotate:180"}
    loose.save(tmp_path / "loose")
    collection = collect([first, second, tmp_path / "loose"])
    assert (second / "results.jsonl").read_bytes() == before, "a run's results are only read"
    placed = [(item.run, item.transform) for item in collection.loaded]
    expected = [("june/ocr", TRANSFORMS[n % len(TRANSFORMS)]) for n in range(8)]
    expected += [("july/ocr", TRANSFORMS[n % len(TRANSFORMS)]) for n in range(4)]
    assert sorted(placed[:12]) == sorted(expected) and placed[12] == ("", "rotate:180")
    for item in collection.loaded[:12]:
        assert item.path.parent.name == item_folder(item_key(item.trajectory.task_id, item.transform))

    text = write_viewer([first, second, tmp_path / "loose"], tmp_path / "view.html").read_text(encoding="utf-8")
    assert '<span class="tag transform">transform rotate:90</span><span class="tag run">run june/ocr</span>' in text
    assert '<option value="=rotate:90">rotate:90 (3)</option>' in text
    assert '<option value="=july/ocr">july/ocr (4)</option>' in text and "(no run) (1)" in text


def test_cli_writes_the_page_and_prints_its_path(run_folder: Path, tmp_path: Path) -> None:
    out = tmp_path / "sub" / "page.html"
    done = CliRunner().invoke(app, ["view", str(run_folder / "chartqa"), "--out", str(out)])
    assert done.exit_code == 0, done.output
    assert done.stdout.strip() == str(out) and out.stat().st_size > 0
    assert files_folder_of(out).is_dir() and str(files_folder_of(out)) in done.stderr
    single = tmp_path / "single.html"
    done = CliRunner().invoke(app, ["view", str(run_folder / "chartqa"), "--out", str(single), "--self-contained"])
    assert done.exit_code == 0, done.output
    assert done.stdout.strip() == str(single) and not files_folder_of(single).exists()


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
        self.click_element(self.find(css))

    def click_element(self, element: str) -> None:
        """Click in the middle of the window, clear of the page's sticky header."""
        self.script("arguments[0].scrollIntoView({block: 'center'})", {ELEMENT: element})
        self.call("POST", f"/element/{element}/click")

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


# What the page fetched: body files are script elements, images are img elements (Chromium keeps no resource
# timing for file: pages).
FETCHED = "return [...document.scripts, ...document.images].map((element) => element.src).filter(Boolean)"
WAIT_FOR_BODIES = """
const done = arguments[arguments.length - 1];
const deadline = Date.now() + 15000;
const step = () => {
  const empty = [...document.querySelectorAll('details.traj[open] > .body')].filter((body) => !body.firstChild);
  if (empty.length === 0 || Date.now() > deadline) {
    done(empty.length);
    return;
  }
  setTimeout(step, 20);
};
step();
"""


def _until(browser: WebDriver, script: str, expected: Any, *args: Any, seconds: float = 15) -> Any:
    """Run ``script`` until it returns ``expected`` (what the page fetches arrives in its own time)."""
    deadline = time.monotonic() + seconds
    while (value := browser.script(script, *args)) != expected and time.monotonic() < deadline:
        time.sleep(0.05)
    return value


def _natural_width(browser: WebDriver, image: str) -> int:
    return _until(browser, "return arguments[0].complete", True, {ELEMENT: image}) and browser.script(
        "return arguments[0].naturalWidth", {ELEMENT: image}
    )


@pytest.mark.parametrize("kind", ["page", "single_file"])
def test_page_in_chromium(browser: WebDriver, kind: str, request: pytest.FixtureRequest) -> None:
    page: Path = request.getfixturevalue(kind)
    with_files = kind == "page"
    browser.call("POST", "/url", {"url": page.as_uri()})
    assert browser.script("return document.readyState") == "complete"
    assert browser.script(COUNT) == 4
    assert sorted(browser.script(VISIBLE)) == ["chart-1", "chart-2", "doc-7", "receipt-3"]
    failures = browser.script("return document.querySelectorAll('#failures li').length")
    assert failures == 2
    if with_files:
        assert browser.script(FETCHED) == [], "nothing but the page is read before a trajectory is opened"

    # Every image renders, as a thumbnail or embedded at most 1024 px; the lost file is reported in its place.
    browser.click("#expand-all")
    assert browser.async_script(WAIT_FOR_BODIES) == 0
    images = browser.async_script(WAIT_FOR_IMAGES)
    assert len(images) == 3, images  # chart input and crop, hostile input; the receipt's file is gone
    largest = THUMB_SIDE if with_files else 1024
    assert all(complete and 0 < max(width, height) <= largest for _, complete, width, height in images), images
    assert browser.script("return document.querySelectorAll('figure.shot.missing').length") == 1

    # The payload is on the page as text and nowhere as markup; nothing is loaded from elsewhere.
    assert browser.alert() is None
    sources = browser.script("return [...document.images].map((img) => img.src)")
    scripts = browser.script("return [...document.scripts].map((script) => script.src)")
    if with_files:
        files = files_folder_of(page).as_uri() + "/"
        assert all(source.startswith(files) for source in sources), sources
        assert scripts.count("") == 1 and all(script.startswith(files) for script in scripts if script), scripts
    else:
        assert all(source.startswith("data:") for source in sources) and scripts == [""]
    question = browser.script(
        "return [...document.querySelectorAll('details.traj')]"
        ".find((d) => d.querySelector('.id').textContent === arguments[0]).querySelector('.question').textContent",
        "doc-7",
    )
    assert question.endswith(PAYLOAD)
    if with_files:  # a click shows the original, 2000 px wide
        thumbnail = browser.find("figure.shot img[data-full]")
        browser.click_element(thumbnail)
        assert _natural_width(browser, thumbnail) == 2000

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


@pytest.mark.slow
def test_a_thousand_trajectories_in_chromium(browser: WebDriver, tmp_path: Path) -> None:
    """Two runs of 500: the page is small, opens with no image, filters by transform and run, loads on demand."""
    runs = [write_synthetic_run(tmp_path / name, 500, size=(520, 160)) for name in ("june", "july")]
    page = write_viewer([run / "items" for run in runs], tmp_path / "trajectories.html")
    assert page.stat().st_size < 5_000_000
    # Per item its input and its crop (light enough to need no thumbnail): both runs hold the same 500 items'
    # images, each written once; and a body file per 50 items.
    files = list(files_folder_of(page).iterdir())
    assert len(files) == 1 + 2 * 500 + 1000 // 50
    browser.call("POST", "/url", {"url": page.as_uri()})
    assert browser.script(COUNT) == 1000
    assert browser.script(FETCHED) == []

    browser.choose("#f-transform", "=rotate:90")
    assert browser.script(COUNT) == 250
    browser.choose("#f-run", "=june")
    assert browser.script(COUNT) == 125
    browser.choose("#f-transform", "")
    assert browser.script(COUNT) == 500
    browser.choose("#f-run", "")
    assert browser.script(COUNT) == 1000

    # Opening one trajectory fetches one body file, then (lazily) its images.
    browser.click("#trajectories > details.traj:nth-child(600) > summary")
    assert browser.async_script(WAIT_FOR_BODIES) == 0
    assert [name.endswith(".js") for name in browser.script(FETCHED)].count(True) == 1
    assert browser.script("return [...document.images].every((img) => img.loading === 'lazy')") is True
    assert _natural_width(browser, browser.find("details.traj[open] figure.shot img")) == 520

    # Searching for text only bodies hold fetches them all first.
    browser.type("#f-search", "bar 417?")
    assert _until(browser, COUNT, 2) == 2
    assert [name.endswith(".js") for name in browser.script(FETCHED)].count(True) == 1000 // 50
    assert browser.script("return document.getElementById('loading').hidden") is True
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
    text = "".join(_bodies(write_viewer([tmp_path / "t"], tmp_path / "view.html")))
    assert "shows [0, 0, 64, 48] of input 0, turned 90°" in text
    assert "not verified (mismatch): its pixels do not match the replayed trace" in text
