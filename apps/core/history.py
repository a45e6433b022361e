"""Saving governed rows with their history's author and reason, in one place."""

from __future__ import annotations

from collections.abc import Iterable

# simple-history's history_change_reason column holds 100 characters.
REASON_LENGTH = 100


def save_with_history(
    obj, *, actor, reason: str, update_fields: Iterable[str] | None = None
) -> None:
    """Save `obj` with the acting user and the reason on its history row."""
    obj._history_user = actor
    obj._change_reason = (reason or "")[:REASON_LENGTH]
    if update_fields is None:
        obj.save()
    else:
        obj.save(update_fields=list(update_fields))


def delete_with_history(obj, *, actor, reason: str) -> None:
    """Delete `obj`, recording who and why on its history's deletion row."""
    obj._history_user = actor
    obj._change_reason = (reason or "")[:REASON_LENGTH]
    obj.delete()
