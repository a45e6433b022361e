"""Prompt authors' pages: the catalog, a prompt, writing and checking versions, review,
labels and promotion, diffs, forks and retirement. Reads through selectors, writes
through services; every page works without JavaScript."""

from __future__ import annotations

import json
from functools import wraps

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.db.models import Prefetch
from django.http import Http404
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from apps.charters.models import Charter
from apps.charters.selectors import charter_list_authorable
from apps.core.errors import ApplicationError, ValidationFailed
from apps.core.web import GENERAL_FIELDS, form_add_errors, report_error

from . import content, permissions, rendering, selectors, services
from .choices import TaskType, TemplateKind, VersionStatus
from .forms import (
    DeprecateForm,
    ForkForm,
    MessageFormSet,
    PromptForm,
    ReasonForm,
    VariableFormSet,
    VersionForm,
)
from .models import Label, LabelMove, Prompt, PromptVersion

CATALOG_FILTERS = ("business_function", "task_type", "risk_level", "model_family", "tag")


def _denied_as_page(view):
    """PermissionDenied (seen but not allowed) becomes a 403 page with a way back."""

    @wraps(view)
    def wrapper(request, *args, **kwargs):
        try:
            return view(request, *args, **kwargs)
        except PermissionDenied as exc:
            slug = kwargs.get("slug")
            back = f"/prompts/{slug}/" if slug else "/prompts/"
            return render(
                request,
                "charters/denied.html",
                {"message": str(exc) or "You may not do that.", "back_url": back},
                status=403,
            )

    return wrapper


def _prompt_or_404(user, slug: str) -> Prompt:
    prompt = selectors.prompt_get(user=user, slug=slug)
    if prompt is None:
        raise Http404("No prompt matches the given query.")
    return prompt


def _version_or_404(prompt: Prompt, number: int) -> PromptVersion:
    version = selectors.version_list(prompt).filter(number=number).first()
    if version is None:
        raise Http404("No such version.")
    return version


def _authorable_charters(user):
    return charter_list_authorable(user, permissions.can_author_under)


def _report(request, exc: ApplicationError) -> None:
    report_error(request, exc, bare=GENERAL_FIELDS | {"gate", "reason"})


# --- catalog and prompt pages ---------------------------------------------------------------------


@login_required
def catalog(request):
    """Approved prompts everyone may reuse, plus the prompts I work on."""
    tab = "mine" if request.GET.get("tab") == "mine" else "catalog"
    q = request.GET.get("q", "").strip()
    filters = {name: request.GET.get(name, "").strip() for name in CATALOG_FILTERS}
    if tab == "mine":
        visible = (
            selectors.prompt_list_visible(request.user)
            .select_related("owner", "charter")
            .prefetch_related(Prefetch("labels", queryset=Label.objects.select_related("version")))
        )
        prompts = [
            p
            for p in visible.order_by("name")
            if permissions.can(request.user, permissions.AUTHOR, p)
        ]
    else:
        prompts = list(selectors.prompt_catalog(request.user, q=q, filters=filters))
    for prompt in prompts:
        prompt.live = next(
            (label.version for label in prompt.labels.all() if label.name == "production"), None
        )
        if tab == "catalog":
            prompt.consumer_names = sorted({c.application.name for c in prompt.consumers.all()})
    return render(
        request,
        "prompts/catalog.html",
        {
            "prompts": prompts,
            "tab": tab,
            "q": q,
            "filters": filters,
            "task_types": TaskType.choices,
            "can_create": bool(_authorable_charters(request.user).exists()),
        },
    )


def _prompt_fields(cleaned: dict, *, editing: bool) -> dict:
    fields = {k: v for k, v in cleaned.items() if k not in {"charter", "slug"} or not editing}
    if not editing and not fields.get("slug"):
        fields.pop("slug", None)
    return fields


@login_required
@_denied_as_page
def prompt_create(request):
    """Start a new prompt asset under one of my charters."""
    charters = _authorable_charters(request.user)
    if not charters.exists():
        raise PermissionDenied("You may not create prompts under any charter.")
    form = PromptForm(
        request.POST or None, charters=charters, initial={"charter": request.GET.get("charter")}
    )
    if request.method == "POST" and form.is_valid():
        try:
            prompt = services.prompt_create(
                actor=request.user, fields=_prompt_fields(form.cleaned_data, editing=False)
            )
        except ValidationFailed as exc:
            form_add_errors(form, exc)
        else:
            messages.success(request, "Prompt created. Write its first version.")
            return redirect("prompts:version_create", slug=prompt.slug)
    return render(request, "prompts/prompt_form.html", {"form": form, "prompt": None})


@login_required
@_denied_as_page
def prompt_edit(request, slug):
    """Edit a prompt's catalog metadata."""
    prompt = _prompt_or_404(request.user, slug)
    permissions.require(request.user, permissions.AUTHOR, prompt)
    initial = {f: getattr(prompt, f) for f in PromptForm.base_fields if hasattr(prompt, f)}
    form = PromptForm(
        request.POST or None,
        charters=Charter.objects.filter(pk=prompt.charter_id),
        editing=True,
        initial=initial,
    )
    if request.method == "POST" and form.is_valid():
        try:
            services.prompt_update(
                actor=request.user,
                prompt=prompt,
                fields=_prompt_fields(form.cleaned_data, editing=True),
            )
        except ApplicationError as exc:
            form_add_errors(form, exc)
        else:
            messages.success(request, "Saved.")
            return redirect(prompt)
    return render(request, "prompts/prompt_form.html", {"form": form, "prompt": prompt})


@login_required
def prompt_detail(request, slug):
    """A prompt: labels and their history, versions, consumers, lineage, lifecycle."""
    prompt = _prompt_or_404(request.user, slug)
    versions = list(selectors.version_list(prompt))
    labels = list(prompt.labels.select_related("version").order_by("name"))
    moves = LabelMove.objects.filter(prompt=prompt).select_related(
        "from_version", "to_version", "moved_by"
    )[:50]
    can_author = permissions.can(request.user, permissions.AUTHOR, prompt)
    return render(
        request,
        "prompts/detail.html",
        {
            "prompt": prompt,
            "versions": versions,
            "labels": labels,
            "moves": moves,
            "consumers": prompt.consumers.select_related("application__owner"),
            "can_author": can_author,
            "can_retire": permissions.can(request.user, permissions.RETIRE, prompt),
            "deprecate_form": DeprecateForm(),
            "retire_form": ReasonForm(),
            "fork_form": ForkForm(charters=_authorable_charters(request.user)),
            "forks": Prompt.objects.filter(forked_from__prompt=prompt).filter(
                pk__in=selectors.prompt_list_visible(request.user).values("pk")
            ),
        },
    )


@login_required
@require_POST
@_denied_as_page
def prompt_action(request, slug, action):
    """Deprecate, retire or fork a prompt."""
    prompt = _prompt_or_404(request.user, slug)
    try:
        if action == "deprecate":
            form = DeprecateForm(request.POST)
            if not form.is_valid():
                raise ValidationFailed(
                    "The deprecation is not valid.",
                    errors={k: list(v) for k, v in form.errors.items()},
                )
            successor = None
            if form.cleaned_data["successor"]:
                successor = selectors.prompt_get(
                    user=request.user, slug=form.cleaned_data["successor"]
                )
                if successor is None:
                    raise ValidationFailed(
                        "The deprecation is not valid.", errors={"successor": ["No such prompt."]}
                    )
            services.prompt_deprecate(
                actor=request.user,
                prompt=prompt,
                reason=form.cleaned_data["reason"],
                sunset_date=form.cleaned_data["sunset_date"],
                successor=successor,
            )
            messages.success(
                request, "Deprecated; the owners of consuming applications are notified."
            )
        elif action == "retire":
            from apps.approvals.services import retirement_request

            outcome = retirement_request(
                actor=request.user, prompt=prompt, reason=request.POST.get("reason", "")
            )
            if outcome.__class__.__name__ == "ApprovalRequest":
                messages.success(
                    request,
                    f"Applications read this prompt: retirement request #{outcome.pk} waits "
                    "for its approvers.",
                )
                return redirect(outcome)
            messages.success(request, "Retired; resolves now answer 410 Gone.")
        elif action == "fork":
            form = ForkForm(request.POST, charters=_authorable_charters(request.user))
            if not form.is_valid():
                raise ValidationFailed(
                    "The fork is not valid.", errors={k: list(v) for k, v in form.errors.items()}
                )
            number = request.POST.get("version")
            source = (
                _version_or_404(prompt, int(number))
                if number
                else (
                    next(
                        (
                            label.version
                            for label in prompt.labels.all()
                            if label.name == "production"
                        ),
                        None,
                    )
                    or prompt.versions.order_by("-number").first()
                )
            )
            if source is None:
                raise ValidationFailed("There is no version to start from.")
            fork = services.prompt_fork(
                actor=request.user,
                source=source,
                charter=form.cleaned_data["charter"],
                name=form.cleaned_data["name"],
            )
            messages.success(request, f"Started “{fork.name}” from {prompt.slug} v{source.number}.")
            return redirect(fork)
        else:
            raise Http404("Unknown action.")
    except ApplicationError as exc:
        _report(request, exc)
    return redirect(prompt)


# --- versions -------------------------------------------------------------------------------------


def _version_initial(version: PromptVersion | None):
    if version is None:
        return (
            {"template_kind": TemplateKind.CHAT, "model_config": "{}", "change_kind": "major"},
            [{"role": "system", "content": ""}, {"role": "user", "content": ""}],
            [],
        )
    return (
        {
            "template_kind": version.template_kind,
            "text": version.text,
            "model_config": json.dumps(version.model_config, indent=2),
            "release_notes": "" if version.status != VersionStatus.DRAFT else version.release_notes,
            "change_kind": version.change_kind,
        },
        [dict(m) for m in version.messages],
        [dict(v, required=v.get("required", True)) for v in version.variables],
    )


def _with_one_more(post, prefix: str):
    data = post.copy()
    data[f"{prefix}-TOTAL_FORMS"] = str(int(data.get(f"{prefix}-TOTAL_FORMS", 0)) + 1)
    return data


def _kept_rows(formset, keys):
    rows = []
    for form in formset.forms:
        if (
            not form.is_valid()
            or form.cleaned_data.get("DELETE")
            or not form.has_changed()
            and not form.initial
        ):
            continue
        row = {k: form.cleaned_data.get(k) for k in keys}
        if "name" in row and not (row["name"] or "").strip():
            continue
        if "content" in row and not (row["content"] or "").strip() and not form.initial:
            continue
        rows.append(row)
    return rows


def _content_from(form, message_set, variable_set) -> dict:
    variables = []
    for row in _kept_rows(variable_set, ("name", "description", "required", "example")):
        variables.append({k: v for k, v in row.items() if v not in (None, "") or k == "required"})
    fields = {
        "template_kind": form.cleaned_data["template_kind"],
        "text": form.cleaned_data.get("text", ""),
        "messages": _kept_rows(message_set, ("role", "content")),
        "variables": variables,
        "model_config": form.cleaned_data.get("model_config") or {},
        "release_notes": form.cleaned_data.get("release_notes", ""),
        "change_kind": form.cleaned_data["change_kind"],
    }
    return fields


def _check(fields: dict) -> tuple[dict, list[dict] | None, list[str]]:
    """Validation problems, and a preview rendered with the examples when there are none."""
    errors = content.validate(
        fields["template_kind"],
        fields["messages"],
        fields["text"],
        fields["variables"],
        fields["model_config"],
    )
    preview, problems = None, []
    if "template" not in errors:
        sources = content.sources(fields["template_kind"], fields["messages"], fields["text"])
        examples = {
            v["name"]: v.get("example", "")
            for v in fields["variables"]
            if v.get("example") or v.get("required", True)
        }
        try:
            rendered = rendering.render_many(sources, examples, declared=fields["variables"])
        except rendering.TemplateError as exc:
            problems = [p.as_text() for p in exc.problems]
        else:
            labels = (
                [f"{m['role']}" for m in fields["messages"]]
                if fields["template_kind"] == TemplateKind.CHAT
                else ["text"]
            )
            preview = [
                {"role": label, "content": text}
                for label, text in zip(labels, rendered, strict=True)
            ]
    return errors, preview, problems


@login_required
@_denied_as_page
def version_form(request, slug, number=None):
    """Write a new draft (pre-filled from the latest version) or edit a draft; check and preview."""
    prompt = _prompt_or_404(request.user, slug)
    permissions.require(request.user, permissions.AUTHOR, prompt)
    version = _version_or_404(prompt, number) if number else None
    if version is not None and version.status != VersionStatus.DRAFT:
        messages.error(
            request,
            f"Version {version.number} is {version.get_status_display().lower()} and immutable; write a new version instead.",
        )
        return redirect("prompts:version_detail", slug=slug, number=version.number)
    base = version or prompt.versions.order_by("-number").first()
    initial, message_rows, variable_rows = _version_initial(base)
    context = {
        "prompt": prompt,
        "version": version,
        "base": base,
        "check_errors": None,
        "preview": None,
    }
    if request.method == "POST":
        data = request.POST
        for prefix, button in (("messages", "add_message"), ("variables", "add_variable")):
            if button in data:
                data = _with_one_more(data, prefix)
        form, message_set, variable_set = (
            VersionForm(data),
            MessageFormSet(data, prefix="messages"),
            VariableFormSet(data, prefix="variables"),
        )
        adding = "add_message" in data or "add_variable" in data
        if form.is_valid() and message_set.is_valid() and variable_set.is_valid() and not adding:
            fields = _content_from(form, message_set, variable_set)
            if "check" in data:
                errors, preview, problems = _check(fields)
                context.update(check_errors=errors, preview=preview, preview_problems=problems)
            else:
                try:
                    if version is None:
                        saved = services.version_create(
                            actor=request.user, prompt=prompt, fields=fields
                        )
                    else:
                        saved = services.version_update(
                            actor=request.user, version=version, fields=fields
                        )
                except ApplicationError as exc:
                    context["service_errors"] = exc.errors or {"": [exc.message]}
                else:
                    messages.success(request, f"Draft v{saved.number} saved.")
                    return redirect("prompts:version_detail", slug=slug, number=saved.number)
    else:
        form = VersionForm(initial=initial)
        message_set = MessageFormSet(initial=message_rows, prefix="messages")
        variable_set = VariableFormSet(initial=variable_rows, prefix="variables")
    context.update(form=form, message_set=message_set, variable_set=variable_set)
    return render(request, "prompts/version_form.html", context)


@login_required
def version_detail(request, slug, number):
    """One version: content, findings, decision, and what can be done with it now."""
    prompt = _prompt_or_404(request.user, slug)
    version = _version_or_404(prompt, number)
    user = request.user
    can_author = permissions.can(user, permissions.AUTHOR, prompt)
    can_review = permissions.can(user, permissions.REVIEW, prompt) and version.author_id != user.pk
    gate = (
        services.promotion_gate(version, user) if version.status == VersionStatus.APPROVED else []
    )
    return render(
        request,
        "prompts/version_detail.html",
        {
            "prompt": prompt,
            "version": version,
            "findings": version.findings.all(),
            "labels_here": [
                label.name for label in prompt.labels.all() if label.version_id == version.pk
            ],
            "can_author": can_author,
            "can_review": can_review,
            "can_waive": permissions.can(user, permissions.WAIVE, prompt),
            "gate": gate,
            "others": [v.number for v in prompt.versions.all() if v.pk != version.pk],
        },
    )


@login_required
@require_POST
@_denied_as_page
def version_action(request, slug, number, action):
    """Submit, approve, reject, label, promote, or waive a finding of a version."""
    prompt = _prompt_or_404(request.user, slug)
    version = _version_or_404(prompt, number)
    reason = request.POST.get("reason", "")
    try:
        if action == "submit":
            version = services.version_submit(actor=request.user, version=version)
            count = version.findings.count()
            messages.success(
                request,
                f"Submitted for review with {count} policy finding{'s' if count != 1 else ''}.",
            )
        elif action == "approve":
            services.version_approve(actor=request.user, version=version, reason=reason)
            messages.success(request, f"v{version.number} approved.")
        elif action == "reject":
            services.version_reject(actor=request.user, version=version, reason=reason)
            messages.success(request, f"v{version.number} rejected.")
        elif action == "label":
            label = services.label_move(
                actor=request.user,
                version=version,
                label=request.POST.get("label", ""),
                reason=reason,
            )
            messages.success(request, f"{label.name} now points at v{version.number}.")
        elif action == "promote":
            from apps.approvals.services import promotion_request

            approval = promotion_request(actor=request.user, version=version, reason=reason)
            if approval.status == "executed":
                messages.success(
                    request, f"v{version.number} is live on production (fast-tracked)."
                )
            else:
                messages.success(
                    request,
                    f"Promotion requested: approval request #{approval.pk} waits for "
                    f"{approval.outcome or 'its approvers'}",
                )
            return redirect(approval)
        elif action == "waive":
            finding = version.findings.filter(pk=request.POST.get("finding")).first()
            if finding is None:
                raise Http404("No such finding.")
            services.finding_waive(actor=request.user, finding=finding, reason=reason)
            messages.success(request, f"{finding.rule.code} waived.")
        else:
            raise Http404("Unknown action.")
    except ApplicationError as exc:
        _report(request, exc)
    return redirect("prompts:version_detail", slug=slug, number=number)


@login_required
def diff(request, slug):
    """Two versions side by side: template lines, variables, model configuration."""
    prompt = _prompt_or_404(request.user, slug)
    numbers = list(prompt.versions.order_by("number").values_list("number", flat=True))
    if len(numbers) < 2:
        messages.info(request, "There is only one version; nothing to compare yet.")
        return redirect(prompt)
    try:
        a = int(request.GET.get("from", numbers[-2]))
        b = int(request.GET.get("to", numbers[-1]))
    except ValueError:
        raise Http404("Version numbers are whole numbers.") from None
    result = content.diff(_version_or_404(prompt, a), _version_or_404(prompt, b))
    return render(
        request,
        "prompts/diff.html",
        {"prompt": prompt, "diff": result, "numbers": numbers, "a": a, "b": b},
    )
