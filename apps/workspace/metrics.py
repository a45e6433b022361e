"""`/metrics`: Prometheus text for operators — work waiting, runs, failures, approvals,
gateway traffic — read from the database (and the broker's queue length on Redis)."""

from __future__ import annotations

import datetime as dt
import hmac
import os

from django.conf import settings
from django.db.models import Avg, Count, F
from django.http import HttpResponse
from django.utils import timezone
from django.views.decorators.cache import never_cache

from apps.approvals.models import ApprovalRequest
from apps.evaluations.models import Run, RunBatch
from apps.gateway.models import Call


def _allowed(request) -> bool:
    """Staff sessions, or `Authorization: Bearer $AIFACTORY_METRICS_TOKEN` for scrapers."""
    user = getattr(request, "user", None)
    if user is not None and user.is_authenticated and user.is_staff:
        return True
    token = os.environ.get("AIFACTORY_METRICS_TOKEN", "")
    header = request.META.get("HTTP_AUTHORIZATION", "")
    return bool(token) and hmac.compare_digest(header, f"Bearer {token}")


def _queue_depth() -> int | None:
    broker = settings.CELERY_BROKER_URL
    if broker.startswith("redis"):
        import redis

        client = redis.Redis.from_url(broker, socket_timeout=2)
        queue = getattr(settings, "EVALUATIONS_QUEUE", "") or "celery"
        return int(client.llen(queue))
    if broker.startswith("filesystem"):
        return sum(1 for p in settings.BROKER_DIR.glob("*.msg"))
    return None


def collect() -> list[tuple[str, str, dict, float]]:
    """(name, help, labels, value) samples."""

    day_ago = timezone.now() - dt.timedelta(days=1)
    samples = []
    for row in Run.objects.values("status").annotate(n=Count("pk")):
        samples.append(
            (
                "aifactory_evaluation_runs",
                "Evaluation runs by status",
                {"status": row["status"]},
                row["n"],
            )
        )
    for row in (
        RunBatch.objects.filter(status__in=("pending", "claimed"))
        .values("status")
        .annotate(n=Count("pk"))
    ):
        samples.append(
            (
                "aifactory_evaluation_batches",
                "Batches waiting or running",
                {"status": row["status"]},
                row["n"],
            )
        )
    finished = Run.objects.filter(finished_at__gte=day_ago, started_at__isnull=False)
    duration = finished.filter(status="completed").aggregate(
        d=Avg(F("finished_at") - F("started_at"))
    )["d"]
    samples.append(
        (
            "aifactory_evaluation_run_seconds_avg_24h",
            "Mean run duration over the last day",
            {},
            duration.total_seconds() if duration else 0.0,
        )
    )
    samples.append(
        (
            "aifactory_evaluation_run_failures_24h",
            "Runs that failed in the last day",
            {},
            finished.filter(status="failed").count(),
        )
    )
    samples.append(
        (
            "aifactory_approvals_open",
            "Approval requests waiting for decisions",
            {},
            ApprovalRequest.objects.filter(status="open").count(),
        )
    )
    for row in (
        Call.objects.filter(created_at__gte=day_ago).values("status").annotate(n=Count("pk"))
    ):
        samples.append(
            (
                "aifactory_gateway_calls_24h",
                "Gateway executions in the last day",
                {"status": row["status"]},
                row["n"],
            )
        )
    try:
        depth = _queue_depth()
    except Exception:  # noqa: BLE001 - a broker hiccup must not hide the other figures
        depth = None
    if depth is not None:
        samples.append(
            ("aifactory_broker_queue_depth", "Messages waiting in the evaluation queue", {}, depth)
        )
    return samples


def render(samples) -> str:
    lines, described = [], set()
    for name, help_text, labels, value in samples:
        if name not in described:
            lines += [f"# HELP {name} {help_text}", f"# TYPE {name} gauge"]
            described.add(name)
        label_text = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
        lines.append(
            f"{name}{{{label_text}}} {float(value):g}" if label_text else f"{name} {float(value):g}"
        )
    return "\n".join(lines) + "\n"


@never_cache
def metrics(request):
    if not _allowed(request):
        return HttpResponse(
            "Forbidden: staff session or metrics token required.\n",
            status=403,
            content_type="text/plain",
        )
    return HttpResponse(render(collect()), content_type="text/plain; version=0.0.4")
