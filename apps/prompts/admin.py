"""Compliance's view of the prompt library: review, findings and waivers, rules, lineage.

Authors write content on the web pages and the API. Here everything a person may
see is scoped to the prompts they may see; submitted versions are read-only (they
are immutable anyway); decisions (approve, reject, waive, deprecate, retire) are
actions calling the services, one message per object; a draft edited here is saved
by `services.version_update`, whose refusals show beside the fields. Policy rules
are the one thing compliance edits directly, with the rule run on its own examples.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.db.models import Count, Prefetch, Q
from django.http import Http404, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django.utils.safestring import mark_safe
from simple_history.admin import SimpleHistoryAdmin

from apps.approvals import services as approval_services
from apps.charters.choices import RiskTier
from apps.core.admin_actions import service_action
from apps.core.errors import ApplicationError, ValidationFailed
from apps.core.history import ScopedHistoryMixin, save_with_history

from . import content, permissions, policy, selectors, services
from .choices import PromptStatus, Severity, VersionStatus
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

# --- shared pieces ------------------------------------------------------------------------------


def _refusal(exc: Exception) -> str:
    """A service refusal as one readable line: the message, then the field details."""
    message = getattr(exc, "message", None) or str(exc) or "Not allowed."
    details = " ".join(m for msgs in getattr(exc, "errors", {}).values() for m in msgs)
    return f"{message} {details}".strip()


def _run_per_object(modeladmin, request, queryset, run: Callable, done: str) -> None:
    """Call `run(obj)` for each object and report each outcome; refusals never crash the page."""
    for obj in queryset:
        try:
            run(obj)
        except (ApplicationError, PermissionDenied, Http404) as exc:
            modeladmin.message_user(request, f"{obj}: {_refusal(exc)}", messages.ERROR)
        else:
            modeladmin.message_user(request, f"{obj}: {done}.", messages.SUCCESS)


def _retire(request, prompt, data) -> None:
    """Retire as the web and the API do: at once when nothing reads the prompt, else ask."""
    outcome = approval_services.retirement_request(
        actor=request.user, prompt=prompt, reason=data["reason"], successor=data["successor"]
    )
    if isinstance(outcome, Prompt):
        messages.info(request, f"{prompt}: retired; resolves now answer 410 Gone.")
    else:
        messages.info(
            request,
            f"{prompt}: applications still read it, so retirement waits for the Accountable "
            f"(approval request #{outcome.pk}).",
        )


def _form_action(
    name: str,
    label: str,
    make_form: Callable,
    run: Callable,
    *,
    done: str,
    intro: str = "",
):
    """An admin action that first asks for a form on an intermediate page, then calls
    `run(request, obj, cleaned_data)` per selected object (the shared `service_action`
    asks for a reason only)."""

    def action(modeladmin, request, queryset):
        data = request.POST if "apply" in request.POST else None
        form = make_form(request, queryset, data)
        if not form.is_valid():
            return TemplateResponse(
                request,
                "admin/prompts/action_form.html",
                {
                    **modeladmin.admin_site.each_context(request),
                    "title": label,
                    "intro": intro,
                    "form": form,
                    "objects": queryset,
                    "action": name,
                    "opts": modeladmin.model._meta,
                    "action_checkbox_name": ACTION_CHECKBOX_NAME,
                },
            )
        _run_per_object(
            modeladmin, request, queryset, lambda obj: run(request, obj, form.cleaned_data), done
        )
        return None

    action.__name__ = name
    action.short_description = f"{label} selected"
    return action


def _only_with(perm: str, refusal: str, action):
    """Refuse an action up front, politely, for people who lack the global right it needs."""

    def guarded(modeladmin, request, queryset):
        if not request.user.has_perm(perm):
            modeladmin.message_user(request, refusal, messages.WARNING)
            return None
        return action(modeladmin, request, queryset)

    guarded.__name__ = action.__name__
    guarded.short_description = action.short_description
    return guarded


READONLY_TABLE = "admin/prompts/readonly_tabular.html"


class ReadOnlyMixin:
    """Nothing is added, changed or deleted through these pages."""

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


class PromptScopedMixin(ScopedHistoryMixin):
    """Rows belong to a prompt: listed only for prompts the user may see, opened likewise.

    Guardian's admin would not filter the changelist (see PITFALLS), so the visibility
    selector restricts it, and each object is checked against its prompt.
    """

    prompt_path = "prompt"  # the lookup from this model to its Prompt; "" for Prompt itself

    def _prompt_of(self, obj):
        for attr in filter(None, self.prompt_path.split("__")):
            obj = getattr(obj, attr)
        return obj

    def get_queryset(self, request):
        visible = selectors.prompt_list_visible(request.user).values("pk")
        lookup = f"{self.prompt_path}__in" if self.prompt_path else "pk__in"
        return super().get_queryset(request).filter(**{lookup: visible})

    def has_view_permission(self, request, obj=None):
        user = request.user
        if not (user.is_active and user.is_staff):
            return False
        return obj is None or permissions.can(user, permissions.VIEW, self._prompt_of(obj))

    def has_view_history_permission(self, request, obj=None):
        # The historical model's permission alone would open any prompt's history.
        return super().has_view_history_permission(request, obj) and (
            obj is None or permissions.can(request.user, permissions.VIEW, self._prompt_of(obj))
        )

    def has_change_history_permission(self, request, obj=None):
        return False  # history is evidence: never reverted or edited


class ScopedInline(ReadOnlyMixin, admin.TabularInline):
    """A read-only table on a prompt's page, shown to whoever may see the prompt."""

    extra = 0
    related = ()
    template = READONLY_TABLE

    def get_queryset(self, request):
        return super().get_queryset(request).select_related(*self.related)

    def has_view_permission(self, request, obj=None):
        return obj is None or permissions.can(request.user, permissions.VIEW, obj)


def _version_ref(version) -> str:
    return f"v{version.number}" if version else "∅"


# --- prompts ----------------------------------------------------------------------------------------


class VersionInline(ScopedInline):
    model = PromptVersion
    fields = ("number", "status", "change_kind", "author", "short_hash", "submitted_at", "compare")
    readonly_fields = fields
    related = ("author",)
    show_change_link = True
    verbose_name_plural = "Versions"

    @admin.display(description="Hash")
    def short_hash(self, obj):
        return obj.content_hash[:12]

    @admin.display(description="Compare")
    def compare(self, obj):
        if not obj.parent_id:
            return "—"
        url = reverse("admin:prompts_promptversion_diff", args=[obj.pk])
        return format_html('<a href="{}">with its parent</a>', url)


class LabelInline(ScopedInline):
    model = Label
    fields = ("name", "version", "protected", "updated_at")
    readonly_fields = fields
    related = ("version__prompt",)
    verbose_name_plural = "Labels now"


class LabelMoveInline(ScopedInline):
    model = LabelMove
    fields = ("moved_at", "label", "from_ref", "to_ref", "moved_by", "reason")
    readonly_fields = fields
    related = ("from_version", "to_version", "moved_by")
    verbose_name_plural = "Label history (every move, newest first)"

    @admin.display(description="From")
    def from_ref(self, obj):
        return _version_ref(obj.from_version)

    @admin.display(description="To")
    def to_ref(self, obj):
        return _version_ref(obj.to_version)


class PromptConsumerInline(ScopedInline):
    model = Consumer
    fields = ("application", "label", "count", "first_seen", "last_seen")
    readonly_fields = fields
    related = ("application",)
    verbose_name_plural = "Consumers (applications that resolved this prompt)"


class SuccessorChoiceField(forms.ModelChoiceField):
    def label_from_instance(self, obj) -> str:
        return f"{obj.name} ({obj.slug})"


class DeprecateForm(forms.Form):
    reason = forms.CharField(widget=forms.Textarea(attrs={"rows": 3, "cols": 60}), max_length=5000)
    sunset_date = forms.DateField(
        required=False,
        widget=forms.DateInput(attrs={"type": "date"}, format="%Y-%m-%d"),
        help_text="Optional: the date by which consumers must have moved.",
    )
    successor = SuccessorChoiceField(
        queryset=Prompt.objects.none(),
        required=False,
        empty_label="None",
        help_text="Optional: the prompt consumers should move to.",
    )

    def __init__(self, data=None, *, successors):
        super().__init__(data)
        self.fields["successor"].queryset = successors


class RetireForm(DeprecateForm):
    """Retirement takes effect at once: no sunset date."""

    sunset_date = None


def _successor_form(form_class):
    def make(request, queryset, data):
        successors = (
            selectors.prompt_list_visible(request.user)
            .exclude(status=PromptStatus.RETIRED)
            .exclude(pk__in=[p.pk for p in queryset])
            .order_by("name")
        )
        return form_class(data, successors=successors)

    return make


@admin.register(Prompt)
class PromptAdmin(PromptScopedMixin, ReadOnlyMixin, SimpleHistoryAdmin):
    prompt_path = ""
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
    search_fields = ("name", "slug", "description", "business_function", "owner__username")
    list_select_related = ("charter", "owner")
    history_list_display = ("status", "status_reason")
    fieldsets = (
        (None, {"fields": ("name", "slug", "description", "charter", "owner")}),
        (
            "Classification",
            {
                "fields": (
                    "business_function",
                    "task_type",
                    "risk_level",
                    "model_family",
                    "policy_tags",
                    "tags",
                )
            },
        ),
        (
            "Lifecycle",
            {
                "fields": (
                    "status",
                    "status_reason",
                    "live_version",
                    "review_date",
                    "sunset_date",
                    "successor",
                    "retirement_condition",
                )
            },
        ),
        (
            "Catalog and lineage",
            {
                "fields": (
                    "is_starter",
                    "listed_in_catalog",
                    "forked_from",
                    "created_at",
                    "updated_at",
                )
            },
        ),
    )
    inlines = (VersionInline, LabelInline, LabelMoveInline, PromptConsumerInline)
    actions = [
        _form_action(
            "prompt_deprecate",
            "Deprecate",
            _successor_form(DeprecateForm),
            lambda request, prompt, data: services.prompt_deprecate(
                actor=request.user,
                prompt=prompt,
                reason=data["reason"],
                sunset_date=data["sunset_date"],
                successor=data["successor"],
            ),
            done="deprecated; the owners of consuming applications are notified",
            intro="Resolves keep working until it is retired; consumers are told to move.",
        ),
        _form_action(
            "prompt_retire",
            "Retire",
            _successor_form(RetireForm),
            # The same governed path as the web and the API: at once when no application
            # reads the prompt, else an approval request for the Accountable.
            _retire,
            done="done",
            intro="Retirement takes effect at once when no application reads the prompt; "
            "otherwise it opens an approval request, as on the web and in the API.",
        ),
    ]

    def get_queryset(self, request):
        return (
            super()
            .get_queryset(request)
            .select_related("charter", "owner", "successor", "forked_from__prompt")
            .prefetch_related(Prefetch("labels", queryset=Label.objects.select_related("version")))
        )

    def get_readonly_fields(self, request, obj=None):
        return [field for _, spec in self.fieldsets for field in spec["fields"]]

    @admin.display(description="Production")
    def live_version(self, obj):
        live = next(
            (label.version for label in obj.labels.all() if label.name == "production"), None
        )
        return f"v{live.number}" if live else "—"


# --- versions ---------------------------------------------------------------------------------------


class _DryRun(Exception):
    """Raised to roll back a service call made only to learn whether it would succeed."""


class DraftVersionForm(forms.ModelForm):
    """A draft's content; the service is asked first, so its refusals show beside the fields."""

    actor = None  # bound per request by PromptVersionAdmin.get_form

    class Meta:
        model = PromptVersion
        fields = list(services.VERSION_FIELDS)

    def changes(self) -> dict:
        data = {f: self.cleaned_data[f] for f in services.VERSION_FIELDS if f in self.cleaned_data}
        for name, empty in (("messages", []), ("variables", []), ("model_config", {})):
            if name in data and data[name] is None:
                data[name] = empty
        return data

    def clean(self):
        cleaned = super().clean()
        if self.errors:
            return cleaned
        # Validation lives in the service alone; ask it inside a savepoint that is rolled
        # back, and let save_model make the real call.
        try:
            with transaction.atomic():
                services.version_update(
                    actor=self.actor, version=self.instance, fields=self.changes()
                )
                raise _DryRun
        except _DryRun:
            pass
        except ValidationFailed as exc:
            self._add_service_errors(exc)
        except (ApplicationError, PermissionDenied, Http404) as exc:
            raise forms.ValidationError(_refusal(exc)) from None
        return cleaned

    def _add_service_errors(self, exc: ValidationFailed) -> None:
        kind = self.cleaned_data.get("template_kind")
        if not exc.errors:
            self.add_error(None, exc.message)
        for key, problems in exc.errors.items():
            field = re.split(r"[.\[]", key, maxsplit=1)[0]
            if field == "template":
                field = "text" if kind == "text" else "messages"
            if field not in self.fields:
                field = None
            for problem in problems:
                self.add_error(field, problem if key == field else f"{key}: {problem}")


class FindingInline(ReadOnlyMixin, admin.TabularInline):
    model = PolicyFinding
    fields = (
        "rule_code",
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
    show_change_link = True
    template = READONLY_TABLE

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("rule", "waived_by")

    def has_view_permission(self, request, obj=None):
        return obj is None or permissions.can(request.user, permissions.VIEW, obj.prompt)

    @admin.display(description="Rule")
    def rule_code(self, obj):
        return f"{obj.rule.code} {obj.rule.title}"


VERSION_HEADER = ("prompt", "number", "status", "author", "parent_ref", "content_hash", "compare")
VERSION_REVIEW = ("submitted_at", "decided_by", "decided_at", "decision_reason")


@admin.register(PromptVersion)
class PromptVersionAdmin(PromptScopedMixin, SimpleHistoryAdmin):
    form = DraftVersionForm
    list_display = (
        "prompt",
        "number",
        "status",
        "change_kind",
        "author",
        "short_hash",
        "submitted_at",
        "blocking",
        "findings_total",
    )
    list_display_links = ("prompt", "number")
    list_filter = ("status", "change_kind", "prompt__risk_level")
    search_fields = ("prompt__slug", "prompt__name", "content_hash", "release_notes")
    list_select_related = ("prompt", "author")
    history_list_display = ("status",)
    inlines = (FindingInline,)
    actions = [
        _only_with(
            permissions.REVIEW_PERM,
            "Only reviewers (compliance) may approve or reject versions.",
            service_action(
                "version_approve",
                "Approve",
                lambda request, version, reason: services.version_approve(
                    actor=request.user, version=version
                ),
                done="approved",
            ),
        ),
        _only_with(
            permissions.REVIEW_PERM,
            "Only reviewers (compliance) may approve or reject versions.",
            service_action(
                "version_reject",
                "Reject",
                lambda request, version, reason: services.version_reject(
                    actor=request.user, version=version, reason=reason
                ),
                needs_reason=True,
                done="rejected",
            ),
        ),
    ]

    def get_queryset(self, request):
        return (
            super()
            .get_queryset(request)
            .select_related("prompt__charter", "author", "parent", "decided_by")
            .annotate(
                blocking_count=Count(
                    "findings",
                    filter=Q(
                        findings__severity=Severity.BLOCKING, findings__waived_at__isnull=True
                    ),
                ),
                findings_count=Count("findings"),
            )
        )

    def _editable(self, request, obj) -> bool:
        return bool(
            obj is not None
            and obj.status == VersionStatus.DRAFT
            and permissions.can(request.user, permissions.AUTHOR, obj.prompt)
        )

    def has_add_permission(self, request):
        return False  # versions are written on the web pages and the API

    def has_delete_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        # Only drafts, only by their authors; a submitted version is immutable.
        return request.user.is_active and request.user.is_staff and self._editable(request, obj)

    def get_fieldsets(self, request, obj=None):
        if self._editable(request, obj):
            body = services.VERSION_FIELDS
        else:
            body = ("template_kind", "template", "variables_table", "model_config_display")
            body += ("change_kind", "release_notes")
        return (
            (None, {"fields": VERSION_HEADER}),
            ("Content", {"fields": body}),
            ("Review", {"fields": VERSION_REVIEW}),
        )

    def get_readonly_fields(self, request, obj=None):
        fields = [f for _, spec in self.get_fieldsets(request, obj) for f in spec["fields"]]
        if self._editable(request, obj):
            return [f for f in fields if f not in services.VERSION_FIELDS]
        return fields

    def get_inlines(self, request, obj):
        # Findings are recorded on submission: a draft has none.
        return () if obj is None or obj.is_draft else self.inlines

    def get_form(self, request, obj=None, change=False, **kwargs):
        form = super().get_form(request, obj, change=change, **kwargs)
        return type(form.__name__, (form,), {"actor": request.user})

    def save_model(self, request, obj, form, change):
        saved = services.version_update(actor=request.user, version=obj, fields=form.changes())
        obj.refresh_from_db()
        obj.content_hash = saved.content_hash

    def save_related(self, request, form, formsets, change):
        """The findings inline is read-only: nothing to write."""

    @admin.display(description="Hash")
    def short_hash(self, obj):
        return obj.content_hash[:12]

    @admin.display(description="Unwaived blocking", ordering="blocking_count")
    def blocking(self, obj):
        return obj.blocking_count

    @admin.display(description="Findings", ordering="findings_count")
    def findings_total(self, obj):
        return obj.findings_count

    @admin.display(description="Parent")
    def parent_ref(self, obj):
        return _version_ref(obj.parent)

    @admin.display(description="Compare")
    def compare(self, obj):
        url = reverse("admin:prompts_promptversion_diff", args=[obj.pk])
        others = [
            (label.name, label.version.number)
            for label in obj.prompt.labels.select_related("version")
            if label.version_id != obj.pk
        ]
        links = []
        if obj.parent is not None:
            links.append((url, obj.parent.number, f"with its parent v{obj.parent.number}"))
        links += [(url, number, f"with {name} (v{number})") for name, number in others]
        if not links:
            return "First version, nothing to compare with."
        return format_html_join(" · ", '<a href="{}?against={}">{}</a>', links)

    @admin.display(description="Template")
    def template(self, obj):
        if obj.template_kind == "text":
            return format_html("<pre>{}</pre>", obj.text)
        return format_html_join(
            "",
            "<p><strong>{}</strong></p><pre>{}</pre>",
            ((m.get("role", "?"), m.get("content", "")) for m in obj.messages),
        )

    @admin.display(description="Variables")
    def variables_table(self, obj):
        if not obj.variables:
            return "—"
        return format_html_join(
            mark_safe("<br>"),
            "<code>{}</code>{} — {}",
            (
                (
                    v.get("name"),
                    "" if v.get("required", True) else " (optional)",
                    v.get("description", ""),
                )
                for v in obj.variables
            ),
        )

    @admin.display(description="Model configuration")
    def model_config_display(self, obj):
        if not obj.model_config:
            return "—"
        return format_html_join(
            mark_safe("<br>"),
            "{}: <code>{}</code>",
            ((k, json.dumps(v, ensure_ascii=False)) for k, v in sorted(obj.model_config.items())),
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
        """This version side by side with another of the same prompt (its parent by default)."""
        version = get_object_or_404(self.get_queryset(request), pk=pk)
        if not self.has_view_permission(request, version):
            raise PermissionDenied
        siblings = list(version.prompt.versions.order_by("-number"))
        by_number = {v.number: v for v in siblings}
        against = request.GET.get("against", "")
        if against:
            if not against.isdigit() or int(against) not in by_number:
                raise Http404(f"{version.prompt.slug} has no version {against}.")
            other = by_number[int(against)]
        else:
            other = version.parent or version
        diff = content.diff(other, version)
        left_no = right_no = 0
        for row in diff["template"]:
            left_no += row["left"] is not None
            right_no += row["right"] is not None
            row["left_no"] = left_no if row["left"] is not None else ""
            row["right_no"] = right_no if row["right"] is not None else ""
        context = {
            **self.admin_site.each_context(request),
            "title": f"{version.prompt.slug}: v{other.number} → v{version.number}",
            "diff": diff,
            "opts": self.model._meta,
            "version": version,
            "other": other,
            "siblings": [v for v in siblings if v.pk != version.pk],
            "changed": sum(row["op"] != "equal" for row in diff["template"]),
        }
        return TemplateResponse(request, "admin/prompts/diff.html", context)


# --- findings -----------------------------------------------------------------------------------------


class WaivedFilter(admin.SimpleListFilter):
    title = "waived"
    parameter_name = "waived"

    def lookups(self, request, model_admin):
        return (
            ("no", "Not waived"),
            ("yes", "Waived"),
            ("blocking", "Blocking, not waived"),
        )

    def queryset(self, request, queryset):
        if self.value() == "yes":
            return queryset.filter(waived_at__isnull=False)
        if self.value() == "no":
            return queryset.filter(waived_at__isnull=True)
        if self.value() == "blocking":
            return queryset.filter(waived_at__isnull=True, severity=Severity.BLOCKING)
        return queryset


@admin.register(PolicyFinding)
class PolicyFindingAdmin(PromptScopedMixin, ReadOnlyMixin, SimpleHistoryAdmin):
    prompt_path = "version__prompt"
    list_display = (
        "rule",
        "version",
        "severity",
        "location",
        "excerpt",
        "waived_by",
        "waived_at",
    )
    list_filter = ("severity", WaivedFilter, "rule")
    search_fields = ("version__prompt__slug", "rule__code", "message", "excerpt")
    list_select_related = ("rule", "version__prompt", "waived_by")
    history_list_display = ("waived_by", "waiver_reason")
    fields = (
        "version",
        "rule",
        "severity",
        "message",
        "location",
        "span_start",
        "span_end",
        "excerpt",
        "created_at",
        "waived_by",
        "waived_at",
        "waiver_reason",
    )
    readonly_fields = fields
    actions = [
        _only_with(
            permissions.WAIVE_PERM,
            "Only compliance officers who may waive findings can do this; "
            "ask one to review the finding.",
            service_action(
                "finding_waive",
                "Waive",
                lambda request, finding, reason: services.finding_waive(
                    actor=request.user, finding=finding, reason=reason
                ),
                needs_reason=True,
                done="waived",
            ),
        )
    ]

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("rule", "version__prompt", "waived_by")


# --- rules --------------------------------------------------------------------------------------------


def _pattern_help() -> str:
    detectors = ", ".join([*policy.DETECTOR_GROUPS, *policy.DETECTORS])
    checks = ", ".join(policy.STRUCTURAL_CHECKS)
    return (
        "Pattern: a regular expression (matched case-insensitively). "
        f"Secret / personal data: a detector or group ({detectors}). "
        f"Structural: a check ({checks})."
    )


class PolicyRuleForm(forms.ModelForm):
    """A rule must run, must flag its true example and must not flag its false one."""

    risk_levels = forms.MultipleChoiceField(
        choices=RiskTier.choices,
        required=False,
        widget=forms.CheckboxSelectMultiple,
        help_text="None ticked: the rule applies to every risk level.",
    )

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

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if "pattern" in self.fields:
            self.fields["pattern"].help_text = _pattern_help()

    def clean(self):
        cleaned = super().clean()
        needed = ("kind", "pattern", "severity", "message")
        if any(name not in cleaned for name in needed):
            return cleaned  # a field error is already shown
        spec = policy.RuleSpec(
            cleaned.get("code") or self.instance.code or "NEW",
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
        # Try the examples at a risk level the rule covers, so a rule limited to high
        # risk is still exercised.
        risk = (spec.risk_levels or (RiskTier.CRITICAL,))[0]

        def flags(text: str) -> bool:
            return bool(policy.evaluate([spec], [("example", text)], risk_level=risk))

        if cleaned.get("example_true") and not flags(cleaned["example_true"]):
            self.add_error("example_true", "The rule does not flag this example.")
        if cleaned.get("example_false") and flags(cleaned["example_false"]):
            self.add_error("example_false", "The rule flags this example, which it must not.")
        return cleaned


@admin.register(PolicyRule)
class PolicyRuleAdmin(SimpleHistoryAdmin):
    form = PolicyRuleForm
    fields = PolicyRuleForm.Meta.fields
    list_display = ("code", "title", "kind", "severity", "enabled", "applies_to", "findings_total")
    list_filter = ("kind", "severity", "enabled")
    search_fields = ("code", "title", "pattern", "message")
    history_list_display = ("enabled", "severity")
    actions = ["enable_rules", "disable_rules"]

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(findings_count=Count("findings"))

    def get_readonly_fields(self, request, obj=None):
        # Findings and reports name rules by code: it stays what it was created as.
        return ("code",) if obj else ()

    def get_actions(self, request):
        actions = super().get_actions(request)
        # Rules with findings cannot be deleted (PROTECT); a bulk delete would only fail.
        actions.pop("delete_selected", None)
        return actions

    @admin.display(description="Risk levels")
    def applies_to(self, obj):
        return ", ".join(obj.risk_levels) or "all"

    @admin.display(description="Findings", ordering="findings_count")
    def findings_total(self, obj):
        return obj.findings_count

    def save_model(self, request, obj, form, change):
        reason = (
            f"Changed {', '.join(form.changed_data)} in the admin"
            if change
            else "Created in the admin"
        )
        save_with_history(obj, actor=request.user, reason=reason)

    def delete_view(self, request, object_id, extra_context=None):
        rule = self.get_object(request, object_id)
        if rule is not None and self.has_view_permission(request, rule) and rule.findings.exists():
            self.message_user(
                request,
                f"{rule.code} has {rule.findings.count()} findings on record and cannot be "
                "deleted; untick “enabled” to stop it running on new versions.",
                messages.WARNING,
            )
            return HttpResponseRedirect(reverse("admin:prompts_policyrule_change", args=[rule.pk]))
        return super().delete_view(request, object_id, extra_context)

    def _set_enabled(self, request, queryset, enabled: bool) -> None:
        verb = "Enabled" if enabled else "Disabled"
        for rule in queryset.filter(enabled=not enabled):
            rule.enabled = enabled
            save_with_history(
                rule, actor=request.user, reason=f"{verb} in the admin", update_fields=["enabled"]
            )
            self.message_user(request, f"{rule.code}: {verb.lower()}.", messages.SUCCESS)

    @admin.action(description="Enable selected rules", permissions=["change"])
    def enable_rules(self, request, queryset):
        self._set_enabled(request, queryset, True)

    @admin.action(
        description="Disable selected rules (keeps their findings)", permissions=["change"]
    )
    def disable_rules(self, request, queryset):
        self._set_enabled(request, queryset, False)


# --- labels, lineage, applications --------------------------------------------------------------------


@admin.register(Label)
class LabelAdmin(PromptScopedMixin, ReadOnlyMixin, SimpleHistoryAdmin):
    list_display = ("prompt", "name", "version", "protected", "updated_at")
    list_select_related = ("prompt", "version__prompt")
    list_filter = ("name", "protected")
    search_fields = ("prompt__slug", "name")
    history_list_display = ("version",)


@admin.register(LabelMove)
class LabelMoveAdmin(PromptScopedMixin, ReadOnlyMixin, admin.ModelAdmin):
    """Append-only: written by the label services, never edited or removed."""

    list_display = ("moved_at", "prompt", "label", "from_ref", "to_ref", "moved_by", "reason")
    list_select_related = ("prompt", "from_version", "to_version", "moved_by")
    list_filter = ("label",)
    search_fields = ("prompt__slug", "label", "reason")
    date_hierarchy = "moved_at"

    @admin.display(description="From")
    def from_ref(self, obj):
        return _version_ref(obj.from_version)

    @admin.display(description="To")
    def to_ref(self, obj):
        return _version_ref(obj.to_version)


class ApplicationConsumerInline(ReadOnlyMixin, admin.TabularInline):
    model = Consumer
    fields = ("prompt", "label", "count", "first_seen", "last_seen")
    readonly_fields = fields
    extra = 0
    template = READONLY_TABLE
    verbose_name_plural = "Prompts it resolves"

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("prompt")


@admin.register(Application)
class ApplicationAdmin(ReadOnlyMixin, SimpleHistoryAdmin):
    """Keys are issued and revoked by the owner through the API; shown here, never their secret."""

    list_display = ("name", "slug", "owner", "service_user", "prompts_read", "created_at")
    list_select_related = ("owner", "service_user")
    search_fields = ("name", "slug", "owner__username")
    fields = ("name", "slug", "description", "owner", "service_user", "created_at", "keys")
    readonly_fields = fields
    inlines = (ApplicationConsumerInline,)

    def get_queryset(self, request):
        return (
            super()
            .get_queryset(request)
            .annotate(prompt_count=Count("consumptions__prompt", distinct=True))
        )

    @admin.display(description="Prompts read", ordering="prompt_count")
    def prompts_read(self, obj):
        return obj.prompt_count

    @admin.display(description="API keys")
    def keys(self, obj):
        keys = obj.service_user.api_keys.order_by("-created")
        if not keys:
            return "—"
        now = timezone.now()
        return format_html_join(
            mark_safe("<br>"),
            "<code>{}…</code> {} — created {}, {}",
            (
                (
                    key.prefix,
                    key.name,
                    key.created.date(),
                    "revoked"
                    if key.revoked
                    else "expired"
                    if key.expiry_date and key.expiry_date < now
                    else f"last used {key.last_used_at.date() if key.last_used_at else 'never'}",
                )
                for key in keys
            ),
        )


@admin.register(Consumer)
class ConsumerAdmin(PromptScopedMixin, ReadOnlyMixin, admin.ModelAdmin):
    list_display = ("application", "prompt", "label", "count", "first_seen", "last_seen")
    list_select_related = ("application", "prompt")
    list_filter = ("label",)
    search_fields = ("application__name", "prompt__slug")
