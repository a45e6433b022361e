"""Scorecards and the AI pulse portfolio, aggregated in the database.

A charter's scorecard reads the daily rollups maintained on ingest (counts and sums per
metric, day and segment value; counts per fixed histogram bin) with a fixed number of
queries, whatever the number of observations. Windows are whole days.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from decimal import Decimal
from typing import Any

import numpy as np
from django.conf import settings
from django.db.models import Count, Max, Min, Q
from django.utils import timezone

from apps.charters.choices import MetricDirection, MetricLayer, MetricRole
from apps.charters.models import Charter, Metric

from .models import WorkflowEvent

ON_TRACK, AT_RISK, OFF_TRACK, NO_DATA = "on_track", "at_risk", "off_track", "no_data"
STATUS_ORDER = {OFF_TRACK: 0, AT_RISK: 1, NO_DATA: 2, ON_TRACK: 3}
SEGMENT_KEYS = ("language", "geography", "user_role", "task_type")
TREND_WEEKS = 13
BINS = 10


def _better(direction: str, a: float, b: float) -> bool:
    """Whether a is at least as good as b in the metric's direction."""
    return a <= b if direction == MetricDirection.DECREASE else a >= b


def status_of(metric: Metric, value: float | None) -> str:
    """on track (target met), at risk (better than baseline), off track (worse, or guardrail
    crossed), no data."""
    if value is None:
        return NO_DATA
    direction = metric.direction
    if metric.guardrail_value is not None and not _better(
        direction, value, float(metric.guardrail_value)
    ):
        return OFF_TRACK
    if metric.target_value is not None and _better(direction, value, float(metric.target_value)):
        return ON_TRACK
    if (
        metric.baseline_value is not None
        and _better(direction, value, float(metric.baseline_value))
        and value != float(metric.baseline_value)
    ):
        return AT_RISK
    return OFF_TRACK if metric.baseline_value is not None else AT_RISK


def guardrail_crossed(metric: Metric, value: float | None) -> bool:
    return (
        value is not None
        and metric.guardrail_value is not None
        and not _better(metric.direction, value, float(metric.guardrail_value))
    )


DISPLAY_BINS = 16


def _from_rollups(charter: Charter, since_day: dt.date, trend_since_day: dt.date):
    """Aggregates, percentiles, histograms, weekly trend and segments from the daily
    rollups: three queries, whatever the number of observations."""
    from .models import Rollup, RollupBin, RollupSpec
    from .rollups import percentiles_from_bins

    metric_ids = list(charter.metrics.values_list("pk", flat=True))
    specs = {s.metric_id: s for s in RollupSpec.objects.filter(metric_id__in=metric_ids)}
    aggregates: dict[int, dict] = {}
    trend: dict[int, dict] = defaultdict(dict)
    segments: dict[int, dict[str, list]] = defaultdict(lambda: defaultdict(list))
    seg_totals: dict[tuple, list] = defaultdict(lambda: [0, 0.0])
    week_totals: dict[tuple, list] = defaultdict(lambda: [0, 0.0])
    rows = Rollup.objects.filter(metric_id__in=metric_ids, day__gte=min(since_day, trend_since_day))
    for metric_id, day, key, value, count, total in rows.values_list(
        "metric_id", "day", "segment_key", "segment_value", "count", "total"
    ):
        if key == "":
            week = day - dt.timedelta(days=day.weekday())
            if day >= trend_since_day:
                week_totals[(metric_id, week)][0] += count
                week_totals[(metric_id, week)][1] += total
            if day >= since_day:
                agg = aggregates.setdefault(
                    metric_id, {"metric_id": metric_id, "count": 0, "sum": 0.0}
                )
                agg["count"] += count
                agg["sum"] += total
        elif day >= since_day:
            seg_totals[(metric_id, key, value)][0] += count
            seg_totals[(metric_id, key, value)][1] += total
    for agg in aggregates.values():
        agg["mean"] = agg["sum"] / agg["count"] if agg["count"] else None
    for (metric_id, week), (count, total) in week_totals.items():
        trend[metric_id][week] = {"mean": total / count, "count": count}
    for (metric_id, key, value), (count, total) in seg_totals.items():
        segments[metric_id][key].append({"segment": value, "mean": total / count, "count": count})
    bins: dict[int, dict[int, int]] = defaultdict(lambda: defaultdict(int))
    for metric_id, b, count in RollupBin.objects.filter(
        metric_id__in=metric_ids, day__gte=since_day
    ).values_list("metric_id", "bin", "count"):
        bins[metric_id][b] += count
    percentiles, histograms = {}, {}
    for metric_id, counts in bins.items():
        spec = specs[metric_id]
        percentiles[metric_id] = tuple(percentiles_from_bins(spec, counts))
        histograms[metric_id] = _display_histogram(spec, counts)
    return aggregates, percentiles, histograms, trend, segments


def _display_histogram(spec, counts: dict[int, int]) -> dict:
    """The fixed bins regrouped for a chart: under/overflow join the first and last bars."""
    group = max(1, spec.bins // DISPLAY_BINS)
    bars = [0] * DISPLAY_BINS
    for b, count in counts.items():
        index = (
            0
            if b == 0
            else DISPLAY_BINS - 1
            if b == spec.bins + 1
            else min(DISPLAY_BINS - 1, (b - 1) // group)
        )
        bars[index] += count
    return {"edges": np.linspace(spec.low, spec.high, DISPLAY_BINS + 1).tolist(), "counts": bars}


def _workflow(charter: Charter, since) -> dict[str, Any]:
    """Cycle time, human override, escalation and reopen rates from workflow events."""
    tasks = (
        WorkflowEvent.objects.filter(charter=charter, at__gte=since)
        .values("task_id")
        .annotate(
            started=Min("at", filter=Q(kind="started")),
            finished=Max("at", filter=Q(kind="finished")),
            overridden=Count("pk", filter=Q(kind="overridden")),
            escalated=Count("pk", filter=Q(kind="escalated")),
            reopened=Count("pk", filter=Q(kind="reopened")),
        )
    )
    finished = overridden = escalated = reopened = 0
    cycles = []
    for task in tasks.iterator(chunk_size=10_000):
        if task["finished"] is None:
            continue
        finished += 1
        overridden += bool(task["overridden"])
        escalated += bool(task["escalated"])
        reopened += bool(task["reopened"])
        if task["started"] is not None and task["finished"] >= task["started"]:
            cycles.append((task["finished"] - task["started"]).total_seconds() / 60)
    cycle = float(np.mean(cycles)) if cycles else None

    def rate(n: int) -> float | None:
        return round(100 * n / finished, 1) if finished else None

    return {
        "tasks_finished": finished,
        "cycle_time_minutes": round(cycle, 1) if cycle is not None else None,
        "human_override_rate": rate(overridden),
        "escalation_rate": rate(escalated),
        "reopen_rate": rate(reopened),
    }


def _gateway(charter: Charter, since) -> dict[str, Any]:
    from apps.gateway.services import online_quality, platform_health

    return {**platform_health(charter, since), "online_quality": online_quality(charter, since)}


def _evaluations(charter: Charter) -> list[dict[str, Any]]:
    """The newest completed run of each suite of the charter, for the output-quality layer."""
    from apps.evaluations.models import Run

    latest: dict[int, Any] = {}
    for run in (
        Run.objects.filter(suite__charter=charter, status="completed")
        .select_related("suite", "prompt_version__prompt")
        .order_by("-finished_at")[:50]
    ):
        latest.setdefault(run.suite_id, run)
    return [
        {
            "suite": r.suite.name,
            "subject": r.subject,
            "verdict": r.verdict,
            "url": r.get_absolute_url(),
            "finished_at": r.finished_at,
        }
        for r in latest.values()
    ]


def recommendation(metrics: list[dict], weeks: int | None = None) -> dict[str, str]:
    """Scale, pause, rework or continue, with the rule that decided it."""
    weeks = weeks or int(getattr(settings, "SCORECARD_SCALE_WEEKS", 4))
    red = [m for m in metrics if m["guardrail_crossed"]]
    if red:
        names = ", ".join(m["name"] for m in red)
        return {"call": "pause", "rule": f"Any guardrail red → pause ({names})."}
    primary = next((m for m in metrics if m["role"] == MetricRole.PRIMARY), None)
    if primary is None or primary["status"] == NO_DATA:
        return {"call": "continue", "rule": "No data on the primary metric yet → keep piloting."}
    recent = [p for p in primary["trend"] if p["value"] is not None][-weeks:]
    if len(recent) >= weeks and all(p["status"] == ON_TRACK for p in recent):
        return {
            "call": "scale",
            "rule": f"Primary metric on track for {weeks} weeks and all guardrails green → scale.",
        }
    if primary["status"] == OFF_TRACK:
        return {"call": "rework", "rule": "Primary metric off track → rework."}
    return {
        "call": "continue",
        "rule": f"Primary metric not yet on track for {weeks} consecutive weeks → keep piloting.",
    }


def scorecard(charter: Charter, *, window_days: int = 28, now=None) -> dict[str, Any]:
    """The four layers of one charter over a window, per metric and per segment."""
    now = now or timezone.now()
    since = now - dt.timedelta(days=window_days)
    trend_since = now - dt.timedelta(weeks=TREND_WEEKS)
    metrics = list(charter.metrics.all())
    since_day = since.date()
    trend_since_day = trend_since.date()
    aggregates, percentiles, histograms, trend, segments = _from_rollups(
        charter, since_day, trend_since_day
    )
    first_week = (trend_since - dt.timedelta(days=trend_since.weekday())).date()
    weeks = [first_week + dt.timedelta(weeks=i) for i in range(TREND_WEEKS + 1)]
    layers: dict[str, list] = {layer: [] for layer in MetricLayer.values}
    flat = []
    for metric in metrics:
        agg = aggregates.get(metric.pk, {})
        mean = agg.get("mean")
        p = percentiles.get(metric.pk)
        series = []
        for week in weeks:
            row = trend[metric.pk].get(week)
            value = row["mean"] if row else None
            series.append(
                {"week": week.isoformat(), "value": value, "status": status_of(metric, value)}
            )
        seg_rows = []
        for key, rows in sorted(segments[metric.pk].items()):
            for row in sorted(rows, key=lambda r: r["segment"]):
                seg_status = status_of(metric, row["mean"])
                seg_rows.append(
                    {
                        "key": key,
                        "value": row["segment"],
                        "mean": row["mean"],
                        "count": row["count"],
                        "status": seg_status,
                        "failing": seg_status == OFF_TRACK,
                    }
                )
        entry = {
            "id": metric.pk,
            "name": metric.name,
            "layer": metric.layer,
            "role": metric.role,
            "unit": metric.unit,
            "direction": metric.direction,
            "baseline": _number(metric.baseline_value),
            "target": _number(metric.target_value),
            "guardrail": _number(metric.guardrail_value),
            "current": mean,
            "count": agg.get("count", 0),
            "p10": p[0] if p else None,
            "p50": p[1] if p else None,
            "p90": p[2] if p else None,
            "histogram": histograms.get(metric.pk),
            "status": status_of(metric, mean),
            "guardrail_crossed": guardrail_crossed(metric, mean),
            "trend": series,
            "segments": seg_rows,
            "failing_segments": [s for s in seg_rows if s["failing"]],
        }
        layers[metric.layer].append(entry)
        flat.append(entry)
    layer_status = {
        layer: (min((m["status"] for m in items), key=STATUS_ORDER.get) if items else NO_DATA)
        for layer, items in layers.items()
    }
    return {
        "charter": charter.slug,
        "window_days": window_days,
        "since": since.isoformat(),
        "layers": layers,
        "layer_status": layer_status,
        "workflow": _workflow(charter, since),
        "gateway": _gateway(charter, since),
        "drift_alerts": [
            {"summary": a.summary, "run_url": a.run.get_absolute_url(), "created_at": a.created_at}
            for a in charter.drift_alerts.filter(resolved_at__isnull=True).select_related("run")[
                :10
            ]
        ],
        "evaluations": _evaluations(charter),
        "recommendation": recommendation(flat),
        "metrics": flat,
    }


def _number(value: Decimal | None) -> float | None:
    return float(value) if value is not None else None


def portfolio(user, *, window_days: int = 28) -> list[dict[str, Any]]:
    """Every charter the user may see with its layers, primary metric, approvals, live
    evaluation verdicts, overdue review and the scale / pause / rework call."""
    from apps.approvals.models import ApprovalRequest
    from apps.charters.selectors import charter_list_visible
    from apps.evaluations.models import Run
    from apps.prompts.models import Label

    charters = charter_list_visible(user).select_related("business_owner").order_by("title")
    open_approvals = dict(
        ApprovalRequest.objects.filter(status="open", charter__in=charters)
        .values_list("charter_id")
        .annotate(n=Count("pk"))
    )
    live = Label.objects.filter(name="production", prompt__charter__in=charters).select_related(
        "version", "prompt"
    )
    verdicts: dict[int, list] = defaultdict(list)
    for label in live:
        run = (
            Run.objects.filter(content_hash=label.version.content_hash, status="completed")
            .order_by("-finished_at")
            .first()
        )
        verdicts[label.prompt.charter_id].append(
            {
                "prompt": label.prompt.slug,
                "version": label.version.number,
                "verdict": run.verdict if run else "no evaluation",
            }
        )
    today = timezone.localdate()
    rows = []
    for charter in charters:
        card = scorecard(charter, window_days=window_days)
        primary = next((m for m in card["metrics"] if m["role"] == MetricRole.PRIMARY), None)
        rows.append(
            {
                "slug": charter.slug,
                "title": charter.title,
                "status": charter.status,
                "risk_tier": charter.risk_tier,
                "owner": charter.business_owner.get_full_name()
                or charter.business_owner.get_username(),
                "primary_metric": primary["name"] if primary else None,
                "primary_current": primary["current"] if primary else None,
                "primary_target": primary["target"] if primary else None,
                "primary_status": primary["status"] if primary else NO_DATA,
                "layers": card["layer_status"],
                "open_approvals": open_approvals.get(charter.pk, 0),
                "live_evaluations": verdicts.get(charter.pk, []),
                "review_overdue": bool(charter.review_date and charter.review_date < today),
                "open_drift_alerts": len(card["drift_alerts"]),
                "call": card["recommendation"]["call"],
                "rule": card["recommendation"]["rule"],
                "url": f"/scorecards/{charter.slug}/",
            }
        )
    return rows
