"""SAM / ASAM (Foret et al. 2021; Kwon et al. 2021): the formula, rho = 0, batch norm, scaling."""

from __future__ import annotations

import copy
import re
import warnings

import pytest
import torch
from torch import nn

from smoothlab.optim import SAM, disable_running_stats


def _quadratic(w: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
    return 0.5 * (a * w**2).sum()


@pytest.mark.parametrize("adaptive", [False, True])
def test_one_step_matches_the_closed_form(adaptive: bool) -> None:
    a = torch.tensor([1.0, 4.0, 0.5], dtype=torch.float64)
    w0 = torch.tensor([2.0, -1.0, 0.3], dtype=torch.float64)
    rho, lr, eta = 0.2, 0.1, 0.01
    w = nn.Parameter(w0.clone())
    sam = SAM([w], torch.optim.SGD([w], lr=lr), rho=rho, adaptive=adaptive, eta=eta)
    _quadratic(w, a).backward()
    sam.first_step(zero_grad=True)
    _quadratic(w, a).backward()
    sam.second_step()
    # closed form: g = a w, e = rho T^2 g / ||T g||, w' = w - lr a (w + e)
    g = a * w0
    t = w0.abs() + eta if adaptive else torch.ones(3, dtype=torch.float64)
    e = rho * t**2 * g / torch.linalg.vector_norm(t * g)
    torch.testing.assert_close(w.detach(), w0 - lr * a * (w0 + e), rtol=1e-12, atol=1e-14)


def _mlp() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Linear(16, 3))


def _batch() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    return torch.randn(32, 4, generator=g), torch.randint(0, 3, (32,), generator=g)


@pytest.mark.parametrize(
    "make_base",
    [
        lambda ps: torch.optim.SGD(ps, lr=0.1, momentum=0.9, weight_decay=1e-3),
        lambda ps: torch.optim.AdamW(ps, lr=1e-2),
    ],
)
def test_rho_zero_is_the_base_optimizer_bitwise(make_base) -> None:
    x, y = _batch()
    plain, wrapped = _mlp(), _mlp()
    base = make_base(list(plain.parameters()))
    params = list(wrapped.parameters())
    sam = SAM(params, make_base(params), rho=0.0)
    for _ in range(3):
        base.zero_grad()
        nn.functional.cross_entropy(plain(x), y).backward()
        base.step()

        def closure() -> torch.Tensor:
            sam.zero_grad()
            loss = nn.functional.cross_entropy(wrapped(x), y)
            loss.backward()
            return loss

        sam.step(closure, model=wrapped)  # batch norm counts the batch once
    for p, q in zip(plain.state_dict().values(), wrapped.state_dict().values(), strict=True):
        assert torch.equal(p, q)


def test_step_with_closure_equals_the_two_explicit_steps() -> None:
    x, y = _batch()
    models = [_mlp(), _mlp()]
    sams = [SAM(m.parameters(), torch.optim.SGD(m.parameters(), lr=0.1), rho=0.1) for m in models]
    loss_fn = nn.functional.cross_entropy
    loss_fn(models[0](x), y).backward()
    sams[0].first_step(zero_grad=True)
    with disable_running_stats(models[0]):
        loss_fn(models[0](x), y).backward()
    sams[0].second_step(zero_grad=True)

    def closure() -> torch.Tensor:
        sams[1].zero_grad()
        loss = loss_fn(models[1](x), y)
        loss.backward()
        return loss

    sams[1].step(closure, model=models[1])
    for p, q in zip(models[0].state_dict().values(), models[1].state_dict().values(), strict=True):
        assert torch.equal(p, q)


@pytest.mark.parametrize("adaptive", [False, True])
def test_converges_on_logistic_regression(adaptive: bool) -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(200, 2, generator=g)
    y = (x[:, 0] - x[:, 1] > 0).long()
    torch.manual_seed(0)  # nn.Linear's initialisation only; the data come from `g`
    model = nn.Linear(2, 2)
    sam = SAM(model.parameters(), torch.optim.SGD(model.parameters(), lr=0.5), rho=0.05,
              adaptive=adaptive)  # fmt: skip

    def closure() -> torch.Tensor:
        sam.zero_grad()
        loss = nn.functional.cross_entropy(model(x), y)
        loss.backward()
        return loss

    first = closure().item()
    for _ in range(150):
        sam.step(closure)
    assert closure().item() < 0.25 * first
    assert (model(x).argmax(1) == y).float().mean() > 0.97


def test_state_dict_round_trip_continues_identically() -> None:
    x, y = _batch()

    def make(model: nn.Module) -> SAM:
        params = list(model.parameters())
        return SAM(params, torch.optim.SGD(params, lr=0.1, momentum=0.9), rho=0.1, adaptive=True)

    def run(model: nn.Module, sam: SAM, steps: int) -> None:
        for _ in range(steps):
            sam.zero_grad()
            nn.functional.cross_entropy(model(x), y).backward()
            sam.first_step(zero_grad=True)
            with disable_running_stats(model):
                nn.functional.cross_entropy(model(x), y).backward()
            sam.second_step()

    model = _mlp()
    sam = make(model)
    run(model, sam, 2)
    saved_model, saved_opt = copy.deepcopy(model.state_dict()), copy.deepcopy(sam.state_dict())
    run(model, sam, 2)
    model2 = _mlp()
    model2.load_state_dict(saved_model)
    sam2 = make(model2)
    sam2.load_state_dict(saved_opt)
    assert sam2.param_groups[0]["adaptive"] is True
    run(model2, sam2, 2)
    for p, q in zip(model.state_dict().values(), model2.state_dict().values(), strict=True):
        assert torch.equal(p, q)


def test_disable_running_stats_leaves_statistics_and_flags_alone() -> None:
    model = _mlp()
    frozen_bn = nn.BatchNorm1d(3).eval()
    x, _ = _batch()
    model(x)  # one ordinary update
    bn = model[1]
    before = {k: v.clone() for k, v in bn.state_dict().items()}
    with disable_running_stats(nn.Sequential(model, frozen_bn)):
        model(x)
        assert not bn.track_running_stats
        assert frozen_bn.track_running_stats  # eval-mode layers keep using running statistics
    for key, value in bn.state_dict().items():
        assert torch.equal(value, before[key]), key
    assert bn.track_running_stats and frozen_bn.track_running_stats
    model(x)
    assert int(bn.num_batches_tracked) == 2


def test_batch_norm_output_inside_the_context_uses_batch_statistics() -> None:
    bn = nn.BatchNorm1d(2)
    x = torch.tensor([[0.0, 1.0], [2.0, 5.0]])
    with disable_running_stats(bn):
        inside = bn(x)
    expected = (x - x.mean(0)) / torch.sqrt(x.var(0, unbiased=False) + bn.eps)
    torch.testing.assert_close(inside, expected)


def test_grad_scaler_recipe_matches_unscaled_sam() -> None:
    x, y = _batch()
    results = []
    for use_scaler in (False, True):
        model = _mlp()
        sam = SAM(model.parameters(), torch.optim.SGD(model.parameters(), lr=0.1), rho=0.1)
        scaler = torch.amp.GradScaler("cpu", init_scale=2.0**10, enabled=use_scaler)
        for _ in range(2):
            scaler.scale(nn.functional.cross_entropy(model(x), y)).backward()
            sam.first_step(zero_grad=True)
            with disable_running_stats(model):
                scaler.scale(nn.functional.cross_entropy(model(x), y)).backward()
            sam.unperturb()
            scaler.step(sam.base_optimizer)
            scaler.update()
            sam.zero_grad()
        results.append(model.state_dict())
    for p, q in zip(*(r.values() for r in results), strict=True):
        torch.testing.assert_close(p, q, rtol=1e-6, atol=1e-7)


def test_grad_scaler_recipe_survives_an_overflow() -> None:
    w = nn.Parameter(torch.tensor([1.0, 2.0]))
    sam = SAM([w], torch.optim.SGD([w], lr=0.1), rho=0.1)
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**10)
    scaler.scale((w * torch.tensor([float("inf"), 1.0])).sum()).backward()
    sam.first_step(zero_grad=True)  # NaN perturbation
    scaler.scale((w**2).sum()).backward()
    sam.unperturb()
    scaler.step(sam.base_optimizer)  # skipped: the gradient is not finite
    scaler.update()
    assert torch.equal(w.detach(), torch.tensor([1.0, 2.0]))
    assert scaler.get_scale() < 2.0**10


def test_errors() -> None:
    w, v = nn.Parameter(torch.zeros(2)), nn.Parameter(torch.zeros(2))
    sgd = torch.optim.SGD([w], lr=0.1)
    with pytest.raises(ValueError, match=re.escape("`rho` must be >= 0.0, got -0.1")):
        SAM([w], sgd, rho=-0.1)
    with pytest.raises(ValueError, match=re.escape("`eta` must be >= 0.0, got -1.0")):
        SAM([w], sgd, adaptive=True, eta=-1.0)
    with pytest.raises(TypeError, match=re.escape("`adaptive` must be a bool, got 'yes'")):
        SAM([w], sgd, adaptive="yes")  # type: ignore[arg-type]
    with pytest.raises(
        TypeError, match=re.escape("`base_optimizer` must be a torch.optim.Optimizer")
    ):
        SAM([w], torch.optim.SGD)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="exactly the same parameters as SAM, got 1 param"):
        SAM([w, v], sgd)
    sam = SAM([w], sgd)
    with pytest.raises(ValueError, match=r"`closure` must be a callable .*, got None"):
        sam.step()
    with pytest.raises(ValueError, match="`state_dict` must be a SAM state dict"):
        sam.load_state_dict(sgd.state_dict())


def test_first_step_without_gradients_does_nothing() -> None:
    w = nn.Parameter(torch.ones(2))
    sam = SAM([w], torch.optim.SGD([w], lr=0.1))
    sam.first_step()
    sam.unperturb()
    assert torch.equal(w.detach(), torch.ones(2))


# ------------------------------------------------- shared param_groups and lr schedulers
SCHEDULERS = {
    "cosine": lambda opt: torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=4),
    "step": lambda opt: torch.optim.lr_scheduler.StepLR(opt, step_size=2, gamma=0.5),
    "one_cycle": lambda opt: torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=0.2, total_steps=5),
    "lambda": lambda opt: torch.optim.lr_scheduler.LambdaLR(opt, lambda epoch: 0.7**epoch),
}


def _sam_update(sam: SAM, model: nn.Module, closure_form: bool) -> None:
    x, y = _batch()

    def closure() -> torch.Tensor:
        sam.zero_grad()
        loss = nn.functional.cross_entropy(model(x), y)
        loss.backward()
        return loss

    if closure_form:
        sam.step(closure, model=model)
        return
    closure()
    sam.first_step(zero_grad=True)
    with disable_running_stats(model):
        closure()
    sam.second_step()


@pytest.mark.parametrize("name", sorted(SCHEDULERS))
@pytest.mark.parametrize("closure_form", [False, True])
def test_torch_schedulers_drive_sam_like_its_base_optimizer(name: str, closure_form: bool) -> None:
    """rho = 0: SAM under a scheduler is the base optimizer under it, bitwise, without warnings."""
    x, y = _batch()
    plain, wrapped = _mlp(), _mlp()
    base = torch.optim.SGD(plain.parameters(), lr=0.1, momentum=0.9)
    params = list(wrapped.parameters())
    sam = SAM(params, torch.optim.SGD(params, lr=0.1, momentum=0.9), rho=0.0)
    schedulers = [SCHEDULERS[name](base), SCHEDULERS[name](sam)]
    lrs = []
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # e.g. "lr_scheduler.step() before optimizer.step()"
        for _ in range(4):
            base.zero_grad()
            nn.functional.cross_entropy(plain(x), y).backward()
            base.step()
            _sam_update(sam, wrapped, closure_form)
            for scheduler in schedulers:
                scheduler.step()
            lrs.append((base.param_groups[0]["lr"], sam.base_optimizer.param_groups[0]["lr"]))
    assert len({a for a, _ in lrs}) > 1  # the schedule moved
    assert all(a == b for a, b in lrs)
    for p, q in zip(plain.state_dict().values(), wrapped.state_dict().values(), strict=True):
        assert torch.equal(p, q)


def test_groups_are_the_base_optimizers_with_sams_values() -> None:
    w, v = nn.Parameter(torch.ones(2)), nn.Parameter(torch.ones(3))
    base = torch.optim.SGD([{"params": [w]}, {"params": [v], "lr": 0.5}], lr=0.1)
    sam = SAM([{"params": [w], "rho": 0.2}, {"params": [v]}], base, rho=0.05, adaptive=True)
    assert sam.param_groups is base.param_groups
    assert [(g["lr"], g["rho"], g["adaptive"]) for g in sam.param_groups] == [
        (0.1, 0.2, True),
        (0.5, 0.05, True),
    ]
    assert sam.defaults["lr"] == 0.1 and sam.defaults["rho"] == 0.05
    sam.param_groups[1]["lr"] = 0.25  # what a scheduler does
    assert base.param_groups[1]["lr"] == 0.25
    u = nn.Parameter(torch.ones(1))
    sam.add_param_group({"params": [u], "rho": 0.3})
    assert base.param_groups[2]["params"] == [u]
    assert (base.param_groups[2]["lr"], base.param_groups[2]["rho"]) == (0.1, 0.3)
    groups = [{"params": [w]}, {"params": [v]}, {"params": [u]}]
    sam2 = SAM([w, v, u], torch.optim.SGD(groups, lr=1.0), rho=9.0)
    sam2.load_state_dict(copy.deepcopy(sam.state_dict()))
    assert sam2.param_groups is sam2.base_optimizer.param_groups  # still shared after a load
    assert [(g["lr"], g["rho"]) for g in sam2.param_groups] == [
        (0.1, 0.2),
        (0.25, 0.05),
        (0.1, 0.3),
    ]
    with pytest.raises(ValueError, match=re.escape("`rho` must be >= 0.0, got -1.0")):
        sam.add_param_group({"params": [nn.Parameter(torch.ones(1))], "rho": -1.0})


def test_group_errors() -> None:
    w, v = nn.Parameter(torch.ones(2)), nn.Parameter(torch.ones(3))
    with pytest.raises(
        ValueError,
        match=re.escape(
            "`params` must be groups whose rho, adaptive and eta agree within each base group, got 2 settings in one base group"
        ),
    ):
        SAM([{"params": [w], "rho": 0.1}, {"params": [v]}], torch.optim.SGD([w, v], lr=0.1))
    sam = SAM([w, v], torch.optim.SGD([{"params": [w]}, {"params": [v]}], lr=0.1))
    other = SAM([w, v], torch.optim.SGD([w, v], lr=0.1)).state_dict()
    with pytest.raises(
        ValueError, match=re.escape("`state_dict` must be 2 parameter groups, got 1")
    ):
        sam.load_state_dict(other)
