"""Framework glue: IVON, SAM and online label smoothing under Lightning and HF's Trainer.

Each framework run is compared with the plain loop it should equal (one full batch per step,
so data order cannot differ), bitwise where the arithmetic is the same.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import Tensor, nn

from smoothlab import OnlineLabelSmoothingLoss
from smoothlab.optim import IVON, SAM

STEPS = 3
# lightning 2.6 calls a torch pytree API that torch 2.13 deprecates: not ours to fix
pytestmark = pytest.mark.filterwarnings("ignore:.*LeafSpec.*:FutureWarning")


def _data() -> tuple[Tensor, Tensor]:
    g = torch.Generator().manual_seed(0)
    return torch.randn(24, 4, generator=g), torch.randint(0, 3, (24,), generator=g)


def _model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 3))


def _ivon(model: nn.Module, **kwargs: Any) -> IVON:
    return IVON(model.parameters(), lr=0.05, ess=24.0, generator=torch.Generator().manual_seed(1),
                **kwargs)  # fmt: skip


def _params(model: nn.Module) -> list[Tensor]:
    return [p.detach().clone() for p in model.parameters()]


def _same(a: list[Tensor], b: list[Tensor]) -> bool:
    return all(torch.equal(x, y) for x, y in zip(a, b, strict=True))


def _plain_ivon(clip: float | None = None, steps: int = STEPS) -> list[Tensor]:
    """The plain loop: sample, zero_grad, backward, clip inside the block, step."""
    x, y = _data()
    model = _model()
    opt = _ivon(model)
    for _ in range(steps):
        with opt.sampled_params(train=True):
            opt.zero_grad()
            nn.functional.cross_entropy(model(x), y).backward()
            if clip is not None:
                nn.utils.clip_grad_norm_(model.parameters(), clip)
        opt.step()
    return _params(model)


# --------------------------------------------------------------------------------- Lightning
def _lightning_fit(module: Any, epochs: int = STEPS, **trainer_kwargs: Any) -> Any:
    pl = pytest.importorskip("lightning.pytorch")
    x, y = _data()
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=24)
    trainer = pl.Trainer(max_epochs=epochs, accelerator="cpu", devices=1, logger=False,
                         enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, **trainer_kwargs)  # fmt: skip
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", ".*does not have many workers.*")
        warnings.filterwarnings("ignore", ".*smaller than the logging interval.*")
        trainer.fit(module, loader)
    return trainer


def _lightning_module(
    make_opt: Callable[[nn.Module], Any], manual: Callable[[Any, Tensor], None] | None = None
) -> Any:
    pl = pytest.importorskip("lightning.pytorch")

    class Module(pl.LightningModule):  # type: ignore[misc]
        def __init__(self) -> None:
            super().__init__()
            self.net = _model()
            self.loss_fn = nn.CrossEntropyLoss()
            self.automatic_optimization = manual is None

        def training_step(self, batch: tuple[Tensor, Tensor], index: int) -> Tensor | None:
            x, y = batch
            if manual is None:
                return self.loss_fn(self.net(x), y)  # type: ignore[no-any-return]
            manual(self, batch)
            return None

        def configure_optimizers(self) -> Any:
            return make_opt(self.net)

    return Module()


@pytest.mark.parametrize("clip", [None, 1e-3])
def test_ivon_under_lightning_automatic_optimization_is_the_plain_loop(clip: float | None) -> None:
    module = _lightning_module(_ivon)
    _lightning_fit(module, gradient_clip_val=clip)
    assert _same(_params(module.net), _plain_ivon(clip))
    if clip is not None:  # clipping is honoured, not silently dropped
        assert not _same(_params(module.net), _plain_ivon(None))


def _manual_with_closure(module: Any, batch: tuple[Tensor, Tensor]) -> None:
    opt = module.optimizers()

    def closure() -> Tensor:
        opt.zero_grad()
        loss = module.loss_fn(module.net(batch[0]), batch[1])
        module.manual_backward(loss)
        return loss  # type: ignore[no-any-return]

    opt.step(closure=closure)


def _manual_sampling_itself(module: Any, batch: tuple[Tensor, Tensor]) -> None:
    opt = module.optimizers()
    with opt.optimizer.sampled_params(train=True):
        opt.zero_grad()
        module.manual_backward(module.loss_fn(module.net(batch[0]), batch[1]))
    opt.step()  # Lightning passes a closure that does nothing


@pytest.mark.parametrize("manual", [_manual_with_closure, _manual_sampling_itself])
def test_ivon_under_lightning_manual_optimization_is_the_plain_loop(manual: Any) -> None:
    module = _lightning_module(_ivon, manual)
    _lightning_fit(module)
    assert _same(_params(module.net), _plain_ivon())


def _sam_with_cosine(net: nn.Module) -> Any:
    sam = SAM(net.parameters(), torch.optim.SGD(net.parameters(), lr=0.2), rho=0.05)
    return {"optimizer": sam, "lr_scheduler": torch.optim.lr_scheduler.CosineAnnealingLR(sam, 4)}


def test_sam_and_a_scheduler_on_it_under_lightning_are_the_plain_loop() -> None:
    module = _lightning_module(_sam_with_cosine)
    trainer = _lightning_fit(module)
    x, y = _data()
    model = _model()
    config = _sam_with_cosine(model)
    sam, scheduler = config["optimizer"], config["lr_scheduler"]

    def closure() -> Tensor:
        sam.zero_grad()
        loss = nn.functional.cross_entropy(model(x), y)
        loss.backward()
        return loss

    for _ in range(STEPS):
        sam.step(closure)
        scheduler.step()
    assert trainer.optimizers[0].param_groups[0]["lr"] == sam.param_groups[0]["lr"] < 0.2
    assert _same(_params(module.net), _params(model))


def test_sam_under_lightning_manual_optimization_is_the_plain_loop() -> None:
    """LightningOptimizer.step(closure) reaches SAM.step, which runs the closure twice."""

    def sam(net: nn.Module) -> SAM:
        return SAM(net.parameters(), torch.optim.SGD(net.parameters(), lr=0.2), rho=0.05)

    module = _lightning_module(sam, _manual_with_closure)
    _lightning_fit(module)
    x, y = _data()
    model = _model()
    opt = sam(model)

    def closure() -> Tensor:
        opt.zero_grad()
        loss = nn.functional.cross_entropy(model(x), y)
        loss.backward()
        return loss

    for _ in range(STEPS):
        opt.step(closure)
    assert _same(_params(module.net), _params(model))
    assert not _same(_params(model), _params(_model()))


def test_online_label_smoothing_callback_under_lightning_is_the_plain_loop() -> None:
    from smoothlab.integrations.lightning import OnlineLabelSmoothingCallback

    def sgd(net: nn.Module) -> torch.optim.Optimizer:
        return torch.optim.SGD(net.parameters(), lr=0.5)

    module = _lightning_module(sgd)
    module.loss_fn = OnlineLabelSmoothingLoss(3, alpha=0.3)
    _lightning_fit(module, callbacks=[OnlineLabelSmoothingCallback()])
    x, y = _data()
    model, loss_fn = _model(), OnlineLabelSmoothingLoss(3, alpha=0.3)
    opt = sgd(model)
    for _ in range(STEPS):
        opt.zero_grad()
        loss_fn(model(x), y).backward()
        opt.step()
        loss_fn.next_epoch()
    assert not torch.equal(loss_fn.soft_labels, OnlineLabelSmoothingLoss(3).soft_labels)
    assert torch.equal(module.loss_fn.soft_labels, loss_fn.soft_labels)
    assert _same(_params(module.net), _params(model))


def test_lightning_callback_errors() -> None:
    pl = pytest.importorskip("lightning.pytorch")
    from smoothlab.integrations.lightning import OnlineLabelSmoothingCallback

    with pytest.raises(TypeError, match="`losses` must be OnlineLabelSmoothingLoss instances, got"):
        OnlineLabelSmoothingCallback(nn.CrossEntropyLoss())  # type: ignore[arg-type]
    with pytest.raises(
        ValueError,
        match=r"`pl_module` must be a module holding an OnlineLabelSmoothingLoss .*, got none",
    ):
        OnlineLabelSmoothingCallback().on_train_start(None, pl.LightningModule())


# ------------------------------------------------------------------------ Hugging Face
def _hf_fit(tmp_path: Path, optimizer: torch.optim.Optimizer, model: nn.Module,
            callbacks: list[Any], loss_fn: nn.Module, *, epochs: int = STEPS,
            max_grad_norm: float = 1.0) -> Any:  # fmt: skip
    transformers = pytest.importorskip("transformers")
    pytest.importorskip("accelerate")

    class Wrapper(nn.Module):  # Trainer passes the batch as keyword arguments
        def __init__(self) -> None:
            super().__init__()
            self.net = model

        def forward(self, inputs: Tensor, labels: Tensor | None = None) -> dict[str, Tensor]:
            return {"logits": self.net(inputs)}

    x, y = _data()
    args = transformers.TrainingArguments(
        output_dir=str(tmp_path), per_device_train_batch_size=24, num_train_epochs=epochs,
        lr_scheduler_type="constant", max_grad_norm=max_grad_norm, report_to="none",
        use_cpu=True, save_strategy="no", logging_strategy="no", disable_tqdm=True,
        remove_unused_columns=False,
    )  # fmt: skip
    trainer = transformers.Trainer(
        model=Wrapper(), args=args,
        train_dataset=[{"inputs": a, "labels": b} for a, b in zip(x, y, strict=True)],
        optimizers=(optimizer, None), callbacks=callbacks,
        compute_loss_func=lambda out, labels, num_items_in_batch=None: loss_fn(out["logits"], labels),
    )  # fmt: skip
    trainer.train()
    return trainer


@pytest.mark.parametrize("clip", [1.0, 1e-3])
def test_ivon_under_the_hf_trainer_is_the_plain_loop(tmp_path: Path, clip: float) -> None:
    pytest.importorskip("transformers")
    from smoothlab.integrations.hf import IVONCallback

    model = _model()
    _hf_fit(tmp_path, _ivon(model), model, [IVONCallback()], nn.CrossEntropyLoss(),
            max_grad_norm=clip)  # fmt: skip
    # Trainer shuffles the (single) batch, so sums run in another order: equal to rounding
    for trained, looped in zip(_params(model), _plain_ivon(clip), strict=True):
        torch.testing.assert_close(trained, looped, rtol=1e-5, atol=1e-6)
    if clip == 1e-3:  # Trainer's max_grad_norm is honoured
        unclipped = _plain_ivon(None)
        assert all(
            (a - b).abs().max() > 1e-3 for a, b in zip(_params(model), unclipped, strict=True)
        )


def test_hf_ivon_callback_errors(tmp_path: Path) -> None:
    pytest.importorskip("transformers")
    from smoothlab.integrations.hf import IVONCallback

    model = _model()
    sgd = torch.optim.SGD(model.parameters(), lr=0.1)
    with pytest.raises(
        TypeError,
        match=r"`optimizer` must be an IVON \(passed as Trainer\(optimizers=\(ivon, None\)\)\), got",
    ):
        _hf_fit(tmp_path, sgd, model, [IVONCallback()], nn.CrossEntropyLoss())
    with pytest.raises(
        ValueError, match=r"`mc_samples` must be 1 under Trainer \(one backward per step\), got 2"
    ):
        _hf_fit(
            tmp_path, _ivon(model, mc_samples=2), model, [IVONCallback()], nn.CrossEntropyLoss()
        )


def test_online_label_smoothing_callback_under_the_hf_trainer(tmp_path: Path) -> None:
    pytest.importorskip("transformers")
    from smoothlab.integrations.hf import OnlineLabelSmoothingCallback

    model, loss_fn = _model(), OnlineLabelSmoothingLoss(3, alpha=0.3)
    trainer = _hf_fit(tmp_path, torch.optim.SGD(model.parameters(), lr=0.5), model,
                      [OnlineLabelSmoothingCallback(loss_fn)], loss_fn)  # fmt: skip
    x, y = _data()
    twin_model, twin_loss = _model(), OnlineLabelSmoothingLoss(3, alpha=0.3)
    opt = torch.optim.SGD(twin_model.parameters(), lr=0.5)
    for _ in range(STEPS):
        opt.zero_grad()
        twin_loss(twin_model(x), y).backward()
        nn.utils.clip_grad_norm_(twin_model.parameters(), 1.0)
        opt.step()
        twin_loss.next_epoch()
    assert not torch.equal(twin_loss.soft_labels, OnlineLabelSmoothingLoss(3).soft_labels)
    torch.testing.assert_close(loss_fn.soft_labels, twin_loss.soft_labels)  # shuffled batch
    trainer.evaluate([{"inputs": a, "labels": b} for a, b in zip(x, y, strict=True)])
    assert not loss_fn.training
    assert loss_fn.counts.sum() == 0  # evaluation added nothing to the next epoch's labels


def test_hf_online_callback_errors() -> None:
    transformers = pytest.importorskip("transformers")
    from smoothlab.integrations.hf import OnlineLabelSmoothingCallback

    state, control = transformers.TrainerState(), transformers.TrainerControl()
    with pytest.raises(TypeError, match="`losses` must be OnlineLabelSmoothingLoss instances, got"):
        OnlineLabelSmoothingCallback(3)  # type: ignore[arg-type]
    with pytest.raises(
        ValueError, match="`model` must be a module holding an OnlineLabelSmoothingLoss"
    ):
        OnlineLabelSmoothingCallback().on_train_begin(None, state, control, model=_model())


def test_importing_the_integrations_package_imports_no_framework() -> None:
    import subprocess
    import sys

    code = "import sys, smoothlab.integrations; print(sorted({'lightning', 'transformers'} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
