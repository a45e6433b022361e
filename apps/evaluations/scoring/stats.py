"""Summaries, bootstrap intervals, thresholds and segment regressions over metric values. Pure."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from apps.evaluations.scoring.base import HIGHER, LOWER, ScorerConfigError

AGGREGATES = ("mean", "p10", "p50", "p90", "pass_rate", "worst_segment")
COMPARATORS = (">=", ">", "<=", "<", "==")
# Elements per resampling chunk: int64 indices plus the float64 values they pick stay ~128 MB.
BOOTSTRAP_CHUNK_ELEMENTS = 8_000_000

Summary = Mapping[str, Any]
Segments = Mapping[str, Mapping[Any, Summary]]


# --- summaries ------------------------------------------------------------------------------------


def summarize(values: Sequence[float], *, pass_flags: Sequence[bool] | None = None) -> dict:
    """Count, mean, population std, min, p10/p50/p90, max and pass rate of metric values."""
    array = np.asarray(values, dtype=float)
    if pass_flags is not None and len(pass_flags) != array.size:
        raise ValueError("pass_flags must have one flag per value")
    if array.size == 0:
        return dict.fromkeys(
            ("mean", "std", "min", "p10", "p50", "p90", "max", "pass_rate"), None
        ) | {"count": 0}
    p10, p50, p90 = np.percentile(array, [10, 50, 90])
    return {
        "count": int(array.size),
        "mean": float(array.mean()),
        "std": float(array.std()),
        "min": float(array.min()),
        "p10": float(p10),
        "p50": float(p50),
        "p90": float(p90),
        "max": float(array.max()),
        "pass_rate": None if pass_flags is None else float(np.mean(np.asarray(pass_flags, bool))),
    }


def histogram(
    values: Sequence[float], bins: int = 10, value_range: tuple[float, float] | None = None
) -> dict[str, list]:
    """Bin edges and counts; scores in [0, 1] share the (0, 1) range so runs compare."""
    array = np.asarray(values, dtype=float)
    if value_range is None:
        if array.size == 0 or (array.min() >= 0.0 and array.max() <= 1.0):
            value_range = (0.0, 1.0)
        else:
            value_range = (float(array.min()), float(array.max()))
    counts, edges = np.histogram(array, bins=bins, range=value_range)
    return {"edges": [float(e) for e in edges], "counts": [int(c) for c in counts]}


# --- bootstrap --------------------------------------------------------------------------------------


def _bootstrap_means(values: np.ndarray, iterations: int, rng: np.random.Generator) -> np.ndarray:
    """Means of `iterations` resamples with replacement, drawn in memory-bounded chunks."""
    n = values.size
    rows = max(1, BOOTSTRAP_CHUNK_ELEMENTS // n)
    means = np.empty(iterations)
    for start in range(0, iterations, rows):
        stop = min(start + rows, iterations)
        picks = rng.integers(0, n, size=(stop - start, n))
        means[start:stop] = values[picks].mean(axis=1)
    return means


def _check_bootstrap_args(iterations: int, confidence: float) -> None:
    if iterations < 1:
        raise ValueError("iterations must be at least 1")
    if not 0.0 < confidence < 1.0:
        raise ValueError("confidence must lie strictly between 0 and 1")


def _interval(deltas: np.ndarray, delta: float, confidence: float) -> dict:
    tail = (1.0 - confidence) / 2.0
    low, high = np.quantile(deltas, [tail, 1.0 - tail])
    return {
        "delta": delta,
        "low": float(low),
        "high": float(high),
        "significant": bool(low > 0.0 or high < 0.0),
    }


def bootstrap_delta(
    candidate: Sequence[float],
    baseline: Sequence[float],
    *,
    iterations: int = 2000,
    confidence: float = 0.95,
    seed: int = 0,
) -> dict:
    """Percentile interval of mean(candidate) - mean(baseline), resampling each side alone."""
    _check_bootstrap_args(iterations, confidence)
    cand = np.asarray(candidate, dtype=float)
    base = np.asarray(baseline, dtype=float)
    delta = float(cand.mean() - base.mean()) if cand.size and base.size else None
    if cand.size < 2 or base.size < 2:
        return {"delta": delta, "low": None, "high": None, "significant": False}
    rng = np.random.default_rng(seed)
    deltas = _bootstrap_means(cand, iterations, rng) - _bootstrap_means(base, iterations, rng)
    return _interval(deltas, delta, confidence)


def paired_bootstrap_delta(
    diffs: Sequence[float],
    *,
    iterations: int = 2000,
    confidence: float = 0.95,
    seed: int = 0,
) -> dict:
    """Percentile interval of the mean per-case difference (candidate - baseline, same cases)."""
    _check_bootstrap_args(iterations, confidence)
    array = np.asarray(diffs, dtype=float)
    delta = float(array.mean()) if array.size else None
    if array.size < 2:
        return {"delta": delta, "low": None, "high": None, "significant": False}
    rng = np.random.default_rng(seed)
    return _interval(_bootstrap_means(array, iterations, rng), delta, confidence)


# --- thresholds ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Threshold:
    """A gate on one aggregate of one metric, e.g. mean faithfulness >= 0.8 over 20+ cases."""

    metric: str
    aggregate: str
    comparator: str
    value: float
    blocking: bool = True
    min_cases: int = 0
    segment_key: str = ""  # worst_segment only; "" looks across every segment key


@dataclass(frozen=True)
class ThresholdResult:
    """How a run fared against one threshold, with a sentence saying why."""

    threshold: Threshold
    observed: float | None
    passed: bool
    status: str  # pass | fail | warn | insufficient_data
    reason: str


def compare(observed: float, comparator: str, value: float) -> bool:
    """Apply a comparator; "==" allows for floating-point rounding."""
    if comparator == ">=":
        return observed >= value
    if comparator == ">":
        return observed > value
    if comparator == "<=":
        return observed <= value
    if comparator == "<":
        return observed < value
    if comparator == "==":
        return math.isclose(observed, value, rel_tol=1e-9, abs_tol=1e-12)
    raise ValueError(f"unknown comparator {comparator!r}")


def _insufficient(threshold: Threshold, reason: str) -> ThresholdResult:
    consequence = "blocking, so this fails" if threshold.blocking else "warning only"
    return ThresholdResult(threshold, None, False, "insufficient_data", f"{reason} ({consequence})")


def _judged(threshold: Threshold, observed: float, label: str, note: str = "") -> ThresholdResult:
    passed = compare(observed, threshold.comparator, threshold.value)
    wanted = f"{threshold.comparator} {threshold.value:.3f}"
    if passed:
        reason = f"{label} {observed:.3f} {wanted}"
        status = "pass"
    else:
        reason = f"{label} {observed:.3f}, needs {wanted}"
        status = "fail" if threshold.blocking else "warn"
        if not threshold.blocking:
            reason += " (warning only)"
    return ThresholdResult(threshold, observed, passed, status, reason + note)


def _segment_rows(threshold: Threshold, segments: Segments) -> list[tuple[str, Any, Summary]]:
    keys = [threshold.segment_key] if threshold.segment_key else sorted(segments)
    return [
        (key, value, summary)
        for key in keys
        for value, summary in (segments.get(key) or {}).items()
        if summary.get("count") and summary.get("mean") is not None
    ]


def _worst_segment(threshold: Threshold, segments: Segments, direction: str) -> ThresholdResult:
    rows = _segment_rows(threshold, segments)
    scope = f"segment {threshold.segment_key}" if threshold.segment_key else "segment"
    if not rows:
        return _insufficient(threshold, f"worst {scope} {threshold.metric}: no segments to judge")
    # Ties fall to the smallest segment, the one least able to carry a conclusion.
    sign = 1.0 if direction == HIGHER else -1.0

    def badness(row: tuple[str, Any, Summary]) -> tuple[float, int, str, str]:
        key, value, summary = row
        return (sign * summary["mean"], summary["count"], key, str(value))

    qualifying = [row for row in rows if row[2]["count"] >= threshold.min_cases]
    if not qualifying:
        key, value, summary = min(rows, key=badness)
        return _insufficient(
            threshold,
            f"worst segment {key}={value} has {summary['count']} cases, fewer than the "
            f"{threshold.min_cases} required; no segment qualifies",
        )
    key, value, summary = min(qualifying, key=badness)
    skipped = len(rows) - len(qualifying)
    note = (
        f"; {skipped} segment{'s' if skipped != 1 else ''} with fewer than "
        f"{threshold.min_cases} cases ignored"
        if skipped
        else ""
    )
    return _judged(
        threshold, summary["mean"], f"worst segment {key}={value} {threshold.metric}", note
    )


def evaluate_threshold(
    threshold: Threshold,
    overall: Summary,
    segments: Segments | None = None,
    direction: str = HIGHER,
) -> ThresholdResult:
    """Judge one threshold against a run's overall summary and its per-segment summaries."""
    count = overall.get("count") or 0
    label = f"{threshold.aggregate} {threshold.metric}"
    if count < threshold.min_cases or count == 0:
        return _insufficient(
            threshold,
            f"{label}: {count} cases, fewer than the {max(threshold.min_cases, 1)} required",
        )
    if threshold.aggregate == "worst_segment":
        return _worst_segment(threshold, segments or {}, direction)
    observed = overall.get(threshold.aggregate)
    if observed is None:
        return _insufficient(threshold, f"{label}: no value recorded")
    return _judged(threshold, float(observed), label)


def verdict(results: Sequence[ThresholdResult]) -> str:
    """ "fail" when any blocking threshold did not pass; warnings never fail a run."""
    failed = any(r.threshold.blocking and not r.passed for r in results)
    return "fail" if failed else "pass"


def validate_threshold(data: Mapping[str, Any]) -> Threshold:
    """Build a Threshold from user input, or raise ScorerConfigError naming each bad field."""
    if not isinstance(data, Mapping):
        raise ScorerConfigError(
            "A threshold must be an object.", {"threshold": ["Must be an object."]}
        )
    errors: dict[str, list[str]] = {}
    allowed = {"metric", "aggregate", "comparator", "value", "blocking", "min_cases", "segment_key"}
    for name in data:
        if name not in allowed:
            errors.setdefault(str(name), []).append("Unknown field.")
    for name in ("metric", "aggregate", "comparator", "value"):
        if name not in data:
            errors.setdefault(name, []).append("This field is required.")

    metric = data.get("metric")
    if "metric" in data and not (isinstance(metric, str) and metric.strip()):
        errors.setdefault("metric", []).append("Must be a non-empty string.")
    aggregate = data.get("aggregate")
    if "aggregate" in data and aggregate not in AGGREGATES:
        errors.setdefault("aggregate", []).append(f"Must be one of: {', '.join(AGGREGATES)}.")
    comparator = data.get("comparator")
    if "comparator" in data and comparator not in COMPARATORS:
        errors.setdefault("comparator", []).append(f"Must be one of: {', '.join(COMPARATORS)}.")
    value = data.get("value")
    if "value" in data and not (
        isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    ):
        errors.setdefault("value", []).append("Must be a finite number.")
    blocking = data.get("blocking", True)
    if not isinstance(blocking, bool):
        errors.setdefault("blocking", []).append("Must be true or false.")
    min_cases = data.get("min_cases", 0)
    if not (isinstance(min_cases, int) and not isinstance(min_cases, bool) and min_cases >= 0):
        errors.setdefault("min_cases", []).append("Must be a whole number of at least 0.")
    segment_key = data.get("segment_key", "")
    if not isinstance(segment_key, str):
        errors.setdefault("segment_key", []).append("Must be a string.")
    elif segment_key and aggregate != "worst_segment":
        errors.setdefault("segment_key", []).append("Applies only to the worst_segment aggregate.")

    if errors:
        raise ScorerConfigError("Invalid threshold.", errors)
    return Threshold(
        metric=metric.strip(),
        aggregate=aggregate,
        comparator=comparator,
        value=float(value),
        blocking=blocking,
        min_cases=min_cases,
        segment_key=segment_key,
    )


# --- segment regressions --------------------------------------------------------------------------


def regressed_segments(
    candidate_segments: Segments,
    baseline_segments: Segments,
    *,
    metric_direction: str,
    tolerance: float,
    min_cases: int,
) -> list[dict]:
    """Segments whose mean got worse than the baseline by more than `tolerance`, worst first."""
    if metric_direction not in (HIGHER, LOWER):
        raise ValueError(f"unknown direction {metric_direction!r}")
    sign = 1.0 if metric_direction == HIGHER else -1.0
    found = []
    for key in sorted(candidate_segments):
        baseline_values = baseline_segments.get(key) or {}
        for value, cand in candidate_segments[key].items():
            base = baseline_values.get(value)
            if base is None or cand.get("mean") is None or base.get("mean") is None:
                continue
            if (cand.get("count") or 0) < min_cases or (base.get("count") or 0) < min_cases:
                continue
            delta = cand["mean"] - base["mean"]
            # The epsilon keeps a drop of exactly `tolerance` from flagging on float noise.
            if sign * delta < -tolerance - 1e-12:
                found.append(
                    {
                        "key": key,
                        "value": value,
                        "candidate_mean": cand["mean"],
                        "baseline_mean": base["mean"],
                        "delta": delta,
                        "candidate_count": cand["count"],
                        "baseline_count": base["count"],
                    }
                )
    found.sort(key=lambda row: (sign * row["delta"], row["key"], str(row["value"])))
    return found
