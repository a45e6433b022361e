"""Helpers the web pages of every app share."""

from __future__ import annotations

from django.contrib import messages

from .errors import ApplicationError

GENERAL_FIELDS = frozenset({"__all__", "non_field_errors"})


def report_error(
    request, exc: ApplicationError, *, limit: int | None = None, bare=GENERAL_FIELDS
) -> None:
    """Show a service's refusal as messages: the summary, then each field's problems
    (named, except for the `bare` fields whose problems read on their own)."""
    messages.error(request, exc.message)
    for field, problems in (exc.errors or {}).items():
        for problem in problems[:limit]:
            messages.error(request, problem if field in bare else f"{field}: {problem}")


def form_add_errors(form, exc: ApplicationError) -> None:
    """Put a service's refusal on `form`: the summary on the form, each field's problems on
    that field (or on the form when it has no such field)."""
    form.add_error(None, exc.message)
    for field, problems in (exc.errors or {}).items():
        form.add_error(field if field in form.fields else None, problems)
