"""Compliance's view of the prompt library: review, findings and waivers, rules, lineage.

Content is written on the web pages and the API; here versions are read-only (and
immutable once submitted anyway), decisions are actions that call the services, and
policy rules are edited with their examples checked.
"""

from django import forms
from django.contrib import admin
from django.db.models import Count, Prefetch, Q
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html, format_html_join
from simple_history.admin import SimpleHistoryAdmin

from apps.core.admin_actions import service_action

from . import content, permissions, policy, selectors, services
from .models import (
    Application,
    Consumer,
    Label,
    LabelMove,
    PolicyFinding,
    PolicyRule,
    Prompt,
    PromptVersion,
)


class ReadOnlyMixin:
    """Nothing is added, changed or deleted here; writes go through actions."""

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


def _visible_prompts(request):
    return selectors.prompt_list_visible(request.user).values("pk")


class VersionInline(ReadOnlyMixin, admin.TabularInline):
    model = PromptVersion
    fields = (
        "number",
        "status",
        "change_kind",
        "author",
        "content_hash",
        "submitted_at",
        "release_notes",
    )
    readonly_fields = fields
    extra = 0
    show_change_link = True


class LabelInline(ReadOnlyMixin, admin.TabularInline):
    model = Label
    fields = ("name", "version", "protected", "updated_at")
    readonly_fields = fields
    extra = 0


@admin.register(Prompt)
class PromptAdmin(ReadOnlyMixin, SimpleHistoryAdmin):
    list_display = (
        "name",
        "slug",
        "charter",
        "task_type",
        "risk_level",
        "status",
        "owner",
        "live_version",
        "review_date",
    )
    list_filter = (
        "status",
        "task_type",
        "risk_level",
        "model_family",
        "is_starter",
        "listed_in_catalog",
    )
    search_fields = ("name", "slug", "description", "owner__username")
    list_select_related = ("charter", "owner")
    inlines = (VersionInline, LabelInline)
    readonly_fields = ("label_history", "consumers")
    actions = [
        service_action(
            "prompt_deprecate",
            "Deprecate",
            lambda request, prompt, reason: services.prompt_deprecate(
                actor=request.user, prompt=prompt, reason=reason
            ),
            needs_reason=True,
            done="deprecated; consumers notified",
        ),
        service_action(
            "prompt_retire",
            "Retire",
            lambda request, prompt, reason: services.prompt_retire(
                actor=request.user, prompt=prompt, reason=reason
            ),
            needs_reason=True,
            done="retired",
        ),
    ]

    def get_queryset(self, request):
        return (
            super()
            .get_queryset(request)
            .filter(pk__in=_visible_prompts(request))
            .select_related("charter", "owner")
            .prefetch_related(Prefetch("labels", queryset=Label.objects.select_related("version")))
        )

    def has_view_permission(self, request, obj=None):
        return (
            request.user.is_active
            and request.user.is_staff
            and (obj is None or permissions.can(request.user, permissions.VIEW, obj))
        )

    def has_view_history_permission(self, request, obj=None):
        return super().has_view_history_permission(request, obj) and (
            obj is None or permissions.can(request.user, permissions.VIEW, obj)
        )

    @admin.display(description="Production")
    def live_version(self, obj):
        live = next(
            (label.version for label in obj.labels.all() if label.name == "production"), None
        )
        return f"v{live.number}" if live else "—"

    @admin.display(description="Label history")
    def label_history(self, obj):
        moves = LabelMove.objects.filter(prompt=obj).select_related(
            "from_version", "to_version", "moved_by"
        )[:50]
        if not moves:
            return "—"
        return format_html_join(
            format_html("<br>"),
            "{}: {} {} → v{} by {} — {}",
            (
                (
                    m.moved_at.strftime("%Y-%m-%d %H:%M"),
                    m.label,
                    f"v{m.from_version.number}" if m.from_version else "∅",
                    m.to_version.number,
                    m.moved_by.username,
                    m.reason,
                )
                for m in moves
            ),
        )

    @admin.display(description="Consumers")
    def consumers(self, obj):
        rows = obj.consumers.select_related("application")
        return (
            format_html_join(
                format_html("<br>"),
                "{} reads {} ({} resolves, last {})",
                ((c.application.name, c.label, c.count, c.last_seen.date()) for c in rows),
            )
            or "—"
        )


class FindingInline(ReadOnlyMixin, admin.TabularInline):
    model = PolicyFinding
    fields = (
        "rule",
        "severity",
        "location",
        "excerpt",
        "message",
        "waived_by",
        "waived_at",
        "waiver_reason",
    )
    readonly_fields = fields
    extra = 0


@admin.register(PromptVersion)
class PromptVersionAdmin(ReadOnlyMixin, SimpleHistoryAdmin):
    list_display = (
        "__str__",
        "status",
        "change_kind",
        "author",
        "short_hash",
        "submitted_at",
        "blocking",
        "findings_total",
    )
    list_filter = ("status", "change_kind", "prompt__risk_level")
    search_fields = ("prompt__slug", "prompt__name", "content_hash", "release_notes")
    list_select_related = ("prompt", "author")
    inlines = (FindingInline,)
    readonly_fields = ("diff_link",)
    actions = [
        service_action(
            "version_approve",
            "Approve",
            lambda request, version, reason: services.version_approve(
                actor=request.user, version=version
            ),
            done="approved",
        ),
        service_action(
            "version_reject",
            "Reject",
            lambda request, version, reason: services.version_reject(
                actor=request.user, version=version, reason=reason
            ),
            needs_reason=True,
            done="rejected",
        ),
    ]

    def get_queryset(self, request):
        return (
            super()
            .get_queryset(request)
            .filter(prompt__in=_visible_prompts(request))
            .select_related("prompt__charter", "author", "parent")
            .annotate(
                blocking_count=Count(
                    "findings",
                    filter=Q(findings__severity="blocking", findings__waived_at__isnull=True),
                ),
                findings_count=Count("findings"),
            )
        )

    def has_view_permission(self, request, obj=None):
        return (
            request.user.is_active
            and request.user.is_staff
            and (obj is None or permissions.can(request.user, permissions.VIEW, obj.prompt))
        )

    def has_view_history_permission(self, request, obj=None):
        return super().has_view_history_permission(request, obj) and (
            obj is None or permissions.can(request.user, permissions.VIEW, obj.prompt)
        )

    @admin.display(description="Hash")
    def short_hash(self, obj):
        return obj.content_hash[:12]

    @admin.display(description="Unwaived blocking")
    def blocking(self, obj):
        return obj.blocking_count

    @admin.display(description="Findings")
    def findings_total(self, obj):
        return obj.findings_count

    @admin.display(description="Compare")
    def diff_link(self, obj):
        if obj.parent is None:
            return "First version."
        url = reverse("admin:prompts_promptversion_diff", args=[obj.pk])
        return format_html(
            '<a href="{}?against={}">Compare with v{}</a>',
            url,
            obj.parent.number,
            obj.parent.number,
        )

    def get_urls(self):
        return [
            path(
                "<int:pk>/diff/",
                self.admin_site.admin_view(self.diff_view),
                name="prompts_promptversion_diff",
            ),
            *super().get_urls(),
        ]

    def diff_view(self, request, pk):
        """Side-by-side difference with another version of the same prompt."""
        version = get_object_or_404(self.get_queryset(request), pk=pk)
        against = request.GET.get("against") or (
            version.parent.number if version.parent else version.number
        )
        other = get_object_or_404(PromptVersion, prompt=version.prompt, number=int(against))
        context = {
            **self.admin_site.each_context(request),
            "title": f"{version.prompt.slug}: v{other.number} → v{version.number}",
            "diff": content.diff(other, version),
            "opts": self.model._meta,
            "version": version,
        }
        return TemplateResponse(request, "admin/prompts/diff.html", context)


@admin.register(PolicyFinding)
class PolicyFindingAdmin(ReadOnlyMixin, SimpleHistoryAdmin):
    list_display = ("rule", "version", "severity", "location", "excerpt", "waived_by", "waived_at")
    list_filter = ("severity", ("waived_at", admin.EmptyFieldListFilter), "rule")
    search_fields = ("version__prompt__slug", "rule__code", "message")
    list_select_related = ("rule", "version__prompt", "waived_by")
    actions = [
        service_action(
            "finding_waive",
            "Waive",
            lambda request, finding, reason: services.finding_waive(
                actor=request.user, finding=finding, reason=reason
            ),
            needs_reason=True,
            done="waived",
        )
    ]

    def get_queryset(self, request):
        return super().get_queryset(request).filter(version__prompt__in=_visible_prompts(request))

    def has_view_permission(self, request, obj=None):
        return (
            request.user.is_active
            and request.user.is_staff
            and (obj is None or permissions.can(request.user, permissions.VIEW, obj.version.prompt))
        )


class PolicyRuleForm(forms.ModelForm):
    """A rule must run, and must flag its true example and not its false one."""

    class Meta:
        model = PolicyRule
        fields = [
            "code",
            "title",
            "description",
            "kind",
            "pattern",
            "severity",
            "risk_levels",
            "message",
            "example_true",
            "example_false",
            "enabled",
        ]

    def clean(self):
        cleaned = super().clean()
        if self.errors:
            return cleaned
        spec = policy.RuleSpec(
            cleaned["code"],
            cleaned["kind"],
            cleaned["pattern"],
            cleaned["severity"],
            cleaned["message"],
            tuple(cleaned.get("risk_levels") or ()),
        )
        problem = policy.rule_problem(spec)
        if problem:
            self.add_error("pattern", problem)
            return cleaned
        risk = (spec.risk_levels or ("critical",))[0]
        if cleaned.get("example_true") and not policy.evaluate(
            [spec], [("example", cleaned["example_true"])], risk_level=risk
        ):
            self.add_error("example_true", "The rule does not flag this example.")
        if cleaned.get("example_false") and policy.evaluate(
            [spec], [("example", cleaned["example_false"])], risk_level=risk
        ):
            self.add_error("example_false", "The rule flags this example, which it must not.")
        return cleaned


@admin.register(PolicyRule)
class PolicyRuleAdmin(SimpleHistoryAdmin):
    form = PolicyRuleForm
    list_display = ("code", "title", "kind", "severity", "enabled", "applies_to")
    list_filter = ("kind", "severity", "enabled")
    search_fields = ("code", "title", "pattern", "message")

    @admin.display(description="Risk levels")
    def applies_to(self, obj):
        return ", ".join(obj.risk_levels) or "all"

    def has_delete_permission(self, request, obj=None):
        # Findings keep a reference to their rule: disable a rule instead of deleting it.
        return bool(
            obj and not obj.findings.exists() and super().has_delete_permission(request, obj)
        )


@admin.register(Label)
class LabelAdmin(ReadOnlyMixin, SimpleHistoryAdmin):
    list_display = ("prompt", "name", "version", "protected", "updated_at")
    list_select_related = ("prompt", "version")
    list_filter = ("name", "protected")

    def get_queryset(self, request):
        return super().get_queryset(request).filter(prompt__in=_visible_prompts(request))


@admin.register(LabelMove)
class LabelMoveAdmin(ReadOnlyMixin, admin.ModelAdmin):
    list_display = (
        "moved_at",
        "prompt",
        "label",
        "from_version",
        "to_version",
        "moved_by",
        "reason",
    )
    list_select_related = ("prompt", "from_version", "to_version", "moved_by")
    list_filter = ("label",)
    date_hierarchy = "moved_at"

    def get_queryset(self, request):
        return super().get_queryset(request).filter(prompt__in=_visible_prompts(request))


@admin.register(Application)
class ApplicationAdmin(ReadOnlyMixin, SimpleHistoryAdmin):
    list_display = ("name", "slug", "owner", "service_user", "created_at")
    list_select_related = ("owner", "service_user")
    search_fields = ("name", "slug", "owner__username")


@admin.register(Consumer)
class ConsumerAdmin(ReadOnlyMixin, admin.ModelAdmin):
    list_display = ("application", "prompt", "label", "count", "first_seen", "last_seen")
    list_select_related = ("application", "prompt")
    list_filter = ("label",)
