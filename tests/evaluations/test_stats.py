"""Summaries, bootstrap intervals, thresholds and segment regressions."""

import numpy as np
import pytest

from apps.evaluations.scoring import stats
from apps.evaluations.scoring.base import HIGHER, LOWER, ScorerConfigError
from apps.evaluations.scoring.stats import (
    Threshold,
    bootstrap_delta,
    evaluate_threshold,
    histogram,
    paired_bootstrap_delta,
    regressed_segments,
    summarize,
    validate_threshold,
    verdict,
)


def seg(mean: float | None, count: int) -> dict:
    return {"mean": mean, "count": count}


# --- summarize / histogram ---------------------------------------------------------------------


def test_summarize_matches_hand_computed_statistics():
    summary = summarize([1.0, 2.0, 3.0, 4.0], pass_flags=[True, False, True, True])
    assert summary == pytest.approx(
        {
            "count": 4,
            "mean": 2.5,
            "std": np.sqrt(1.25),  # population: mean squared deviation (2.25+0.25+0.25+2.25)/4
            "min": 1.0,
            "p10": 1.3,  # linear: position 0.1 * 3 = 0.3 between 1 and 2
            "p50": 2.5,
            "p90": 3.7,
            "max": 4.0,
            "pass_rate": 0.75,
        }
    )
    assert all(type(v) in (int, float) for v in summary.values())


def test_summarize_leaves_pass_rate_empty_without_flags():
    assert summarize([0.5])["pass_rate"] is None
    assert summarize([0.5])["std"] == 0.0


def test_summarize_of_nothing_has_count_zero_and_no_statistics():
    summary = summarize([], pass_flags=[])
    assert summary["count"] == 0
    assert all(v is None for k, v in summary.items() if k != "count")


def test_summarize_rejects_mismatched_pass_flags():
    with pytest.raises(ValueError):
        summarize([1.0, 2.0], pass_flags=[True])


def test_histogram_uses_the_unit_range_for_scores():
    result = histogram([0.05, 0.15, 0.95, 1.0], bins=10)
    assert result["edges"][0] == 0.0 and result["edges"][-1] == 1.0
    assert result["counts"] == [1, 1, 0, 0, 0, 0, 0, 0, 0, 2]


def test_histogram_spans_min_to_max_outside_the_unit_range():
    result = histogram([2.0, 4.0, 6.0], bins=2)
    assert result == {"edges": [2.0, 4.0, 6.0], "counts": [1, 2]}


def test_histogram_handles_constant_and_empty_values_and_explicit_ranges():
    constant = histogram([5.0, 5.0], bins=2)
    assert sum(constant["counts"]) == 2 and len(constant["edges"]) == 3
    assert histogram([], bins=2) == {"edges": [0.0, 0.5, 1.0], "counts": [0, 0]}
    assert histogram([1.0, 3.0], bins=2, value_range=(0, 4))["counts"] == [1, 1]


# --- bootstrap -------------------------------------------------------------------------------------


def test_bootstrap_delta_excludes_zero_for_clearly_different_samples():
    rng = np.random.default_rng(1)
    candidate = rng.normal(0.8, 0.1, 300)
    baseline = rng.normal(0.6, 0.1, 300)
    result = bootstrap_delta(candidate, baseline, iterations=1000)
    assert result["delta"] == pytest.approx(candidate.mean() - baseline.mean())
    assert result["low"] < 0.2 < result["high"]
    assert result["low"] > 0 and result["significant"] is True


def test_bootstrap_delta_includes_zero_for_the_same_distribution():
    rng = np.random.default_rng(2)
    result = bootstrap_delta(rng.normal(0.7, 0.1, 200), rng.normal(0.7, 0.1, 200), iterations=1000)
    assert result["low"] < 0 < result["high"]
    assert result["significant"] is False


def test_bootstrap_delta_is_deterministic_for_a_seed():
    a, b = [0.1, 0.5, 0.9, 0.4], [0.2, 0.3, 0.3]
    assert bootstrap_delta(a, b, seed=7) == bootstrap_delta(a, b, seed=7)
    assert bootstrap_delta(a, b, seed=7) != bootstrap_delta(a, b, seed=8)


def test_bootstrap_delta_needs_two_values_per_side():
    assert bootstrap_delta([0.5], [0.1, 0.2]) == {
        "delta": pytest.approx(0.35),
        "low": None,
        "high": None,
        "significant": False,
    }
    assert bootstrap_delta([], [0.1, 0.2])["delta"] is None


def test_bootstrap_delta_draws_in_bounded_chunks(monkeypatch):
    # Force several chunks (and a ragged last one) and check every iteration was filled.
    monkeypatch.setattr(stats, "BOOTSTRAP_CHUNK_ELEMENTS", 30)
    rng = np.random.default_rng(0)
    means = stats._bootstrap_means(np.arange(10.0), 7, rng)
    assert means.shape == (7,)
    assert np.all((means >= 0) & (means <= 9))


def test_bootstrap_delta_rejects_bad_arguments():
    with pytest.raises(ValueError):
        bootstrap_delta([1, 2], [1, 2], iterations=0)
    with pytest.raises(ValueError):
        paired_bootstrap_delta([1, 2], confidence=1.0)


def test_paired_bootstrap_delta_resamples_per_case_differences():
    rng = np.random.default_rng(3)
    diffs = 0.05 + rng.normal(0, 0.02, 200)
    result = paired_bootstrap_delta(diffs, iterations=1000)
    assert result["delta"] == pytest.approx(diffs.mean())
    assert result["low"] < 0.05 < result["high"]
    assert result["significant"] is True
    same = paired_bootstrap_delta(rng.normal(0, 0.02, 200), iterations=1000)
    assert same["significant"] is False
    assert paired_bootstrap_delta([0.3])["low"] is None


# --- thresholds ------------------------------------------------------------------------------------

OVERALL = {
    "count": 50,
    "mean": 0.812,
    "p10": 0.5,
    "p50": 0.85,
    "p90": 0.95,
    "pass_rate": 0.9,
}


@pytest.mark.parametrize(
    ("aggregate", "observed"),
    [("mean", 0.812), ("p10", 0.5), ("p50", 0.85), ("p90", 0.95), ("pass_rate", 0.9)],
)
def test_each_overall_aggregate_reads_its_summary_value(aggregate, observed):
    result = evaluate_threshold(Threshold("sim", aggregate, ">=", 0.5), OVERALL)
    assert result.observed == observed
    assert result.passed and result.status == "pass"


@pytest.mark.parametrize(
    ("comparator", "value", "passed"),
    [
        (">=", 0.812, True),
        (">=", 0.9, False),
        (">", 0.812, False),
        (">", 0.8, True),
        ("<=", 0.812, True),
        ("<=", 0.8, False),
        ("<", 0.812, False),
        ("<", 0.9, True),
        ("==", 0.812, True),
        ("==", 0.8, False),
    ],
)
def test_each_comparator(comparator, value, passed):
    assert evaluate_threshold(Threshold("sim", "mean", comparator, value), OVERALL).passed is passed


def test_equality_tolerates_float_rounding():
    assert stats.compare(0.1 + 0.2, "==", 0.3)


def test_passing_threshold_reason_reads_as_a_sentence():
    result = evaluate_threshold(Threshold("semantic_similarity", "mean", ">=", 0.8), OVERALL)
    assert result.reason == "mean semantic_similarity 0.812 >= 0.800"


def test_failing_blocking_threshold_fails_and_warning_threshold_warns():
    blocking = evaluate_threshold(Threshold("sim", "mean", ">=", 0.9), OVERALL)
    assert (blocking.passed, blocking.status) == (False, "fail")
    assert blocking.reason == "mean sim 0.812, needs >= 0.900"
    warning = evaluate_threshold(Threshold("sim", "mean", ">=", 0.9, blocking=False), OVERALL)
    assert (warning.passed, warning.status) == (False, "warn")
    assert warning.reason.endswith("(warning only)")


def test_too_few_cases_is_insufficient_data_and_fails_a_blocking_threshold():
    result = evaluate_threshold(Threshold("sim", "mean", ">=", 0.5, min_cases=100), OVERALL)
    assert result.status == "insufficient_data"
    assert result.passed is False and result.observed is None
    assert result.reason == (
        "mean sim: 50 cases, fewer than the 100 required (blocking, so this fails)"
    )
    assert verdict([result]) == "fail"


def test_insufficient_data_on_a_warning_threshold_does_not_fail_the_run():
    result = evaluate_threshold(
        Threshold("sim", "mean", ">=", 0.5, blocking=False, min_cases=100), OVERALL
    )
    assert result.status == "insufficient_data"
    assert result.reason.endswith("(warning only)")
    assert verdict([result]) == "pass"


def test_an_empty_run_or_missing_pass_rate_is_insufficient_data():
    empty = evaluate_threshold(Threshold("sim", "mean", ">=", 0.5), summarize([]))
    assert empty.status == "insufficient_data"
    no_flags = evaluate_threshold(Threshold("sim", "pass_rate", ">=", 0.5), summarize([0.9]))
    assert no_flags.status == "insufficient_data"
    assert "no value recorded" in no_flags.reason


SEGMENTS = {
    "language": {"en": seg(0.9, 40), "de": seg(0.4, 3), "fr": seg(0.7, 25)},
    "channel": {"web": seg(0.85, 30), "phone": seg(0.75, 20)},
}


def test_worst_segment_ignores_segments_below_min_cases():
    threshold = Threshold("sim", "worst_segment", ">=", 0.65, min_cases=20, segment_key="language")
    result = evaluate_threshold(threshold, OVERALL, SEGMENTS, HIGHER)
    assert result.observed == 0.7
    assert result.passed is True
    assert result.reason == (
        "worst segment language=fr sim 0.700 >= 0.650; 1 segment with fewer than 20 cases ignored"
    )


def test_worst_segment_looks_across_every_key_when_none_is_named():
    threshold = Threshold("sim", "worst_segment", ">=", 0.72, min_cases=20)
    result = evaluate_threshold(threshold, OVERALL, SEGMENTS, HIGHER)
    assert result.observed == 0.7 and result.passed is False
    assert "language=fr" in result.reason
    assert evaluate_threshold(
        Threshold("sim", "worst_segment", ">=", 0.5), OVERALL, SEGMENTS, HIGHER
    ).observed == pytest.approx(0.4)


def test_worst_segment_is_the_highest_mean_for_lower_is_better_metrics():
    threshold = Threshold("halluc", "worst_segment", "<=", 0.8, min_cases=20)
    result = evaluate_threshold(threshold, OVERALL, SEGMENTS, LOWER)
    assert result.observed == 0.9
    assert "language=en" in result.reason
    assert result.passed is False


def test_worst_segment_without_a_qualifying_segment_is_insufficient_data():
    threshold = Threshold("sim", "worst_segment", ">=", 0.5, min_cases=20, segment_key="language")
    segments = {"language": {"de": seg(0.4, 3), "en": seg(0.9, 10)}}
    result = evaluate_threshold(threshold, OVERALL, segments, HIGHER)
    assert result.status == "insufficient_data"
    assert result.reason == (
        "worst segment language=de has 3 cases, fewer than the 20 required; "
        "no segment qualifies (blocking, so this fails)"
    )


def test_worst_segment_with_no_segments_is_insufficient_data():
    threshold = Threshold("sim", "worst_segment", ">=", 0.5, segment_key="region")
    result = evaluate_threshold(threshold, OVERALL, SEGMENTS, HIGHER)
    assert result.status == "insufficient_data"


def test_verdict_fails_only_on_blocking_results_that_did_not_pass():
    passing = evaluate_threshold(Threshold("sim", "mean", ">=", 0.5), OVERALL)
    warn = evaluate_threshold(Threshold("sim", "mean", ">=", 0.9, blocking=False), OVERALL)
    fail = evaluate_threshold(Threshold("sim", "mean", ">=", 0.9), OVERALL)
    assert verdict([passing, warn]) == "pass"
    assert verdict([passing, warn, fail]) == "fail"
    assert verdict([]) == "pass"


# --- validate_threshold ----------------------------------------------------------------------------


def test_validate_threshold_builds_a_threshold_with_defaults():
    threshold = validate_threshold(
        {"metric": "sim", "aggregate": "mean", "comparator": ">=", "value": 1}
    )
    assert threshold == Threshold("sim", "mean", ">=", 1.0, True, 0, "")


def test_validate_threshold_names_each_bad_field():
    with pytest.raises(ScorerConfigError) as info:
        validate_threshold(
            {
                "metric": "",
                "aggregate": "median",
                "comparator": "=>",
                "value": "high",
                "blocking": "yes",
                "min_cases": -1,
                "segment_key": "language",
                "colour": "red",
            }
        )
    errors = info.value.errors
    assert set(errors) == {
        "metric",
        "aggregate",
        "comparator",
        "value",
        "blocking",
        "min_cases",
        "segment_key",
        "colour",
    }
    assert errors["segment_key"] == ["Applies only to the worst_segment aggregate."]


def test_validate_threshold_requires_the_core_fields():
    with pytest.raises(ScorerConfigError) as info:
        validate_threshold({})
    assert set(info.value.errors) == {"metric", "aggregate", "comparator", "value"}
    with pytest.raises(ScorerConfigError):
        validate_threshold(["not", "a", "mapping"])


# --- regressed_segments ---------------------------------------------------------------------------


def test_regressed_segments_flags_drops_beyond_tolerance_worst_first():
    candidate = {"language": {"en": seg(0.80, 40), "fr": seg(0.60, 30), "de": seg(0.50, 30)}}
    baseline = {"language": {"en": seg(0.82, 40), "fr": seg(0.70, 30), "de": seg(0.75, 30)}}
    found = regressed_segments(
        candidate, baseline, metric_direction=HIGHER, tolerance=0.05, min_cases=10
    )
    assert [row["value"] for row in found] == ["de", "fr"]
    assert found[0] == {
        "key": "language",
        "value": "de",
        "candidate_mean": 0.50,
        "baseline_mean": 0.75,
        "delta": pytest.approx(-0.25),
        "candidate_count": 30,
        "baseline_count": 30,
    }


def test_regressed_segments_treats_a_rise_as_worse_for_lower_is_better_metrics():
    candidate = {"channel": {"web": seg(0.30, 20), "phone": seg(0.05, 20)}}
    baseline = {"channel": {"web": seg(0.10, 20), "phone": seg(0.20, 20)}}
    found = regressed_segments(
        candidate, baseline, metric_direction=LOWER, tolerance=0.05, min_cases=10
    )
    assert [(row["value"], row["delta"]) for row in found] == [("web", pytest.approx(0.2))]


def test_regressed_segments_needs_min_cases_on_both_sides_and_a_baseline():
    candidate = {"language": {"de": seg(0.1, 5), "fr": seg(0.1, 30), "it": seg(0.1, 30)}}
    baseline = {"language": {"de": seg(0.9, 30), "fr": seg(0.9, 5)}}
    assert (
        regressed_segments(
            candidate, baseline, metric_direction=HIGHER, tolerance=0.0, min_cases=10
        )
        == []
    )


def test_regressed_segments_does_not_flag_a_drop_of_exactly_the_tolerance():
    candidate = {"k": {"v": seg(0.7, 10)}}
    baseline = {"k": {"v": seg(0.8, 10)}}
    assert (
        regressed_segments(candidate, baseline, metric_direction=HIGHER, tolerance=0.1, min_cases=1)
        == []
    )
