"""Compliance's view of evaluations: datasets, scorer models, suites with owned thresholds, runs.

Lists are restricted to what the signed-in person may see; every change goes through the
services (uploads, threshold changes, quantization, cancellation), so the admin behaves like
the web and the API and every change lands in history with its author and reason.
"""

from __future__ import annotations

import json

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.utils.html import format_html, format_html_join
from simple_history.admin import SimpleHistoryAdmin

from apps.approvals import services as approval_services
from apps.core import uploads
from apps.core.admin_actions import ServiceChangeFormMixin, service_action
from apps.core.history import ScopedHistoryMixin, save_with_history

from . import permissions, selectors, services
from .models import Dataset, DatasetVersion, ModelArtifact, Run, Suite, Threshold
from .services.runs import run_progress


class DatasetAdminForm(forms.ModelForm):
    upload = forms.FileField(
        required=False,
        help_text="JSONL or CSV: stored as a new version; one bad row keeps nothing.",
    )
    upload_notes = forms.CharField(required=False, max_length=500)

    class Meta:
        model = Dataset
        fields = ["name", "slug", "description", "charter", "prompt"]


class DatasetVersionInline(admin.TabularInline):
    model = DatasetVersion
    fields = [
        "number",
        "case_count",
        "segment_keys",
        "source_name",
        "sha256",
        "created_by",
        "created_at",
    ]
    readonly_fields = fields
    extra = 0
    can_delete = False
    show_change_link = False

    def has_add_permission(self, request, obj=None):
        return False


@admin.register(Dataset)
class DatasetAdmin(ScopedHistoryMixin, ServiceChangeFormMixin, SimpleHistoryAdmin):
    form = DatasetAdminForm
    list_display = ["name", "slug", "charter", "prompt", "owner", "updated_at"]
    search_fields = ["name", "slug", "description"]
    inlines = [DatasetVersionInline]

    def add_view(self, request, form_url="", extra_context=None):
        uploads.install(request, {"upload": services.datasets.max_bytes()})
        return super().add_view(request, form_url, extra_context)

    def change_view(self, request, object_id, form_url="", extra_context=None):
        uploads.install(request, {"upload": services.datasets.max_bytes()})
        return super().change_view(request, object_id, form_url, extra_context)

    # CsrfViewMiddleware would read the body before the size limit is in place;
    # changeform_view checks the token itself (csrf_protect_m), after it is.
    add_view.csrf_exempt = change_view.csrf_exempt = True

    def get_queryset(self, request):
        return selectors.dataset_list_visible(request.user).select_related(
            "charter", "prompt", "owner"
        )

    def get_readonly_fields(self, request, obj=None):
        return ["slug", "charter"] if obj else []

    def has_change_permission(self, request, obj=None):
        if obj is None:
            return super().has_change_permission(request) or request.user.has_perm(
                "evaluations.view_dataset"
            )
        return permissions.can(request.user, permissions.AUTHOR, obj)

    def has_add_permission(self, request):
        return request.user.is_superuser or request.user.has_perm("evaluations.add_dataset")

    def save_model(self, request, obj, form, change):
        uploads.raise_refusals(request)
        if not change:
            created = services.dataset_create(
                actor=request.user,
                name=form.cleaned_data["name"],
                slug=form.cleaned_data.get("slug") or "",
                description=form.cleaned_data.get("description") or "",
                charter=form.cleaned_data.get("charter"),
                prompt=form.cleaned_data.get("prompt"),
            )
            obj.pk = created.pk
            obj.refresh_from_db()
        else:
            save_with_history(obj, actor=request.user, reason="Edited in the admin")
        upload = form.cleaned_data.get("upload")
        if upload is not None:
            version = services.dataset_version_upload(
                actor=request.user,
                dataset=obj,
                stream=upload,
                filename=upload.name,
                notes=form.cleaned_data.get("upload_notes") or "",
            )
            messages.success(request, f"Version {version.number}: {version.case_count} cases.")


@admin.register(ModelArtifact)
class ModelArtifactAdmin(ScopedHistoryMixin, SimpleHistoryAdmin):
    list_display = [
        "name",
        "slug",
        "task",
        "status",
        "short_sha",
        "size_bytes",
        "is_default",
        "agreement_floor",
    ]
    list_filter = ["task", "status", "is_default"]
    search_fields = ["name", "slug", "sha256"]
    readonly_fields = [
        "slug",
        "task",
        "status",
        "sha256",
        "size_bytes",
        "tokenizer_sha256",
        "storage_dir",
        "validation_report",
        "validated_at",
        "quantized_from",
        "agreement",
        "dimension",
        "owner",
        "created_at",
    ]
    fields = [
        "name",
        "description",
        "charter",
        "source",
        "license",
        "max_seq_length",
        "pooling",
        "labels",
        "is_default",
        *readonly_fields,
    ]
    actions = [
        service_action(
            "quantize",
            "Derive int8 variant of",
            lambda request, obj, reason: services.artifact_quantize(
                actor=request.user, artifact=obj
            ),
            done="quantization queued",
        ),
        service_action(
            "retire",
            "Retire",
            lambda request, obj, reason: services.artifact_retire(
                actor=request.user, artifact=obj, reason=reason
            ),
            needs_reason=True,
            done="retired",
        ),
    ]

    def get_queryset(self, request):
        return selectors.artifact_list_visible(request.user).select_related(
            "charter", "owner", "quantized_from"
        )

    def has_add_permission(self, request):
        return False  # uploads stream through the web page, the API or the import command

    def has_change_permission(self, request, obj=None):
        if obj is None:
            return super().has_change_permission(request) or request.user.has_perm(
                "evaluations.view_modelartifact"
            )
        return permissions.can(request.user, permissions.AUTHOR, obj)

    @admin.display(description="sha256")
    def short_sha(self, obj):
        return obj.sha256[:12]

    @admin.display(description="agreement")
    def agreement_floor(self, obj):
        if not obj.agreement:
            return "—"
        return f"mean cos {obj.agreement.get('mean_cosine', 0):.4f} (floor {obj.agreement.get('floor', '—')})"

    @admin.display(description="validation")
    def validation_report(self, obj):
        problems = obj.validation.get("problems") or []
        if not problems:
            return "Loads in ONNX Runtime and fits its task." if obj.status == "valid" else "—"
        return format_html(
            "<ul>{}</ul>", format_html_join("", "<li>{}</li>", ((p,) for p in problems))
        )

    def save_model(self, request, obj, form, change):
        save_with_history(obj, actor=request.user, reason="Edited in the admin")


class ThresholdForm(forms.ModelForm):
    reason = forms.CharField(required=False, help_text="Why the bar changes (kept in history).")

    class Meta:
        model = Threshold
        fields = [
            "metric",
            "aggregate",
            "comparator",
            "value",
            "blocking",
            "min_cases",
            "segment_key",
            "rationale",
            "owner",
        ]


class ThresholdInline(admin.TabularInline):
    """Thresholds are edited by whoever may author the suite; saves go through the service."""

    model = Threshold
    form = ThresholdForm
    extra = 0

    def _may_author(self, request, obj):
        return obj is not None and permissions.can(request.user, permissions.AUTHOR, obj)

    def has_add_permission(self, request, obj=None):
        return self._may_author(request, obj)

    def has_change_permission(self, request, obj=None):
        return self._may_author(request, obj)

    def has_delete_permission(self, request, obj=None):
        return self._may_author(request, obj)

    def has_view_permission(self, request, obj=None):
        return obj is None or permissions.can(request.user, permissions.VIEW, obj)


@admin.register(Suite)
class SuiteAdmin(ScopedHistoryMixin, ServiceChangeFormMixin, SimpleHistoryAdmin):
    list_display = ["name", "slug", "charter", "prompt", "dataset_version", "owner"]
    search_fields = ["name", "slug"]
    readonly_fields = ["slug", "charter", "owner", "created_at", "updated_at"]
    fields = [
        "name",
        "slug",
        "description",
        "charter",
        "prompt",
        "dataset_version",
        "scorers",
        "regression_tolerance",
        "min_segment_cases",
        "owner",
        "created_at",
        "updated_at",
    ]
    inlines = [ThresholdInline]

    def get_queryset(self, request):
        return selectors.suite_list_visible(request.user).select_related(
            "charter", "prompt", "owner", "dataset_version__dataset"
        )

    def has_add_permission(self, request):
        return False  # suites are created on the web or the API, where scorers are chosen

    def has_change_permission(self, request, obj=None):
        if obj is None:
            return super().has_change_permission(request) or request.user.has_perm(
                "evaluations.view_suite"
            )
        return permissions.can(request.user, permissions.AUTHOR, obj)

    def save_model(self, request, obj, form, change):
        fields = {
            name: form.cleaned_data[name]
            for name in form.changed_data
            if name in services.suites.SUITE_FIELDS
        }
        if isinstance(fields.get("scorers"), str):
            fields["scorers"] = json.loads(fields["scorers"])
        if fields:
            outcome = approval_services.suite_change(
                actor=request.user, suite=obj, fields=fields, reason="Edited in the admin"
            )
            if not isinstance(outcome, Suite):
                messages.info(
                    request,
                    "What the gate tests changes once its threshold owners approve: "
                    f"approval request #{outcome.pk}.",
                )

    def save_formset(self, request, form, formset, change):
        suite = form.instance
        # The admin's change message reads what a formset saved; we save through the service.
        formset.new_objects, formset.changed_objects, formset.deleted_objects = [], [], []
        for inline_form in formset.forms:
            if not inline_form.has_changed() and inline_form.instance.pk:
                continue
            data = dict(inline_form.cleaned_data)
            threshold = data.pop("id", None)
            data.pop("suite", None)
            reason = data.pop("reason", "") or "Changed in the admin"
            if data.pop("DELETE", False):
                if threshold is not None:
                    opened = approval_services.threshold_remove(
                        actor=request.user, threshold=threshold, reason=reason
                    )
                    if opened is not None:
                        messages.info(
                            request,
                            f"{threshold} belongs to {threshold.owner}: removal requested "
                            f"(approval request #{opened.pk}).",
                        )
                continue
            if not data.get("metric"):
                continue
            if threshold is None:
                services.threshold_set(actor=request.user, suite=suite, fields=data, reason=reason)
                continue
            outcome = approval_services.threshold_change(
                actor=request.user, threshold=threshold, fields=data, reason=reason
            )
            if not isinstance(outcome, Threshold):
                messages.info(
                    request,
                    f"{threshold} belongs to {threshold.owner}: change requested "
                    f"(approval request #{outcome.pk}).",
                )


@admin.register(Run)
class RunAdmin(admin.ModelAdmin):
    list_display = [
        "id",
        "suite",
        "subject_display",
        "output_source",
        "status",
        "verdict",
        "progress_display",
        "created_by",
        "created_at",
    ]
    list_filter = ["status", "verdict", "output_source"]
    search_fields = ["suite__slug", "prompt_version__prompt__slug", "content_hash"]
    readonly_fields = [f.name for f in Run._meta.fields] + ["progress_display", "gate_display"]
    actions = [
        service_action(
            "cancel",
            "Cancel",
            lambda request, obj, reason: services.run_cancel(
                actor=request.user, run=obj, reason=reason
            ),
            needs_reason=True,
            done="cancelled",
        )
    ]

    def get_queryset(self, request):
        return selectors.run_list_visible(request.user).select_related(
            "suite", "prompt_version__prompt", "model_under_test", "created_by"
        )

    def has_add_permission(self, request):
        return False

    def has_delete_permission(self, request, obj=None):
        return False  # runs are evidence

    def has_change_permission(self, request, obj=None):
        return False

    def has_view_permission(self, request, obj=None):
        if obj is None:
            return True
        return permissions.can(request.user, permissions.VIEW, obj)

    @admin.display(description="subject")
    def subject_display(self, obj):
        return obj.subject

    @admin.display(description="progress")
    def progress_display(self, obj):
        p = run_progress(obj)
        rate = f" · {p['cases_per_second']} cases/s" if p["cases_per_second"] else ""
        eta = f" · ETA {p['eta_seconds']} s" if p["eta_seconds"] is not None else ""
        return f"{p['done']}/{p['total']} ({p['percent']}%){rate}{eta}"

    @admin.display(description="gate")
    def gate_display(self, obj):
        if not obj.gate:
            return "—"
        return format_html(
            "<ul>{}</ul>",
            format_html_join(
                "",
                "<li><strong>{}</strong> {}</li>",
                ((g["status"], g["reason"]) for g in obj.gate),
            ),
        )

    def changelist_view(self, request, extra_context=None):
        if not request.user.is_active:
            raise PermissionDenied
        return super().changelist_view(request, extra_context)
