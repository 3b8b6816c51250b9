"""CalibrationMeter: batches, resets and processes give the numbers of the one-shot functions."""

from __future__ import annotations

import math
import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from smoothlab.metrics import (
    CalibrationMeter,
    accuracy,
    brier_score,
    classwise_calibration_error,
    expected_calibration_error,
    negative_log_likelihood,
    reliability_bins,
)

F64 = torch.float64


def problem(n: int, c: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    probs = torch.softmax(torch.randn(n, c, generator=generator, dtype=F64) * 2, 1)
    return probs, torch.randint(c, (n,), generator=generator)


def assert_summary_matches_one_shot(meter: CalibrationMeter, probs, target) -> None:
    summary = meter.compute()
    kwargs = {"n_bins": meter.n_bins, "binning": meter.binning}
    assert summary.count == probs.shape[0]
    ece = expected_calibration_error(probs, target, norm=meter.norm, **kwargs)
    torch.testing.assert_close(summary.ece, ece, rtol=1e-12, atol=1e-15)
    classwise = classwise_calibration_error(probs, target, norm=meter.norm, **kwargs)
    torch.testing.assert_close(summary.classwise, classwise, rtol=1e-12, atol=1e-15)
    torch.testing.assert_close(summary.accuracy, accuracy(probs, target), rtol=1e-12, atol=0)
    nll = negative_log_likelihood(probs, target)
    torch.testing.assert_close(summary.nll, nll, rtol=1e-12, atol=0)
    torch.testing.assert_close(summary.brier, brier_score(probs, target), rtol=1e-12, atol=0)
    bins = reliability_bins(probs, target, **kwargs)
    assert summary.bins.count.tolist() == bins.count.tolist()
    torch.testing.assert_close(summary.bins.edges, bins.edges, rtol=0, atol=0)
    torch.testing.assert_close(summary.bins.accuracy, bins.accuracy, equal_nan=True)
    torch.testing.assert_close(summary.bins.confidence, bins.confidence, equal_nan=True)


@pytest.mark.parametrize("binning", ["uniform", "quantile"])
@pytest.mark.parametrize("norm", ["l1", "l2", "max"])
def test_batches_give_the_one_shot_numbers(norm: str, binning: str) -> None:
    probs, target = problem(500, 6, seed=0)
    meter = CalibrationMeter(n_bins=20, norm=norm, binning=binning)
    for start, stop in [(0, 1), (1, 200), (200, 200), (200, 437), (437, 500)]:  # incl. empty
        meter.update(probs[start:stop], target[start:stop])
    assert_summary_matches_one_shot(meter, probs, target)
    assert_summary_matches_one_shot(meter, probs, target)  # compute() leaves the state alone


def test_float32_batches() -> None:
    probs, target = problem(300, 4, seed=1)
    meter = CalibrationMeter()
    meter.update(probs[:100].float(), target[:100])
    meter.update(probs[100:].float(), target[100:])
    assert_summary_matches_one_shot(meter, probs.float(), target)


def test_reset_and_empty_meter() -> None:
    meter = CalibrationMeter(n_bins=5)
    empty = meter.compute()
    assert empty.count == 0
    values = (empty.ece, empty.classwise, empty.accuracy, empty.nll, empty.brier)
    assert all(math.isnan(float(x)) for x in values)
    assert empty.bins.count.tolist() == [0] * 5
    probs, target = problem(50, 3, seed=2)
    meter.update(*problem(20, 7, seed=3))
    meter.reset()
    meter.update(probs, target)  # a new number of classes is fine after reset
    assert_summary_matches_one_shot(meter, probs, target)
    quantile = CalibrationMeter(binning="quantile", n_bins=4)
    assert math.isnan(float(quantile.compute().ece))
    assert math.isnan(float(quantile.compute().classwise))


@pytest.mark.parametrize("binning", ["uniform", "quantile"])
def test_classwise_error_is_not_the_top_label_error(binning: str) -> None:
    # Regression: the meter had no classwise error; check it is not a copy of the ECE.
    probs, target = problem(200, 4, seed=5)
    meter = CalibrationMeter(n_bins=8, binning=binning)
    meter.update(probs[:120], target[:120])
    meter.update(torch.empty(0, 4, dtype=F64), target[:0])  # an empty batch is fine
    meter.update(probs[120:], target[120:])
    summary = meter.compute()
    expected = classwise_calibration_error(probs, target, n_bins=8, binning=binning)
    torch.testing.assert_close(summary.classwise, expected, rtol=1e-12, atol=1e-15)
    assert abs(float(summary.classwise) - float(summary.ece)) > 1e-3


def test_errors() -> None:
    meter = CalibrationMeter()
    meter.update(*problem(5, 3, seed=0))
    with pytest.raises(
        ValueError,
        match=r"`probs` must be a tensor with 3 columns \(as in the earlier updates\), got 4",
    ):
        meter.update(*problem(5, 4, seed=0))
    with pytest.raises(ValueError, match="summing to 1 along dim 1"):
        meter.update(torch.tensor([[0.2, 0.2, 0.2]]), torch.tensor([0]))
    with pytest.raises(ValueError, match="`n_bins` must be >= 1, got 0"):
        CalibrationMeter(n_bins=0)
    with pytest.raises(ValueError, match="`norm` must be one of 'l1', 'l2', 'max', got 'L1'"):
        CalibrationMeter(norm="L1")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="`binning` must be one of 'uniform', 'quantile'"):
        CalibrationMeter(binning="equal")  # type: ignore[arg-type]


@pytest.mark.parametrize("binning", ["uniform", "quantile"])
def test_mocked_two_identical_processes(monkeypatch: pytest.MonkeyPatch, binning: str) -> None:
    """Two processes holding the same data must look like the data twice."""

    def all_reduce(tensor: torch.Tensor, op: object = None, group: object = None) -> None:
        tensor.mul_(2)

    def all_gather(out: list[torch.Tensor], tensor: torch.Tensor, group: object = None) -> None:
        for slot in out:
            slot.copy_(tensor)

    monkeypatch.setattr(dist, "is_initialized", lambda: True)
    monkeypatch.setattr(dist, "get_world_size", lambda group=None: 2)
    monkeypatch.setattr(dist, "all_reduce", all_reduce)
    monkeypatch.setattr(dist, "all_gather", all_gather)
    probs, target = problem(120, 5, seed=4)
    meter = CalibrationMeter(n_bins=10, binning=binning)
    meter.update(probs, target)
    assert_summary_matches_one_shot(meter, torch.cat([probs, probs]), torch.cat([target, target]))
    unsynced = CalibrationMeter(n_bins=10, binning=binning, sync=False)
    unsynced.update(probs, target)
    assert_summary_matches_one_shot(unsynced, probs, target)


def _worker(rank: int, world: int, port: int) -> None:
    torch.set_num_threads(1)
    address = f"tcp://127.0.0.1:{port}"
    dist.init_process_group("gloo", init_method=address, rank=rank, world_size=world)
    try:
        probs, target = problem(333, 5, seed=9)
        # Uneven shards, several batches on one rank, none of them aligned with anything.
        batches = [(0, 70)] if rank == 0 else [(70, 150), (150, 333)]
        for binning in ("uniform", "quantile"):
            meter = CalibrationMeter(n_bins=15, binning=binning)
            for start, stop in batches:
                meter.update(probs[start:stop], target[start:stop])
            assert_summary_matches_one_shot(meter, probs, target)
    finally:
        dist.destroy_process_group()


@pytest.mark.skipif("fork" not in mp.get_all_start_methods(), reason="needs fork")
def test_two_gloo_processes_sum_their_state() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    # Forked children inherit the imported torch; spawned ones re-import it (15 s on a busy
    # 2-core machine against 0.1 s). A failed assertion in a child fails the test here.
    mp.start_processes(_worker, args=(2, port), nprocs=2, join=True, start_method="fork")
