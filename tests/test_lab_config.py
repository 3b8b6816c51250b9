"""Lab configs: typed parsing, unknown keys with suggestions, overrides, grid expansion, run keys."""

from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path

import pytest

pytest.importorskip("rich")

from smoothlab.lab.plan.grid import canonical_json, expand_grid, run_key, seed_from
from smoothlab.lab.plan.loading import (
    apply_overrides,
    config_from_dict,
    load_config,
    parse_override,
)
from smoothlab.lab.plan.methods import METHODS, make_method, method_fields
from smoothlab.lab.plan.schema import ConfigError, config_to_dict


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "c.toml"
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"seed": 2}, r"unknown key `seed`; did you mean `seeds`\?"),
        ({"train": {"epoch": 3}}, r"unknown key `train.epoch`; did you mean `epochs`\?"),
        ({"trian": {}}, r"unknown key `trian`; did you mean `train`\?"),
        ({"methods": {"lss": {}}}, r"unknown method `lss`; did you mean `ls`\?"),
        ({"methods": {"lr": {}}}, r"^method `lr` is now called `relax`: write \[methods.relax\]$"),
        (
            {"methods": {"ls": {"smothing": 0.1}}},
            r"unknown parameter `methods.ls.smothing`; did you mean `smoothing`\?",
        ),
        ({"noise": {"kinds": ["symetric"]}}, r"unknown noise kind `symetric`.*`symmetric`\?"),
        ({"data": {"dataset": "digit"}}, r"unknown dataset `digit`.*did you mean `digits`\?"),
        ({"model": {"name": "mpl"}}, r"unknown model `mpl`.*did you mean `mlp`\?"),
        ({"train": {"epochs": "ten"}}, r"`train.epochs` must be an integer, got 'ten'"),
        ({"train": {"epochs": 2.5}}, r"`train.epochs` must be an integer, got 2.5"),
        ({"train": {"nesterov": 1}}, r"`train.nesterov` must be true or false, got 1"),
        ({"noise": {"rates": ["a"]}}, r"`noise.rates` must be a number, got 'a'"),
        ({"noise": {"rates": [0.2, 1.0]}}, r"`noise.rates` must be in \[0, 1\)"),
        ({"train": {"epochs": 0}}, r"`train.epochs` must be >= 1, got 0"),
        ({"train": {"switch_lr": -1e-6}}, r"`train.switch_lr` must be >= 0, got -1e-06"),
        (
            {"train": {"switch_lr": 1e-6, "epochs": 5}},
            r"`train.switch_epoch` must be in \[1, train.epochs\) when train.switch_lr is set "
            r"\(train.epochs = 5\), got 0",
        ),
        ({"train": {"optimizer": "adam"}}, r"`train.optimizer` must be one of sgd, adamw"),
        ({"methods": {"ls": {"smoothing": 1.5}}}, r"`methods.ls.smoothing` must be <= 1"),
        (
            {"methods": {"relax": {"alpha": [0.1, 1.0]}}},
            r"`methods.relax.alpha` must be in \(0, 1\)",
        ),
        (
            {"methods": {"ls-teacher": {"smoothing": 1.5}}},
            r"`methods.ls-teacher.smoothing` must be in \[0, 1\], got 1.5",
        ),
        ({"methods": {}}, r"`methods` must be a non-empty table"),
        (
            {"methods": {"ivon": {"lr_schedule": "cos"}}},
            r'`methods.ivon.lr_schedule` must be one of "", constant, step, cosine, got .cos.',
        ),
        (
            {"methods": {"ivon": {"beta2": [1.0, 1.5]}}},  # 1 = fixed Hessian (004's Fig. 6)
            r"`methods.ivon.beta2` must be in \[0, 1\], got 1.5",
        ),
        (
            {"methods": {"ivon": {"train_samples": [1, 0]}}},
            r"`methods.ivon.train_samples` must be >= 1, got 0",
        ),
        (
            {"methods": {"ivon": {"warmup_epochs": -2}}},
            r"`methods.ivon.warmup_epochs` must be >= -1, got -2",
        ),
        ({"train": 3}, r"`train` must be a table"),
    ],
)
def test_bad_configs_say_what_is_wrong(raw: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        # methods given as a list are expanded, so value errors surface at grid expansion too
        expand_grid(config_from_dict(raw))


def test_defaults_and_types() -> None:
    config = config_from_dict({"noise": {"rates": [0, 0.2]}, "methods": {"ls": {"smoothing": 0}}})
    assert config.noise.rates == (0.0, 0.2)
    assert all(isinstance(r, float) for r in config.noise.rates)
    assert config.methods["ls"]["smoothing"] == (0.0,)
    assert config_to_dict(config)["noise"]["rates"] == [0.0, 0.2]


def test_parse_override_values() -> None:
    assert parse_override("train.epochs=5") == (["train", "epochs"], 5)
    assert parse_override("noise.rates=[0, 0.4]") == (["noise", "rates"], [0, 0.4])
    assert parse_override("model.name=cnn") == (["model", "name"], "cnn")
    assert parse_override("train.nesterov=false") == (["train", "nesterov"], False)
    for bad in ("epochs", "=3", "train..epochs=3", "train.=3"):
        with pytest.raises(ConfigError, match=r"`--set` must look like section.key=value"):
            parse_override(bad)


def test_overrides_apply_and_are_checked(tmp_path: Path) -> None:
    path = _write(tmp_path, "[train]\nepochs = 3\n[methods.ce]\n")
    config = load_config(path, ["train.epochs=7", "methods.ls.smoothing=[0.1, 0.2]"])
    assert config.train.epochs == 7
    assert config.methods["ls"]["smoothing"] == (0.1, 0.2)
    with pytest.raises(ConfigError, match=r"c.toml: unknown key `train.epoks`"):
        load_config(path, ["train.epoks=7"])
    with pytest.raises(ConfigError, match=r"`train.epochs` must be an integer, got 'many'"):
        load_config(path, ["train.epochs=many"])
    with pytest.raises(ConfigError, match=r"`--set train.epochs.x=1`: `epochs` is not a section"):
        apply_overrides({"train": {"epochs": 1}}, ["train.epochs.x=1"])


def test_file_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"config file not found: .*missing.toml"):
        load_config(tmp_path / "missing.toml")
    with pytest.raises(ConfigError, match=r"is not valid TOML"):
        load_config(_write(tmp_path, "[train\n"))
    with pytest.raises(ConfigError, match=r"is a directory"):
        load_config(tmp_path)


def test_grid_size_and_clean_runs_shared_across_kinds() -> None:
    config = config_from_dict(
        {
            "seeds": 3,
            "noise": {"kinds": ["symmetric", "pairflip"], "rates": [0.0, 0.2, 0.4]},
            "methods": {"ce": {}, "ls": {"smoothing": [0.1, 0.2]}, "sam": {"rho": [0.05]}},
        }
    )
    runs = expand_grid(config)
    # 4 method variants x (1 clean + 2 kinds x 2 rates) x 3 seeds
    assert len(runs) == 4 * 5 * 3
    assert len({run_key(r) for r in runs}) == len(runs)
    assert sum(r.noise_kind == "none" for r in runs) == 4 * 3


def test_kinds_that_flip_at_rate_zero_keep_their_rate_zero_runs() -> None:
    raw = {"noise": {"kinds": ["pairflip", "class-dependent"], "rates": [0.0, 0.1]}}
    settings = {(r.noise_kind, r.noise_rate) for r in expand_grid(config_from_dict(raw))}
    assert settings == {("none", 0.0), ("pairflip", 0.1), ("class-dependent", 0.0),
                        ("class-dependent", 0.1)}  # fmt: skip


def test_run_key_is_sha256_of_canonical_json() -> None:
    run = expand_grid(config_from_dict({"methods": {"ls": {"smoothing": 0.1}}}))[0]
    expected = hashlib.sha256(canonical_json(run.to_dict()).encode()).hexdigest()
    assert run_key(run) == expected
    # one changed value anywhere changes the key; the experiment's name does not
    other = dataclasses.replace(run, noise_rate=0.3)
    assert run_key(other) != run_key(run)
    renamed = config_from_dict({"name": "x", "methods": {"ls": {"smoothing": 0.1}}})
    assert run_key(expand_grid(renamed)[0]) == expected


def test_data_seed_is_shared_by_methods_training_seed_is_not() -> None:
    config = config_from_dict({"seeds": 2, "methods": {"ce": {}, "ls": {}}})
    runs = expand_grid(config)
    data = {
        (r.method, r.replicate, r.noise_rate): seed_from(canonical_json(r.data_dict()))
        for r in runs
    }
    train = {(r.method, r.replicate, r.noise_rate): seed_from(run_key(r)) for r in runs}
    assert data[("ce", 0, 0.2)] == data[("ls", 0, 0.2)]
    assert data[("ce", 0, 0.2)] != data[("ce", 1, 0.2)]
    assert train[("ce", 0, 0.2)] != train[("ls", 0, 0.2)]


def test_every_method_has_a_description_and_builds_with_defaults() -> None:
    for name, cls in METHODS.items():
        method = make_method(name, {})
        assert cls.description and len(cls.description.splitlines()) == 1
        assert method.label().startswith(name)
        assert set(method_fields(name)) == {f.name for f in dataclasses.fields(method)}


CONFIGS = sorted((Path(__file__).resolve().parents[1] / "configs").glob("*.toml"))


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_canned_configs_load_and_say_what_they_reproduce(path: Path) -> None:
    from smoothlab.lab.plan.grid import plan_runs

    header = path.read_text().split("\nname = ")[0]
    assert "# Reproduces:" in header and "Scaled" in header
    config = load_config(path)
    assert len(plan_runs(config)) >= 10


def test_there_are_canned_configs_for_every_seed_paper() -> None:
    names = {p.stem for p in CONFIGS}
    assert {"relaxation_mnist", "negative_smoothing_twonorm", "two_stage_fashion_mnist"} <= names
    assert {"ivon_vs_smoothing_sam", "online_smoothing"} <= names


def test_teacher_runs_join_the_grid_and_teacher_files_must_exist(tmp_path: Path) -> None:
    from smoothlab.lab.plan.grid import plan_runs

    config = config_from_dict({"seeds": 2, "methods": {"ls-teacher": {"smoothing": 0.3}}})
    runs = plan_runs(config)
    teachers = [r for r in runs if r.method == "ce"]
    assert len(runs) == 12 and len(teachers) == 6  # one ce teacher per noise setting and seed
    assert {(t.noise_rate, t.replicate) for t in teachers} == {
        (r.noise_rate, r.replicate) for r in runs if r.method == "ls-teacher"
    }
    missing = {"methods": {"ls-teacher": {"teacher": str(tmp_path / "t.safetensors")}}}
    with pytest.raises(ConfigError, match=r"`methods.ls-teacher.teacher` file not found: .*t.saf"):
        plan_runs(config_from_dict(missing))


STEP = {"lr_schedule": "step", "epochs": 10}


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (
            {"noise": {"kinds": ["symmetric", "instance"], "exact": True}},
            r"^`noise.exact` must be false when noise.kinds has `instance` \(its flip rates "
            r"differ per example\), got true$",
        ),
        (
            {"data": {"dataset": "splice"}, "noise": {"kinds": ["asymmetric-cifar10"]}},
            r"^`noise.kinds` has `asymmetric-cifar10`, which needs 10 classes, but "
            r"data.dataset `splice` has 3$",
        ),
        (
            {"noise": {"kinds": ["class-dependent"], "rates": [0.2, 0.6]}},
            r"^`noise.rates` must be <= 0.5 with noise kind `class-dependent` in noise.kinds "
            r"\(class K flips with probability rate \+ 0.5\), got 0.6$",
        ),
        (
            {"train": {**STEP, "lr_milestones": [5, 5]}},
            r"^`train.lr_milestones` must be strictly increasing epochs >= 1 for "
            r"train.lr_schedule = step, got \[5, 5\]$",
        ),
        (
            {"train": {**STEP, "lr_milestones": [0]}},
            r"^`train.lr_milestones` must be strictly increasing epochs >= 1",
        ),
        (
            {"train": {**STEP, "lr_milestones": [1, 2, 6], "warmup_epochs": 2}},
            r"^`train.lr_milestones` must be > train.warmup_epochs = 2 for train.lr_schedule = "
            r"step \(decay starts after the warm-up\), got \[1, 2, 6\]$",
        ),
        (  # IVON's own warm-up against the shared milestones
            {
                "train": {**STEP, "lr_milestones": [3, 6]},
                "methods": {"ce": {}, "ivon": {"warmup_epochs": [0, 3]}},
            },
            r"^`train.lr_milestones` must be > methods.ivon.warmup_epochs = 3 for "
            r"train.lr_schedule = step ",
        ),
        (  # IVON's own step schedule against the shared warm-up and milestones
            {
                "train": {"lr_milestones": [1, 2], "warmup_epochs": 2},
                "methods": {"ivon": {"lr_schedule": "step"}},
            },
            r"^`train.lr_milestones` must be > train.warmup_epochs = 2 for "
            r"methods.ivon.lr_schedule = step ",
        ),
        (
            {"data": {"val_fraction": 0}, "train": {"select": "val_nll"}},
            r"^`data.val_fraction` must be > 0 for train.select = 'val_nll' \(it selects on the "
            r"validation split\), got 0.0$",
        ),
        (
            {"train": {"warmup_epochs": -1}},
            r"^`train.warmup_epochs` must be >= 0, got -1$",
        ),
        (
            {"device": "gpu"},
            r"^`device` must be auto or a torch device such as cpu, cuda, cuda:1, got 'gpu'$",
        ),
    ],
)
def test_combinations_that_would_fail_in_a_worker_fail_at_load(
    raw: dict[str, object], message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        config_from_dict(raw)


def test_those_combinations_do_fail_where_the_runs_would_meet_them() -> None:
    # the reasons behind the load-time checks: the library raises on each, late, in a worker
    import torch

    from smoothlab.lab.train.loop import lr_schedule
    from smoothlab.noise import noise_kind

    labels, features = torch.arange(30) % 3, torch.randn(30, 4)
    with pytest.raises(ValueError, match="`exact` must be False for instance-dependent noise"):
        noise_kind("instance").build(labels, 0.2, num_classes=3, features=features, exact=True)
    with pytest.raises(ValueError, match="`num_classes` must be 10 for asymmetric-cifar10"):
        noise_kind("asymmetric-cifar10").build(labels, 0.2, num_classes=3)
    with pytest.raises(ValueError, match=r"`kappa \+ beta \* i` must be in \[0, 1\]"):
        noise_kind("class-dependent").build(labels, 0.6, num_classes=3)
    run = expand_grid(config_from_dict({"methods": {"ce": {}}}))[0]
    train = dataclasses.replace(run.train, **STEP, lr_milestones=(1, 2), warmup_epochs=2)
    with pytest.raises(ValueError, match="`boundaries` must be strictly increasing"):
        lr_schedule(dataclasses.replace(run, train=train), 0.1, 4)


def test_any_noise_kind_that_fails_on_the_grid_fails_at_load(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import smoothlab.noise
    import smoothlab.noise.kinds as kinds

    def build(labels: object, rate: float, **kwargs: object) -> object:
        if rate > 0.3:
            raise ValueError(f"`rate` must be <= 0.3 for this kind, got {rate}")
        return labels

    broken = (*kinds.NOISE_KINDS, kinds.NoiseKind("broken", "fails above 0.3", build))
    monkeypatch.setattr(kinds, "NOISE_KINDS", broken)
    monkeypatch.setattr(smoothlab.noise, "NOISE_KINDS", broken)
    config_from_dict({"noise": {"kinds": ["broken"], "rates": [0.1, 0.3]}})
    message = (
        r"^noise kind `broken` at rate 0.4 on data.dataset `digits` \(10 classes\) "
        r"\(noise.kinds, noise.rates\): `rate` must be <= 0.3 for this kind, got 0.4$"
    )
    with pytest.raises(ConfigError, match=message):
        config_from_dict({"noise": {"kinds": ["broken"], "rates": [0.1, 0.4]}})
