"""IVON's C entry points take named fields (``IvonArgs``) and an element range, and compute
exactly what their header says: each one equals, bit for bit, its formula written with float32
PyTorch operations (every scalar rounded to float32 first, as the struct's fields are, and the
square root correctly rounded, as ``sqrtf`` is), over any split of the range."""

from __future__ import annotations

import ctypes
import itertools

import pytest
import torch

from smoothlab import _native
from smoothlab.optim import _ivon_native
from smoothlab.optim._ivon_native import IvonArgs

_LIB = _ivon_native.kernels()
pytestmark = pytest.mark.skipif(_LIB is None, reason="no native IVON kernels on this machine")
N = 1001  # three full chunks of 256 normals and a partial one
CUTS = [0, 1, 255, 256, 700, N]  # ranges that start and end inside and on chunk edges
ESS, WD = 37.3, 1.3e-3


def _f32(value: float) -> torch.Tensor:
    return torch.tensor(value, dtype=torch.float32)


def _sqrt_p(h: torch.Tensor) -> torch.Tensor:
    """``sqrtf(ess h + ess wd)``: float32 products and sum, the root correctly rounded."""
    return torch.sqrt((_f32(ESS) * h + _f32(ESS * WD)).double()).float()


def _state(seed: int) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    names = ("m", "g", "mom", "diff", "eps")
    state = {name: torch.randn(N, generator=g) for name in names}
    state["h"] = torch.rand(N, generator=g) + 0.1
    return state


def _in_pieces(entry: str, args: IvonArgs) -> None:
    """Run ``entry`` over ``CUTS``' ranges, one call per range, sharing ``args``."""
    for lo, hi in itertools.pairwise(CUTS):
        getattr(_LIB, entry)(ctypes.byref(args), lo, hi)


def test_sample_is_its_formula_bitwise() -> None:
    s = _state(0)
    theta, eps = torch.empty(N), torch.empty(N)
    at = _native.address
    args = IvonArgs(k0=5, k1=6, stream=3, m=at(s["m"]), h=at(s["h"]), theta=at(theta),
                    eps=at(eps), ess=ESS, ess_wd=ESS * WD)  # fmt: skip
    _in_pieces("sl_ivon_sample", args)
    z = _ivon_native.normal_(torch.empty(N), (5, 6), 3)
    assert torch.equal(eps, z)
    assert torch.equal(theta, s["m"] + z / _sqrt_p(s["h"]))


@pytest.mark.parametrize("first", [True, False])
def test_record_is_its_formula_bitwise(first: bool) -> None:
    s = _state(1)
    mom, diff = s["mom"].clone(), s["diff"].clone()
    at = _native.address
    args = IvonArgs(g=at(s["g"]), eps=at(s["eps"]), h=at(s["h"]), mom=at(mom), diff=at(diff),
                    ess=ESS, ess_wd=ESS * WD, keep=0.9, share=0.05, first=int(first))  # fmt: skip
    _in_pieces("sl_ivon_record", args)
    d = s["h"] - s["g"] * s["eps"] * _sqrt_p(s["h"])
    share = _f32(0.05) * s["g"]
    assert torch.equal(diff, d if first else s["diff"] + d)
    assert torch.equal(mom, _f32(0.9) * s["mom"] + share if first else s["mom"] + share)


@pytest.mark.parametrize("clip", [0.05, float("inf")])
def test_update_is_its_formula_bitwise(clip: float) -> None:
    s = _state(2)
    m, h = s["m"].clone(), s["h"].clone()
    a = 1.0 - 0.99
    at = _native.address
    args = IvonArgs(m=at(m), h=at(h), mom=at(s["mom"]), diff=at(s["diff"]), ess=ESS,
                    ess_wd=ESS * WD, wd=WD, a=a, c2=0.5 * a * a * ESS, missing=1, samples=3,
                    lr=0.1, debias=1.7, clip=clip)  # fmt: skip
    _in_pieces("sl_ivon_update", args)
    d = (s["diff"] + _f32(1.0) * s["h"]) / _f32(3.0)
    hn = s["h"] + d * (
        _f32(0.5 * a * a * ESS) * d / (_f32(ESS) * s["h"] + _f32(ESS * WD)) - _f32(a)
    )
    u = (_f32(1.7) * s["mom"] + _f32(WD) * s["m"]) / (hn + _f32(WD))
    assert torch.equal(h, hn)
    assert torch.equal(m, s["m"] - _f32(0.1) * u.clamp(-clip, clip))
    assert clip == float("inf") or bool((u.abs() > clip).any())  # the clip did bite


def test_wrappers_fill_the_fields_their_entry_points_read() -> None:
    """``sample_``, ``record_`` and ``update_`` reach the same bits as the fields set by hand."""
    s = _state(3)
    theta, eps = torch.empty(N), torch.empty(N)
    _ivon_native.sample_(s["m"], s["h"], theta, eps, key=(5, 6), stream=3, ess=ESS,
                         weight_decay=WD)  # fmt: skip
    assert torch.equal(theta, s["m"] + eps / _sqrt_p(s["h"]))
    mom, diff = s["mom"].clone(), s["diff"].clone()
    _ivon_native.record_(s["g"], eps, s["h"], mom, diff, ess=ESS, weight_decay=WD, beta1=0.8,
                         share=0.5, first=False)  # fmt: skip
    assert torch.equal(diff, s["diff"] + (s["h"] - s["g"] * eps * _sqrt_p(s["h"])))
    assert torch.equal(mom, s["mom"] + _f32((1.0 - 0.8) * 0.5) * s["g"])
    m, h = s["m"].clone(), s["h"].clone()
    _ivon_native.update_(m, h, mom, diff, ess=ESS, weight_decay=WD, beta2=1.0, lr=0.1,
                         debias=1.0, clip_radius=float("inf"), missing=0, samples=1)  # fmt: skip
    assert torch.equal(h, s["h"])  # beta2 = 1 keeps the Hessian
    assert torch.equal(m, s["m"] - _f32(0.1) * ((mom + _f32(WD) * s["m"]) / (h + _f32(WD))))
