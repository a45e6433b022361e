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


class ScopedHistoryMixin:
    """For SimpleHistoryAdmin: an object outside the user's queryset has no history page (404).

    simple-history falls back to the history rows of an object `get_queryset` leaves out (meant
    for deleted rows) and then refuses it with 403, which would tell a hidden object apart from
    one that does not exist. Deleted rows keep their history page for those allowed to see it.
    """

    def history_view(self, request, object_id, extra_context=None):
        from django.contrib.admin.utils import unquote
        from django.core.exceptions import ValidationError
        from django.http import Http404

        pk = unquote(object_id)
        try:
            hidden = (
                self.model._default_manager.filter(pk=pk).exists()
                and not self.get_queryset(request).filter(pk=pk).exists()
            )
        except (ValueError, ValidationError):
            hidden = False  # not a key at all: simple-history answers as for any missing one
        if hidden:
            raise Http404
        return super().history_view(request, object_id, extra_context)
