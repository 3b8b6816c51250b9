"""The ``smoothlab`` command end to end, in subprocesses: a tiny grid, resuming, errors, and
resuming after SIGKILL at random moments (no finished run lost or duplicated, no stray files)."""

from __future__ import annotations

import os
import random
import re
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("sklearn")
pytest.importorskip("rich")
pytest.importorskip("matplotlib")
pytest.importorskip("safetensors")

from smoothlab.lab.cli import main
from smoothlab.lab.run.store import ResultsStore

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
rates = [0.0, 0.3]
[methods.ce]
[methods.ls]
smoothing = 0.2
"""


def _cli(*args: str, cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "smoothlab.lab", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "COLUMNS": "200"},
    )


def _keys_if_any(folder: Path) -> list[str]:
    if not (folder / "results.sqlite").exists():
        return []
    try:
        return _keys(folder)
    except sqlite3.OperationalError:  # the runner has not created the table yet
        return []


def _executors(folder: Path) -> list[str]:
    store = ResultsStore(folder)
    try:
        return [info["executor"] for info in store.provenance().values()]
    finally:
        store.close()


def _keys(folder: Path) -> list[str]:
    with sqlite3.connect(folder / "results.sqlite") as db:
        return [key for (key,) in db.execute("SELECT key FROM runs")]


def test_run_prints_the_table_writes_the_report_and_skips_finished_runs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "tiny.toml").write_text(TINY)
    out = tmp_path / "out"
    first = _cli("run", "tiny.toml", "--workers", "1", "--out", str(out), "--no-report",
                 cwd=tmp_path)  # fmt: skip
    assert first.returncode == 0, first.stderr
    assert "4 runs trained, 0 already done, 0 failed" in first.stdout
    assert " s (auto: stacked); results in " in first.stdout  # the default executor's choice
    assert _executors(out) == ["auto (stacked)"]  # and each experiment's provenance keeps it
    for text in ("ce", "ls(smoothing=0.2)", "symmetric", "accuracy", "ECE (TS)", "±"):
        assert text in first.stdout
    assert len(list((out / "weights").glob("*.safetensors"))) == 4
    # a checkpoint left by a kill between storing a run and removing it goes on the next start
    stale = out / "checkpoints" / _keys(out)[0]
    stale.mkdir(parents=True)
    (stale / "model-1.safetensors").write_bytes(b"")
    # in process from here on (same code path, no interpreter start-up): one more noise rate
    # and a method smoothing towards the ce runs train only the new runs, teachers first
    code = main(["run", str(tmp_path / "tiny.toml"), "--workers", "1", "--out", str(out),
                 "--no-report", "--set", "noise.rates=[0.0, 0.3, 0.1]",
                 "--set", "methods.ls-teacher.smoothing=0.3"])  # fmt: skip
    assert code == 0
    shown = capsys.readouterr().out
    assert "5 runs trained, 4 already done" in shown
    assert " s (auto: stacked, then local); results in " in shown  # teachers first, then ls-teacher
    assert _executors(out) == ["auto (stacked, then local)"]
    assert len(set(_keys(out))) == len(_keys(out)) == 9
    assert not stale.exists()
    assert main(["report", str(out)]) == 0
    assert f"report: {out / 'report' / 'index.html'}" in capsys.readouterr().out
    assert (out / "report" / "accuracy_vs_noise.png").is_file()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["run", "missing.toml"], "smoothlab: error: config file not found: missing.toml"),
        (["run", "bad.toml"], "bad.toml: unknown key `train.epoch`; did you mean `epochs`?"),
        (["run", "tiny.toml", "--set", "epochs"], "`--set` must look like section.key=value"),
        (["run", "tiny.toml", "--set", "train.lr=fast"], "`train.lr` must be a number, got 'fast'"),
        (["run", "tiny.toml", "--workers", "0"], "`--workers` must be >= 1, got 0"),
        (["report", "nowhere"], "no results in nowhere"),
        (["show-config", "bad.toml"], "unknown key `train.epoch`"),
        (
            ["run", "tiny.toml", "--out", "tiny.toml"],
            "cannot create the results folder tiny.toml: File exists",
        ),
        (["report", "."], "no results in ."),
    ],
)
def test_errors_are_one_line_and_exit_code_2(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    args: list[str],
    message: str,
) -> None:
    (tmp_path / "tiny.toml").write_text(TINY)
    (tmp_path / "bad.toml").write_text("[train]\nepoch = 3\n")
    monkeypatch.chdir(tmp_path)
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert message in err
    assert not (tmp_path / "results").exists()


def test_list_and_show_config(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["list"]) == 0
    listing = capsys.readouterr().out
    for name in ("ce", "ls-teacher", "ivon", "sam", "digits", "resnet56v2", "pairflip"):
        assert f"  {name} " in listing
    calibrators = listing.split("calibrators ([calibration] methods")[1]
    for name in ("temperature", "vector", "matrix", "dirichlet", "histogram", "isotonic"):
        assert f"  {name} " in calibrators
    assert (
        "MS-ODIR, metrics suffixed _ms (Kull et al., NeurIPS 2019, options off_diagonal" in listing
    )
    # in each section the descriptions start in one column, past the longest name
    for section in re.split(r"^\S.*:$", listing, flags=re.M)[1:]:
        entries = [line for line in section.splitlines() if re.match(r"  \S", line)]
        starts = {re.match(r"  \S+ +", line).end() for line in entries}  # type: ignore[union-attr]
        assert len(starts) == 1, entries
    (tmp_path / "tiny.toml").write_text(TINY)
    assert main(["show-config", str(tmp_path / "tiny.toml"), "--set", "train.epochs=9"]) == 0
    shown = capsys.readouterr().out
    assert '"epochs": 9' in shown and '"val_fraction": 0.1' in shown


def test_list_and_show_config_document_method_schedule_overrides(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import json

    assert main(["list"]) == 0
    listing = capsys.readouterr().out
    assert "its lr, lr_schedule, warmup_epochs replace [train]'s" in listing
    (tmp_path / "ivon.toml").write_text(TINY + '[methods.ivon]\nlr_schedule = "cosine"\n')
    warm = ["--set", "train.warmup_epochs=1", "--set", "train.lr_schedule=step"]
    assert main(["show-config", str(tmp_path / "ivon.toml"), *warm]) == 0
    shown = json.loads(capsys.readouterr().out)
    ivon = shown["methods"]["ivon"]
    assert ivon["lr"] == [0.2] and ivon["lr_schedule"] == ["cosine"]
    assert ivon["warmup_epochs"] == [1]  # unset: the [train] value it inherits, resolved
    assert shown["methods"]["ls"] == {"smoothing": [0.2]} and shown["methods"]["ce"] == {}
    assert shown["train"]["lr_schedule"] == "step"


@pytest.mark.slow
def test_sigkill_at_random_moments_loses_and_duplicates_nothing(tmp_path: Path) -> None:
    # 12 runs of about half a second each, so that kills land mid-grid
    # (with mid-run checkpoints every 10 epochs, so kills also hit checkpoint writes)
    grid = TINY.replace("seeds = 1", "seeds = 3\ncheckpoint_every = 10")
    grid = grid.replace("epochs = 2", "epochs = 30")
    (tmp_path / "grid.toml").write_text(grid)
    out = tmp_path / "out"
    # the process pool stores runs one by one (the default executor stacks these 12 runs,
    # which then finish together: test_sigkill_mid_stack_resumes_from_its_checkpoints)
    args = [sys.executable, "-m", "smoothlab.lab", "run", "grid.toml", "--workers", "1",
            "--executor", "local", "--out", str(out), "--no-report"]  # fmt: skip
    rng = random.Random(7)
    seen: set[str] = set()
    for _ in range(3):
        process = subprocess.Popen(
            args, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            start_new_session=True,  # its own process group: the kill takes the workers too
        )  # fmt: skip
        # kill at a random moment after this start has stored a run, i.e. mid-grid
        deadline = time.monotonic() + 60
        while len(_keys_if_any(out)) <= len(seen) and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(rng.uniform(0.0, 0.5))
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
        keys = _keys_if_any(out)
        assert len(keys) == len(set(keys))
        assert seen <= set(keys)  # nothing finished earlier has been lost
        seen = set(keys)
    final = _cli(*args[3:], cwd=tmp_path)
    assert final.returncode == 0, final.stderr
    assert 0 < len(seen) < 12
    assert f"{12 - len(seen)} runs trained, {len(seen)} already done" in final.stdout
    keys = _keys(out)
    assert len(keys) == len(set(keys)) == 12
    assert sorted(p.stem for p in (out / "weights").iterdir()) == sorted(keys)
    assert not [p for p in out.rglob("*") if p.name.startswith(".tmp-")]
    assert not list(out.glob("checkpoints/*/*"))  # removed once their runs were stored


@pytest.mark.slow
def test_sigkill_mid_stack_resumes_from_its_checkpoints(tmp_path: Path) -> None:
    # the default executor trains these 12 small runs as one stack, checkpointed every 5 epochs
    grid = TINY.replace("seeds = 1", "seeds = 3\ncheckpoint_every = 5")
    (tmp_path / "grid.toml").write_text(grid.replace("epochs = 2", "epochs = 40"))
    out = tmp_path / "out"
    args = ["run", "grid.toml", "--workers", "1", "--out", str(out), "--no-report"]
    process = subprocess.Popen(
        [sys.executable, "-m", "smoothlab.lab", *args], cwd=tmp_path,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    deadline = time.monotonic() + 60
    while not list(out.glob("**/state.pt")) and time.monotonic() < deadline:
        time.sleep(0.05)
    os.killpg(process.pid, signal.SIGKILL)  # mid-stack: a checkpoint is written, no run stored
    process.wait()
    assert list(out.glob("**/state.pt")) and _keys_if_any(out) == []
    final = _cli(*args, cwd=tmp_path)
    assert final.returncode == 0, final.stderr
    assert "12 runs trained, 0 already done, 0 failed" in final.stdout
    keys = _keys(out)
    assert len(keys) == len(set(keys)) == 12
    assert not list(out.glob("**/state.pt"))  # a finished run's checkpoints are removed
    assert sorted(p.stem for p in (out / "weights").iterdir()) == sorted(keys)
