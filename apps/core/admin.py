"""API keys (shown once on creation, revocable) and notifications."""

from django.contrib import admin
from rest_framework_api_key.admin import APIKeyModelAdmin

from .models import ApiKey, AuditEvent, Notification


@admin.register(ApiKey)
class ApiKeyAdmin(APIKeyModelAdmin):
    list_display = (*APIKeyModelAdmin.list_display, "user", "last_used_at")
    list_select_related = ("user",)
    list_filter = ("revoked",)
    search_fields = (*APIKeyModelAdmin.search_fields, "user__username")
    raw_id_fields = ("user",)

    def get_readonly_fields(self, request, obj=None):
        return (*super().get_readonly_fields(request, obj), "last_used_at")


@admin.register(Notification)
class NotificationAdmin(admin.ModelAdmin):
    list_display = ("title", "recipient", "verb", "created_at", "read_at", "emailed_at")
    list_filter = ("verb", "read_at")
    list_select_related = ("recipient",)
    search_fields = ("title", "recipient__username")
    readonly_fields = [f.name for f in Notification._meta.fields]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False


@admin.register(AuditEvent)
class AuditEventAdmin(admin.ModelAdmin):
    """The audit chain, read-only: filter by verb, object type and person."""

    list_display = [
        "id",
        "created_at",
        "verb",
        "actor_name",
        "object_type",
        "object_repr",
        "short_hash",
    ]
    list_filter = ["verb", "object_type"]
    search_fields = ["actor_name", "object_repr", "object_id", "correlation_id"]
    readonly_fields = [f.name for f in AuditEvent._meta.fields]

    @admin.display(description="hash")
    def short_hash(self, obj):
        return obj.hash[:12]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False
