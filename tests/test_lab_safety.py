"""Process safety (issue 13, section 2): one runner per results folder, workers that die with
their driver, read-only results, a missing dataset caught once before the grid, failed runs kept
with their full traceback, and a Ray runtime the caller started left running."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import types
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

pytest.importorskip("sklearn")
pytest.importorskip("rich")
pytest.importorskip("matplotlib")

import smoothlab.datasets.paths
import smoothlab.lab.run.store as store_module
from smoothlab.lab.cli import main
from smoothlab.lab.plan.loading import config_from_dict
from smoothlab.lab.plan.schema import ConfigError
from smoothlab.lab.run.lock import FolderLocked, folder_lock
from smoothlab.lab.run.runner import run_experiment
from smoothlab.lab.run.store import ResultsStore, RunRow, StoreError
from smoothlab.lab.train.loop import ProgressFn, RunResult, RunTask

TINY = """
name = "tiny"
seeds = 1
[data]
dataset = "digits"
train_subset = 300
test_subset = 150
[model]
hidden = [16]
[train]
epochs = 2
batch_size = 100
[noise]
rates = [0.3]
[methods.ce]
"""


class FailingExecutor:
    """Every run fails with a traceback of several lines; records what it was asked."""

    def __init__(self) -> None:
        self.batches: list[list[str]] = []

    def run_batch(
        self, tasks: Sequence[RunTask], progress: ProgressFn | None = None
    ) -> Iterator[RunResult]:
        self.batches.append([t.key for t in tasks])
        for task in tasks:
            error = 'Traceback (most recent call last):\n  File "x.py", line 1\nValueError: boom\n'
            yield RunResult(task.key, error=error)

    def close(self) -> None:
        pass


# --- the lock ----------------------------------------------------------------------------------


def test_a_second_run_on_a_locked_folder_exits_at_once_naming_the_holder(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "tiny.toml").write_text(TINY)
    out = tmp_path / "out"
    with folder_lock(out):  # this process holds it, as another `smoothlab run` would
        start = time.monotonic()
        assert main(["run", str(tmp_path / "tiny.toml"), "--out", str(out)]) == 2
        # "at once": no training, no waiting (the timing only guards against a hang, so it is
        # loose for a loaded machine; the missing store below shows nothing ran)
        assert time.monotonic() - start < 30
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert f"is in use by another smoothlab run (pid {os.getpid()})" in err and "--wait" in err
    assert not (out / "results.sqlite").exists()  # nothing ran


def test_wait_blocks_until_the_holder_lets_go(tmp_path: Path) -> None:
    held, release = threading.Event(), threading.Event()

    def holder() -> None:
        with folder_lock(tmp_path):
            held.set()
            release.wait(5)

    thread = threading.Thread(target=holder)
    thread.start()
    held.wait(5)
    with pytest.raises(FolderLocked), folder_lock(tmp_path):
        pass
    start = time.monotonic()  # before the timer: under load the timer may fire late, never early
    threading.Timer(0.5, release.set).start()
    with folder_lock(tmp_path, wait=True):
        waited = time.monotonic() - start
        assert release.is_set()  # it got the lock because the holder let go
    thread.join()
    assert 0.5 <= waited < 30


# --- workers die with their driver ------------------------------------------------------------


def _workers_of(driver: int) -> list[int]:
    """The driver's pool workers (not multiprocessing's resource tracker, which is no worker
    and exits by itself once the driver's end of its pipe closes)."""
    psutil = pytest.importorskip("psutil")
    try:
        children = psutil.Process(driver).children(recursive=True)
        return [p.pid for p in children if "spawn_main" in " ".join(p.cmdline())]
    except psutil.NoSuchProcess:
        return []


def _alive(pids: list[int]) -> list[int]:
    psutil = pytest.importorskip("psutil")
    alive = []
    for pid in pids:
        try:
            if psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
                alive.append(pid)
        except psutil.NoSuchProcess:
            pass
    return alive


@pytest.mark.slow
def test_a_sigkilled_driver_leaves_no_worker_alive_after_10_seconds(tmp_path: Path) -> None:
    pytest.importorskip("psutil")
    grid = TINY.replace("epochs = 2", "epochs = 400").replace("seeds = 1", "seeds = 2")
    (tmp_path / "grid.toml").write_text(grid.replace('name = "tiny"', "checkpoint_every = 1"))
    checkpoints = tmp_path / "out" / "checkpoints"
    args = [sys.executable, "-m", "smoothlab.lab", "run", "grid.toml", "--workers", "2",
            "--executor", "local", "--out", str(tmp_path / "out"), "--no-report"]  # fmt: skip
    # not its own session: a kill of the driver alone, as `kill -9 PID` of a user would
    driver = subprocess.Popen(args, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 90
    workers: list[int] = []
    training = 0
    while training < 2 and time.monotonic() < deadline and driver.poll() is None:
        time.sleep(0.2)  # both workers are training once both runs have written a checkpoint
        training = len(list(checkpoints.glob("*/state.pt")))
        workers = _workers_of(driver.pid)
    assert training == 2 and len(workers) == 2, driver.stderr.read() if driver.stderr else ""
    driver.send_signal(signal.SIGKILL)
    driver.wait()
    deadline = time.monotonic() + 10
    while _alive(workers) and time.monotonic() < deadline:
        time.sleep(0.2)
    left = _alive(workers)
    for pid in left:  # do not leave them behind for the next test
        os.kill(pid, signal.SIGKILL)
    assert left == []


def test_the_watchdog_ends_a_process_whose_driver_is_gone() -> None:
    # a grandchild watches its grandparent (not its parent: the prctl does not cover it)
    code = (
        "import os, sys, time\n"
        "from smoothlab.lab.run.lifeline import die_with\n"
        "die_with(int(sys.argv[1]), interval=0.05)\n"
        "print('watching', flush=True)\n"
        "time.sleep(30)\n"
    )
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    watcher = subprocess.Popen(
        [sys.executable, "-c", code, str(sleeper.pid)], stdout=subprocess.PIPE, text=True
    )
    assert watcher.stdout is not None and watcher.stdout.readline() == "watching\n"
    sleeper.kill()
    sleeper.wait()
    assert watcher.wait(timeout=10) == 1


# --- read-only results --------------------------------------------------------------------------


def _stored_folder(folder: Path) -> None:
    store = ResultsStore(folder)
    config = {"params": {}}
    row = RunRow("k", "tiny", "ce", "ce", "none", 0.0, 0, config, {"accuracy": 0.9}, {}, {}, 1.0)
    store.add_run(row)
    store.close()


def _read_only(monkeypatch: pytest.MonkeyPatch, folder: Path) -> None:
    """Make ``folder`` read-only: chmod where that binds, and (for root, whom chmod does not stop)
    the check the store makes."""
    for path in (folder, *folder.iterdir()):
        path.chmod(0o555 if path.is_dir() else 0o444)
    real = os.access

    def access(path: object, mode: int) -> bool:
        inside = Path(str(path)).resolve().is_relative_to(folder.resolve())
        return False if inside and mode & os.W_OK else real(path, mode)  # type: ignore[arg-type]

    monkeypatch.setattr(store_module.os, "access", access)


def test_a_read_only_folder_names_the_path_and_still_reports_elsewhere(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "archive"
    _stored_folder(folder)
    _read_only(monkeypatch, folder)
    try:
        with pytest.raises(StoreError, match=rf"^the results folder {folder} is read-only; "):
            ResultsStore(folder)
        (tmp_path / "tiny.toml").write_text(TINY)
        assert main(["run", str(tmp_path / "tiny.toml"), "--out", str(folder)]) == 2
        assert f"the results folder {folder} is read-only" in capsys.readouterr().err
        assert main(["report", str(folder), "--out", str(tmp_path / "elsewhere")]) == 0
        assert (tmp_path / "elsewhere" / "index.html").is_file()
        assert "0.900" in (tmp_path / "elsewhere" / "index.html").read_text()
    finally:
        for path in (folder, *folder.iterdir()):
            path.chmod(0o755)


# --- datasets checked once, failures kept -------------------------------------------------------


def test_a_missing_dataset_fails_once_before_any_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(smoothlab.datasets.paths, "SYSTEM_DATA_DIR", tmp_path / "system")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("SMOOTHLAB_DATA", raising=False)
    config = config_from_dict({"data": {"dataset": "mnist"}, "seeds": 1})
    executor = FailingExecutor()
    message = (
        r"^dataset `mnist` is missing 4 files \(train-images-idx3-ubyte.gz, .*\); looked in "
        rf"{tmp_path / 'system'}, {tmp_path / 'cache' / 'smoothlab'}; get them with "
        r"`smoothlab download mnist`, or set data.root to a folder that holds them$"
    )
    with pytest.raises(ConfigError, match=message):
        run_experiment(config, tmp_path / "out", executor)
    assert executor.batches == [] and not (tmp_path / "out").exists()
    (tmp_path / "mnist.toml").write_text(TINY.replace('"digits"', '"mnist"'))
    assert main(["run", str(tmp_path / "mnist.toml"), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "smoothlab download mnist" in err


def test_failed_runs_keep_their_full_traceback_and_say_where_they_were(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = config_from_dict({"seeds": 2, "noise": {"rates": [0.3]}, "methods": {"ce": {}}})
    summary = run_experiment(config, tmp_path, FailingExecutor())
    assert sorted(f.where() for f in summary.failed) == [
        "ce symmetric 0.3 seed 0",
        "ce symmetric 0.3 seed 1",
    ]
    assert {f.reason() for f in summary.failed} == {"ValueError: boom"}
    assert main(["failures", str(tmp_path)]) == 1
    out = capsys.readouterr().out
    assert out.count('File "x.py", line 1') == 2 and "2 failed runs in" in out


# --- Ray: close() leaves the caller's runtime running -------------------------------------------


def _fake_ray(monkeypatch: pytest.MonkeyPatch, initialized: bool) -> list[str]:
    calls: list[str] = []
    ray = types.ModuleType("ray")
    ray.is_initialized = lambda: initialized  # type: ignore[attr-defined]
    ray.init = lambda **kwargs: calls.append("init")  # type: ignore[attr-defined]
    ray.shutdown = lambda: calls.append("shutdown")  # type: ignore[attr-defined]
    ray.remote = lambda **kwargs: lambda function: function  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "ray", ray)
    return calls


@pytest.mark.parametrize(("initialized", "expected"), [(True, []), (False, ["init", "shutdown"])])
def test_ray_executor_shuts_down_only_a_runtime_it_started(
    monkeypatch: pytest.MonkeyPatch, initialized: bool, expected: list[str]
) -> None:
    from smoothlab.lab.run.executors import RayExecutor

    calls = _fake_ray(monkeypatch, initialized)
    RayExecutor(workers=1).close()
    assert calls == expected
