"""The business audit log: one registry of verbs, one writer, one verifier.

Every decision, promotion, waiver, retirement, permission change and governed history row
becomes an `AuditEvent` whose hash covers its fields and the previous event's hash. History
rows are chained by digest: an edit of the history table behind the application's back is
found by `verify_chain()` as surely as an edit of the audit table itself.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from django.db import transaction
from django.utils import timezone

from .middleware import correlation_id
from .models import AuditEvent, AuditHead

GENESIS = "0" * 64

# verb: what it records. Services use only these.
VERBS = {
    "history.created": "A governed row was created",
    "history.changed": "A governed row was changed",
    "history.deleted": "A governed row was deleted",
    "charter.submit": "Charter submitted for approval",
    "charter.approve": "Charter approved",
    "charter.reject": "Charter rejected",
    "charter.transition": "Charter status changed",
    "charter.override": "Charter status changed by a compliance override",
    "charter.owner": "Charter handed to a new business owner",
    "charter.share": "Charter access granted",
    "charter.unshare": "Charter access removed",
    "prompt.version.approve": "Prompt version approved",
    "prompt.version.reject": "Prompt version rejected",
    "prompt.promote": "Protected label moved (promotion)",
    "prompt.label": "Label moved",
    "prompt.finding.waive": "Blocking policy finding waived",
    "prompt.deprecate": "Prompt deprecated",
    "prompt.retire": "Prompt retired",
    "evaluation.threshold": "Evaluation threshold changed",
    "evaluation.verdict": "Evaluation run finished with a verdict",
    "evaluation.artifact.retire": "Scorer model retired",
    "raci.assign": "RACI assignment added",
    "raci.remove": "RACI assignment removed",
    "permissions.recompute": "Object permissions recomputed from ownership and RACI",
    "approval.request": "Approval requested",
    "approval.decide": "Approval decision recorded",
    "approval.execute": "Approved action executed",
    "drift.alert": "A production version drifted from its certified evaluation",
    "gateway.sampled": "An execution was sampled for online scoring",
    "registry.endpoint.propose": "Model endpoint proposed",
    "registry.endpoint.approve": "Model endpoint approved",
    "registry.endpoint.reinstate": "Model endpoint reinstated",
    "registry.endpoint.retire": "Model endpoint retired",
    "registry.endpoint.change": "Model endpoint's data boundary changed",
    "registry.endpoint.suspend": "Model endpoint suspended",
}


def canonical(value: Any) -> str:
    """Stable JSON: sorted keys, no spaces, non-JSON values as strings."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str, ensure_ascii=False)


def event_hash(fields: Mapping[str, Any], prev_hash: str) -> str:
    """sha256 over the previous hash and the event's canonical fields."""
    return hashlib.sha256(f"{prev_hash}\n{canonical(fields)}".encode()).hexdigest()


def _fields(event: AuditEvent) -> dict[str, Any]:
    return {
        "created_at": event.created_at.isoformat(),
        "verb": event.verb,
        "actor_id": event.actor_id,
        "actor_name": event.actor_name,
        "object_type": event.object_type,
        "object_id": str(event.object_id),
        "object_repr": event.object_repr,
        "charter_id": event.charter_id,
        "data": event.data,
        "correlation_id": event.correlation_id,
    }


def object_label(obj) -> str:
    return f"{obj._meta.app_label}.{obj._meta.model_name}"


def charter_of(obj) -> int | None:
    """The charter an object belongs to, for portfolio filters (None for library objects)."""
    if obj is None:
        return None
    if object_label(obj) == "charters.charter":
        return obj.pk
    for path in ("charter_id", "prompt.charter_id", "suite.charter_id", "dataset.charter_id"):
        value = obj
        for part in path.split("."):
            value = getattr(value, part, None)
            if value is None:
                break
        if value is not None:
            return value
    return None


def record(
    verb: str,
    *,
    actor=None,
    obj=None,
    object_type: str = "",
    object_id: Any = "",
    object_repr: str = "",
    charter_id: int | None = None,
    data: Mapping[str, Any] | None = None,
) -> AuditEvent:
    """Append one event to the chain (inside the caller's transaction, if any)."""
    if verb not in VERBS:
        raise ValueError(f"unknown audit verb {verb!r}")
    if obj is not None:
        object_type = object_type or object_label(obj)
        object_id = object_id or obj.pk
        object_repr = object_repr or str(obj)[:300]
        charter_id = charter_id if charter_id is not None else charter_of(obj)
    actor = actor if getattr(actor, "is_authenticated", False) else None
    with transaction.atomic():
        head, _ = AuditHead.objects.select_for_update().get_or_create(pk=1)
        event = AuditEvent(
            created_at=timezone.now(),
            verb=verb,
            actor=actor,
            actor_name=actor.get_username() if actor else "system",
            object_type=object_type,
            object_id=str(object_id),
            object_repr=object_repr[:300],
            charter_id=charter_id,
            data=json.loads(canonical(data or {})),
            correlation_id=correlation_id.get()[:64],
            prev_hash=head.last_hash,
        )
        event.hash = event_hash(_fields(event), head.last_hash)
        event.save()
        head.last_id, head.last_hash = event.pk, event.hash
        head.save(update_fields=["last_id", "last_hash"])
    return event


def history_digest(row) -> str:
    """sha256 of a history row's tracked values (what the chain remembers of it)."""
    values = {
        field.attname: getattr(row, field.attname)
        for field in row._meta.concrete_fields
        if field.attname not in {"history_id"}
    }
    return hashlib.sha256(canonical(values).encode()).hexdigest()


HISTORY_VERBS = {"+": "history.created", "~": "history.changed", "-": "history.deleted"}


def history_recorded(sender, history_instance, **kwargs) -> None:
    """simple-history's post_create_historical_record: chain the new row."""
    record_history(history_instance)


def record_history(row) -> AuditEvent:
    """Chain a simple-history row by digest (called for every governed history row).

    The digest is taken from the row as the database returns it, which is also how the
    verifier will read it (decimals, dates and JSON come back normalised)."""
    instance = getattr(row, "instance", None)
    row = type(row).objects.get(history_id=row.history_id)
    model = row.instance_type
    label = f"{model._meta.app_label}.{model._meta.model_name}"
    return record(
        HISTORY_VERBS.get(row.history_type, "history.changed"),
        actor=row.history_user,
        object_type=label,
        object_id=getattr(row, "id", ""),
        object_repr=str(instance)[:300] if instance is not None else "",
        charter_id=charter_of(instance),
        data={
            "history_model": object_label(row),
            "history_id": row.history_id,
            "reason": row.history_change_reason or "",
            "digest": history_digest(row),
        },
    )


@dataclass
class Verification:
    """What `verify_chain` found: how many events it checked and the first broken link."""

    checked: int
    broken_at: int | None = None
    reason: str = ""

    @property
    def ok(self) -> bool:
        return self.broken_at is None


def _history_row(label: str, history_id):
    from django.apps import apps

    try:
        model = apps.get_model(label)
    except LookupError:
        return None
    return model.objects.filter(history_id=history_id).first()


def verify_chain(events: Iterable[AuditEvent] | None = None) -> Verification:
    """Recompute every link (and every chained history row's digest); name the first break."""
    previous = GENESIS
    checked = 0
    rows = (
        events
        if events is not None
        else AuditEvent.objects.order_by("id").iterator(chunk_size=2000)
    )
    last_id = 0
    for event in rows:
        if event.prev_hash != previous:
            return Verification(
                checked,
                event.pk,
                "its previous-hash does not match the event before it (a row was removed or reordered)",
            )
        if event_hash(_fields(event), previous) != event.hash:
            return Verification(
                checked, event.pk, "its content does not match its hash (the row was edited)"
            )
        if event.verb.startswith("history.") and "history_id" in event.data:
            row = _history_row(event.data["history_model"], event.data["history_id"])
            if row is None:
                return Verification(
                    checked,
                    event.pk,
                    f"history row {event.data['history_model']}#{event.data['history_id']} is missing",
                )
            if history_digest(row) != event.data["digest"]:
                return Verification(
                    checked,
                    event.pk,
                    f"history row {event.data['history_model']}#{event.data['history_id']} was edited",
                )
        previous = event.hash
        last_id = event.pk
        checked += 1
    head = AuditHead.objects.filter(pk=1).first()
    if head is not None and (head.last_id, head.last_hash) != (last_id, previous):
        return Verification(
            checked, head.last_id, "the newest events were removed (the head points past the end)"
        )
    return Verification(checked)
