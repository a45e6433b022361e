"""Web pages of the evaluations app: datasets, scorer models, suites and run reports."""

from __future__ import annotations

import json
from types import SimpleNamespace

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.http import Http404, StreamingHttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from apps.approvals import services as approval_services
from apps.charters.selectors import charter_list_authorable
from apps.core import uploads
from apps.core.errors import ApplicationError
from apps.core.web import form_add_errors, report_error
from apps.prompts import selectors as prompt_selectors
from apps.prompts.models import PromptVersion

from . import permissions, selectors, services
from .choices import ACTIVE_RUN_STATUSES, ArtifactStatus, ArtifactTask
from .forms import ArtifactForm, DatasetForm, RunForm, SuiteForm, ThresholdForm, UploadForm
from .models import DatasetVersion, Suite, Threshold
from .scoring.stats import compare
from .services.runs import outputs_from_jsonl, run_progress
from .services.suites import suite_metrics


def _charter_qs(user):
    return charter_list_authorable(user, permissions.can_author_under)


@login_required
def index(request):
    """Suites and recent runs the user may see."""
    suites = (
        selectors.suite_list_visible(request.user)
        .select_related("charter", "prompt", "dataset_version__dataset")
        .order_by("name")
    )
    runs = (
        selectors.run_list_visible(request.user)
        .select_related("suite", "prompt_version__prompt", "model_under_test", "created_by")
        .order_by("-created_at")[:25]
    )
    return render(
        request,
        "evaluations/index.html",
        {
            "suites": suites,
            "runs": runs,
            "can_create": _charter_qs(request.user).exists(),
        },
    )


# --- datasets ------------------------------------------------------------------------------


@login_required
def dataset_list(request):
    datasets = (
        selectors.dataset_list_visible(request.user)
        .select_related("charter", "prompt", "owner")
        .prefetch_related("versions")
        .order_by("name")
    )
    return render(request, "evaluations/dataset_list.html", {"datasets": datasets})


@login_required
def dataset_create(request):
    charters = _charter_qs(request.user)
    if not charters.exists():
        raise PermissionDenied("You may not create datasets under any charter.")
    prompts = prompt_selectors.prompt_list_visible(request.user).filter(charter__in=charters)
    form = DatasetForm(request.POST or None, charters=charters, prompts=prompts)
    if request.method == "POST" and form.is_valid():
        try:
            dataset = services.dataset_create(actor=request.user, **form.cleaned_data)
        except ApplicationError as exc:
            form_add_errors(form, exc)
        else:
            messages.success(request, "Dataset created. Upload its first version.")
            return redirect(dataset)
    return render(
        request, "evaluations/form.html", {"form": form, "title": "New dataset", "multipart": False}
    )


def _dataset_or_404(user, slug):
    dataset = (
        selectors.dataset_list_visible(user)
        .select_related("charter", "prompt", "owner")
        .filter(slug=slug)
        .first()
    )
    if dataset is None:
        raise Http404("No such dataset.")
    return dataset


@login_required
@uploads.limit_uploads(lambda: {"file": services.datasets.max_bytes()})
def dataset_detail(request, slug):
    dataset = _dataset_or_404(request.user, slug)
    can_author = permissions.can(request.user, permissions.AUTHOR, dataset)
    form = UploadForm()
    if request.method == "POST":
        if not can_author:
            raise PermissionDenied("You may not change this dataset.")
        form = UploadForm(request.POST, request.FILES)
        if not uploads.form_refusals(form, request) and form.is_valid():
            upload = form.cleaned_data["file"]
            try:
                version = services.dataset_version_upload(
                    actor=request.user,
                    dataset=dataset,
                    stream=upload,
                    filename=upload.name,
                    notes=form.cleaned_data["notes"],
                )
            except ApplicationError as exc:
                form_add_errors(form, exc)
            else:
                messages.success(
                    request, f"Version {version.number} stored: {version.case_count} cases."
                )
                return redirect(dataset)
    versions = dataset.versions.select_related("created_by").order_by("-number")
    return render(
        request,
        "evaluations/dataset_detail.html",
        {"dataset": dataset, "versions": versions, "form": form, "can_author": can_author},
    )


@login_required
def dataset_version(request, slug, number):
    dataset = _dataset_or_404(request.user, slug)
    version = get_object_or_404(DatasetVersion, dataset=dataset, number=number)
    page = Paginator(version.cases.order_by("position"), 50).get_page(request.GET.get("page"))
    return render(
        request,
        "evaluations/dataset_version.html",
        {"dataset": dataset, "version": version, "page": page},
    )


@login_required
def dataset_export(request, slug, number):
    dataset = _dataset_or_404(request.user, slug)
    version = get_object_or_404(DatasetVersion, dataset=dataset, number=number)
    response = StreamingHttpResponse(
        services.dataset_version_export(version), content_type="application/x-ndjson"
    )
    response["Content-Disposition"] = (
        f'attachment; filename="{dataset.slug}-v{version.number}.jsonl"'
    )
    return response


# --- artifacts -----------------------------------------------------------------------------


@login_required
@uploads.limit_uploads(services.artifacts.upload_limits)
def artifact_list(request):
    artifacts = (
        selectors.artifact_list_visible(request.user)
        .select_related("charter", "quantized_from")
        .order_by("name")
    )
    charters = _charter_qs(request.user)
    can_upload = charters.exists() or permissions.can_author_under(request.user, None)
    form = ArtifactForm(charters=charters)
    if request.method == "POST":
        if not can_upload:
            raise PermissionDenied("You may not upload models.")
        form = ArtifactForm(request.POST, request.FILES, charters=charters)
        if not uploads.form_refusals(form, request) and form.is_valid():
            try:
                artifact = services.artifact_upload(actor=request.user, **form.cleaned_data)
            except ApplicationError as exc:
                form_add_errors(form, exc)
            else:
                messages.success(request, "Uploaded; a worker is validating it now.")
                return redirect(artifact)
    return render(
        request,
        "evaluations/artifact_list.html",
        {"artifacts": artifacts, "form": form, "can_upload": can_upload},
    )


@login_required
def artifact_detail(request, slug):
    artifact = selectors.artifact_list_visible(request.user).filter(slug=slug).first()
    if artifact is None:
        raise Http404("No such model artifact.")
    if request.method == "POST":
        try:
            if request.POST.get("action") == "quantize":
                services.artifact_quantize(actor=request.user, artifact=artifact)
                messages.success(
                    request,
                    "Quantization queued; the int8 variant appears once its agreement is measured.",
                )
            elif request.POST.get("action") == "retire":
                services.artifact_retire(
                    actor=request.user, artifact=artifact, reason=request.POST.get("reason", "")
                )
                messages.success(request, "Retired.")
            else:
                raise Http404("Unknown action.")
        except ApplicationError as exc:
            report_error(request, exc, limit=20)
        return redirect(artifact)
    return render(
        request,
        "evaluations/artifact_detail.html",
        {
            "artifact": artifact,
            "derived": artifact.quantized.all(),
            "can_author": permissions.can(request.user, permissions.AUTHOR, artifact),
            "can_quantize": artifact.status == ArtifactStatus.VALID
            and artifact.task == ArtifactTask.SENTENCE_EMBEDDING
            and not artifact.quantized_from_id,
            "is_pending": artifact.status == ArtifactStatus.PENDING,
        },
    )


# --- suites --------------------------------------------------------------------------------


def _suite_or_404(user, slug):
    suite = (
        selectors.suite_list_visible(user)
        .select_related("charter", "prompt", "owner", "dataset_version__dataset")
        .filter(slug=slug)
        .first()
    )
    if suite is None:
        raise Http404("No such suite.")
    return suite


def _suite_form_choices(user):
    charters = _charter_qs(user)
    prompts = prompt_selectors.prompt_list_visible(user).filter(charter__in=charters)
    datasets = selectors.dataset_list_visible(user)
    versions = (
        DatasetVersion.objects.filter(dataset__in=datasets)
        .select_related("dataset")
        .order_by("dataset__name", "-number")
    )
    return {"charters": charters, "prompts": prompts, "versions": versions}


@login_required
def suite_create(request):
    choices = _suite_form_choices(request.user)
    if not choices["charters"].exists():
        raise PermissionDenied("You may not create suites under any charter.")
    form = SuiteForm(request.POST or None, **choices)
    if request.method == "POST" and form.is_valid():
        fields = dict(form.cleaned_data)
        charter, slug = fields.pop("charter"), fields.pop("slug")
        try:
            suite = services.suite_create(
                actor=request.user, charter=charter, slug=slug, fields=fields
            )
        except ApplicationError as exc:
            form_add_errors(form, exc)
        else:
            messages.success(request, "Suite created. Add its thresholds.")
            return redirect(suite)
    return render(
        request, "evaluations/form.html", {"form": form, "title": "New suite", "multipart": False}
    )


@login_required
def suite_edit(request, slug):
    suite = _suite_or_404(request.user, slug)
    permissions.require(request.user, permissions.AUTHOR, suite)
    choices = _suite_form_choices(request.user)
    initial = {
        "name": suite.name,
        "description": suite.description,
        "prompt": suite.prompt,
        "dataset_version": suite.dataset_version,
        "scorers": json.dumps(suite.scorers, indent=2),
        "regression_tolerance": suite.regression_tolerance,
        "min_segment_cases": suite.min_segment_cases,
    }
    form = SuiteForm(request.POST or None, initial=initial, editing=True, **choices)
    if request.method == "POST" and form.is_valid():
        try:
            outcome = approval_services.suite_change(
                actor=request.user, suite=suite, fields=form.cleaned_data
            )
        except ApplicationError as exc:
            form_add_errors(form, exc)
        else:
            if isinstance(outcome, Suite):
                messages.success(request, "Suite saved.")
            else:
                messages.info(
                    request,
                    "Saved what you may change at once; what the gate tests changes once its "
                    f"threshold owners approve (approval request #{outcome.pk}).",
                )
            return redirect(suite)
    return render(
        request,
        "evaluations/form.html",
        {"form": form, "title": f"Edit {suite.name}", "multipart": False},
    )


@login_required
def suite_detail(request, slug):
    suite = _suite_or_404(request.user, slug)
    can_author = permissions.can(request.user, permissions.AUTHOR, suite)
    can_run = permissions.can(request.user, permissions.RUN, suite)
    metrics = sorted(suite_metrics(suite.scorers))
    threshold_form = ThresholdForm(metrics=metrics)
    versions = PromptVersion.objects.filter(
        prompt__in=prompt_selectors.prompt_list_visible(request.user)
    ).select_related("prompt")
    if suite.prompt_id:
        versions = versions.filter(prompt_id=suite.prompt_id)
    models = selectors.artifact_list_visible(request.user).filter(
        status=ArtifactStatus.VALID, task=ArtifactTask.SEQUENCE_CLASSIFICATION
    )
    run_form = RunForm(versions=versions.order_by("prompt__slug", "-number"), models=models)
    if request.method == "POST":
        action = request.POST.get("action")
        needed = permissions.RUN if action == "run" else permissions.AUTHOR
        permissions.require(request.user, needed, suite)
        try:
            if action == "threshold":
                threshold_form = ThresholdForm(request.POST, metrics=metrics)
                if threshold_form.is_valid():
                    services.threshold_set(
                        actor=request.user, suite=suite, fields=threshold_form.cleaned_data
                    )
                    messages.success(request, "Threshold added.")
                    return redirect(suite)
            elif action == "threshold-delete":
                threshold = get_object_or_404(
                    Threshold, pk=request.POST.get("threshold"), suite=suite
                )
                opened = approval_services.threshold_remove(
                    actor=request.user, threshold=threshold, reason=request.POST.get("reason", "")
                )
                if opened is None:
                    messages.success(request, "Threshold removed.")
                else:
                    messages.info(
                        request,
                        f"The threshold belongs to {threshold.owner}: removal requested "
                        f"(approval request #{opened.pk}).",
                    )
                return redirect(suite)
            elif action == "run":
                run_form = RunForm(request.POST, request.FILES, versions=versions, models=models)
                if run_form.is_valid():
                    run = _start_run(request, suite, run_form.cleaned_data)
                    messages.success(request, f"Run #{run.pk} started.")
                    return redirect(run)
            else:
                raise Http404("Unknown action.")
        except ApplicationError as exc:
            target = threshold_form if action == "threshold" else run_form
            form_add_errors(target, exc)
    runs = suite.runs.select_related(
        "prompt_version__prompt", "model_under_test", "created_by"
    ).order_by("-created_at")[:20]
    return render(
        request,
        "evaluations/suite_detail.html",
        {
            "suite": suite,
            "thresholds": suite.thresholds.select_related("owner"),
            "runs": runs,
            "can_author": can_author,
            "can_run": can_run,
            "threshold_form": threshold_form,
            "run_form": run_form,
            "history": suite.history.select_related("history_user").order_by("-history_date")[:10],
            "threshold_history": Threshold.history.filter(suite_id=suite.pk)
            .select_related("history_user")
            .order_by("-history_date")[:20],
        },
    )


def _start_run(request, suite, data):
    from django.db import transaction

    endpoint = None
    if data["output_source"] == "generated":
        chosen = data["endpoint"]
        endpoint = {"slug": chosen.slug if chosen else "", "model": data["model"]}
    with transaction.atomic():
        run = services.run_start(
            actor=request.user,
            suite=suite,
            prompt_version=data["prompt_version"],
            model_under_test=data["model_under_test"],
            output_source=data["output_source"],
            endpoint=endpoint,
            input_variable=data["input_variable"],
            note=data["note"],
        )
        upload = data.get("outputs_file")
        if upload is not None and data["output_source"] == "posted":
            services.run_outputs_post(
                actor=request.user, run=run, items=outputs_from_jsonl(upload), complete=True
            )
    return run


# --- runs ----------------------------------------------------------------------------------


def _run_or_404(user, pk):
    run = (
        selectors.run_list_visible(user)
        .select_related(
            "suite",
            "prompt_version__prompt",
            "model_under_test",
            "created_by",
            "baseline__prompt_version",
            "dataset_version__dataset",
        )
        .filter(pk=pk)
        .first()
    )
    if run is None:
        raise Http404("No such run.")
    return run


def _bars(histogram):
    if not histogram:
        return []
    counts, edges = histogram["counts"], histogram["edges"]
    top = max(counts) or 1
    return [
        {"height": round(100 * c / top, 1), "count": c, "low": edges[i], "high": edges[i + 1]}
        for i, c in enumerate(counts)
    ]


def _segment_rows(run, thresholds):
    """Rows of the segment table: key, value, per-metric cells, flagged when failing."""
    summary = run.summary
    regressed = {
        (r["metric"], r["key"], str(r["value"]))
        for r in run.comparison.get("regressed_segments", [])
    }
    metrics = list(summary.get("overall", {}))
    rows = []
    for key in summary.get("segment_keys", []):
        values = sorted(
            {value for m in metrics for value in summary["segments"].get(m, {}).get(key, {})}
        )
        for value in values:
            cells, failing = [], False
            for metric in metrics:
                cell = summary["segments"][metric].get(key, {}).get(value)
                if cell is None:
                    cells.append(None)
                    continue
                bad = (metric, key, value) in regressed
                reasons = ["regressed vs baseline"] if bad else []
                enough = (cell.get("count") or 0) >= run.suite.min_segment_cases
                for t in thresholds:
                    if t.metric != metric or not enough:
                        continue
                    aggregate = "mean" if t.aggregate == "worst_segment" else t.aggregate
                    observed = cell.get(aggregate)
                    if observed is not None and not compare(observed, t.comparator, t.value):
                        bad = True
                        reasons.append(f"{aggregate} {t.comparator} {t.value:g} not met")
                failing = failing or bad
                cells.append({**cell, "bad": bad, "reasons": reasons, "enough": enough})
            rows.append({"key": key, "value": value, "cells": cells, "failing": failing})
    return metrics, rows


# What the run page says in place of a case field its reader may not see.
HIDDEN_NOTE = "Hidden: you may not view this run's dataset."


def _worst_cases(user, run):
    """The worst cases in the shape the run page reads, as `user` may see them."""
    rows = []
    for view in selectors.run_worst_cases(user, run):
        case = SimpleNamespace(
            external_id=view.case_id,
            segments=view.segments,
            expected=HIDDEN_NOTE if view.hidden else view.expected,
            contexts=[HIDDEN_NOTE] if view.hidden else view.contexts,
        )
        result = SimpleNamespace(case=case, metrics=view.metrics, error=view.error)
        rows.append({"result": result, "output": view.output})
    return rows


@login_required
def run_detail(request, pk):
    run = _run_or_404(request.user, pk)
    shown = selectors.run_summary_for(request.user, run)
    thresholds = list(run.suite.thresholds.all())
    metrics, segment_rows = _segment_rows(run, thresholds) if run.summary else ([], [])
    overall = [
        {
            "name": name,
            "summary": summary,
            "bars": _bars(run.summary.get("histograms", {}).get(name)),
            "direction": run.summary.get("directions", {}).get(name, "higher"),
            "delta": run.comparison.get("metrics", {}).get(name),
        }
        for name, summary in run.summary.get("overall", {}).items()
    ]
    return render(
        request,
        "evaluations/run_detail.html",
        {
            "run": run,
            "active": run.status in ACTIVE_RUN_STATUSES,
            "progress": run_progress(run),
            "overall": overall,
            "metrics": metrics,
            "segment_rows": segment_rows,
            "worst": _worst_cases(request.user, run) if run.summary else [],
            "labels": shown.get("labels"),
            "can_run": permissions.can(request.user, permissions.RUN, run),
        },
    )


@login_required
@require_POST
def run_cancel(request, pk):
    run = _run_or_404(request.user, pk)
    try:
        services.run_cancel(actor=request.user, run=run, reason=request.POST.get("reason", ""))
        messages.success(request, "Run cancelled.")
    except ApplicationError as exc:
        report_error(request, exc, limit=20)
    return redirect(run)
