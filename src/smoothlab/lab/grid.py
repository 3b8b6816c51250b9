"""Grid expansion and stable run keys.

A config expands into runs: every method with every combination of its parameter lists, times
every noise kind and rate, times ``seeds`` replicates. Each run is described by a frozen
:class:`RunConfig`; its key is the SHA-256 of the canonical JSON of that resolved config (sorted
keys, no whitespace), so the same run always gets the same key, in any process, on any machine.

Two seeds derive from the run: the *data seed* (noise draw and validation split) from the data
part only (dataset, noise, replicate), so that every method of one replicate sees the same noisy
labels (a paired comparison); and the *training seed* (initialisation, batch order, IVON's
samples) from the full key. The runner is the only place that seeds anything.
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
from dataclasses import dataclass
from typing import Any

from smoothlab.lab.config import Config, DataConfig, ModelConfig, TrainConfig
from smoothlab.lab.methods import Method, make_method

__all__ = [
    "CLEAN_AT_ZERO",
    "RunConfig",
    "canonical_json",
    "expand_grid",
    "method_variants",
    "run_key",
    "seed_from",
]

Params = tuple[tuple[str, Any], ...]

# Noise kinds whose rate 0 leaves every label alone (see smoothlab.noise.NOISE_KINDS).
CLEAN_AT_ZERO = frozenset({"symmetric", "uniform", "pairflip", "asymmetric-cifar10"})


@dataclass(frozen=True)
class RunConfig:
    """One fully resolved run: what is trained on which data, under which noise, which replicate."""

    data: DataConfig
    model: ModelConfig
    train: TrainConfig
    noise_kind: str
    noise_rate: float
    exact_noise: bool
    method: str
    params: Params
    replicate: int

    def make_method(self) -> Method:
        """The method instance of this run."""
        return make_method(self.method, self.params)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready data (tuples become lists)."""
        raw = dataclasses.asdict(self)
        raw["params"] = dict(self.params)
        return json.loads(json.dumps(raw))  # type: ignore[no-any-return]

    def data_dict(self) -> dict[str, Any]:
        """The part that decides the training labels: data, noise and replicate."""
        raw = self.to_dict()
        keep = ("data", "noise_kind", "noise_rate", "exact_noise", "replicate")
        return {k: raw[k] for k in keep}

    def label(self) -> str:
        """The method with its parameters, e.g. ``ls(smoothing=0.1)``."""
        return self.make_method().label()


def canonical_json(data: Any) -> str:
    """Sorted keys, no whitespace: the text a run key hashes.

    >>> canonical_json({"b": [1, 2.5], "a": "x"})
    '{"a":"x","b":[1,2.5]}'
    """
    return json.dumps(data, sort_keys=True, separators=(",", ":"), allow_nan=False)


def run_key(run: RunConfig) -> str:
    """SHA-256 hex digest of the run's canonical JSON: its primary key in the results store.

    >>> from smoothlab.lab.config import Config
    >>> run = expand_grid(Config())[0]
    >>> key = run_key(run)
    >>> len(key), key == hashlib.sha256(canonical_json(run.to_dict()).encode()).hexdigest()
    (64, True)
    >>> run_key(dataclasses.replace(run, replicate=1)) == key
    False
    """
    return hashlib.sha256(canonical_json(run.to_dict()).encode()).hexdigest()


def seed_from(text: str) -> int:
    """A 63-bit seed from any text (a run key, or a canonical JSON), via SHA-256.

    >>> seed_from("abc")
    4213142463398924266
    """
    return int(hashlib.sha256(text.encode()).hexdigest()[:16], 16) & (2**63 - 1)


def method_variants(name: str, sweep: dict[str, tuple[Any, ...]]) -> list[Params]:
    """Every combination of the ``sweep`` lists of method ``name``, each checked by building the
    method and filled in with its defaults: the ``params`` of the grid's runs.

    >>> method_variants("tsla", {"smoothing": (0.1, 0.2)})
    [(('smoothing', 0.1), ('drop_at', 10)), (('smoothing', 0.2), ('drop_at', 10))]
    """
    names = sorted(sweep)
    combos = itertools.product(*(sweep[n] for n in names))
    variants = []
    for values in combos:
        params = tuple(zip(names, values, strict=True))
        defaults = make_method(name, params)  # checks the values; fills the defaults
        full = tuple((f.name, getattr(defaults, f.name)) for f in dataclasses.fields(defaults))
        variants.append(full)
    return variants


def expand_grid(config: Config) -> list[RunConfig]:
    """All runs of ``config``, without duplicates, in a stable order.

    A noise rate of 0 is the same clean data for every kind whose rate 0 is the identity, so
    it is kept once, as kind ``"none"``; other kinds (class-dependent and instance noise still
    flip labels at rate 0) keep their own rate-0 runs.
    """
    noise = sorted(
        {
            ("none", 0.0) if r == 0 and k in CLEAN_AT_ZERO else (k, r)
            for k in config.noise.kinds
            for r in config.noise.rates
        },
        key=lambda kr: (kr[1], kr[0]),
    )
    runs: dict[str, RunConfig] = {}
    for name, sweep in config.methods.items():
        for params in method_variants(name, dict(sweep)):
            for (kind, rate), replicate in itertools.product(noise, range(config.seeds)):
                run = RunConfig(
                    data=config.data,
                    model=config.model,
                    train=config.train,
                    noise_kind=kind,
                    noise_rate=rate,
                    exact_noise=config.noise.exact,
                    method=name,
                    params=params,
                    replicate=replicate,
                )
                runs.setdefault(run_key(run), run)
    return list(runs.values())
