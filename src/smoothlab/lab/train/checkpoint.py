"""Mid-run checkpoints, so that a long run (a ResNet for 200 epochs) resumes where it stopped.

A checkpoint is a folder per run with ``model-<epoch>.safetensors`` and ``best-<epoch>.safetensors``
(the current and the validation-selected weights) and ``state.pt``: optimizer, objective and
batch-order generator states, curves, the epoch. Every file is written through a temporary file,
fsynced and renamed; ``state.pt`` is written last and names the epoch of the weight files, so a
kill between two writes leaves the previous checkpoint valid. Weights are safetensors; ``state.pt``
holds only tensors and plain containers and is loaded with ``torch.load(weights_only=True)``:
nothing is unpickled.
"""

from __future__ import annotations

import io
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

__all__ = ["TMP_PREFIX", "Checkpoint", "atomic_write", "load_checkpoint", "save_checkpoint"]

TMP_PREFIX = ".tmp-"  # a killed writer leaves only such files; the store removes them on open


def atomic_write(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` via a temporary file in the same folder, fsync, rename.

    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as folder:
    ...     atomic_write(Path(folder) / "sub" / "w.bin", b"123")
    ...     print(sorted(p.name for p in Path(folder, "sub").iterdir()))
    ['w.bin']
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=TMP_PREFIX, dir=path.parent)
    try:
        os.fchmod(fd, 0o644)  # mkstemp's 0600 would hide reports from other users
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)  # make the rename itself durable
    finally:
        os.close(directory)


@dataclass
class Checkpoint:
    """The state of a run after ``epoch`` (0-based) has finished."""

    epoch: int
    model: dict[str, Tensor]
    best: dict[str, Tensor]
    state: dict[str, Any]  # optimizer, objective, generator, curves, best score and epoch


def save_checkpoint(folder: Path, checkpoint: Checkpoint) -> None:
    """Write ``checkpoint`` atomically into ``folder`` and drop the previous epoch's files."""
    from safetensors.torch import save

    epoch = checkpoint.epoch
    for name, weights in (("model", checkpoint.model), ("best", checkpoint.best)):
        plain = {k: v.detach().cpu().contiguous() for k, v in weights.items()}
        atomic_write(folder / f"{name}-{epoch}.safetensors", save(plain))
    buffer = io.BytesIO()
    torch.save({**checkpoint.state, "epoch": epoch}, buffer)
    atomic_write(folder / "state.pt", buffer.getvalue())
    for old in folder.glob("*.safetensors"):
        if not old.name.endswith(f"-{epoch}.safetensors"):
            old.unlink()


def load_checkpoint(folder: Path) -> Checkpoint | None:
    """The checkpoint in ``folder``, or None when there is none.

    >>> import tempfile
    >>> folder = Path(tempfile.mkdtemp())
    >>> print(load_checkpoint(folder))
    None
    >>> weights = {"w": torch.ones(2)}
    >>> save_checkpoint(folder, Checkpoint(0, weights, weights, {"step": 7}))
    >>> save_checkpoint(folder, Checkpoint(1, weights, weights, {"step": 14}))
    >>> sorted(p.name for p in folder.iterdir())  # the previous epoch's files are gone
    ['best-1.safetensors', 'model-1.safetensors', 'state.pt']
    >>> back = load_checkpoint(folder)
    >>> back.epoch, back.state, back.model["w"].tolist()
    (1, {'step': 14}, [1.0, 1.0])
    >>> import shutil; shutil.rmtree(folder)
    """
    from safetensors.torch import load_file

    if not (folder / "state.pt").is_file():
        return None
    state = torch.load(folder / "state.pt", weights_only=True)
    epoch = int(state.pop("epoch"))
    model = load_file(folder / f"model-{epoch}.safetensors")
    best = load_file(folder / f"best-{epoch}.safetensors")
    return Checkpoint(epoch, model, best, state)
