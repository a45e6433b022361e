"""Daily rollups maintained on ingest: per metric and day, count and sum overall and per
segment value, and counts in fixed histogram bins. Scorecards read these (a few thousand
rows) instead of scanning raw observations; percentiles come from the bins, exact to the
bin width (1/64 of the metric's range around baseline, target and guardrail)."""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Iterable

from django.db import connection

from apps.charters.models import Metric

from .models import Observation, Rollup, RollupBin, RollupSpec

BINS = 64


def spec_for(metric: Metric, first_value: float) -> RollupSpec:
    """The metric's bins: its baseline, target and guardrail with a margin either side."""
    spec = RollupSpec.objects.filter(metric=metric).first()
    if spec is not None:
        return spec
    anchors = [
        float(v)
        for v in (metric.baseline_value, metric.target_value, metric.guardrail_value)
        if v is not None
    ]
    anchors = anchors or [first_value]
    low, high = min(anchors), max(anchors)
    span = high - low or abs(high) or 1.0
    spec, _ = RollupSpec.objects.get_or_create(
        metric=metric, defaults={"low": low - span, "high": high + span, "bins": BINS}
    )
    return spec


def bin_of(spec: RollupSpec, value: float) -> int:
    if value < spec.low:
        return 0
    if value >= spec.high:
        return spec.bins + 1
    return 1 + int((value - spec.low) / (spec.high - spec.low) * spec.bins)


def _upsert(table: str, columns: list[str], key: list[str], rows: Iterable[tuple]) -> None:
    rows = list(rows)
    if not rows:
        return
    adds = [c for c in columns if c not in key]
    sql = (
        f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join(['%s'] * len(columns))}) "
        f"ON CONFLICT ({', '.join(key)}) DO UPDATE SET "
        + ", ".join(f"{c} = {table}.{c} + excluded.{c}" for c in adds)
    )
    with connection.cursor() as cursor:
        cursor.executemany(sql, rows)


def add(observations: Iterable[tuple]) -> None:
    """Fold new observations (charter_id, metric_id, value, observed_at, segments, …) in."""
    totals: dict[tuple, list] = defaultdict(lambda: [0, 0.0])
    bins: dict[tuple, int] = defaultdict(int)
    specs: dict[int, RollupSpec] = {}
    metrics: dict[int, Metric] = {}
    for row in observations:
        metric_id, value, at, segments = row[1], row[2], row[3], row[4]
        day = at.date() if isinstance(at, dt.datetime) else at
        if metric_id not in specs:
            metrics[metric_id] = metrics.get(metric_id) or Metric.objects.get(pk=metric_id)
            specs[metric_id] = spec_for(metrics[metric_id], value)
        for key, seg in [("", ""), *sorted(segments.items())]:
            entry = totals[(metric_id, day, key, seg)]
            entry[0] += 1
            entry[1] += value
        bins[(metric_id, day, bin_of(specs[metric_id], value))] += 1
    _upsert(
        Rollup._meta.db_table,
        ["metric_id", "day", "segment_key", "segment_value", "count", "total"],
        ["metric_id", "day", "segment_key", "segment_value"],
        ((m, d, k, v, c, t) for (m, d, k, v), (c, t) in totals.items()),
    )
    _upsert(
        RollupBin._meta.db_table,
        ["metric_id", "day", "bin", "count"],
        ["metric_id", "day", "bin"],
        ((m, d, b, c) for (m, d, b), c in bins.items()),
    )


def rebuild(metric_ids: Iterable[int] | None = None) -> int:
    """Recompute rollups from raw observations (after an import behind the ingest API)."""
    qs = Observation.objects.all()
    if metric_ids is not None:
        qs = qs.filter(metric_id__in=list(metric_ids))
    ids = set(qs.values_list("metric_id", flat=True).distinct())
    Rollup.objects.filter(metric_id__in=ids).delete()
    RollupBin.objects.filter(metric_id__in=ids).delete()
    count, batch = 0, []
    for row in qs.values_list(
        "charter_id", "metric_id", "value", "observed_at", "segments"
    ).iterator(chunk_size=20_000):
        batch.append(row)
        if len(batch) >= 20_000:
            add(batch)
            count += len(batch)
            batch = []
    add(batch)
    return count + len(batch)


def percentiles_from_bins(
    spec: RollupSpec, counts: dict[int, int], quantiles=(0.1, 0.5, 0.9)
) -> list[float | None]:
    """Quantiles interpolated within the fixed bins (under/overflow report the range edge)."""
    total = sum(counts.values())
    if not total:
        return [None for _ in quantiles]
    width = (spec.high - spec.low) / spec.bins
    out = []
    for q in quantiles:
        target, seen = q * total, 0
        for b in range(spec.bins + 2):
            c = counts.get(b, 0)
            if seen + c >= target and c:
                if b == 0:
                    out.append(spec.low)
                elif b == spec.bins + 1:
                    out.append(spec.high)
                else:
                    out.append(spec.low + (b - 1 + (target - seen) / c) * width)
                break
            seen += c
    return out
