"""Compliance's approvals desk: RACI across charters, requests with their evidence and
decisions, and the same approve / reject actions as the inbox (they call the services)."""

from __future__ import annotations

from django import forms
from django.contrib import admin
from django.utils.html import format_html, format_html_join
from simple_history.admin import SimpleHistoryAdmin

from apps.core.admin_actions import ServiceChangeFormMixin, service_action
from apps.core.history import ScopedHistoryMixin

from . import raci, services
from .models import ApprovalRequest, Decision, RaciAssignment


class RaciForm(forms.ModelForm):
    class Meta:
        model = RaciAssignment
        fields = ["charter", "activity", "role", "user", "group", "note"]


@admin.register(RaciAssignment)
class RaciAssignmentAdmin(ServiceChangeFormMixin, SimpleHistoryAdmin):
    form = RaciForm
    list_display = ["scope", "activity", "role", "who", "note", "created_at"]
    list_filter = ["activity", "role", ("charter", admin.EmptyFieldListFilter)]
    search_fields = ["charter__slug", "user__username", "group__name"]

    @admin.display(description="scope")
    def scope(self, obj):
        return obj.charter.slug if obj.charter_id else "global default"

    def has_change_permission(self, request, obj=None):
        return False if obj is not None else super().has_change_permission(request)

    def has_add_permission(self, request):
        return request.user.is_superuser or request.user.has_perm("charters.approve_charter")

    def has_delete_permission(self, request, obj=None):
        return obj is not None and raci.can_edit(request.user, obj.charter)

    def save_model(self, request, obj, form, change):
        data = form.cleaned_data
        saved = raci.raci_assign(
            actor=request.user,
            charter=data.get("charter"),
            activity=data["activity"],
            role=data["role"],
            user=data.get("user"),
            group=data.get("group"),
            note=data.get("note", ""),
        )
        obj.pk = saved.pk

    def delete_model(self, request, obj):
        raci.raci_remove(actor=request.user, assignment=obj, reason="Removed in the admin")


class DecisionInline(admin.TabularInline):
    model = Decision
    fields = ["actor", "verdict", "comment", "roles", "created_at"]
    readonly_fields = fields
    extra = 0
    can_delete = False

    def has_add_permission(self, request, obj=None):
        return False


def _decide(verdict):
    def run(request, obj, reason):
        services.approval_decide(actor=request.user, request=obj, verdict=verdict, comment=reason)

    return run


@admin.register(ApprovalRequest)
class ApprovalRequestAdmin(ScopedHistoryMixin, SimpleHistoryAdmin):
    list_display = [
        "id",
        "kind",
        "subject_display",
        "status",
        "requested_by",
        "risk_tier",
        "created_at",
    ]
    list_filter = ["status", "kind", "risk_tier"]
    search_fields = ["prompt_version__prompt__slug", "charter__slug", "reason"]
    inlines = [DecisionInline]
    readonly_fields = [
        "kind",
        "status",
        "charter",
        "prompt_version",
        "label",
        "requested_by",
        "reason",
        "required_display",
        "evidence_display",
        "outcome",
        "created_at",
        "expires_at",
        "closed_at",
    ]
    fields = readonly_fields
    actions = [
        service_action("approve", "Approve", _decide("approve"), done="approved"),
        service_action("reject", "Reject", _decide("reject"), needs_reason=True, done="rejected"),
    ]

    def get_queryset(self, request):
        return services.visible_requests(request.user).select_related(
            "prompt_version__prompt", "charter", "requested_by"
        )

    def has_add_permission(self, request):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_view_permission(self, request, obj=None):
        return request.user.is_active and request.user.is_staff

    @admin.display(description="subject")
    def subject_display(self, obj):
        return obj.subject

    @admin.display(description="required")
    def required_display(self, obj):
        return format_html_join(
            "", "<div>{}: {}</div>", ((s["label"], s["who"]) for s in obj.required)
        )

    @admin.display(description="gate evidence")
    def evidence_display(self, obj):
        return format_html(
            "<ul>{}</ul>",
            format_html_join(
                "",
                "<li><strong>{}</strong> {}: {}</li>",
                (
                    ("pass" if r["passed"] else "FAIL", r["check"], r["reason"])
                    for r in obj.evidence
                ),
            ),
        )
