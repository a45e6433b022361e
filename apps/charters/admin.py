"""Compliance's view of charters: filters, history with field diffs, decisions as actions.

Every write goes through the services. Content can be edited here only while a charter
is a draft and only by someone allowed to change it (normally owners use the web
pages); metrics and dependencies are shown read-only and edited on the web or the API.
"""

from django import forms
from django.contrib import admin
from django.utils.html import format_html_join
from simple_history.admin import SimpleHistoryAdmin

from apps.approvals import services as approval_services
from apps.core.admin_actions import service_action
from apps.core.history import ScopedHistoryMixin

from . import permissions, selectors, services
from .models import Charter, Dependency, Metric

LIFECYCLE_FIELDS = (
    "status",
    "status_reason",
    "submitted_at",
    "approved_at",
    "approved_by",
    "created_by",
    "created_at",
    "updated_at",
)


class ReviewOverdueFilter(admin.SimpleListFilter):
    """Charters whose review date has passed (and are not retired)."""

    title = "review overdue"
    parameter_name = "overdue"

    def lookups(self, request, model_admin):
        return (("yes", "Overdue"), ("no", "Not overdue"))

    def queryset(self, request, queryset):
        if self.value() == "yes":
            return queryset.filter(selectors.charter_overdue_q())
        if self.value() == "no":
            return queryset.exclude(selectors.charter_overdue_q())
        return queryset


class MetricInline(admin.TabularInline):
    model = Metric
    extra = 0
    can_delete = False
    fields = (
        "name",
        "layer",
        "role",
        "direction",
        "unit",
        "baseline_value",
        "target_value",
        "guardrail_value",
    )
    readonly_fields = fields
    ordering = ("role", "id")

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False


class DependencyInline(admin.TabularInline):
    model = Dependency
    extra = 0
    can_delete = False
    fields = ("kind", "name", "criticality", "notes")
    readonly_fields = fields

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False


class CharterAdminForm(forms.ModelForm):
    """Refuses edits of a charter that left draft, with the lifecycle's reason."""

    class Meta:
        model = Charter
        fields = list(services.CHARTER_FIELDS)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if "slug" in self.fields:
            self.fields["slug"].required = False
            self.fields["slug"].help_text = "Leave empty to derive it from the title."

    def clean(self):
        cleaned = super().clean()
        if (
            self.instance.pk
            and not Charter.objects.filter(pk=self.instance.pk, status="draft").exists()
        ):
            raise forms.ValidationError(
                "Only draft charters can be edited; withdraw it (or have it rejected) first."
            )
        return cleaned


def _transition_action(name: str):
    transition = services.TRANSITIONS[name]
    if name in services.FOUR_EYES:  # a second person decides: the admin asks, like the web
        return service_action(
            f"charter_{name}",
            f"Ask to {transition.label.lower()}",
            lambda request, charter, reason: approval_services.charter_transition_request(
                actor=request.user, charter=charter, name=name, reason=reason
            ),
            needs_reason=True,
            done="requested; the Accountable for approving charters decides",
        )
    return service_action(
        f"charter_{name}",
        transition.label,
        lambda request, charter, reason: services.charter_transition(
            actor=request.user, charter=charter, name=name, reason=reason
        ),
        # Compliance pausing, resuming or retiring a charter makes a recorded override.
        needs_reason=transition.needs_reason or name in services.OVERRIDABLE,
        done=f"{transition.label.lower()} done",
    )


@admin.register(Charter)
class CharterAdmin(ScopedHistoryMixin, SimpleHistoryAdmin):
    form = CharterAdminForm
    list_display = (
        "title",
        "status",
        "risk_tier",
        "data_sensitivity",
        "business_owner",
        "review_date",
        "review_overdue_flag",
    )
    list_filter = ("status", "risk_tier", "data_sensitivity", ReviewOverdueFilter)
    search_fields = (
        "title",
        "slug",
        "problem",
        "business_owner__username",
        "business_owner__email",
    )
    list_select_related = ("business_owner",)
    date_hierarchy = "created_at"
    inlines = (MetricInline, DependencyInline)
    history_list_display = ("status", "status_reason")
    actions = [
        _transition_action(n) for n in ("approve", "reject", "go_live", "pause", "resume", "retire")
    ]
    fieldsets = (
        (None, {"fields": ("title", "slug", "business_owner", "status", "status_reason")}),
        ("The case", {"fields": ("problem", "process", "proof", "target_users", "intended_use")}),
        (
            "Risk",
            {"fields": ("risk_tier", "data_sensitivity", "review_date", "retirement_condition")},
        ),
        (
            "Record",
            {
                "fields": (
                    "created_by",
                    "created_at",
                    "updated_at",
                    "submitted_at",
                    "approved_at",
                    "approved_by",
                    "access",
                )
            },
        ),
    )

    @admin.display(boolean=True, description="Overdue")
    def review_overdue_flag(self, obj):
        return obj.review_overdue

    @admin.display(description="Who has access")
    def access(self, obj):
        if not obj or not obj.pk:
            return "—"
        entries = selectors.charter_shared_with(obj)
        if not entries:
            return "—"
        return format_html_join(
            ", ",
            "{} ({})",
            (
                (u.username, ", ".join(sorted(p.replace("_charter", "") for p in perms)))
                for u, perms in entries.items()
            ),
        )

    def get_queryset(self, request):
        # GuardedModelAdmin would not filter the changelist; only visible charters are listed.
        return selectors.charter_list_visible(request.user).select_related("business_owner")

    def get_readonly_fields(self, request, obj=None):
        if obj is None:
            return (*LIFECYCLE_FIELDS, "access")
        if not obj.is_editable or not permissions.can(request.user, permissions.CHANGE, obj):
            return [f for _, spec in self.fieldsets for f in spec["fields"]]
        return (*LIFECYCLE_FIELDS, "slug", "access")

    def has_view_permission(self, request, obj=None):
        if obj is None:
            return request.user.is_active and request.user.is_staff
        return permissions.can(request.user, permissions.VIEW, obj)

    def has_change_permission(self, request, obj=None):
        if obj is None:
            return request.user.is_staff and (
                request.user.has_perm(permissions.CHANGE_PERM)
                or request.user.has_perm(permissions.APPROVE_PERM)
            )
        return permissions.can(request.user, permissions.CHANGE, obj) or permissions.can(
            request.user, permissions.DECIDE, obj
        )

    def has_add_permission(self, request):
        return permissions.can_create(request.user)

    def has_view_history_permission(self, request, obj=None):
        # The history model permission alone would show any charter's history.
        return super().has_view_history_permission(request, obj) and (
            obj is None or permissions.can(request.user, permissions.VIEW, obj)
        )

    def has_delete_permission(self, request, obj=None):
        return bool(
            obj and obj.is_editable and permissions.can(request.user, permissions.CHANGE, obj)
        )

    def save_model(self, request, obj, form, change):
        fields = {
            f: form.cleaned_data[f] for f in form.changed_data if f in services.CHARTER_FIELDS
        }
        if change:
            saved = services.charter_update(actor=request.user, charter=obj, fields=fields)
        else:
            saved = services.charter_create(actor=request.user, fields=fields)
        obj.pk = saved.pk
        obj.refresh_from_db()

    def save_related(self, request, form, formsets, change):
        """Inlines are read-only: nothing is written, but Django's change message needs the pass."""
        for formset in formsets:
            formset.save(commit=False)

    def delete_model(self, request, obj):
        services.charter_delete(actor=request.user, charter=obj)

    def delete_queryset(self, request, queryset):
        for charter in queryset:
            services.charter_delete(actor=request.user, charter=charter)


class _ChildAdmin(ScopedHistoryMixin, SimpleHistoryAdmin):
    """Metrics and dependencies: read-only, listed with their (visible) charter."""

    list_select_related = ("charter",)

    def get_queryset(self, request):
        visible = selectors.charter_list_visible(request.user).values("pk")
        return super().get_queryset(request).filter(charter__in=visible).select_related("charter")

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    def has_view_permission(self, request, obj=None):
        return (
            request.user.is_active
            and request.user.is_staff
            and (obj is None or permissions.can(request.user, permissions.VIEW, obj.charter))
        )


@admin.register(Metric)
class MetricAdmin(_ChildAdmin):
    list_display = (
        "name",
        "charter",
        "layer",
        "role",
        "direction",
        "baseline_value",
        "target_value",
        "guardrail_value",
    )
    list_filter = ("layer", "role", "direction")
    search_fields = ("name", "charter__title")


@admin.register(Dependency)
class DependencyAdmin(_ChildAdmin):
    list_display = ("name", "kind", "criticality", "charter")
    list_filter = ("kind", "criticality")
    search_fields = ("name", "charter__title")
