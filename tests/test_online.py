"""Online label smoothing: the loss, the epoch update, buffers, modes, distributed sums."""

from __future__ import annotations

import torch

from smoothlab import OnlineLabelSmoothingLoss

import reference as ref


def test_first_epoch_matrix_and_loss_formula() -> None:
    loss_fn = OnlineLabelSmoothingLoss(4, alpha=0.3, init_smoothing=0.2).double()
    expected = 0.8 * torch.eye(4, dtype=torch.float64) + 0.05
    torch.testing.assert_close(loss_fn.soft_labels.double(), expected, rtol=0, atol=1e-7)
    g = torch.Generator().manual_seed(0)
    z = torch.randn(6, 4, generator=g, dtype=torch.float64)
    y = torch.randint(0, 4, (6,), generator=g)
    values = loss_fn(z, y).item()
    # alpha CE + (1 - alpha) CE(soft rows): the soft rows are uniform smoothing with r = 0.2.
    truth = 0.3 * ref.ls_ce(z.tolist(), y.tolist(), 0.0) + 0.7 * ref.ls_ce(
        z.tolist(), y.tolist(), 0.2
    )  # type: ignore[operator]
    assert abs(values - truth) < 1e-6


def test_next_epoch_averages_correct_predictions_per_class() -> None:
    loss_fn = OnlineLabelSmoothingLoss(3)
    z = torch.tensor([[3.0, 0.0, 0.0], [2.0, 1.0, 0.0], [0.0, 3.0, 0.0], [5.0, 0.0, 0.0]])
    y = torch.tensor([0, 0, 1, 1])  # the last one is misclassified: not accumulated
    loss_fn(z, y)
    loss_fn.next_epoch()
    p = torch.softmax(z, 1)
    torch.testing.assert_close(loss_fn.soft_labels[0], (p[0] + p[1]) / 2)
    torch.testing.assert_close(loss_fn.soft_labels[1], p[2])
    torch.testing.assert_close(loss_fn.soft_labels[2], torch.full((3,), 1 / 3))  # never seen
    assert loss_fn.counts.sum() == 0 and loss_fn.prob_sums.sum() == 0


def test_eval_mode_does_not_accumulate_and_state_dict_round_trips() -> None:
    loss_fn = OnlineLabelSmoothingLoss(3).eval()
    loss_fn(torch.eye(3) * 4, torch.arange(3))
    assert loss_fn.counts.sum() == 0
    loss_fn.train()
    loss_fn(torch.eye(3) * 4, torch.arange(3))
    loss_fn.next_epoch()
    clone = OnlineLabelSmoothingLoss(3)
    clone.load_state_dict(loss_fn.state_dict())
    torch.testing.assert_close(clone.soft_labels, loss_fn.soft_labels)
    assert set(loss_fn.state_dict()) == {"soft_labels", "prob_sums", "counts"}


def test_ignored_positions_neither_count_nor_accumulate() -> None:
    loss_fn = OnlineLabelSmoothingLoss(3, reduction="none")
    out = loss_fn(torch.eye(3) * 4, torch.tensor([0, -100, 2]))
    assert out[1] == 0
    assert loss_fn.counts.tolist() == [1.0, 0.0, 1.0]


def test_spatial_inputs() -> None:
    loss_fn = OnlineLabelSmoothingLoss(3)
    z = torch.randn(2, 3, 4, 4, generator=torch.Generator().manual_seed(1))
    y = z.argmax(1)
    loss_fn(z, y)
    assert loss_fn.counts.sum() == 32


def test_distributed_sums(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """With torch.distributed initialised, the epoch update all-reduces both accumulators."""
    import torch.distributed as dist

    calls: list[torch.Size] = []

    def fake_all_reduce(tensor: torch.Tensor) -> None:
        calls.append(tensor.shape)
        tensor.mul_(2)  # as if a second process had seen the same examples

    monkeypatch.setattr(dist, "is_initialized", lambda: True)
    monkeypatch.setattr(dist, "all_reduce", fake_all_reduce)
    loss_fn = OnlineLabelSmoothingLoss(3)
    loss_fn(torch.eye(3) * 4, torch.arange(3))
    loss_fn.next_epoch()
    assert calls == [torch.Size([3, 3]), torch.Size([3])]
    torch.testing.assert_close(loss_fn.soft_labels[0], torch.softmax(torch.tensor([4.0, 0, 0]), 0))
