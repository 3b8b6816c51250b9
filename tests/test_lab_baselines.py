"""The noisy-label baselines as lab methods: each objective is its library function, bad
parameters say what is wrong, loss correction gets the run's true or a teacher-estimated
transition, every baseline stacks (or trains alone when it needs a teacher) to the numbers it
trains to alone, and peer loss draws the same peers resumed or not."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.nn.functional as F

from smoothlab import losses
from smoothlab.lab.plan.methods import METHODS, RunContext, make_method
from smoothlab.lab.plan.methods.baselines import PeerObjective, run_transition
from smoothlab.lab.plan.schema import ConfigError
from smoothlab.losses.fdivergence import DIVERGENCES
from smoothlab.noise import estimate_transition_from_anchors

BASELINES = ("bcorrect", "fcorrect", "peer", "fdiv", "gce", "sce")
K = 4


def _batch(n: int = 8) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    logits = torch.randn(n, K, generator=g, dtype=torch.float64)
    return logits, torch.randint(0, K, (n,), generator=g), torch.arange(n)


def _context(n: int = 40, flip: float = 0.3, seed: int = 7) -> RunContext:
    g = torch.Generator().manual_seed(seed)
    clean = torch.arange(n) % K
    flipped = torch.rand(n, generator=g) < flip
    noisy = torch.where(flipped, (clean + 1) % K, clean)
    return RunContext(K, noisy, clean, seed)


def _naive_transition(rows: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
    counts = [[0.0] * K for _ in range(K)]
    for i, j in zip(rows.tolist(), cols.tolist(), strict=True):
        counts[i][j] += 1.0
    out = [[c / sum(row) for c in row] if sum(row) else [math.nan] * K for row in counts]
    return torch.tensor(out, dtype=torch.float64)


def test_the_baselines_are_registered_with_one_line_descriptions() -> None:
    for name in BASELINES:
        assert name in METHODS and len(METHODS[name].description.splitlines()) == 1
    labels = [make_method(name, {}).label() for name in BASELINES]
    assert labels == [
        "bcorrect(transition=true)",
        "fcorrect(transition=true)",
        "peer(alpha=1.0)",
        "fdiv(divergence=total-variation)",
        "gce(q=0.7)",
        "sce(alpha=0.1, beta=1.0)",
    ]


def test_true_transition_counts_the_runs_clean_and_noisy_labels() -> None:
    context = _context()
    expected = _naive_transition(context.clean_labels, context.labels)
    torch.testing.assert_close(run_transition("true", context), expected)
    assert not torch.equal(expected, torch.eye(K, dtype=torch.float64))


def test_estimated_transition_counts_the_teachers_predictions_against_the_labels() -> None:
    context = _context()
    g = torch.Generator().manual_seed(3)
    teacher = torch.softmax(torch.randn(len(context.labels), K, generator=g), dim=1)
    teacher[:, 2] = 0.0  # never predicted: its row has no estimate and stays the identity's
    expected = _naive_transition(teacher.argmax(dim=1), context.labels)
    assert expected[2].isnan().all()
    expected[2] = torch.tensor([0.0, 0.0, 1.0, 0.0], dtype=torch.float64)
    torch.testing.assert_close(run_transition("estimated", context, teacher), expected)
    with pytest.raises(ValueError, match=r"^`teacher_probs` must be given for an estimated"):
        run_transition("estimated", context)


def test_anchor_transition_reads_the_teachers_softmax_at_its_anchors() -> None:
    context = _context()
    g = torch.Generator().manual_seed(5)
    teacher = torch.softmax(3 * torch.randn(len(context.labels), K, generator=g), dim=1)
    expected = estimate_transition_from_anchors(teacher)  # the 97th percentile of each column
    assert torch.equal(run_transition("anchors", context, teacher), expected)
    # a teacher that is the exact noisy-label model p(noisy | x) = T[clean(x)] gives T back
    true = run_transition("true", context)
    exact = F.one_hot(context.clean_labels, K).double() @ true
    torch.testing.assert_close(run_transition("anchors", context, exact), true)
    with pytest.raises(ValueError, match=r"^`teacher_probs` must be given for an estimated"):
        run_transition("anchors", context)


@pytest.mark.parametrize("name", ["fcorrect", "bcorrect"])
@pytest.mark.parametrize("source", ["true", "estimated", "anchors"])
def test_loss_correction_is_the_library_function_with_the_runs_matrix(
    name: str, source: str
) -> None:
    context = _context()
    teacher = F.one_hot(context.clean_labels, K).double() * 0.7 + 0.075  # a teacher that is right
    objective = make_method(name, {"transition": source}).run_objective(context, teacher)
    matrix = run_transition(source, context, teacher)
    function = {
        "fcorrect": losses.forward_corrected_cross_entropy,
        "bcorrect": losses.backward_corrected_cross_entropy,
    }[name]
    x, y, i = _batch()
    torch.testing.assert_close(objective(x, y, i, 0), function(x, y, matrix))


@pytest.mark.parametrize("name", ["fcorrect", "bcorrect"])
def test_loss_correction_without_noise_is_cross_entropy(name: str) -> None:
    clean = torch.arange(12) % K
    objective = make_method(name, {}).run_objective(RunContext(K, clean, clean, 0))
    x, y, i = _batch()
    torch.testing.assert_close(objective(x, y, i, 0), F.cross_entropy(x, y))


STATELESS = [("fdiv", {"divergence": d}) for d in DIVERGENCES]
STATELESS += [("gce", {"q": 0.3}), ("sce", {"alpha": 0.5, "beta": 2.0})]


@pytest.mark.parametrize(("name", "params"), STATELESS)
def test_stateless_baselines_are_their_library_function(name: str, params: dict[str, Any]) -> None:
    function = {
        "fdiv": losses.f_divergence_loss,
        "gce": losses.generalized_cross_entropy,
        "sce": losses.symmetric_cross_entropy,
    }[name]
    method = make_method(name, params)
    x, y, i = _batch()
    expected = function(x, y, **params)  # the method's parameters are the function's keywords
    torch.testing.assert_close(method.objective(K)(x, y, i, 0), expected)
    torch.testing.assert_close(method.run_objective(_context())(x, y, i, 3), expected)


def test_peer_loss_is_the_library_function_with_the_runs_generator() -> None:
    objective = make_method("peer", {"alpha": 0.5}).run_objective(_context(seed=11))
    assert isinstance(objective, PeerObjective)
    x, y, i = _batch()
    twin = torch.Generator()
    twin.set_state(objective.state_dict()["generator"])
    for epoch in range(3):  # the generator moves on: every step draws new peers
        expected = losses.peer_loss(x, y, alpha=0.5, generator=twin)
        torch.testing.assert_close(objective(x, y, i, epoch), expected)


def test_peer_pairs_come_from_the_runs_seed() -> None:
    x, y, i = _batch(16)

    def draws(seed: int) -> list[float]:
        objective = make_method("peer", {}).run_objective(_context(seed=seed))
        return [float(objective(x, y, i, 0)) for _ in range(4)]

    assert draws(5) == draws(5)
    assert draws(5) != draws(6)


@pytest.mark.parametrize(
    ("name", "params", "message"),
    [
        (
            "fcorrect",
            {"transition": "known"},
            "`methods.fcorrect.transition` must be one of true, estimated, anchors, got 'known'",
        ),
        (
            "bcorrect",
            {"teacher": ""},
            "`methods.bcorrect.teacher` must be \"ce\" or a weights file, got ''",
        ),
        ("peer", {"alpha": -0.5}, "`methods.peer.alpha` must be >= 0, got -0.5"),
        (
            "fdiv",
            {"divergence": "tv"},
            "`methods.fdiv.divergence` must be one of total-variation, jensen-shannon, pearson, "
            "neyman, kl, reverse-kl, squared-hellinger, jeffrey, got 'tv'",
        ),
        ("gce", {"q": 0.0}, "`methods.gce.q` must be in (0, 1], got 0.0"),
        ("gce", {"q": 1.5}, "`methods.gce.q` must be in (0, 1], got 1.5"),
        ("sce", {"alpha": -1.0}, "`methods.sce.alpha` must be >= 0, got -1.0"),
        ("sce", {"beta": -1.0}, "`methods.sce.beta` must be >= 0, got -1.0"),
        (
            "sce",
            {"alpha": 0.0, "beta": 0.0},
            "`methods.sce.beta` must be > 0 when alpha = 0, got 0.0",
        ),
    ],
)
def test_bad_parameters_say_what_is_wrong(name: str, params: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as error:
        make_method(name, params)
    assert str(error.value) == message


@pytest.mark.parametrize(
    ("name", "needs"), [("fcorrect", "the run's labels"), ("peer", "the run's seed")]
)
def test_objectives_that_need_the_run_say_so(name: str, needs: str) -> None:
    message = f"`{name}` needs {needs}: build it with run_objective"
    with pytest.raises(ValueError, match=f"^{message}$"):
        make_method(name, {}).objective(K)


# --- through the lab -------------------------------------------------------------------------

TINY = {
    "data": {"dataset": "digits", "train_subset": 300, "test_subset": 200, "val_fraction": 0.2},
    "model": {"hidden": [32]},
    "train": {"epochs": 3, "batch_size": 64, "lr": 0.1, "momentum": 0.9, "switch_epoch": 1},
    "noise": {"kinds": ["pairflip"], "rates": [0.3]},
    "seeds": 1,
}


def _tasks(methods: dict[str, dict[str, Any]]) -> list[Any]:
    from smoothlab.lab.plan.grid import plan_runs, run_key, run_seeds
    from smoothlab.lab.plan.loading import config_from_dict
    from smoothlab.lab.train.loop import RunTask

    runs = plan_runs(config_from_dict({**TINY, "methods": methods}))
    return [RunTask(run_key(r), r, *run_seeds(r), "cpu") for r in runs]


def test_only_an_estimated_transition_brings_a_ce_teacher_into_the_grid() -> None:
    true = _tasks({"fcorrect": {}, "bcorrect": {}})
    assert [t.run.method for t in true] == ["fcorrect", "bcorrect"]
    estimated = _tasks({"fcorrect": {"transition": "estimated"}})
    assert [t.run.method for t in estimated] == ["fcorrect", "ce"]
    assert estimated[0].run.variant.needs_teacher and not true[0].run.variant.needs_teacher
    anchors = _tasks({"bcorrect": {"transition": "anchors"}})
    assert [t.run.method for t in anchors] == ["bcorrect", "ce"]


def test_every_baseline_trains_alone_and_stacked_to_the_same_numbers() -> None:
    pytest.importorskip("sklearn")
    pytest.importorskip("safetensors")
    from safetensors.torch import load as load_weights

    from smoothlab.lab.train.loop import execute
    from smoothlab.lab.train.stacked import execute_stacked, stack_key

    tasks = _tasks({name: {} for name in BASELINES})
    assert len({stack_key(t) for t in tasks}) == 1 and stack_key(tasks[0]) is not None
    for task, stacked in zip(tasks, execute_stacked(tasks), strict=True):
        alone = execute(task)
        assert alone.error == stacked.error == "", task.run.method
        assert math.isfinite(alone.metrics["accuracy"]) and len(alone.curves["lr"]) == 3
        wa, wb = load_weights(alone.weights), load_weights(stacked.weights)
        for name in wa:
            torch.testing.assert_close(wa[name], wb[name], rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize(("name", "source"), [("bcorrect", "estimated"), ("fcorrect", "anchors")])
def test_an_estimated_transition_trains_alone_with_its_ce_teacher(name: str, source: str) -> None:
    pytest.importorskip("sklearn")
    pytest.importorskip("safetensors")
    from smoothlab.lab.train.loop import execute
    from smoothlab.lab.train.stacked import stack_key

    corrected, teacher = _tasks({name: {"transition": source}})
    assert stack_key(corrected) is None
    ce = execute(teacher)
    result = execute(dataclasses.replace(corrected, teacher_weights=ce.weights))
    assert result.error == "" and math.isfinite(result.metrics["accuracy"])
    assert "teacher_weights" in execute(corrected).error


def test_a_resumed_peer_run_draws_the_same_peers_as_an_uninterrupted_one(tmp_path: Path) -> None:
    pytest.importorskip("sklearn")
    pytest.importorskip("safetensors")
    from smoothlab.lab.train.loop import execute

    (whole_task,) = _tasks({"peer": {"alpha": 0.5}})
    whole = execute(whole_task)
    folder = tmp_path / "checkpoint"
    task = dataclasses.replace(whole_task, checkpoint_dir=str(folder), checkpoint_every=1)

    def killed_after_two_epochs(key: str, done: int, total: int) -> None:
        if done == 2:
            raise RuntimeError("killed")

    assert "RuntimeError: killed" in execute(task, killed_after_two_epochs).error
    saved = torch.load(folder / "state.pt", weights_only=True)["objective"]["generator"]
    fresh = make_method("peer", {}).run_objective(_context(seed=whole_task.seed))
    assert not torch.equal(saved, fresh.state_dict()["generator"])  # it moved during training
    epochs_run: list[int] = []
    resumed = execute(task, lambda key, done, total: epochs_run.append(done))
    assert epochs_run == [3]  # only the last epoch was trained again
    assert resumed.weights == whole.weights
    assert resumed.curves == whole.curves


def test_a_missing_teacher_file_names_the_method(tmp_path: Path) -> None:
    missing = tmp_path / "teacher.safetensors"
    with pytest.raises(ConfigError) as error:
        _tasks({"fcorrect": {"transition": "estimated", "teacher": str(missing)}})
    assert str(error.value) == f"`methods.fcorrect.teacher` file not found: {missing}"
    assert len(_tasks({"fcorrect": {"teacher": str(missing)}})) == 1  # "true" needs no teacher
