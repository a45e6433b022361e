"""Ninety days of the support pilot's telemetry: handle time falls everywhere except in
German, satisfaction holds, drafts get accepted more often, latency halves."""

from __future__ import annotations

import datetime as dt
import random

from django.utils import timezone

from .models import Observation
from .services import telemetry_ingest

DAYS = 90
LANGUAGES = {"en": "uk", "de": "dach", "fr": "france", "pt": "iberia"}
ROLES = ("customer", "partner")


def _value(name: str, progress: float, language: str, rng: random.Random) -> float:
    if name == "Average handle time":
        end = 12.6 if language == "de" else 8.9
        return max(3.0, rng.gauss(12.2 + (end - 12.2) * progress, 1.1))
    if name == "Customer satisfaction (CSAT)":
        return min(5.0, max(1.0, rng.gauss(4.32 + 0.1 * progress, 0.15)))
    if name == "Draft acceptance rate":
        return min(100.0, max(0.0, rng.gauss(40 + 34 * progress, 6)))
    if name == "Reopen rate":
        return max(0.0, rng.gauss(8.1 - 1.4 * progress, 0.6))
    return max(0.5, rng.gauss(5.5 - 2.8 * progress, 0.4))  # draft latency p95, seconds


def demo_telemetry(actor, charter, *, days: int = DAYS, per_day: int = 16, seed: int = 3) -> int:
    """Post the pilot's observations and workflow events through the ingest service (once)."""
    if Observation.objects.filter(charter=charter).exists():
        return 0
    rng = random.Random(seed)
    now = timezone.now().replace(minute=0, second=0, microsecond=0)
    metrics = list(charter.metrics.all())
    observations, events = [], []
    for day in range(days, 0, -1):
        progress = min(1.0, (days - day) / (days * 0.7))
        for i in range(per_day):
            language = rng.choice(list(LANGUAGES))
            at = now - dt.timedelta(days=day, hours=rng.randrange(8, 18), minutes=i)
            segments = {
                "language": language,
                "geography": LANGUAGES[language],
                "user_role": rng.choice(ROLES),
            }
            for metric in metrics:
                observations.append(
                    {
                        "metric_id": metric.pk,
                        "value": round(_value(metric.name, progress, language, rng), 3),
                        "time": at.isoformat(),
                        "segments": segments,
                        "idempotency_key": f"demo-{metric.pk}-{day}-{i}",
                    }
                )
            task = f"ZD-{day:03d}{i:02d}"
            handle = _value("Average handle time", progress, language, rng)
            events.append(
                {
                    "charter": charter.slug,
                    "task_id": task,
                    "event": "started",
                    "time": at.isoformat(),
                    "segments": segments,
                }
            )
            finished = at + dt.timedelta(minutes=handle)
            if finished < now:
                events.append(
                    {
                        "charter": charter.slug,
                        "task_id": task,
                        "event": "finished",
                        "time": finished.isoformat(),
                    }
                )
                for kind, chance in (
                    ("overridden", 0.3 - 0.15 * progress),
                    ("escalated", 0.06),
                    ("reopened", 0.08 - 0.02 * progress),
                ):
                    if rng.random() < chance:
                        events.append(
                            {
                                "charter": charter.slug,
                                "task_id": task,
                                "event": kind,
                                "time": finished.isoformat(),
                            }
                        )
    stored = 0
    for start in range(0, len(observations), 5000):
        result = telemetry_ingest(
            actor=actor, observations=observations[start : start + 5000], source="zendesk-pilot"
        )
        stored += result["accepted"]["observations"]
    telemetry_ingest(actor=actor, events=events, source="zendesk-pilot")
    return stored
