"""The model registry in the admin: operators and compliance propose and edit endpoints;
approval, reinstatement, retirement and edits of where data goes open approval requests
(compliance decides them in the approvals inbox); suspension is the emergency stop."""

from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from simple_history.admin import SimpleHistoryAdmin

from apps.approvals import services as approval_services
from apps.core.admin_actions import ServiceChangeFormMixin, service_action
from apps.core.choices import RiskTier

from . import permissions, services
from .models import ModelEndpoint

FORM_FIELDS = [
    "name",
    "slug",
    "description",
    "provider_kind",
    "base_url",
    "model_names",
    "vendor",
    "data_location",
    "region",
    "retention_days",
    "training_use",
    "terms",
    "risk_tiers",
    "credential",
    "allow_private",
    "allow_private_reason",
    "proxy",
    "price_per_1k_input",
    "price_per_1k_output",
    "timeout_s",
    "max_retries",
    "concurrency",
]


class ModelNamesField(forms.CharField):
    """The served model names, one per line."""

    def prepare_value(self, value):
        if isinstance(value, list | tuple):
            return "\n".join(value)
        return value

    def to_python(self, value):
        text = super().to_python(value) or ""
        return [n.strip() for n in text.replace(",", "\n").splitlines() if n.strip()]


class ModelEndpointForm(forms.ModelForm):
    model_names = ModelNamesField(
        required=False,
        widget=forms.Textarea(attrs={"rows": 3}),
        help_text="The model names this endpoint serves, one per line.",
    )
    risk_tiers = forms.MultipleChoiceField(
        choices=RiskTier.choices,
        required=False,
        widget=forms.CheckboxSelectMultiple,
        help_text="Risk tiers of the charters that may use it.",
    )

    class Meta:
        model = ModelEndpoint
        fields = FORM_FIELDS


def _suspend(request, endpoint, reason):
    services.endpoint_suspend(actor=request.user, endpoint=endpoint, reason=reason)


def _asker(change: str):
    def run(request, endpoint, reason):
        return approval_services.endpoint_request(
            actor=request.user, endpoint=endpoint, change=change, reason=reason
        )

    return run


@admin.register(ModelEndpoint)
class ModelEndpointAdmin(ServiceChangeFormMixin, SimpleHistoryAdmin):
    form = ModelEndpointForm
    list_display = [
        "name",
        "slug",
        "vendor",
        "data_location",
        "region",
        "status",
        "credential",
        "allow_private",
    ]
    list_filter = ["status", "vendor", "data_location", "training_use", "allow_private"]
    search_fields = ["name", "slug", "vendor", "base_url"]
    readonly_fields = ["status", "status_reason", "created_by", "created_at", "updated_at"]
    actions = [
        service_action(
            "ask_approve",
            "Ask compliance to approve",
            _asker("approve"),
            needs_reason=True,
            done="approval requested",
        ),
        service_action(
            "suspend", "Suspend (stop all calls)", _suspend, needs_reason=True, done="suspended"
        ),
        service_action(
            "ask_reinstate",
            "Ask compliance to reinstate",
            _asker("reinstate"),
            needs_reason=True,
            done="reinstatement requested",
        ),
        service_action(
            "ask_retire",
            "Ask compliance to retire",
            _asker("retire"),
            needs_reason=True,
            done="retirement requested",
        ),
    ]

    def get_readonly_fields(self, request, obj=None):
        fixed = list(self.readonly_fields)
        if obj is not None:
            fixed.append("slug")
        return fixed

    def has_add_permission(self, request):
        return permissions.can(request.user, permissions.PROPOSE)

    def has_change_permission(self, request, obj=None):
        return permissions.can(request.user, permissions.PROPOSE)

    def has_delete_permission(self, request, obj=None):
        return False  # runs, routes and decisions name endpoints: retire one instead

    def save_model(self, request, obj, form, change):
        fields = {
            name: form.cleaned_data.get(name) for name in FORM_FIELDS if name in form.cleaned_data
        }
        fields.pop("provider_kind", None)
        if not change:
            created = services.endpoint_propose(actor=request.user, fields=fields)
            obj.pk = created.pk
            obj.refresh_from_db()
            return
        fields.pop("slug", None)
        current = ModelEndpoint.objects.get(pk=obj.pk)
        result = approval_services.endpoint_change(
            actor=request.user,
            endpoint=current,
            fields=fields,
            reason=f"Changed in the admin by {request.user.get_username()}",
        )
        if not isinstance(result, ModelEndpoint):
            messages.warning(
                request,
                f"The change of where data goes waits for compliance: approval request #{result.pk}.",
            )
        obj.refresh_from_db()
