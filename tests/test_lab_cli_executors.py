"""The CLI's executor options: --num-gpus and --max-retries reach the Ray executor (a stand-in
here, so no Ray is needed), and misuse stops before anything runs with one line and exit code 2."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import ClassVar

import pytest

pytest.importorskip("sklearn")
pytest.importorskip("safetensors")

from smoothlab.lab import cli
from smoothlab.lab.run import executors
from smoothlab.lab.run.executors import make_executor
from smoothlab.lab.train.loop import ProgressFn, RunResult, RunTask, execute

TINY = """
name = "tiny"
seeds = 1
[data]
dataset = "digits"
train_subset = 120
test_subset = 60
[model]
hidden = [8]
[train]
epochs = 1
batch_size = 60
[noise]
rates = [0.0]
[methods.ce]
"""


class _FakeRay:
    """Records how it was built; trains in this process."""

    built: ClassVar[list[tuple[int | None, str | None, float, int]]] = []

    def __init__(
        self, workers: int | None, address: str | None, num_gpus: float, max_retries: int
    ) -> None:
        self.built.append((workers, address, num_gpus, max_retries))

    def run_batch(
        self, tasks: Sequence[RunTask], progress: ProgressFn | None = None
    ) -> Iterator[RunResult]:
        for task in tasks:
            yield execute(task)

    def close(self) -> None:
        pass


@pytest.fixture
def fake_ray(monkeypatch: pytest.MonkeyPatch) -> type[_FakeRay]:
    monkeypatch.setattr(executors, "RayExecutor", _FakeRay)
    _FakeRay.built = []
    return _FakeRay


def test_make_executor_passes_gpus_and_retries_to_ray(fake_ray: type[_FakeRay]) -> None:
    make_executor("ray", 2, "10.0.0.1:6379", num_gpus=0.25, max_retries=1)
    make_executor("ray")
    assert fake_ray.built == [(2, "10.0.0.1:6379", 0.25, 1), (None, None, 0.0, 3)]


def test_make_executor_refuses_ray_options_elsewhere() -> None:
    with pytest.raises(ValueError, match=r"^`num_gpus` must be 0 unless the executor is ray, got 1.0 with 'stacked'$"):  # fmt: skip
        make_executor("stacked", num_gpus=1.0)
    with pytest.raises(ValueError, match=r"^`max_retries` must be 3 \(the default\) unless the executor is ray, got 0 with 'local'$"):  # fmt: skip
        make_executor("local", max_retries=0)


def test_cli_flags_reach_the_ray_executor(fake_ray: type[_FakeRay], tmp_path: Path) -> None:
    config = tmp_path / "tiny.toml"
    config.write_text(TINY)
    argv = ["run", str(config), "--out", str(tmp_path / "out"), "--no-report", "--workers", "1"]
    assert cli.main([*argv, "--executor", "ray", "--num-gpus", "0.25", "--max-retries", "1"]) == 0
    assert fake_ray.built == [(1, None, 0.25, 1)]
    assert cli.main([*argv, "--executor", "ray"]) == 0  # defaults: no GPU, 3 retries
    assert fake_ray.built[-1] == (1, None, 0.0, 3)


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--num-gpus", "0.5"], "`--num-gpus` needs --executor ray, got --executor auto"),
        (["--max-retries", "2", "--executor", "stacked"],
         "`--max-retries` needs --executor ray, got --executor stacked"),
        (["--executor", "ray", "--num-gpus", "-1"], "`--num-gpus` must be >= 0, got -1.0"),
        (["--executor", "ray", "--num-gpus", "nan"], "`--num-gpus` must be >= 0, got nan"),
        (["--executor", "ray", "--max-retries", "-2"], "`--max-retries` must be >= 0, got -2"),
    ],
)  # fmt: skip
def test_cli_ray_options_misused(
    flags: list[str], message: str, fake_ray: type[_FakeRay], tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    config = tmp_path / "tiny.toml"
    config.write_text(TINY)
    assert cli.main(["run", str(config), "--out", str(tmp_path / "out"), *flags]) == 2
    assert capsys.readouterr().err == f"smoothlab: error: {message}\n"
    assert fake_ray.built == [] and not (tmp_path / "out").exists()
