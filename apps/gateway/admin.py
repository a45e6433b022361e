"""Operators set a prompt's gateway route in the admin; calls are read-only telemetry."""

from django.contrib import admin
from simple_history.admin import SimpleHistoryAdmin

from .models import Call, Route


@admin.register(Route)
class RouteAdmin(SimpleHistoryAdmin):
    list_display = ["prompt", "base_url", "model", "filter_mode", "rate_limit_per_minute"]
    search_fields = ["prompt__slug", "base_url"]


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
