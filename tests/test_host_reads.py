"""The losses, targets and optimizer steps read nothing on the host per call on a GPU.

On a CUDA device, reading a tensor's values or a data-dependent size in Python (``int(t)``,
``bool(t)``, ``t.item()``, ``t.nonzero()``, ``t[mask]``) waits for every kernel queued before
it: the host stops queueing work ahead of the device once per call, and under
``torch.compile`` the graph breaks there. Where such reads are not free
(:func:`smoothlab._checks.host_reads`) the per-call checks are asserted on the device and
data-dependent branches are avoided, as PyTorch's own losses do on CUDA.

Without a GPU, :func:`smoothlab._checks.device_checks` makes CPU tensors take those code paths,
and :class:`HostReads` (a ``TorchDispatchMode``) records every operation that reads values or
sizes on the host: on CUDA each would synchronise. Each case must record none and compute what
the host path computes; errors still raise, as device asserts (``RuntimeError`` on the CPU).
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

import smoothlab
from smoothlab._checks import device_checks, host_reads
from smoothlab.optim import IVON, SAM

aten = torch.ops.aten
#: Operations that read a tensor's values (or a size that depends on them) on the host
READS = {
    aten._local_scalar_dense.default: "item",
    aten.nonzero.default: "nonzero",
    aten.masked_select.default: "masked_select",
    aten.repeat_interleave.Tensor: "repeat_interleave",
    aten._unique2.default: "unique",
    aten.unique_dim.default: "unique",
    aten.unique_consecutive.default: "unique",
}


class HostReads(TorchDispatchMode):
    """Records the operations of :data:`READS` (and indexing by a boolean mask) run inside."""

    def __init__(self) -> None:
        super().__init__()
        self.reads: list[str] = []

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        if func in READS:
            self.reads.append(READS[func])
        elif func is aten.index.Tensor and any(
            i is not None and i.dtype == torch.bool for i in args[1]
        ):
            self.reads.append("boolean index")
        return func(*args, **(kwargs or {}))


G = torch.Generator().manual_seed(0)
X = torch.randn(48, 10, generator=G)


@dataclass(frozen=True)
class Data:
    """The targets and per-call tensors of the cases (moved with :meth:`to` for the GPU test)."""

    y: torch.Tensor
    w: torch.Tensor
    prior: torch.Tensor
    class_prior: torch.Tensor
    t: torch.Tensor

    @property
    def ignored(self) -> torch.Tensor:
        """The targets with classes 8 and 9 ignored."""
        return torch.where(self.y > 7, -100, self.y)

    def to(self, device: str) -> Data:
        return Data(*(getattr(self, f.name).to(device) for f in fields(self)))


D = Data(
    y=torch.randint(0, 10, (48,), generator=G),
    w=torch.rand(10, generator=G) + 0.1,
    prior=torch.softmax(torch.randn(48, 10, generator=G), 1),
    class_prior=torch.softmax(torch.randn(10, generator=G), 0),
    t=torch.full((10, 10), 0.02) + 0.8 * torch.eye(10),
)
Y, IGNORED, W, PRIOR, CLASS_PRIOR, T = D.y, D.ignored, D.w, D.prior, D.class_prior, D.t

Loss = Callable[[torch.Tensor, Data], torch.Tensor]
CASES: dict[str, Loss] = {
    "ce": lambda x, d: smoothlab.cross_entropy(x, d.y),
    "ls": lambda x, d: smoothlab.cross_entropy(x, d.y, label_smoothing=0.1),
    "nls": lambda x, d: smoothlab.cross_entropy(x, d.y, label_smoothing=-0.3),
    "ls weight": lambda x, d: smoothlab.cross_entropy(x, d.y, weight=d.w, label_smoothing=0.1),
    "ls weight sum": lambda x, d: smoothlab.cross_entropy(
        x, d.y, weight=d.w, label_smoothing=0.1, reduction="sum"
    ),
    "ls ignore": lambda x, d: smoothlab.cross_entropy(x, d.ignored, label_smoothing=0.1),
    "ls ignore weight none": lambda x, d: smoothlab.cross_entropy(
        x, d.ignored, weight=d.w, label_smoothing=0.1, reduction="none"
    ).sum(),
    "all ignored": lambda x, d: smoothlab.cross_entropy(x, torch.full_like(d.y, -100)),
    "teacher prior": lambda x, d: smoothlab.cross_entropy(
        x, d.y, label_smoothing=0.3, prior=d.prior
    ),
    "class prior": lambda x, d: smoothlab.cross_entropy(
        x, d.y, label_smoothing=0.3, prior=d.class_prior
    ),
    "probabilities": lambda x, d: smoothlab.cross_entropy(x, d.prior),
    "z-loss softcap": lambda x, d: smoothlab.cross_entropy(
        x, d.y, label_smoothing=0.1, lse_square_scale=1e-3, softcap=5.0
    ),
    "exclusive": lambda x, d: smoothlab.label_smoothing_cross_entropy(x, d.y, 0.2, exclusive=True),
    "exclusive prior": lambda x, d: smoothlab.label_smoothing_cross_entropy(
        x, d.y, 0.2, exclusive=True, prior=d.class_prior
    ),
    "example weighting": lambda x, d: smoothlab.label_smoothing_cross_entropy(
        x, d.ignored, 0.1, weight=d.w, weighting="example"
    ),
    "composition": lambda x, d: smoothlab.label_smoothing_cross_entropy(
        x, d.ignored, 0.1, weight=d.w, fused=False
    ),
    "float64": lambda x, d: smoothlab.cross_entropy(x.double(), d.y, label_smoothing=0.1),
    "spatial": lambda x, d: smoothlab.cross_entropy(
        x.view(12, 4, 10).transpose(1, 2), d.y.view(12, 4), label_smoothing=0.1
    ),
    "relaxation": lambda x, d: smoothlab.label_relaxation_loss(x, d.ignored, alpha=0.1),
    "confidence penalty": lambda x, d: smoothlab.confidence_penalty_loss(x, d.y, beta=0.3),
    "focal": lambda x, d: smoothlab.focal_loss(x, d.ignored, gamma=2.0),
    "flsd": lambda x, d: smoothlab.sample_dependent_focal_loss(x, d.y),
    "gce": lambda x, d: smoothlab.generalized_cross_entropy(x, d.y),
    "sce": lambda x, d: smoothlab.symmetric_cross_entropy(x, d.y),
    "maxsup": lambda x, d: smoothlab.max_suppression_loss(x, d.y),
    "mbls": lambda x, d: smoothlab.margin_label_smoothing_loss(x, d.y),
    "logitnorm": lambda x, d: smoothlab.logit_norm_loss(x, d.y),
    "logit penalty": lambda x, d: smoothlab.logit_penalty_loss(x, d.y, beta=0.1),
    "forward correction": lambda x, d: smoothlab.forward_corrected_cross_entropy(x, d.y, d.t),
    "backward correction": lambda x, d: smoothlab.backward_corrected_cross_entropy(x, d.y, d.t),
    "peer": lambda x, d: smoothlab.peer_loss(
        x, d.y, alpha=0.5, generator=torch.Generator().manual_seed(1)
    ),
    "f-divergence": lambda x, d: smoothlab.f_divergence_loss(x, d.ignored),
    "f-divergence prior": lambda x, d: smoothlab.f_divergence_loss(x, d.y, prior=d.class_prior),
    "smooth_targets": lambda x, d: (
        smoothlab.smooth_targets(d.y, 10, 0.1, prior=d.prior) * x
    ).sum(),
}


def _loss_and_grad(loss: Loss) -> tuple[torch.Tensor, torch.Tensor]:
    x = X.clone().requires_grad_()
    value = loss(x, D)
    (grad,) = torch.autograd.grad(value, x)
    return value.detach(), grad


def test_the_recorder_sees_host_reads() -> None:
    """The control: the host path reads (its cheap checks), and so does a boolean mask."""
    with HostReads() as recorder:
        smoothlab.cross_entropy(X, Y)
        X[X > 0]
    assert "item" in recorder.reads and "boolean index" in recorder.reads
    assert host_reads(X)
    with device_checks():
        assert not host_reads(X)


@pytest.mark.parametrize("name", sorted(CASES))
def test_a_call_reads_nothing_on_the_host_and_computes_the_same(name: str) -> None:
    expected = _loss_and_grad(CASES[name])
    with device_checks(), HostReads() as recorder:
        found = _loss_and_grad(CASES[name])
    assert recorder.reads == []
    for got, want in zip(found, expected, strict=True):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6, equal_nan=True)


def test_a_mean_over_nothing_has_a_zero_gradient_on_the_device() -> None:
    with device_checks():
        loss, grad = _loss_and_grad(CASES["all ignored"])
    assert loss.isnan() and not grad.any()


def test_inplace_grad_leaves_the_scaled_gradient_in_the_logits() -> None:
    _, expected = _loss_and_grad(CASES["ls ignore"])
    with device_checks(), HostReads() as recorder:
        storage = X.clone().requires_grad_()
        loss = smoothlab.label_smoothing_cross_entropy(storage, IGNORED, 0.1, inplace_grad=True)
        (grad,) = torch.autograd.grad(loss, storage)
    assert recorder.reads == []
    assert grad.data_ptr() == storage.data_ptr()  # no N x C buffer besides the logits
    torch.testing.assert_close(grad, expected, rtol=1e-5, atol=1e-7)


BAD = [
    (lambda: smoothlab.cross_entropy(X, Y.where(Y != 3, 10)), "`target` must be class indices in \\[0, 9\\] or ignore_index=-100"),
    (lambda: smoothlab.cross_entropy(X, Y.where(Y != 3, -1)), "`target` must be class indices"),
    (lambda: smoothlab.cross_entropy(X, Y, weight=-W), "`weight` must be finite and non-negative"),
    (lambda: smoothlab.cross_entropy(X, Y, label_smoothing=0.1, prior=2 * PRIOR), "`prior` must be finite non-negative probabilities summing to 1 along dim 1"),
    (lambda: smoothlab.cross_entropy(X, Y, label_smoothing=0.1, prior=-CLASS_PRIOR), "`prior` must be finite non-negative"),
    (lambda: smoothlab.label_smoothing_cross_entropy(X, Y, 0.1, exclusive=True, prior=torch.eye(10)[Y]), "`prior` must be positive somewhere outside the true class"),
    (lambda: smoothlab.smooth_targets(Y.where(Y != 3, 12), 10, 0.1), "`target` must be class indices in \\[0, 9\\]"),
    (lambda: smoothlab.forward_corrected_cross_entropy(X, Y, 2 * T), "`transition` must be row-stochastic"),
    (lambda: smoothlab.backward_corrected_cross_entropy(X, Y, torch.full((10, 10), 0.1)), "`transition` must be invertible"),
    (lambda: smoothlab.f_divergence_loss(X, Y, prior=CLASS_PRIOR + 1), "`prior` must be finite non-negative"),
]  # fmt: skip


@pytest.mark.parametrize(("call", "message"), BAD)
def test_bad_inputs_still_fail_as_device_asserts(call: Callable[[], Any], message: str) -> None:
    with pytest.raises((ValueError, TypeError)):
        call()  # the host path's error, with what was passed
    with device_checks(), pytest.raises(RuntimeError, match=message):
        call()


def test_linear_heads_read_only_to_drop_ignored_rows() -> None:
    """The heads skip ignored positions' share of the products, a data-dependent size: one
    read per call, the selection (documented)."""
    h = torch.randn(48, 16, generator=G, requires_grad=True)
    w = torch.randn(10, 16, generator=G, requires_grad=True)
    with device_checks(), HostReads() as recorder:
        loss = smoothlab.linear_label_smoothing_cross_entropy(h, w, IGNORED, smoothing=0.1)
        loss.backward()
    assert recorder.reads == ["nonzero"]


@pytest.mark.parametrize("adaptive", [False, True])
def test_a_sam_step_reads_nothing_on_the_host(adaptive: bool) -> None:
    def trained(device: bool) -> list[torch.Tensor]:
        torch.manual_seed(0)
        model = torch.nn.Sequential(
            torch.nn.Linear(10, 16), torch.nn.Tanh(), torch.nn.Linear(16, 3)
        )
        params = list(model.parameters())
        base = torch.optim.SGD(params, lr=0.1)
        optimizer = SAM(params, base, rho=0.1, adaptive=adaptive, eta=0.01)

        def closure() -> torch.Tensor:
            loss = smoothlab.cross_entropy(model(X), Y % 3, label_smoothing=0.1)
            loss.backward()
            return loss

        with device_checks() if device else contextlib.nullcontext(), HostReads() as recorder:
            for _ in range(3):
                optimizer.step(closure)
                optimizer.zero_grad()
        assert recorder.reads == [] if device else recorder.reads  # the host path reads ||g||
        return [p.detach() for p in model.parameters()]

    for got, want in zip(trained(True), trained(False), strict=True):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)


def test_an_ivon_step_reads_nothing_on_the_host(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SMOOTHLAB_NATIVE", "0")  # the PyTorch path, which CUDA runs without Triton
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(10, 16), torch.nn.ReLU(), torch.nn.Linear(16, 3))
    optimizer = IVON(model.parameters(), lr=0.1, ess=100)
    with device_checks(), HostReads() as recorder:
        for _ in range(2):
            with optimizer.sampled_params(train=True):
                smoothlab.cross_entropy(model(X), Y % 3, label_smoothing=0.1).backward()
            optimizer.step()
            optimizer.zero_grad()
    assert recorder.reads == []


def _lab_trainer(
    method: str, params: dict[str, object], batch_size: int, device: str, augment: bool = False
) -> Any:
    """A lab run's trainer on the tiny digits split (300 training images of 8x8) after its
    first epoch, which builds what later epochs reuse."""
    sys.path.insert(0, str(Path(__file__).parent))
    from test_lab_train import TINY

    from smoothlab.lab.plan.grid import canonical_json, expand_grid, run_key, seed_from
    from smoothlab.lab.plan.loading import config_from_dict
    from smoothlab.lab.train.data import prepare_data
    from smoothlab.lab.train.loop import RunTask, _Trainer

    raw: dict[str, Any] = {**TINY, "methods": {method: params}}
    raw["train"] = {**TINY["train"], "epochs": 2, "batch_size": batch_size}
    if augment:  # shifts, flips and cutout: each draws per step
        shifts = {"augment_shift": 1, "augment_flip": True, "augment_cutout": 2}
        raw["data"] = {**TINY["data"], **shifts}
    run = expand_grid(config_from_dict(raw))[0]
    key = run_key(run)
    task = RunTask(key, run, seed_from(key), seed_from(canonical_json(run.data_dict())), device)
    trainer = _Trainer(task, prepare_data(run, task.data_seed), torch.device(device))
    trainer.epoch(0)
    assert trainer.batches == (1 if batch_size == 1000 else -(-300 // batch_size))
    return trainer


@pytest.mark.parametrize(
    ("method", "params"),
    [("ls", {"smoothing": 0.1}), ("sam", {}), ("ivon", {}), ("ols", {}), ("fdiv", {}),
     ("bcorrect", {"transition": "true"}), ("peer", {})],
)  # fmt: skip
def test_a_lab_epoch_reads_the_same_on_the_host_for_one_step_or_many(
    method: str, params: dict[str, object]
) -> None:
    """The lab's loop reads its sums once per epoch: the count does not grow with the steps."""
    counts = []
    for batch_size in (1000, 16):  # one step, then 19
        trainer = _lab_trainer(method, params, batch_size, "cpu", augment=method == "ls")
        with device_checks(), HostReads() as recorder:
            trainer.epoch(1)
        counts.append(len(recorder.reads))
    assert counts[0] == counts[1]


def test_cross_entropy_compiles_into_one_graph() -> None:
    """No host read, no graph break: ``fullgraph=True`` compiles, with weights, ignored
    positions and smoothing, and gives PyTorch's numbers."""
    compiled = torch.compile(
        lambda x, y: smoothlab.cross_entropy(x, y, weight=W, label_smoothing=0.1), fullgraph=True
    )
    x = X.clone().requires_grad_()
    loss = compiled(x, IGNORED)
    loss.backward()
    reference = X.clone().requires_grad_()
    expected = torch.nn.functional.cross_entropy(reference, IGNORED, weight=W, label_smoothing=0.1)
    expected.backward()
    torch.testing.assert_close(loss, expected)
    torch.testing.assert_close(x.grad, reference.grad)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize(
    "name", ["ls", "ls weight", "ls ignore", "class prior", "relaxation", "confidence penalty"]
)
def test_on_a_gpu_a_call_never_synchronises(name: str) -> None:
    """The real thing: CUDA's sync debug mode turns any synchronisation into an error."""
    x, data = X.cuda().requires_grad_(), D.to("cuda")
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        CASES[name](x, data).backward()
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert x.grad is not None and bool(torch.isfinite(x.grad).all())


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("augment", [False, True])
def test_on_a_gpu_a_lab_epoch_synchronises_as_often_for_one_step_or_many(augment: bool) -> None:
    """CUDA's sync debug mode warns at each synchronisation: the lab's epoch (batches picked
    on the device, augmentation offsets through pinned memory, the loss) adds none per step."""
    import warnings

    counts = []
    for batch_size in (1000, 16):
        trainer = _lab_trainer("ls", {"smoothing": 0.1}, batch_size, "cuda", augment=augment)
        torch.cuda.synchronize()
        torch.cuda.set_sync_debug_mode("warn")
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                trainer.epoch(1)
        finally:
            torch.cuda.set_sync_debug_mode("default")
        counts.append(sum("synchroniz" in str(w.message) for w in caught))
    assert counts[0] == counts[1]
