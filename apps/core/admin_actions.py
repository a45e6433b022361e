"""Admin actions that call a service per selected object and report each outcome.

Refusals (validation, state, permission) become per-object error messages instead of
a crash; actions that need a reason first show an intermediate page asking for it.
"""

from __future__ import annotations

from collections.abc import Callable

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import Http404
from django.shortcuts import render

from .errors import ApplicationError


class ReasonForm(forms.Form):
    reason = forms.CharField(widget=forms.Textarea(attrs={"rows": 4, "cols": 60}), max_length=5000)


def service_action(
    name: str,
    label: str,
    run: Callable[[object, object, str], object],
    *,
    needs_reason: bool = False,
    done: str = "done",
):
    """Build an admin action calling `run(request, obj, reason)` for each selected object."""

    def action(modeladmin, request, queryset):
        reason = ""
        if needs_reason:
            form = ReasonForm(request.POST if "apply" in request.POST else None)
            if not form.is_valid():
                return render(
                    request,
                    "admin/reason_action.html",
                    {
                        **modeladmin.admin_site.each_context(request),
                        "title": f"{label}: give a reason",
                        "form": form,
                        "objects": queryset,
                        "action": name,
                        "opts": modeladmin.model._meta,
                        "action_checkbox_name": admin.helpers.ACTION_CHECKBOX_NAME,
                    },
                )
            reason = form.cleaned_data["reason"]
        for obj in queryset:
            try:
                run(request, obj, reason)
            except (ApplicationError, PermissionDenied, Http404) as exc:
                message = getattr(exc, "message", None) or str(exc) or "Not allowed."
                details = " ".join(m for msgs in getattr(exc, "errors", {}).values() for m in msgs)
                modeladmin.message_user(
                    request, f"{obj}: {message} {details}".strip(), messages.ERROR
                )
            else:
                modeladmin.message_user(request, f"{obj}: {done}.", messages.SUCCESS)
        return None

    action.__name__ = name
    action.short_description = f"{label} selected"
    return action
