"""Operators set a prompt's gateway route in the admin; calls are read-only telemetry."""

from django import forms
from django.contrib import admin
from simple_history.admin import SimpleHistoryAdmin

from apps.core.errors import ApplicationError
from apps.registry.choices import EndpointStatus
from apps.registry.models import ModelEndpoint

from .models import Call, Route
from .services import route_check


class RouteForm(forms.ModelForm):
    """A route names an approved registry endpoint and a model it serves; nothing else."""

    class Meta:
        model = Route
        fields = [
            "prompt",
            "endpoint",
            "model",
            "filter_mode",
            "rate_limit_per_minute",
            "sample_rate",
        ]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if "endpoint" in self.fields:
            self.fields["endpoint"].queryset = ModelEndpoint.objects.filter(
                status=EndpointStatus.APPROVED
            )

    def clean(self):
        cleaned = super().clean()
        prompt, endpoint = cleaned.get("prompt"), cleaned.get("endpoint")
        if prompt is not None and endpoint is not None:
            try:
                route_check(prompt=prompt, endpoint=endpoint, model=cleaned.get("model") or "")
            except ApplicationError as exc:
                self.add_error("endpoint", exc.message)
        sample_rate = cleaned.get("sample_rate")
        if sample_rate is not None and not 0 <= sample_rate <= 1:
            self.add_error("sample_rate", "Give a share between 0 and 1.")
        return cleaned


@admin.register(Route)
class RouteAdmin(SimpleHistoryAdmin):
    form = RouteForm
    list_display = ["prompt", "endpoint", "model", "filter_mode", "rate_limit_per_minute"]
    list_select_related = ["prompt", "endpoint"]
    list_filter = ["endpoint"]
    search_fields = ["prompt__slug", "endpoint__slug", "model"]


@admin.register(Call)
class CallAdmin(admin.ModelAdmin):
    list_display = [
        "created_at",
        "prompt",
        "label",
        "status",
        "latency_ms",
        "tokens_in",
        "tokens_out",
        "cost",
    ]
    list_filter = ["status"]
    readonly_fields = [f.name for f in Call._meta.fields]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False
