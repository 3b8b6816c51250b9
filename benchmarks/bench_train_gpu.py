"""One training epoch of CIFAR ResNet-18 through the lab's loop against a hand-written loop.

Both train the same network (``resnet18``, 11.2M parameters) on ``cifar10-synthetic`` (5000
CIFAR-shaped images, resident on the GPU) with SGD (momentum 0.9, Nesterov, weight decay 5e-4),
batch 256, bf16 autocast and channels_last, then score the 1000 test images once, as the lab
does each epoch. The hand-written loop is plain PyTorch with nothing else: the floor the lab's
bookkeeping (schedules, objectives, curves, selection) is measured against. Each side trains a
warm-up epoch first (cuDNN autotuning, allocator), then ``--epochs`` timed epochs; the printed
ratio lab / plain is what counts (issue 14 asks for it near 1). Usage::

    python benchmarks/bench_train_gpu.py [--epochs 2] [--batch 256]
    python benchmarks/bench_train_gpu.py --dry-run   # any machine: one tiny step of each, on CPU

Without a CUDA device it says so and exits with status 0 (nothing is measured).
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F

from smoothlab.lab.plan.grid import canonical_json, expand_grid, run_key, seed_from
from smoothlab.lab.plan.loading import config_from_dict
from smoothlab.lab.plan.models import build_model
from smoothlab.lab.train.data import prepare_data
from smoothlab.lab.train.loop import RunTask, _Trainer


def _lab_trainer(device: str, batch: int, epochs: int, subset: int) -> _Trainer:
    config = config_from_dict(
        {
            "seeds": 1,
            "data": {
                "dataset": "cifar10-synthetic",
                "val_fraction": 0.0,
                "train_subset": subset,
                "test_subset": subset,
            },
            "model": {"name": "resnet18"},
            "train": {
                "epochs": epochs,
                "batch_size": batch,
                "lr": 0.1,
                "weight_decay": 5e-4,
                "precision": "bf16",
                "temperature_scaling": False,
            },
            "noise": {"rates": [0.0]},
            "methods": {"ce": {}},
        }
    )
    run = expand_grid(config)[0]
    key = run_key(run)
    data_seed = seed_from(canonical_json(run.data_dict()))
    task = RunTask(key, run, seed_from(key), data_seed, device)
    return _Trainer(task, prepare_data(run, data_seed), torch.device(device))


def _plain_epoch(
    model: torch.nn.Module, opt: torch.optim.Optimizer, data: tuple, batch: int
) -> None:  # type: ignore[type-arg]
    """The hand-written epoch: shuffle on the device, bf16 autocast, one test pass."""
    x, y, x_test = data
    model.train()
    order = torch.randperm(len(y), device=x.device)
    for start in range(0, len(y), batch):
        index = order[start : start + batch]
        with torch.autocast(x.device.type, dtype=torch.bfloat16):
            loss = F.cross_entropy(model(x[index]).float(), y[index])
        opt.zero_grad(set_to_none=True)
        loss.backward()  # type: ignore[no-untyped-call]
        opt.step()
    model.eval()
    with torch.no_grad():
        model(x_test).float().argmax(1)


def _timed(step: object, device: str) -> float:
    if device == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    step()  # type: ignore[operator]
    if device == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--dry-run", action="store_true")
    args = parser.parse_args()
    if not args.dry_run and not torch.cuda.is_available():
        print("bench_train_gpu.py needs a CUDA device (none found): nothing measured")
        return
    device = "cpu" if args.dry_run else "cuda"
    batch, subset = (8, 16) if args.dry_run else (args.batch, 0)
    epochs = 0 if args.dry_run else args.epochs
    trainer = _lab_trainer(device, batch, epochs + 1, subset)
    data = trainer.data
    model = build_model("resnet18", (3, 32, 32), 10).to(device)
    if device == "cuda":
        model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    opt = torch.optim.SGD(
        model.parameters(), lr=0.1, momentum=0.9, nesterov=True, weight_decay=5e-4
    )
    resident = tuple(t.to(device) for t in (data.x_train, data.y_train, data.x_test))
    if device == "cuda":
        resident = (resident[0].contiguous(memory_format=torch.channels_last), *resident[1:])
    lab = [_timed(lambda e=e: trainer.epoch(e), device) for e in range(epochs + 1)]
    plain = [_timed(lambda: _plain_epoch(model, opt, resident, batch), device) for _ in lab]
    name = torch.cuda.get_device_name() if device == "cuda" else "cpu (dry run)"
    print(f"device: {name}; {len(data.y_train)} images, batch {batch}, bf16, channels_last")
    if args.dry_run:
        print("dry run done: one tiny epoch of each loop ran; nothing was measured")
        return
    lab_s, plain_s = min(lab[1:]), min(plain[1:])  # the first epoch of each is the warm-up
    print(f"lab loop   {lab_s:.3f} s/epoch")
    print(f"plain loop {plain_s:.3f} s/epoch")
    print(f"ratio lab / plain: {lab_s / plain_s:.2f}")


if __name__ == "__main__":
    main()
