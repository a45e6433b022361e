"""Admin actions and change forms that call services, and report each outcome.

Refusals (validation, state, permission) become error messages instead of a crash: per
object for actions, which ask for a reason first where one is needed; for change forms the
whole save is rolled back and the form comes back with the reasons.
"""

from __future__ import annotations

from collections.abc import Callable

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import Http404
from django.shortcuts import redirect, render

from .errors import ApplicationError
from .web import report_error


class ServiceChangeFormMixin:
    """For ModelAdmins whose save_model/save_formset call services: an ApplicationError
    raised there rolls the save back (the admin saves in one transaction) and returns to
    the form with the service's reasons, field by field, as error messages."""

    def changeform_view(self, request, *args, **kwargs):
        try:
            return super().changeform_view(request, *args, **kwargs)
        except ApplicationError as exc:
            report_error(request, exc, limit=50)
            return redirect(request.path)


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
