"""The shapes every scorer shares: the case it reads, the metrics it declares, its registry."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

HIGHER = "higher"  # a larger value is better (similarity, coverage, accuracy)
LOWER = "lower"  # a smaller value is better (hallucination rate)


class ScorerConfigError(ValueError):
    """A scorer's parameters are wrong; `errors` maps each parameter to its messages."""

    def __init__(self, message: str, errors: dict[str, list[str]] | None = None) -> None:
        super().__init__(message)
        self.errors = errors or {}


@dataclass(frozen=True)
class ScoringCase:
    """What a scorer sees of one case: the output under test and what it is judged against."""

    case_id: str
    output: str
    expected: str = ""
    contexts: tuple[str, ...] = ()
    variables: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class MetricSpec:
    """One metric a scorer emits: its name, which way is better, and the per-case pass mark."""

    name: str
    direction: str = HIGHER
    pass_at: float = 1.0  # a case passes when value >= pass_at (HIGHER) or <= pass_at (LOWER)
    description: str = ""

    def passes(self, value: float) -> bool:
        return value >= self.pass_at if self.direction == HIGHER else value <= self.pass_at


@dataclass(frozen=True)
class ScorerSpec:
    """A registered scorer.

    `validate(params)` returns cleaned parameters or raises ScorerConfigError.
    `metrics(params)` lists the MetricSpecs it emits for those parameters (pass marks may
    depend on them). `score(cases, params, models)` returns one {metric: value} dict per case,
    in order; values are floats, NaN never (a case a metric cannot judge is left out of its
    dict). `models` is None for built-in scorers; ONNX scorers get an object with the
    encoder / classifier / cross-encoder they need (see apps.evaluations.scoring.semantic).
    """

    key: str
    label: str
    description: str
    validate: Callable[[Mapping[str, Any]], dict[str, Any]]
    metrics: Callable[[Mapping[str, Any]], list[MetricSpec]]
    score: Callable[..., list[dict[str, float]]]
    needs_model: str = ""  # "", "encoder", "classifier" or "cross_encoder"


REGISTRY: dict[str, ScorerSpec] = {}


def register(spec: ScorerSpec) -> ScorerSpec:
    """Add a scorer to the registry under its key (keys are unique)."""
    if spec.key in REGISTRY:
        raise ValueError(f"scorer {spec.key!r} is registered twice")
    REGISTRY[spec.key] = spec
    return spec


def get(key: str) -> ScorerSpec:
    """The scorer registered under `key`, or ScorerConfigError naming the known ones."""
    try:
        return REGISTRY[key]
    except KeyError:
        known = ", ".join(sorted(REGISTRY))
        raise ScorerConfigError(
            f"Unknown scorer {key!r}.", {"scorer": [f"Choose one of: {known}."]}
        ) from None
