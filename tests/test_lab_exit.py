"""Processes that end without the interpreter's teardown (``smoothlab.lab.run.lifeline``): the
``smoothlab`` command's :func:`exit_now` and the pool's workers keep what a normal exit does
(its status, ``atexit`` handlers, ``weakref.finalize`` callbacks, buffered output) and skip
only the deallocation of every object, which would finalise objects in reference cycles."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest

from smoothlab.lab.run.executors import LocalExecutor
from smoothlab.lab.run.lifeline import spawn_context

# A process that leaves a trace of each part of its exit: an atexit handler, a weakref.finalize
# callback (what removes a TemporaryDirectory), output still in stdout's buffer, and the
# __del__ of an object in a reference cycle, which only the interpreter's teardown finalises.
SCRIPT = """
import atexit, os, sys, tempfile, threading, time, weakref
atexit.register(lambda: os.write(1, b"atexit\\n"))
class Cycle:  # alive until the teardown clears this module, then collected
    def __del__(self, write=os.write):  # the teardown may have cleared ``os`` already
        write(1, b"teardown\\n")
cycle = Cycle(); cycle.me = cycle
weakref.finalize(cycle, os.write, 1, b"finalize\\n")
folder = tempfile.TemporaryDirectory()
os.write(1, (folder.name + "\\n").encode())
sys.stdout.write("buffered\\n")  # not flushed: the exit must flush it
{end}
"""


def _run(end: str) -> tuple[int, list[str]]:
    code = textwrap.dedent(SCRIPT).format(end=textwrap.dedent(end))
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    return done.returncode, done.stdout.splitlines()


def test_exit_now_keeps_status_handlers_finalizers_output_and_skips_the_teardown() -> None:
    code, lines = _run("from smoothlab.lab.run.lifeline import exit_now\nexit_now(3)")
    assert code == 3
    assert {"atexit", "finalize", "buffered"} <= set(lines)
    assert "teardown" not in lines
    assert not Path(lines[0]).exists()  # the temporary folder was removed


def test_a_normal_exit_tears_down_where_exit_now_does_not() -> None:
    code, lines = _run("sys.exit(3)")  # the control: the same script, a normal exit
    assert code == 3
    assert {"atexit", "finalize", "buffered", "teardown"} <= set(lines)


def test_exit_now_exits_normally_while_a_thread_that_is_not_a_daemon_runs() -> None:
    end = """
    from smoothlab.lab.run.lifeline import exit_now
    threading.Thread(target=lambda: (time.sleep(0.3), os.write(1, b"thread\\n"))).start()
    exit_now(4)
    """
    code, lines = _run(end)
    assert code == 4
    assert {"thread", "atexit", "finalize", "buffered", "teardown"} <= set(lines)


def test_exit_now_exits_normally_under_a_profiler() -> None:
    # ``python -m cProfile -m smoothlab.lab ...`` writes its report after the program returns
    end = """
    from smoothlab.lab.run.lifeline import exit_now
    sys.setprofile(lambda *args: None)
    exit_now(5)
    """
    code, lines = _run(end)
    assert code == 5
    assert "teardown" in lines


def test_exit_now_ignores_a_closed_stdout() -> None:
    code = "import sys\nfrom smoothlab.lab.run.lifeline import exit_now\nprint('x')\nexit_now(0)"
    env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}  # print buffers
    reader = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, env=env)
    assert reader.stdout is not None
    reader.stdout.close()  # as ``smoothlab run ... | head`` does
    assert reader.wait(timeout=60) == 0


_kept: object = None


def _leave_traces(folder: str) -> int:
    """In a pool worker: the same traces as SCRIPT's, written as files."""
    import atexit
    import os
    import weakref

    global _kept
    teardown = Path(folder, "teardown")

    class Cycle:
        def __del__(self, touch: Callable[[], None] = teardown.touch) -> None:
            touch()

    _kept = Cycle()  # alive until the teardown clears this module, then collected
    _kept.me = _kept  # type: ignore[attr-defined]
    weakref.finalize(_kept, Path(folder, "finalize").touch)
    atexit.register(Path(folder, "atexit").touch)
    return os.getpid()


def test_pool_workers_end_with_their_exit_handlers_and_without_the_teardown(
    tmp_path: Path,
) -> None:
    executor = LocalExecutor(1)
    try:
        pid = executor.pool.submit(_leave_traces, str(tmp_path)).result(timeout=120)
    finally:
        executor.close()  # waits for the worker to end
    assert pid > 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["atexit", "finalize"]


def test_the_workers_context_spawns() -> None:
    context = spawn_context()
    assert context.get_start_method() == "spawn"
    assert context.Process.__name__ == "_WorkerProcess"


def test_the_console_script_is_console_and_python_m_runs_it() -> None:
    from importlib.metadata import entry_points

    (entry,) = entry_points(group="console_scripts", name="smoothlab")
    assert entry.value == "smoothlab.lab.cli:console"
    done = subprocess.run(
        [sys.executable, "-m", "smoothlab.lab", "show-config", "no-such.toml"],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 2
    assert done.stderr == "smoothlab: error: config file not found: no-such.toml\n"


@pytest.mark.parametrize("code", [0, 2, 130])
def test_console_exits_with_mains_status(code: int, monkeypatch: pytest.MonkeyPatch) -> None:
    import smoothlab.lab.cli as cli

    ended: list[int] = []

    def fake_exit(status: int) -> None:
        ended.append(status)

    monkeypatch.setattr(cli, "main", lambda: code)
    monkeypatch.setattr(cli, "exit_now", fake_exit)
    cli.console()
    assert ended == [code]
