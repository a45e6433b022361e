"""API keys (shown once on creation, revocable) and notifications."""

from django.contrib import admin
from rest_framework_api_key.admin import APIKeyModelAdmin

from .models import ApiKey, Notification


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
