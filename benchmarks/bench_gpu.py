"""GPU forward+backward time and peak memory of the loss family (Triton) against PyTorch and Liger.

One run, one GPU: every number printed is a median over ``--repeats`` interleaved rounds, timed
with CUDA events, each round on a fresh copy of the logits made outside the timed region, and
reported as a ratio to PyTorch's ``F.cross_entropy(label_smoothing=0.1)`` (and to Liger-Kernel's
cross-entropy when ``liger_kernel`` is importable, and to our uniform smoothing: the family's
1.15x target). Peak memory is the most allocated during a round beyond what existed before it
(logits, targets), in units of one ``N x C`` logits buffer. A second table times the fused linear
heads (logits never whole) against ``F.linear`` + ``F.cross_entropy`` and Liger's fused linear
cross-entropy, peak extra memory in MiB. A third times IVON's step (Triton kernels: sample,
record, update) on a 25M-parameter float32 model (``--ivon WIDTHxDEPTH`` square layers with
biases) against torch's fused AdamW step, both given fixed gradients. Usage::

    python benchmarks/bench_gpu.py [--shape 8192x128256] [--head 8192x4096x128256] [--repeats 10]
                                   [--ivon 2048x6]
    python benchmarks/bench_gpu.py --dry-run   # checks the plan on any machine, measures nothing

Without a CUDA device it exits with status 2 and says so; nothing is estimated.
"""

from __future__ import annotations

import argparse
import functools
import statistics
import sys
from collections.abc import Callable

import torch
import torch.nn.functional as F

import smoothlab
from smoothlab import _native
from smoothlab.optim import IVON

Loss = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]
LS = smoothlab.label_smoothing_cross_entropy
DEVICE = "cuda"  # the smoke test runs the tables on "cpu" with CUDA's timers stubbed
BASELINE = "pytorch ls r=0.1"
OURS = "ls r=0.1"

# Each candidate gets the logits, the class indices and a per-example distribution q.
LOSSES: dict[str, Loss] = {
    BASELINE: lambda z, y, q: F.cross_entropy(z, y, label_smoothing=0.1),
    OURS: lambda z, y, q: LS(z, y, 0.1),
    "ls r=0.1 in-place": lambda z, y, q: LS(z, y, 0.1, inplace_grad=True),
    "nls r=-0.1": lambda z, y, q: LS(z, y, -0.1),
    "teacher prior r=0.1": lambda z, y, q: LS(z, y, 0.1, prior=q),
    "soft targets r=0.1": lambda z, y, q: LS(z, q, 0.1),
    "relaxation a=0.1": lambda z, y, q: smoothlab.label_relaxation_loss(z, y, 0.1),
    "conf. penalty b=0.1": lambda z, y, q: smoothlab.confidence_penalty_loss(z, y, 0.1),
    "conf. penalty tau=1": lambda z, y, q: smoothlab.confidence_penalty_loss(
        z, y, 0.1, threshold=1.0
    ),
    # the issue-17 losses with a fused row kernel
    "focal gamma=2": lambda z, y, q: smoothlab.focal_loss(z, y, gamma=2.0),
    "FLSD-53": lambda z, y, q: smoothlab.sample_dependent_focal_loss(z, y),
    "GCE q=0.7": lambda z, y, q: smoothlab.generalized_cross_entropy(z, y, q=0.7),
    "SCE a=0.1 b=1": lambda z, y, q: smoothlab.symmetric_cross_entropy(z, y),
    "logit penalty b=1e-3": lambda z, y, q: smoothlab.logit_penalty_loss(z, y, beta=1e-3),
    "MaxSup a=0.1": lambda z, y, q: smoothlab.max_suppression_loss(z, y, alpha=0.1),
    "MbLS m=10 a=0.1": lambda z, y, q: smoothlab.margin_label_smoothing_loss(z, y),
    "LogitNorm t=0.04": lambda z, y, q: smoothlab.logit_norm_loss(z, y, temperature=0.04),
}


Inputs = tuple[torch.Tensor, ...]
Head = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]
HEAD_BASELINE = "pytorch linear + ls r=0.1"
HEADS: dict[str, Head] = {
    HEAD_BASELINE: lambda h, w, y: F.cross_entropy(F.linear(h, w), y, label_smoothing=0.1),
    "ls r=0.1": lambda h, w, y: smoothlab.linear_label_smoothing_cross_entropy(h, w, y),
    "relaxation a=0.1": lambda h, w, y: smoothlab.linear_label_relaxation_loss(h, w, y),
    "conf. penalty b=0.1": lambda h, w, y: smoothlab.linear_confidence_penalty_loss(h, w, y),
}


@functools.lru_cache(maxsize=4)
def _zipf(vocab: int, device: str) -> torch.Tensor:
    """A Zipf class prior, ``pi_j ~ 1 / (j + 1)``: a word-frequency shape."""
    weights = 1.0 / torch.arange(1, vocab + 1, device=device, dtype=torch.float32)
    return weights / weights.sum()


def _logits_free(smoothing: float, prior: bool = False) -> Head:
    """The CCE-style head of ``smoothlab._triton.cce`` (CUDA tensors only)."""
    from smoothlab._triton.cce import linear_smoothing_cross_entropy

    def run(h: torch.Tensor, w: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        pi = _zipf(w.shape[0], str(w.device)) if prior else None
        return linear_smoothing_cross_entropy(h, w, y, smoothing=smoothing, prior=pi)

    return run


#: Heads that run Triton kernels only on CUDA tensors: the CPU smoke run of the tables skips them.
LOGITS_FREE = {
    "ce logits-free": (0.0, False),
    "ls r=0.1 logits-free": (0.1, False),
    "nls r=-0.1 logits-free": (-0.1, False),
    "prior r=0.1 logits-free": (0.1, True),
}
CUDA_ONLY = set(LOGITS_FREE)


def add_logits_free(heads: dict[str, Head]) -> str | None:
    """Add our logits-free heads (when Triton imports) and Cut Cross-Entropy's (when
    ``cut_cross_entropy`` imports: plain cross-entropy, no bias, no smoothing)."""
    try:
        heads.update({name: _logits_free(*how) for name, how in LOGITS_FREE.items()})
        from cut_cross_entropy import linear_cross_entropy  # type: ignore[import-not-found]
    except ImportError:
        return None
    heads["cut-ce r=0"] = lambda h, w, y: linear_cross_entropy(h, w, y)
    heads["cut-ce r=0 unfiltered"] = lambda h, w, y: linear_cross_entropy(h, w, y, filter_eps=None)
    CUDA_ONLY.update({"cut-ce r=0", "cut-ce r=0 unfiltered"})
    return "cut-ce r=0"


def add_liger(losses: dict[str, Loss], heads: dict[str, Head]) -> str | None:
    """Add Liger-Kernel's smoothing cross-entropy (and fused linear head) when installed."""
    try:
        from liger_kernel.transformers import (  # type: ignore[import-not-found]
            LigerCrossEntropyLoss,
            LigerFusedLinearCrossEntropyLoss,
        )
    except ImportError:
        return None
    liger = LigerCrossEntropyLoss(label_smoothing=0.1)
    losses["liger ls r=0.1"] = lambda z, y, q: liger(z, y)
    head = LigerFusedLinearCrossEntropyLoss(label_smoothing=0.1)
    heads["liger ls r=0.1"] = lambda h, w, y: head(w, h, y)  # Liger takes the weight first
    return "liger ls r=0.1"


def one_round(run: Callable[..., torch.Tensor], make: Callable[[], Inputs]) -> tuple[float, int]:
    """Milliseconds of forward + backward on fresh inputs (made untimed), and peak extra bytes."""
    inputs = make()
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    before = torch.cuda.memory_allocated()
    start, stop = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    run(*inputs).backward()
    stop.record()
    torch.cuda.synchronize()
    return start.elapsed_time(stop), torch.cuda.max_memory_allocated() - before


def measure(
    candidates: dict[str, Callable[..., torch.Tensor]], make: Callable[[], Inputs], repeats: int
) -> dict[str, tuple[float, int]]:
    """Median milliseconds and largest peak extra bytes of each candidate, rounds interleaved."""
    times: dict[str, list[float]] = {name: [] for name in candidates}
    peaks: dict[str, int] = dict.fromkeys(candidates, 0)
    for run in candidates.values():  # warm-up: Triton compiles each kernel variant once
        one_round(run, make)
    for _ in range(repeats):
        for name, run in candidates.items():
            ms, peak = one_round(run, make)
            times[name].append(ms)
            peaks[name] = max(peaks[name], peak)
    return {name: (statistics.median(times[name]), peaks[name]) for name in candidates}


def report(
    results: dict[str, tuple[float, int]], refs: list[str], unit: int, unit_name: str
) -> None:
    """One table: milliseconds, time ratios to each of ``refs``, peak extra memory in ``unit``."""
    head = "".join(f"{'/' + r.split(' ')[0]:>10}" for r in refs)
    print(f"{'candidate':<26}{'ms':>9}{head}{'peak (' + unit_name + ')':>16}")
    for name, (ms, peak) in results.items():
        ratios = "".join(f"{ms / results[r][0]:>10.2f}" for r in refs)
        print(f"{name:<26}{ms:>9.2f}{ratios}{peak / unit:>16.2f}")


def loss_table(shape: tuple[int, int], dtype: torch.dtype, repeats: int, liger: str | None) -> None:
    n, c = shape
    g = torch.Generator(device=DEVICE).manual_seed(0)
    z = torch.randn(n, c, device=DEVICE, dtype=dtype, generator=g)
    y = torch.randint(0, c, (n,), device=DEVICE, generator=g)
    # float32: a bf16 rounding of a softmax is no longer a distribution to the prior check
    q = torch.softmax(torch.randn(n, c, device=DEVICE, generator=g), 1)
    results = measure(LOSSES, lambda: (z.clone().requires_grad_(), y, q), repeats)
    print(f"\nlosses {n} x {c}: time ratios to the named candidates; peak in N x C buffers")
    refs = [BASELINE, *([liger] if liger else []), OURS]
    report(results, refs, z.numel() * z.element_size(), "x N*C")


def head_table(
    shape: tuple[int, int, int], dtype: torch.dtype, repeats: int, refs: list[str]
) -> None:
    n, hidden, vocab = shape
    g = torch.Generator(device=DEVICE).manual_seed(1)
    h = torch.randn(n, hidden, device=DEVICE, dtype=dtype, generator=g)
    w = torch.randn(vocab, hidden, device=DEVICE, dtype=dtype, generator=g) / hidden**0.5
    y = torch.randint(0, vocab, (n,), device=DEVICE, generator=g)

    def make() -> Inputs:
        return h.clone().requires_grad_(), w.clone().requires_grad_(), y

    heads = {k: v for k, v in HEADS.items() if DEVICE == "cuda" or k not in CUDA_ONLY}
    results = measure(heads, make, repeats)
    print(f"\nlinear heads {n} x {hidden} -> {vocab}: time ratios as above; peak extra in MiB")
    report(results, [HEAD_BASELINE, *(r for r in refs if r in heads)], 1 << 20, "MiB")


ADAMW = "torch AdamW fused step"
IVON_STEPS = (ADAMW, "ivon step()", "ivon sample+record+step")


def time_call(run: Callable[[], object], prepare: Callable[[], object]) -> float:
    """Milliseconds of ``run()`` on the GPU after an untimed ``prepare()``."""
    prepare()
    torch.cuda.synchronize()
    start, stop = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    run()
    stop.record()
    torch.cuda.synchronize()
    return start.elapsed_time(stop)


def _layers(width: int, depth: int, seed: int) -> list[torch.nn.Parameter]:
    g = torch.Generator(device=DEVICE).manual_seed(seed)
    shapes = [(width, width), (width,)] * depth
    return [torch.nn.Parameter(torch.randn(s, device=DEVICE, generator=g) / width) for s in shapes]


def ivon_table(shape: tuple[int, int], repeats: int) -> None:
    """IVON's optimizer work per training step against fused AdamW's, medians of interleaved
    rounds; the gradients are fixed tensors, so no forward or backward pass is timed."""
    width, depth = shape
    adam_params, ivon_params = _layers(width, depth, 2), _layers(width, depth, 2)
    grads = [torch.randn_like(p) for p in adam_params]
    for p, grad in zip(adam_params, grads, strict=True):
        p.grad = grad
    adamw = torch.optim.AdamW(adam_params, lr=1e-3, fused=True)
    ivon = IVON(ivon_params, lr=1e-3, ess=1e6,
                generator=torch.Generator(DEVICE).manual_seed(3))  # fmt: skip

    def sample_and_record() -> None:
        with ivon.sampled_params(train=True):
            for p, grad in zip(ivon_params, grads, strict=True):
                p.grad = grad

    def full() -> None:
        sample_and_record()
        ivon.step()

    rounds = {ADAMW: (adamw.step, lambda: None), "ivon step()": (ivon.step, sample_and_record)}
    rounds["ivon sample+record+step"] = (full, lambda: None)
    times: dict[str, list[float]] = {name: [] for name in IVON_STEPS}
    for _ in range(repeats + 1):  # the first round compiles the kernels: not counted
        for name in IVON_STEPS:
            times[name].append(time_call(*rounds[name]))
    count = sum(p.numel() for p in ivon_params)
    print(f"\nIVON {count / 1e6:.1f}M float32 parameters in {2 * depth} tensors: ratio to AdamW")
    base = statistics.median(times[ADAMW][1:])
    for name in IVON_STEPS:
        ms = statistics.median(times[name][1:])
        print(f"{name:<26}{ms:>9.3f}{ms / base:>10.2f}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", default="8192x128256", help="N x C logits")
    parser.add_argument("--head", default="8192x4096x128256", help="N x H -> V linear head")
    parser.add_argument("--ivon", default="2048x6", help="IVON model: WIDTH x DEPTH layers")
    parser.add_argument("--dtype", default="bfloat16", choices=["bfloat16", "float16", "float32"])
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--dry-run", action="store_true", help="print the plan, measure nothing")
    args = parser.parse_args(argv)
    n, c = (int(part) for part in args.shape.lower().split("x"))
    rows, hidden, vocab = (int(part) for part in args.head.lower().split("x"))
    width, depth = (int(part) for part in args.ivon.lower().split("x"))
    dtype = getattr(torch, args.dtype)
    liger = add_liger(LOSSES, HEADS)
    cut = add_logits_free(HEADS)
    print(f"losses {n}x{c}, heads {rows}x{hidden}->{vocab}, {args.dtype}, {args.repeats} rounds")
    print(f"losses: {', '.join(LOSSES)}; heads: {', '.join(HEADS)}")
    print(f"ivon {width}x{depth}: {', '.join(IVON_STEPS)}")
    print(f"triton: {_native.status()['triton']}; liger-kernel: {'yes' if liger else 'absent'}; "
          f"cut-cross-entropy: {'yes' if cut else 'absent'}")  # fmt: skip
    if args.dry_run:
        return 0
    if not torch.cuda.is_available():
        print(
            "bench_gpu.py needs a CUDA device (none found): nothing was measured", file=sys.stderr
        )
        return 2
    print(f"device: {torch.cuda.get_device_name()}, torch {torch.__version__}")
    loss_table((n, c), dtype, args.repeats, liger)
    head_table((rows, hidden, vocab), dtype, args.repeats, [r for r in (liger, cut) if r])
    ivon_table((width, depth), args.repeats)
    return 0


if __name__ == "__main__":
    sys.exit(main())
