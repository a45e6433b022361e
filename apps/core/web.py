"""Helpers the web pages of every app share."""

from __future__ import annotations

from django.contrib import messages

from .errors import ApplicationError


def report_error(request, exc: ApplicationError, *, limit: int | None = None) -> None:
    """Show a service's refusal as messages: the summary, then each field's problems."""
    messages.error(request, exc.message)
    for field, problems in exc.errors.items():
        for problem in problems[:limit]:
            messages.error(request, f"{field}: {problem}")
