"""Finalization of a run: distributions overall and per segment, comparison with the baseline
(deltas with bootstrap 95 % intervals, regressed segments) and the gate verdict.

Results are read once as plain tuples and turned into numpy arrays; segments are grouped with
integer codes, so 100,000 results with four segment keys finalize in a few seconds.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from .models import CaseResult, Run
from .scoring import stats
from .scoring.base import HIGHER, MetricSpec
from .scoring.builtin import INFORMATIVE_METRICS

WORST_CASES = 10
BOOTSTRAP_ITERATIONS = 1000
MAX_SEGMENT_VALUES = 50  # per key; rarer values fold into "(other)" to keep pages readable


class RunData:
    """A run's results as arrays: one row per case, metric columns with NaN where missing."""

    def __init__(self, rows: Sequence[tuple], metric_names: Sequence[str]) -> None:
        self.case_ids = [row[0] for row in rows]
        self.external_ids = [row[1] for row in rows]
        self.segments = [row[2] or {} for row in rows]
        self.errors = np.array([bool(row[5]) for row in rows], dtype=bool)
        self.passed = np.array([bool(row[4]) for row in rows], dtype=bool)
        self.metrics: dict[str, np.ndarray] = {}
        for name in metric_names:
            column = np.full(len(rows), np.nan)
            for i, row in enumerate(rows):
                value = row[3].get(name)
                if value is not None:
                    column[i] = value
            self.metrics[name] = column

    @classmethod
    def load(cls, run: Run, metric_names: Sequence[str]) -> RunData:
        rows = list(
            CaseResult.objects.filter(run=run)
            .order_by("case__position")
            .values_list(
                "case_id", "case__external_id", "case__segments", "metrics", "passed", "error"
            )
            .iterator(chunk_size=5000)
        )
        return cls(rows, metric_names)

    def segment_codes(self) -> dict[str, tuple[np.ndarray, list[str]]]:
        """Per segment key: an integer code per case (-1 where absent) and the value names."""
        keys = sorted({key for segments in self.segments for key in segments})
        coded = {}
        for key in keys:
            raw = [segments.get(key) for segments in self.segments]
            counts: dict[str, int] = {}
            for value in raw:
                if value is not None:
                    counts[value] = counts.get(value, 0) + 1
            kept = sorted(counts, key=lambda v: (-counts[v], v))[:MAX_SEGMENT_VALUES]
            names = sorted(kept)
            index = {name: i for i, name in enumerate(names)}
            other = None
            if len(counts) > len(kept):
                other = len(names)
                names.append("(other)")
            codes = np.array(
                [-1 if v is None else index.get(v, other) for v in raw], dtype=np.int64
            )
            coded[key] = (codes, names)
        return coded


def _summaries(values: np.ndarray, spec: MetricSpec, errors: np.ndarray) -> dict:
    """Summary of one metric over cases; errored cases count against the pass rate."""
    present = ~np.isnan(values)
    judged = values[present]
    flags = [spec.passes(v) for v in judged.tolist()]
    summary = stats.summarize(judged.tolist(), pass_flags=flags)
    failed_outright = int((errors & ~present).sum())
    if summary["count"] or failed_outright:
        total = summary["count"] + failed_outright
        summary["pass_rate"] = (sum(flags) / total) if total else None
        summary["errors"] = failed_outright
    return summary


def _segment_table(data: RunData, coded, specs: Mapping[str, MetricSpec]) -> dict:
    """{metric: {key: {value: summary}}} for every segment value."""
    table: dict[str, dict[str, dict[str, dict]]] = {name: {} for name in specs}
    for key, (codes, names) in coded.items():
        for code, value in enumerate(names):
            mask = codes == code
            if not mask.any():
                continue
            for name, spec in specs.items():
                table[name].setdefault(key, {})[value] = _summaries(
                    data.metrics[name][mask], spec, data.errors[mask]
                )
    return table


def _worst(data: RunData, name: str, spec: MetricSpec) -> list[int]:
    values = data.metrics[name]
    present = np.flatnonzero(~np.isnan(values))
    if not len(present):
        return []
    order = np.argsort(values[present], kind="stable")
    if spec.direction != HIGHER:
        order = order[::-1]
    return [data.case_ids[i] for i in present[order[:WORST_CASES]]]


def _compare(
    data: RunData,
    base: RunData,
    specs: Mapping[str, MetricSpec],
    table: dict,
    base_table: dict,
    *,
    tolerance: float,
    min_cases: int,
) -> dict:
    """Deltas of each metric's mean (paired on shared cases) and the regressed segments."""
    position = {external_id: i for i, external_id in enumerate(base.external_ids)}
    shared = [(i, position[e]) for i, e in enumerate(data.external_ids) if e in position]
    mine = np.array([i for i, _ in shared], dtype=np.int64)
    theirs = np.array([j for _, j in shared], dtype=np.int64)
    metrics = {}
    for name, spec in specs.items():
        a, b = data.metrics[name], base.metrics[name]
        if len(shared):
            diffs = a[mine] - b[theirs]
            diffs = diffs[~np.isnan(diffs)]
        else:
            diffs = np.array([])
        if len(diffs) >= 2:
            result = stats.paired_bootstrap_delta(diffs.tolist(), iterations=BOOTSTRAP_ITERATIONS)
            result["paired_cases"] = int(len(diffs))
        else:
            result = stats.bootstrap_delta(
                a[~np.isnan(a)].tolist(), b[~np.isnan(b)].tolist(), iterations=BOOTSTRAP_ITERATIONS
            )
            result["paired_cases"] = 0
        improved = result["delta"] is not None and (
            result["delta"] > 0 if spec.direction == HIGHER else result["delta"] < 0
        )
        result["direction"] = spec.direction
        result["better"] = bool(result.get("significant") and improved)
        result["worse"] = bool(result.get("significant") and not improved)
        result["candidate_mean"] = table["overall"][name].get("mean")
        result["baseline_mean"] = base_table["overall"].get(name, {}).get("mean")
        metrics[name] = result
    regressions = []
    for name, spec in specs.items():
        if name in INFORMATIVE_METRICS:
            continue  # more words is not better: no regression to report
        for item in stats.regressed_segments(
            table["segments"].get(name, {}),
            base_table["segments"].get(name, {}),
            metric_direction=spec.direction,
            tolerance=tolerance,
            min_cases=min_cases,
        ):
            regressions.append({"metric": name, **item})
    return {"metrics": metrics, "regressed_segments": regressions}


def summarise(data: RunData, specs: Mapping[str, MetricSpec]) -> dict:
    """Overall and per-segment distributions, histograms and the worst cases per metric."""
    coded = data.segment_codes()
    overall, histograms, worst = {}, {}, {}
    for name, spec in specs.items():
        overall[name] = _summaries(data.metrics[name], spec, data.errors)
        values = data.metrics[name]
        present = values[~np.isnan(values)]
        histograms[name] = stats.histogram(present.tolist()) if len(present) else None
        worst[name] = _worst(data, name, spec)
    report = {
        "cases": len(data.case_ids),
        "errors": int(data.errors.sum()),
        "passed_cases": int((data.passed & ~data.errors).sum()),
        "overall": overall,
        "segments": _segment_table(data, coded, specs),
        "segment_keys": sorted(coded),
        "histograms": histograms,
        "worst_cases": worst,
        "directions": {name: spec.direction for name, spec in specs.items()},
    }
    return report


def gate(summary: dict, specs: Mapping[str, MetricSpec], thresholds: Sequence) -> tuple[str, list]:
    """Each threshold's result and reason, and the verdict they add up to."""
    results = []
    for threshold in thresholds:
        spec = specs.get(threshold.metric)
        check = stats.Threshold(
            metric=threshold.metric,
            aggregate=threshold.aggregate,
            comparator=threshold.comparator,
            value=threshold.value,
            blocking=threshold.blocking,
            min_cases=threshold.min_cases,
            segment_key=threshold.segment_key,
        )
        if spec is None:
            results.append(
                stats.ThresholdResult(
                    check,
                    None,
                    False,
                    "fail" if threshold.blocking else "warn",
                    f"No scorer of the suite emits {threshold.metric}.",
                )
            )
            continue
        results.append(
            stats.evaluate_threshold(
                check,
                summary["overall"].get(threshold.metric, {"count": 0}),
                summary["segments"].get(threshold.metric, {}),
                spec.direction,
            )
        )
    verdict = stats.verdict(results)
    rows = [
        {
            "threshold_id": threshold.pk,
            "metric": r.threshold.metric,
            "aggregate": r.threshold.aggregate,
            "comparator": r.threshold.comparator,
            "value": r.threshold.value,
            "blocking": r.threshold.blocking,
            "observed": r.observed,
            "passed": r.passed,
            "status": r.status,
            "reason": r.reason,
        }
        for threshold, r in zip(thresholds, results, strict=True)
    ]
    if not thresholds:
        rows.append(
            {
                "metric": "",
                "status": "warn",
                "passed": True,
                "blocking": False,
                "reason": "The suite has no thresholds: the verdict proves nothing yet.",
            }
        )
    if summary["errors"]:
        rows.append(
            {
                "metric": "",
                "status": "warn",
                "passed": False,
                "blocking": False,
                "reason": f"{summary['errors']} case(s) produced no output and count as failures.",
            }
        )
    return verdict, rows


def analyse_run(
    run: Run,
    specs: Mapping[str, MetricSpec],
    *,
    thresholds: Sequence,
    min_segment_cases: int,
    tolerance: float,
) -> dict:
    """Everything finalization writes on the run: summary, comparison, gate, verdict."""
    data = RunData.load(run, list(specs))
    summary = summarise(data, specs)
    label_metric = "label_correct" in specs
    if label_metric:
        from .scoring.builtin import label_report

        expected, predicted = _labels(run)
        summary["labels"] = label_report(expected, predicted)
    verdict, gate_rows = gate(summary, specs, thresholds)
    comparison: dict = {}
    baseline = run.baseline
    if baseline is not None and baseline.summary:
        base_data = RunData.load(baseline, list(specs))
        base_summary = {
            "overall": baseline.summary.get("overall", {}),
            "segments": baseline.summary.get("segments", {}),
        }
        comparison = _compare(
            data,
            base_data,
            specs,
            summary,
            base_summary,
            tolerance=tolerance,
            min_cases=min_segment_cases,
        )
        comparison["baseline_run"] = baseline.pk
        comparison["baseline_subject"] = baseline.subject
    return {"summary": summary, "comparison": comparison, "gate": gate_rows, "verdict": verdict}


def _labels(run: Run) -> tuple[list[str], list[str]]:
    from .models import RunOutput

    pairs = RunOutput.objects.filter(run=run, error="").values_list("case__expected", "output")
    expected, predicted = [], []
    for exp, out in pairs.iterator(chunk_size=5000):
        expected.append(exp.strip())
        predicted.append(out.strip())
    return expected, predicted
