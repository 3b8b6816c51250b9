"""Optional compiled kernels: C sources beside this file, built on first use, loaded with ctypes.

Some of smoothlab's hot loops (the loss family's row kernels for float32 logits, IVON's sampling
and update) run several times faster as one C loop than as a sequence of PyTorch operations:
each PyTorch call is a separate sweep over memory and, on CPU, a separate parallel region. The C
sources here are plain C11 with no Python or PyTorch headers, so building one takes well under a
second with the system's C compiler (``$CC``, else ``cc``); nothing is compiled at install time.

* The shared library is cached under ``$SMOOTHLAB_CACHE_DIR/native`` (default
  ``$XDG_CACHE_HOME/smoothlab`` or ``~/.cache/smoothlab``), named by a hash of the source, the
  compiler's version, the flags and the CPU (the code is built with ``-march=native``), and
  written atomically (a temporary file renamed into place), so concurrent processes are safe.
* Without a compiler, or with ``SMOOTHLAB_NATIVE=0`` in the environment, or when a build fails,
  :func:`library` returns ``None`` and every caller runs its PyTorch implementation, which
  computes the same numbers (the tests compare the two). :func:`status` says which happened.
* :func:`bind` is the one place that loads a library and declares its entry points' argument
  types (the loss rows and IVON both bind through it). Kernels take raw pointers
  (:func:`address`) of contiguous CPU tensors; ctypes releases the GIL during a call, so
  :func:`parallel` splits work over a thread pool of ``torch.get_num_threads()`` threads.

The compiler flags keep IEEE semantics for infinities and NaNs (no ``-ffast-math``);
``-fno-math-errno -fno-trapping-math`` let loops with conversions and selects vectorise.
"""

from __future__ import annotations

import contextlib
import ctypes
import hashlib
import os
import platform
import shutil
import subprocess
import tempfile
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from smoothlab import _triton

__all__ = [
    "FLAGS",
    "MAX_PARTS",
    "address",
    "bind",
    "cache_dir",
    "disabled",
    "library",
    "library_status",
    "parallel",
    "served",
    "status",
]

#: Flags of every build (``-march=native`` is dropped and the build retried if it fails).
FLAGS = (
    "-std=c11",
    "-O3",
    "-march=native",
    "-fno-math-errno",
    "-fno-trapping-math",
    "-fopenmp-simd",
    "-fPIC",
    "-shared",
)
_SOURCES = Path(__file__).resolve().parent
_LOCK = threading.Lock()
_LOADED: dict[str, ctypes.CDLL | None] = {}
_STATUS: dict[str, str] = {}
_SERVED: dict[str, str] = {}  # loss family -> the backend of its latest call
_BOUND: dict[tuple[str, str], ctypes.CDLL] = {}  # (library, entry point) whose types are set
# (owner pid, workers, pool): a forked child inherits the list but not the threads.
_POOL: list[tuple[int, int, ThreadPoolExecutor]] = []
_DISABLED = threading.local()


def cache_dir() -> Path:
    """Where built libraries are kept: ``$SMOOTHLAB_CACHE_DIR/native`` or the user cache."""
    root = os.environ.get("SMOOTHLAB_CACHE_DIR")
    if not root:
        xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
        root = str(Path(xdg) / "smoothlab")
    return Path(root) / "native"


def _enabled() -> bool:
    if getattr(_DISABLED, "depth", 0):
        return False
    return os.environ.get("SMOOTHLAB_NATIVE", "1").strip().lower() not in {
        "0",
        "false",
        "no",
        "off",
    }


@contextlib.contextmanager
def disabled() -> Iterator[None]:
    """Run the PyTorch implementations inside the ``with`` block (this thread only).

    >>> with disabled():
    ...     library("losses") is None
    True
    """
    _DISABLED.depth = getattr(_DISABLED, "depth", 0) + 1
    try:
        yield
    finally:
        _DISABLED.depth -= 1


def _cpu_signature() -> str:
    """The machine and its CPU feature flags, so that a ``-march=native`` build is never reused
    on a CPU that lacks its instructions (a shared home directory on a cluster)."""
    flags = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(("flags", "Features")):
                flags = line
                break
    return f"{platform.machine()} {platform.system()} {flags}"


def _compiler() -> str | None:
    return os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")


def _build(name: str) -> Path:
    """Compile ``name.c`` into the cache (if not already there) and return the library's path.

    The cache key covers the headers beside the sources too (``losses.c`` includes one), so
    that editing a header rebuilds the libraries."""
    headers = b"".join(path.read_bytes() for path in sorted(_SOURCES.glob("*.h")))
    source = (_SOURCES / f"{name}.c").read_bytes() + headers
    compiler = _compiler()
    if compiler is None:
        raise OSError("no C compiler found (set CC or install cc)")
    version = subprocess.run(
        [compiler, "--version"], capture_output=True, text=True, timeout=60, check=False
    ).stdout
    suffix = ".dll" if os.name == "nt" else ".so"
    errors = []
    for flags in (FLAGS, tuple(f for f in FLAGS if f != "-march=native")):
        key = hashlib.sha256(
            b"\0".join(
                [source, version.encode(), " ".join(flags).encode(), _cpu_signature().encode()]
            )
        ).hexdigest()[:16]
        target = cache_dir() / f"{name}-{key}{suffix}"
        if target.exists():
            return target
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(suffix=suffix, dir=target.parent)
        os.close(fd)
        command = [compiler, *flags, str(_SOURCES / f"{name}.c"), "-o", tmp, "-lm"]
        done = subprocess.run(command, capture_output=True, text=True, timeout=300, check=False)
        if done.returncode == 0:
            os.replace(tmp, target)
            return target
        os.unlink(tmp)
        errors.append(done.stderr.strip()[-2000:])
    raise OSError(f"building {name}.c failed: {errors[-1]}")


def library(name: str) -> ctypes.CDLL | None:
    """The compiled library ``name`` (from ``name.c`` beside this module), or ``None``.

    ``None`` when native kernels are disabled (``SMOOTHLAB_NATIVE=0``, :func:`disabled`) or the
    build failed; :func:`status` then says why. A library is built and loaded once per process.
    """
    if not _enabled():
        return None
    if name in _LOADED:
        return _LOADED[name]
    with _LOCK:
        if name not in _LOADED:
            try:
                path = _build(name)
                _LOADED[name] = ctypes.CDLL(str(path))
                _STATUS[name] = f"loaded {path}"
            except (OSError, subprocess.SubprocessError) as error:
                _LOADED[name] = None
                _STATUS[name] = f"unavailable: {error}"
    return _LOADED[name]


def bind(name: str, signatures: Mapping[str, tuple[Sequence[Any], Any]]) -> ctypes.CDLL | None:
    """:func:`library` ``name`` with each entry point's ``(argtypes, restype)`` declared.

    The types are set once per entry point of a loaded library; ``None`` as :func:`library`.

    >>> exp_n = {"sl_exp_n": ([ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64], None)}
    >>> lib = bind("losses", exp_n)
    >>> lib is None or lib.sl_exp_n.restype is None
    True
    """
    lib = library(name)
    if lib is None:
        return None
    for entry, (argtypes, restype) in signatures.items():
        if _BOUND.get((name, entry)) is not lib:
            with _LOCK:
                function = getattr(lib, entry)
                function.argtypes = list(argtypes)
                function.restype = restype
                _BOUND[(name, entry)] = lib
    return lib


def address(tensor: Tensor | None, offset: int = 0) -> int | None:
    """The address of element ``offset`` of a contiguous tensor (``None`` for ``None``).

    >>> t = torch.zeros(4)
    >>> address(t, 3) - address(t), address(None)
    (12, None)
    """
    if tensor is None:
        return None
    return tensor.data_ptr() + offset * tensor.element_size()


def served(family: str, backend: str) -> None:
    """Record that ``backend`` (``"native"``, ``"triton"`` or ``"torch"``) ran the latest fused
    call of a loss ``family`` (``"smoothing"``, ``"relaxation"``, ``"penalty"``); the one dispatch
    point, ``Job.backend`` in :mod:`smoothlab.losses._fused`, calls it."""
    _SERVED[family] = backend


def status() -> dict[str, str]:
    """Each native library's state: ``"loaded <path>"``, ``"unavailable: <why>"`` or disabled;
    under ``"triton"``, whether Triton kernels serve CUDA tensors (:mod:`smoothlab._triton`);
    and under ``"last <family>"`` the backend that ran the latest fused call of each loss family
    in this process (:func:`served`; absent before the first call).

    Builds every library first, so that the answer is about this machine, not this process's
    history (the ``"last"`` entries are the exception: they are this process's history).

    >>> import smoothlab
    >>> _ = smoothlab.label_relaxation_loss(torch.zeros(2, 3), torch.tensor([0, 1]))
    >>> status()["last relaxation"] in ("native", "torch")
    True
    """
    out = {"triton": _triton.status()}
    for source in sorted(_SOURCES.glob("*.c")):
        out[source.stem] = library_status(source.stem)
    out.update({f"last {family}": backend for family, backend in sorted(_SERVED.items())})
    return out


def library_status(name: str) -> str:
    """One native library's entry of :func:`status`, built first; without :func:`status`'s
    Triton import (0.17 s on a machine without CUDA), for provenance.

    >>> library_status("losses").split()[0] in ("loaded", "unavailable:", "disabled")
    True
    """
    if not _enabled():
        return "disabled (SMOOTHLAB_NATIVE=0 or smoothlab._native.disabled())"
    library(name)
    return _STATUS[name]


#: Most ranges :func:`parallel` makes (so callers can size per-range outputs).
MAX_PARTS = 64


def parallel(work: Callable[[int, int, int], None], total: int, *, grain: int) -> None:
    """Call ``work(start, stop, part)`` over ``[0, total)`` split into at most one range per thread.

    Ranges hold at least ``grain`` items and are numbered ``part = 0, 1, ...`` (fewer than
    :data:`MAX_PARTS`); with one range (or one torch thread) ``work`` runs in the calling thread.
    ``work`` should spend its time in a ctypes call, which releases the GIL.

    >>> seen = []
    >>> parallel(lambda a, b, k: seen.append((a, b, k)), 10, grain=100)
    >>> seen
    [(0, 10, 0)]
    """
    parts = max(1, min(torch.get_num_threads(), total // max(grain, 1), MAX_PARTS))
    if parts == 1:
        work(0, total, 0)
        return
    with _LOCK:
        if not _POOL or _POOL[0][0] != os.getpid() or _POOL[0][1] < parts - 1:
            if _POOL and _POOL[0][0] == os.getpid():
                _POOL[0][2].shutdown(wait=False)
            _POOL[:] = [(os.getpid(), parts - 1, ThreadPoolExecutor(parts - 1, "smoothlab-native"))]
        pool = _POOL[0][2]
    cuts = [total * k // parts for k in range(parts + 1)]
    futures = [pool.submit(work, cuts[k], cuts[k + 1], k) for k in range(1, parts)]
    work(cuts[0], cuts[1], 0)  # the calling thread takes the first range
    for future in futures:
        future.result()
