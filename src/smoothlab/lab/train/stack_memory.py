"""How many runs one stack may hold: bytes per run against the memory a stack may take.

An 81-run Fashion-MNIST stack reached 11 GB and was killed by the kernel when other jobs filled
the machine: the stack size must follow the memory, not only a count of runs. A run of a stack
takes its data three times (its trainer's tensors, its slice of the stacked copies, and the
copies made while preparing the data, which the allocator may keep: with two, a Fashion-MNIST
stack's peak was up to 40% above the estimate; with three, the estimate is 1-43% above the
peaks measured in benchmarks/RESULTS.md, which vary with the allocator's state), its
parameters six times (the model, the stacked weights, their gradients, momentum, the selected
epoch's copy, the optimizer's state written back) and the activations of one batch, kept for
the backward pass and matched by their gradients.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

import torch
from torch import nn

from smoothlab.lab.train.data import RunData

__all__ = ["activation_bytes", "available_bytes", "run_bytes", "stack_budget", "stack_size"]

# copies of a run's data and of each parameter a stacked run holds (see the module docstring)
_DATA_COPIES, _PARAMETER_COPIES = 3, 6


def activation_bytes(model: nn.Module, batch: torch.Tensor) -> int:
    """Bytes of the outputs of ``model``'s leaf modules on ``batch`` (one forward pass).

    >>> model = nn.Sequential(nn.Flatten(), nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2))
    >>> activation_bytes(model, torch.zeros(5, 2, 2))  # 5 x (4 + 3 + 3 + 2) float32
    240
    """
    total = 0

    def count(module: nn.Module, inputs: object, output: object) -> None:
        nonlocal total
        if isinstance(output, torch.Tensor):
            total += output.nbytes

    leaves = [m for m in model.modules() if next(m.children(), None) is None]
    handles = [m.register_forward_hook(count) for m in leaves]
    try:
        with torch.no_grad():
            model(batch)
    finally:
        for handle in handles:
            handle.remove()
    return total


def run_bytes(data: RunData, model: nn.Module, batch_size: int, state_copies: int = 0) -> int:
    """Bytes one run adds to a stack: ``3 D + (6 + s) P + 2 A`` for its data ``D`` (every tensor
    of :class:`RunData`), parameters ``P``, one training batch's activations ``A`` and ``s``
    (``state_copies``) more parameter-sized tensors an optimizer of the run's own keeps (IVON:
    its momentum, Hessian, noise, sample and Hessian-difference buffers, 5).

    >>> from smoothlab.lab.train.data import RunData
    >>> x, y = torch.zeros(10, 4), torch.zeros(10, dtype=torch.long)
    >>> data = RunData(x, y, y, x[:0], y[:0], x, y, 2, 0.0, lambda t: t)
    >>> run_bytes(data, nn.Linear(4, 2), 5)  # 3 (2 x 160 + 3 x 80) + 6 x 40 + 2 x 40
    2000
    """
    tensors = (data.x_train, data.y_train, data.y_train_clean, data.x_val, data.y_val)
    held = sum(t.nbytes for t in (*tensors, data.x_test, data.y_test))
    parameters = sum(p.nbytes for p in model.parameters())
    batch = data.x_train[:batch_size].to(next(model.parameters()).device)
    copies = _PARAMETER_COPIES + state_copies
    return _DATA_COPIES * held + copies * parameters + 2 * activation_bytes(model, batch)


def available_bytes() -> int:
    """Memory this process may still take: the kernel's ``MemAvailable``, lowered to the
    room left under a cgroup (container) limit; 0 where neither can be read."""
    sizes = []
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                sizes.append(int(line.split()[1]) * 1024)
    with contextlib.suppress(OSError, ValueError):
        group = Path("/sys/fs/cgroup")
        limit = (group / "memory.max").read_text().strip()
        if limit != "max":
            sizes.append(int(limit) - int((group / "memory.current").read_text()))
    if not sizes:
        with contextlib.suppress(OSError, ValueError, AttributeError):
            sizes.append(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    return max(0, min(sizes)) if sizes else 0


def stack_budget(max_bytes: int, device: torch.device) -> int:
    """Bytes one stack on ``device`` may take: ``max_bytes`` when given, else half the memory
    available now (:func:`available_bytes`); on a CUDA device also at most half its free memory
    (``torch.cuda.mem_get_info``), where the stack's data, weights and activations live.

    >>> stack_budget(1000, torch.device("cpu"))
    1000
    """
    budget = max_bytes or available_bytes() // 2
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        budget = min(budget, free // 2)
    return budget


def stack_size(per_run: int, budget: int) -> int:
    """The most runs of ``per_run`` bytes in ``budget`` bytes; at least one (a run too large
    for the budget trains alone, as the solo loop would).

    >>> stack_size(100, 1050), stack_size(100, 50)
    (10, 1)
    """
    return max(1, budget // max(per_run, 1))
