"""Behaviour of sessions as a notebook: state, display, captured output, errors, limits, concurrency."""

from __future__ import annotations

import asyncio
import itertools
import os
import signal
import threading
import time
import warnings

import numpy as np
import pytest
from PIL import Image

from codevision.sandbox import (
    Sandbox,
    SandboxBusy,
    SandboxError,
    SandboxIsolationError,
    SandboxIsolationWarning,
    SessionDeadError,
)
from tests.conftest import gradient_image


def test_state_persists_across_runs_like_a_notebook(sandbox: Sandbox, rgb_image: Image.Image) -> None:
    with sandbox.session(images=[rgb_image]) as session:
        assert session.run("import statistics\ncounter = 41\ndef bump(x):\n    return x + 1").ok
        result = session.run("counter = bump(counter)\nprint(counter, statistics.mean([1, 3]))")
        assert result.ok, result.error
        assert result.stdout == "42 2\n"


def test_sessions_never_see_each_other(sandbox: Sandbox, rgb_image: Image.Image) -> None:
    with sandbox.session(images=[rgb_image]) as first, sandbox.session(images=[rgb_image]) as second:
        assert first.run("secret = 'only-in-first'\nopen('/tmp/marker', 'w').write('x')").ok
        probe = second.run("import os\nprint('secret' in globals(), os.path.exists('/tmp/marker'))")
        assert probe.stdout == "False False\n"


def test_predefined_names_and_inputs(sandbox: Sandbox) -> None:
    first, second = gradient_image(40, 30), gradient_image(20, 10, "L")
    with sandbox.session(images=[first, second]) as session:
        result = session.run(
            "print(image.size, len(images), images[1].mode, images[1].size)\n"
            "print(np.__name__, cv2.__name__, PIL.__name__, math.pi > 3)\n"
            "print(all(callable(f) for f in (ImageOps.mirror, ImageEnhance.Contrast, ImageFilter.GaussianBlur,"
            " ImageDraw.Draw, display)))"
        )
    assert result.ok, result.error
    assert result.stdout.splitlines() == ["(40, 30) 2 L (20, 10)", "numpy cv2 PIL True", "True"]


def test_display_returns_exact_pixels_in_order(sandbox: Sandbox, rgb_image: Image.Image) -> None:
    with sandbox.session(images=[rgb_image]) as session:
        result = session.run("display(image.rotate(90, expand=True), image.convert('L'))")
    assert result.ok, result.error
    assert [img.mode for img in result.images] == ["RGB", "L"]
    np.testing.assert_array_equal(np.asarray(result.images[0]), np.asarray(rgb_image.rotate(90, expand=True)))
    np.testing.assert_array_equal(np.asarray(result.images[1]), np.asarray(rgb_image.convert("L")))
    assert result.image_info[0].origin == 0


def test_display_converts_arrays_figures_and_viewers(sandbox: Sandbox) -> None:
    code = (
        "import matplotlib.pyplot as plt\n"
        "display(np.zeros((5, 7), dtype=bool), np.full((4, 6, 3), 0.5), np.arange(12, dtype=np.int32).reshape(3, 4))\n"
        "image.show()\n"
        "fig, ax = plt.subplots(figsize=(2, 1), dpi=50)\n"
        "ax.plot([0, 1], [1, 0])\n"
        "plt.show()\n"
        "print(plt.get_fignums())"
    )
    with sandbox.session(images=[gradient_image(8, 6)]) as session:
        result = session.run(code)
    assert result.ok, result.error
    sizes = [img.size for img in result.images]
    assert sizes == [(7, 5), (6, 4), (4, 3), (8, 6), (100, 50)]
    assert np.asarray(result.images[1]).max() == 128  # floats in [0, 1] are scaled to [0, 255]
    assert np.asarray(result.images[2]).max() == 11  # small integers are kept as they are
    assert result.stdout == "[]\n"  # plt.show() closes the figures it returned


def test_display_bounds_and_rejections_are_reported(sandbox: Sandbox) -> None:
    with Sandbox(workers=1, timeout=10, max_image_pixels=10_000, max_images_per_run=2) as small:
        with small.session() as session:
            result = session.run(
                "display(Image.new('RGB', (400, 100)))\n"
                "display(Image.new('L', (0, 5)))\n"
                "display(Image.new('L', (1000, 2)))\n"
                "display(np.zeros((2, 2, 7)))\n"
                "display(Image.new('L', (10, 10)), Image.new('L', (10, 10)))\n"
                "display('not an image')"
            )
    assert result.ok, result.error
    assert [img.size for img in result.images] == [(200, 50), (10, 10)]
    text = "\n".join(result.warnings)
    assert "downscaled a 400x100 image to 200x50" in text
    assert "skipped an empty image (0x5)" in text
    assert "aspect ratio above 200" in text
    assert "shape (2, 2, 7)" in text
    assert "at most 2 images per run" in text
    assert result.stdout == "'not an image'\n"


def test_output_of_c_code_and_subprocesses_is_captured_in_order(sandbox: Sandbox) -> None:
    code = "import os, sys\nprint('a')\nos.write(1, b'b\\n')\nos.system('echo c')\nprint('d', file=sys.stderr)"
    with sandbox.session() as session:
        result = session.run(code)
    assert result.ok, result.error
    assert result.stdout == "a\nb\nc\n"
    assert result.stderr == "d\n"


def test_stdout_redirection_by_a_cell_does_not_break_later_cells(sandbox: Sandbox) -> None:
    with sandbox.session() as session:
        session.run("import sys, io\nsys.stdout = io.StringIO()")
        assert session.run("print('visible')").stdout == "visible\n"


def test_output_cap_keeps_head_and_tail_with_a_marker() -> None:
    with Sandbox(workers=1, max_output_bytes=1000) as small, small.session() as session:
        result = session.run("print('HEAD')\nprint('x' * 50_000)\nprint('TAIL')")
    assert result.ok
    assert result.stdout.startswith("HEAD\n") and result.stdout.endswith("TAIL\n")
    assert result.stdout_omitted == 50_011 - 1000
    assert f"[... {result.stdout_omitted} bytes of output omitted ...]" in result.stdout


def test_errors_show_only_model_frames_with_model_line_numbers(sandbox: Sandbox) -> None:
    with sandbox.session() as session:
        session.run("def helper(v):\n    return image_missing + v")
        result = session.run("x = 1\n\nhelper(x)")
    assert result.status == "error" and result.error_type == "NameError"
    assert result.error is not None
    assert 'File "<cell 2>", line 3, in <module>' in result.error
    assert 'File "<cell 1>", line 2, in helper' in result.error
    assert "return image_missing + v" in result.error
    assert "codevision" not in result.error and "runtime.py" not in result.error


def test_library_errors_point_at_the_calling_line(sandbox: Sandbox, rgb_image: Image.Image) -> None:
    with sandbox.session(images=[rgb_image]) as session:
        result = session.run("a = 1\nimage.crop((0, 0, 10))")
    assert result.error is not None
    assert 'File "<cell 1>", line 2' in result.error
    assert "PIL" not in result.error.split("\n")[-1] or result.error_type in ("ValueError", "TypeError")


def test_syntax_errors_name_the_line(sandbox: Sandbox) -> None:
    with sandbox.session() as session:
        result = session.run("x = 1\nif x\n    print(x)")
        assert result.status == "error" and result.error_type == "SyntaxError"
        assert 'File "<cell 1>", line 2' in (result.error or "")
        assert session.run("print('still fine')").stdout == "still fine\n"


def test_timeout_interrupts_but_keeps_state(sandbox: Sandbox) -> None:
    with sandbox.session() as session:
        started = time.monotonic()
        result = session.run("kept = 'yes'\nwhile True:\n    pass", timeout=1.0)
        assert result.status == "timeout" and result.session_alive
        assert time.monotonic() - started < 3.0
        assert "interrupted" in (result.error or "")
        assert session.run("print(kept)").stdout == "yes\n"


def test_dead_session_gives_a_clear_error(sandbox: Sandbox) -> None:
    with sandbox.session() as session:
        result = session.run("import os\nos._exit(3)")
        assert result.status == "crashed" and not result.session_alive
        assert "exited with code 3" in (result.error or "")
        with pytest.raises(SessionDeadError, match="exited with code 3"):
            session.run("print(1)")
    with sandbox.session() as closed_later:
        closed_later.run("x = 1")
    with pytest.raises(SessionDeadError, match="the session was closed"):
        closed_later.run("print(x)")


def test_input_validation_names_the_image(sandbox: Sandbox) -> None:
    with pytest.raises(TypeError, match="input image 1 is a str"):
        sandbox.session(images=[gradient_image(), "photo.png"]).open()
    with Sandbox(workers=1, max_input_pixels=100) as small:
        with pytest.raises(ValueError, match=r"input image 0 has 64x48 pixels, above max_input_pixels=100"):
            small.session(images=[gradient_image()]).open()


def test_numpy_inputs_and_unusual_modes_are_accepted(sandbox: Sandbox) -> None:
    palette = gradient_image(10, 10).convert("P")
    array = np.arange(60, dtype=np.uint8).reshape(6, 10)
    with sandbox.session(images=[palette, array]) as session:
        result = session.run("print(images[0].mode, images[1].mode, np.asarray(images[1])[5, 9])")
    assert result.stdout == "RGB L 59\n"


def test_threads_run_sessions_concurrently(sandbox: Sandbox, rgb_image: Image.Image) -> None:
    outputs: dict[int, str] = {}

    def work(index: int) -> None:
        with sandbox.session(images=[rgb_image]) as session:
            session.run(f"value = {index}")
            outputs[index] = session.run("print(value * 2)").stdout

    threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert outputs == {i: f"{i * 2}\n" for i in range(8)}


def test_asyncio_api_runs_many_sessions(sandbox: Sandbox, rgb_image: Image.Image) -> None:
    code = "import time\nstart = time.monotonic()\ntime.sleep(0.2)\nprint(n + image.size[0], start, time.monotonic())"

    async def trajectory(index: int) -> list[str]:
        async with sandbox.session(images=[rgb_image]) as session:
            await session.arun(f"n = {index}")
            return (await session.arun(code)).stdout.split()

    async def main() -> list[list[str]]:
        return await asyncio.gather(*(trajectory(i) for i in range(6)))

    results = asyncio.run(main())
    assert [int(r[0]) for r in results] == [i + 64 for i in range(6)]
    # The sessions' clocks are the host's: two runs whose intervals overlap ran at the same time.
    spans = sorted((float(r[1]), float(r[2])) for r in results)
    assert any(later[0] < earlier[1] for earlier, later in itertools.pairwise(spans))


def test_back_pressure_rejects_beyond_the_queue_bound() -> None:
    with Sandbox(workers=1, max_queue=0, timeout=5) as small, small.session() as busy, small.session() as other:
        thread = threading.Thread(target=busy.run, args=("import time\ntime.sleep(1.5)",))
        thread.start()
        time.sleep(0.5)
        with pytest.raises(SandboxBusy, match="max_queue=0"):
            other.run("print(1)")
        thread.join()
        assert other.run("print(1)").stdout == "1\n"


def test_queue_timeout_bounds_the_wait() -> None:
    with Sandbox(workers=1, max_sessions=1, queue_timeout=0.3) as small:
        with small.session(), pytest.raises(SandboxBusy, match=r"queue_timeout=0\.3"):
            small.session().open()
        with small.session() as session:
            assert session.run("print('free again')").ok


def test_missing_layers_are_named_in_a_warning_and_status() -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with Sandbox(workers=1, disable_layers=("network_namespace",)) as loose:
            status = loose.status()
            assert loose.run("print('ok')").stdout == "ok\n"
    messages = [str(w.message) for w in caught if issubclass(w.category, SandboxIsolationWarning)]
    assert any("network_namespace: disabled by configuration" in m for m in messages)
    assert status["missing_layers"] == ["network_namespace"]
    assert status["isolation"]["reasons"]["network_namespace"].startswith("disabled")


def test_strict_mode_refuses_missing_layers() -> None:
    with pytest.raises(SandboxIsolationError, match="pid_namespace"):
        Sandbox(workers=1, strict=True, disable_layers=("pid_namespace",)).start()


def test_full_isolation_on_this_host(sandbox: Sandbox) -> None:
    status = sandbox.status()
    if not status["isolation"]["running_as_root"]:
        pytest.skip("full isolation needs root or user namespaces; covered by the warning tests")
    assert status["missing_layers"] == []


def test_fork_server_is_restarted_when_it_dies(rgb_image: Image.Image) -> None:
    with Sandbox(workers=1) as fresh:
        pid = fresh.status()["fork_server_pid"]
        os.kill(pid, signal.SIGKILL)
        time.sleep(0.2)
        with fresh.session(images=[rgb_image]) as session:
            assert session.run("print('back')").stdout == "back\n"
        assert fresh.status()["fork_server_pid"] != pid


def test_image_index_addresses_inputs_then_returned_images(sandbox: Sandbox) -> None:
    first, second = gradient_image(40, 30), gradient_image(20, 10)
    with sandbox.session(images=[first, second]) as session:
        session.run("display(image.rotate(90, expand=True))")
        sizes = [session.run("print(image.size)", image_index=i).stdout for i in range(3)]
        assert sizes == ["(40, 30)\n", "(20, 10)\n", "(30, 40)\n"]
        beyond = session.run("print(image.size)", image_index=3)
        assert beyond.status == "error" and beyond.error_type == "IndexError"
        assert "this trajectory has 3 images" in (beyond.error or "")
        assert session.run("print(1)").ok


def test_a_session_whose_sandbox_was_closed_fails_with_a_sandbox_error() -> None:
    """An episode still running at shutdown gets the error the agent loop records, not the executor's."""

    async def run_after_close() -> None:
        sandbox = Sandbox(workers=1, timeout=5.0)
        session = sandbox.session()
        await session.__aenter__()
        assert (await session.arun("print(1)")).stdout == "1\n"
        sandbox.close()
        with pytest.raises(SandboxError, match="closed"):
            await session.arun("print(2)")

    asyncio.run(run_after_close())
