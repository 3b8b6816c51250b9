#!/usr/bin/env bash
# The GPU check of issue 16 on one CUDA GPU, in under 5 minutes: the CUDA-marked tests (the
# Triton kernels against the float64 composition, the issue-17 losses' kernels among them;
# IVON's Triton step against its PyTorch ops; no synchronisation per loss call or lab step,
# under CUDA's sync debug mode), then benchmarks/bench_gpu.py (time and peak
# memory against PyTorch and, when installed, Liger-Kernel; IVON's step against fused AdamW),
# then benchmarks/bench_train_gpu.py (an epoch of ResNet-18 through the lab's loop against a
# plain bf16 channels_last loop; issue 14). Record its tables, with the device name it prints, in benchmarks/RESULTS.md.
#
#   benchmarks/gpu_check.sh            # on a machine with a CUDA GPU
#   benchmarks/gpu_check.sh --dry-run  # any machine: collects the CUDA tests and checks the
#                                      # benchmark's plan, runs and measures nothing
#
# PYTHON selects the interpreter (default .venv/bin/python, else python3). smoothlab is imported
# from this tree's src/, installed or not: on a lent GPU machine, whose python3 holds a CUDA
# build of torch, Triton, pytest and hypothesis but nothing of ours and no network, the working
# tree is all that travels, and `benchmarks/gpu_check.sh` runs as it is there. ../shared does
# not travel: nothing here reads it.
set -euo pipefail
cd "$(dirname "$0")/.."
if [[ -n "${PYTHON:-}" ]]; then
    PY="$PYTHON"
elif [[ -x .venv/bin/python ]]; then
    PY=.venv/bin/python
else
    PY=python3
fi
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
echo "python: $PY ($("$PY" -c 'import sys, torch; print(sys.version.split()[0], "torch", torch.__version__)'))"
TESTS=(
    tests/test_triton_kernels.py tests/test_triton_field.py tests/test_triton_ivon.py
    tests/test_host_reads.py -m cuda -p no:randomly
)

case "${1:-}" in
--dry-run)
    echo "dry run: collecting the CUDA tests, checking the benchmark's plan"
    "$PY" -m pytest "${TESTS[@]}" --collect-only -q
    "$PY" benchmarks/bench_gpu.py --dry-run
    "$PY" benchmarks/bench_train_gpu.py --dry-run
    echo "dry run done: nothing was measured"
    ;;
"")
    if ! "$PY" -c "import sys, torch; sys.exit(not torch.cuda.is_available())"; then
        echo "gpu_check.sh needs a CUDA device (none found); try --dry-run" >&2
        exit 2
    fi
    "$PY" -c "from smoothlab import _native; print('triton:', _native.status()['triton'])"
    timeout 120 "$PY" -m pytest "${TESTS[@]}" -ra
    timeout 170 "$PY" benchmarks/bench_gpu.py
    timeout 90 "$PY" benchmarks/bench_train_gpu.py
    ;;
*)
    echo "usage: benchmarks/gpu_check.sh [--dry-run]" >&2
    exit 64
    ;;
esac
