"""Telemetry ingest: every item validated on its own, good items stored in bulk, duplicates
(by idempotency key) counted once, and a response that says exactly what was kept."""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Mapping, Sequence
from typing import Any

from django.db import connection, transaction
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from apps.charters import permissions as charter_permissions
from apps.charters.models import Metric
from apps.core.errors import ValidationFailed
from apps.core.groups import INTEGRATIONS, in_group

from .models import Observation, Rollup, WorkflowEvent

MAX_ITEMS = 10_000
STANDARD_SEGMENT_KEYS = {"language", "geography", "user_role", "task_type"}
CHUNK = 5000


def _may_post(user, charter) -> bool:
    """Integrations that may see the charter, and whoever may change it, post its telemetry."""
    if charter_permissions.can(user, charter_permissions.CHANGE, charter):
        return True
    return in_group(user, INTEGRATIONS) and charter_permissions.can(
        user, charter_permissions.VIEW, charter
    )


def _horizon() -> dt.datetime:
    return timezone.now() + dt.timedelta(minutes=5)


def _when(raw: Any) -> dt.datetime:
    if not isinstance(raw, str):
        raise ValueError("'time' must be an ISO 8601 timestamp.")
    try:
        value = dt.datetime.fromisoformat(raw)  # C-fast; covers what integrations send
    except ValueError:
        value = parse_datetime(raw)
    if value is None:
        raise ValueError(f"'time' {raw!r} is not an ISO 8601 timestamp.")
    if timezone.is_naive(value):
        value = timezone.make_aware(value, dt.UTC)
    if value > _horizon():
        raise ValueError("'time' is in the future.")
    return value


# Rollups keep each segment key in a column this wide.
SEGMENT_KEY_LENGTH = Rollup._meta.get_field("segment_key").max_length


def _segments(raw: Any, allowed: set[str]) -> dict[str, str]:
    if raw in (None, ""):
        return {}
    if not isinstance(raw, Mapping):
        raise ValueError("'segments' must be an object of key → value.")
    unknown = sorted(set(raw) - allowed)
    if unknown:
        raise ValueError(f"Segment key(s) not allowed for this metric: {', '.join(unknown)}.")
    cleaned = {}
    for key, value in raw.items():
        if not isinstance(value, (str, int, float)) or isinstance(value, bool):
            raise ValueError(f"Segment '{key}' must be text or a number.")
        if len(key) > SEGMENT_KEY_LENGTH:
            raise ValueError(f"Segment keys are at most {SEGMENT_KEY_LENGTH} characters.")
        cleaned[key] = str(value)[:100]
    return cleaned


class _Metrics:
    """Resolves metric references of one batch with one query, and permission per charter."""

    def __init__(self, user, items: Sequence[Mapping]) -> None:
        slugs = {i.get("charter") for i in items if isinstance(i, Mapping) and i.get("charter")}
        ids = {i.get("metric_id") for i in items if isinstance(i, Mapping) and i.get("metric_id")}
        qs = Metric.objects.select_related("charter").filter(charter__slug__in=slugs)
        # Only ids the database can hold (a larger number failed the whole query), and no
        # `true`, which Python counts as the id 1.
        by_id = Metric.objects.select_related("charter").filter(
            pk__in=[i for i in ids if type(i) is int and 0 < i < 2**63]
        )
        self.by_name = {(m.charter.slug, m.name): m for m in qs}
        self.by_id = {m.pk: m for m in by_id}
        self.user = user
        self._allowed: dict[int, bool] = {}

    def resolve(self, item: Mapping) -> Metric:
        if item.get("metric_id") is not None:
            metric = self.by_id.get(item["metric_id"])
        else:
            metric = self.by_name.get((item.get("charter"), item.get("metric")))
        if metric is None:
            raise LookupError(
                "No such metric: give 'charter' (slug) and 'metric' (name), or 'metric_id'."
            )
        if metric.charter_id not in self._allowed:
            self._allowed[metric.charter_id] = _may_post(self.user, metric.charter)
        if not self._allowed[metric.charter_id]:
            raise LookupError(
                "No such metric: give 'charter' (slug) and 'metric' (name), or 'metric_id'."
            )
        return metric


def _observation(item: Any, metrics: _Metrics, source: str) -> tuple:
    """A validated observation as a row tuple (model instances cost more than the insert)."""
    if not isinstance(item, Mapping):
        raise ValueError("An observation must be an object.")
    metric = metrics.resolve(item)
    value = item.get("value")
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError("'value' must be a finite number.")
    key = item.get("idempotency_key")
    if not isinstance(key, str) or not key.strip() or len(key) > 200:
        raise ValueError("'idempotency_key' is required (text, at most 200 characters).")
    allowed = STANDARD_SEGMENT_KEYS | set(metric.allowed_segment_keys or ())
    return (
        metric.charter_id,
        metric.pk,
        float(value),
        _when(item.get("time")),
        _segments(item.get("segments"), allowed),
        str(item.get("source") or source)[:100],
        key.strip(),
    )


OBSERVATION_COLUMNS = (
    "charter_id",
    "metric_id",
    "value",
    "observed_at",
    "segments",
    "source",
    "idempotency_key",
)


def _store_observations(rows: list[tuple]) -> set[int]:
    """Insert new observations; return the positions that were duplicates.

    On PostgreSQL the rows are COPYed into a scratch table and moved over with
    INSERT … ON CONFLICT DO NOTHING RETURNING, which tells which keys were new; elsewhere a
    lookup of existing keys and a bulk insert do the same."""
    if not rows:
        return set()
    if connection.vendor == "postgresql":
        import json

        now = timezone.now()
        with connection.cursor() as cursor:
            cursor.execute(
                "CREATE TEMP TABLE IF NOT EXISTS observation_stage (position integer, charter_id bigint, "
                "metric_id bigint, value double precision, observed_at timestamptz, segments jsonb, "
                "source varchar(100), idempotency_key varchar(200)) ON COMMIT DELETE ROWS"
            )
            with cursor.cursor.copy(
                "COPY observation_stage (position, charter_id, metric_id, value, observed_at, segments, "
                "source, idempotency_key) FROM STDIN"
            ) as copy:
                for position, row in enumerate(rows):
                    copy.write_row(
                        (
                            position,
                            row[0],
                            row[1],
                            row[2],
                            row[3],
                            json.dumps(row[4]),
                            row[5],
                            row[6],
                        )
                    )
            cursor.execute(
                "INSERT INTO scorecards_observation (charter_id, metric_id, value, observed_at, segments, "
                "source, idempotency_key, created_at) "
                "SELECT DISTINCT ON (metric_id, idempotency_key) charter_id, metric_id, value, observed_at, "
                "segments, source, idempotency_key, %s FROM observation_stage "
                "ORDER BY metric_id, idempotency_key, position "
                "ON CONFLICT (metric_id, idempotency_key) DO NOTHING RETURNING metric_id, idempotency_key",
                [now],
            )
            inserted = set(cursor.fetchall())
            cursor.execute("DELETE FROM observation_stage")
        duplicates = set()
        for position, row in enumerate(rows):
            marker = (row[1], row[6])
            if marker in inserted:
                inserted.discard(marker)  # the first occurrence is the one kept
            else:
                duplicates.add(position)
        return duplicates
    models = [Observation(**dict(zip(OBSERVATION_COLUMNS, row, strict=True))) for row in rows]
    return _store(Observation, models, ("metric", "idempotency_key"))


def _event(item: Any, charters: dict, user, source: str) -> WorkflowEvent:
    from apps.charters.models import Charter

    if not isinstance(item, Mapping):
        raise ValueError("An event must be an object.")
    slug = item.get("charter")
    if slug not in charters:
        charter = Charter.objects.filter(slug=slug).first() if isinstance(slug, str) else None
        charters[slug] = charter if charter is not None and _may_post(user, charter) else None
    charter = charters[slug]
    if charter is None:
        raise LookupError("No such charter.")
    kind = item.get("event")
    if kind not in WorkflowEvent.Kind.values:
        raise ValueError(f"'event' must be one of: {', '.join(WorkflowEvent.Kind.values)}.")
    task = item.get("task_id")
    if not isinstance(task, str) or not task.strip():
        raise ValueError("'task_id' is required.")
    key = item.get("idempotency_key") or f"{task}:{kind}:{item.get('time')}"
    return WorkflowEvent(
        charter=charter,
        task_id=task.strip()[:200],
        kind=kind,
        at=_when(item.get("time")),
        segments=_segments(item.get("segments"), STANDARD_SEGMENT_KEYS),
        source=str(item.get("source") or source)[:100],
        idempotency_key=str(key)[:200],
    )


def _store(model, rows: list, key_fields: tuple[str, str]) -> set[int]:
    """Insert rows whose (scope, key) is new; return the positions that were duplicates."""
    scope_field, key_field = key_fields
    existing: set[tuple] = set()
    scopes = {getattr(r, f"{scope_field}_id") for r in rows}
    keys = [getattr(r, key_field) for r in rows]
    for start in range(0, len(keys), CHUNK):
        existing |= set(
            model.objects.filter(
                **{f"{scope_field}_id__in": scopes, f"{key_field}__in": keys[start : start + CHUNK]}
            ).values_list(f"{scope_field}_id", key_field)
        )
    fresh, duplicates = [], set()
    for position, row in enumerate(rows):
        marker = (getattr(row, f"{scope_field}_id"), getattr(row, key_field))
        if marker in existing:
            duplicates.add(position)
            continue
        existing.add(marker)
        fresh.append(row)
    model.objects.bulk_create(fresh, batch_size=CHUNK, ignore_conflicts=True)
    return duplicates


@transaction.atomic
def telemetry_ingest(
    *, actor, observations: Sequence[Any] = (), events: Sequence[Any] = (), source: str = ""
) -> dict[str, Any]:
    """Store the valid items of a batch; report each rejected item with its reason."""
    if len(observations) + len(events) > MAX_ITEMS:
        raise ValidationFailed(
            f"At most {MAX_ITEMS} items per request.",
            errors={"observations": [f"Send at most {MAX_ITEMS} items; split the batch."]},
        )
    source = source or getattr(actor, "username", "")
    rejected: list[dict[str, Any]] = []
    metrics = _Metrics(actor, observations)
    rows, positions = [], []
    for index, item in enumerate(observations):
        try:
            rows.append(_observation(item, metrics, source))
            positions.append(index)
        except (ValueError, LookupError) as exc:
            rejected.append({"kind": "observation", "index": index, "error": str(exc)})
    duplicates = _store_observations(rows)
    from . import rollups

    rollups.add(row for position, row in enumerate(rows) if position not in duplicates)
    charters: dict = {}
    event_rows, event_positions = [], []
    for index, item in enumerate(events):
        try:
            event_rows.append(_event(item, charters, actor, source))
            event_positions.append(index)
        except (ValueError, LookupError) as exc:
            rejected.append({"kind": "event", "index": index, "error": str(exc)})
    event_duplicates = _store(WorkflowEvent, event_rows, ("charter", "idempotency_key"))
    return {
        "accepted": {
            "observations": len(rows) - len(duplicates),
            "events": len(event_rows) - len(event_duplicates),
        },
        "duplicates": {
            "observations": sorted(positions[i] for i in duplicates),
            "events": sorted(event_positions[i] for i in event_duplicates),
        },
        "rejected": rejected,
    }
