"""Business owners' pages: list, create and edit, the one-page charter, transitions, sharing.

Views read through selectors, write through services and only translate between
HTTP and those calls; every page works without JavaScript.
"""

from __future__ import annotations

import re
from contextlib import suppress
from decimal import Decimal
from functools import wraps

from django.contrib import messages
from django.contrib.auth import get_user_model
from django.contrib.auth.decorators import login_required
from django.core.exceptions import FieldDoesNotExist, PermissionDenied
from django.core.paginator import Paginator
from django.forms.utils import ErrorDict
from django.http import Http404
from django.shortcuts import redirect, render
from django.urls import NoReverseMatch, reverse
from django.views.decorators.http import require_POST

from apps.approvals import services as approval_services
from apps.core.errors import InvalidTransition, ValidationFailed
from apps.core.models import AuditEvent

from . import permissions, selectors, services
from .choices import MetricLayer
from .forms import CharterForm, DependencyFormSet, MetricFormSet, ShareForm, UnshareForm
from .models import Charter, Dependency, Metric

PAGE_SIZE = 50
ROW_FORMSETS = {"metrics": "add_metric", "dependencies": "add_dependency"}
# "metrics[0].name" (a row of the submitted list) or "metrics[Handle time].target_value" (by name).
ROW_KEY = re.compile(r"^(?P<label>metrics|dependencies)\[(?P<ref>[^\]]*)\]\.?(?P<field>.*)$")
# The sections of the readiness checklist, in the order the form asks for them.
READINESS_SECTIONS = (
    "title",
    "problem",
    "process",
    "proof",
    "target_users",
    "intended_use",
    "retirement_condition",
    "review_date",
    "metrics",
    "dependencies",
)


# --- helpers ----------------------------------------------------------------------------------


def _denied_as_page(view):
    """Render PermissionDenied (seen but not allowed) as a friendly 403 page with a way back."""

    @wraps(view)
    def wrapper(request, *args, **kwargs):
        try:
            return view(request, *args, **kwargs)
        except PermissionDenied as exc:
            slug = kwargs.get("slug")
            back = reverse("charters:detail", kwargs={"slug": slug}) if slug else None
            context = {"message": str(exc) or "You may not do that.", "back_url": back}
            return render(request, "charters/denied.html", context, status=403)

    return wrapper


def _visible_or_404(user, slug: str, *, detail: bool = True) -> Charter:
    if detail:
        charter = selectors.charter_get_detail(user=user, slug=slug)
    else:  # commands need the row, not its metrics and dependencies
        charter = selectors.charter_list_visible(user).filter(slug=slug).first()
    if charter is None:
        raise Http404("No charter matches the given query.")
    return charter


def _verbose(model, field: str) -> str:
    try:
        return str(model._meta.get_field(field).verbose_name)
    except FieldDoesNotExist:
        return field.replace("_", " ")


def describe_error_key(key: str) -> str:
    """A reader's name for a service error key: "Metric “Handle time”: target value"."""
    match = ROW_KEY.match(key)
    if match:
        label, ref, field = match.group("label", "ref", "field")
        model, noun = (Metric, "Metric") if label == "metrics" else (Dependency, "Dependency")
        which = f"#{int(ref) + 1}" if ref.isdigit() else f"“{ref}”"
        detail = f": {_verbose(model, field)}" if field and field != "non_field_errors" else ""
        return f"{noun} {which}{detail}"
    if key in ("metrics", "dependencies"):
        return key.capitalize()
    if key in ("non_field_errors", "__all__", ""):
        return "Charter"
    return _verbose(Charter, key).capitalize()


def _number(value: Decimal | None) -> str:
    """12.5000 → "12.5", 10.0000 → "10" (no exponent)."""
    if value is None:
        return ""
    return format(value.normalize(), "f")


# --- list -------------------------------------------------------------------------------------


@login_required
def charter_list(request):
    """The user's own and shared charters; people who see the whole portfolio can widen it."""
    can_see_all = permissions.can_view_all(request.user)
    scope = "all" if can_see_all and request.GET.get("scope") == "all" else "mine"
    if scope == "all":
        charters = selectors.charter_list_for_table(request.user)
    else:
        charters = selectors.charter_list_owned(request.user)
    page = Paginator(charters, PAGE_SIZE).get_page(request.GET.get("page"))
    return render(
        request,
        "charters/list.html",
        {
            "page": page,
            "charters": page.object_list,
            "scope": scope,
            "can_see_all": can_see_all,
            "can_create": permissions.can_create(request.user),
        },
    )


# --- create and edit --------------------------------------------------------------------------


def _initial_forms(user, charter: Charter | None):
    if charter is None:
        form = CharterForm(initial={"business_owner": user.pk})
        metric_formset = MetricFormSet(prefix="metrics")
        # A new charter needs one primary and two supporting metrics: offer three rows.
        metric_formset.extra = 3
        return form, metric_formset, DependencyFormSet(prefix="dependencies")
    fields = {
        name: getattr(charter, name) for name in CharterForm.base_fields if name != "business_owner"
    }
    fields["business_owner"] = charter.business_owner_id
    metrics = [
        {
            "id": m.pk,
            "name": m.name,
            "description": m.description,
            "layer": m.layer,
            "role": m.role,
            "unit": m.unit,
            "direction": m.direction,
            "baseline_value": _number(m.baseline_value),
            "target_value": _number(m.target_value),
            "guardrail_value": _number(m.guardrail_value),
            "allowed_segment_keys": ", ".join(m.allowed_segment_keys or []),
        }
        for m in charter.metrics.all()
    ]
    dependencies = [
        {
            "id": d.pk,
            "kind": d.kind,
            "name": d.name,
            "criticality": d.criticality,
            "notes": d.notes,
            "endpoint": d.endpoint.slug if d.endpoint_id else None,
        }
        for d in charter.dependencies.select_related("endpoint")
    ]
    return (
        CharterForm(initial=fields),
        MetricFormSet(prefix="metrics", initial=metrics),
        DependencyFormSet(prefix="dependencies", initial=dependencies),
    )


def _row_to_add(post) -> str | None:
    for prefix, button in ROW_FORMSETS.items():
        if button in post:
            return prefix
    return None


def _with_one_more_row(post, prefix: str):
    data = post.copy()
    key = f"{prefix}-TOTAL_FORMS"
    # A broken management form is left as is: the formset reports it.
    with suppress(ValueError):
        data[key] = str(int(data.get(key, "0")) + 1)
    return data


def _silence(form, *formsets) -> None:
    """Show what was typed without errors: adding a row is not a save attempt."""
    form._errors = ErrorDict()
    for formset in formsets:
        formset._non_form_errors = formset.error_class()
        for row in formset.forms:
            row._errors = ErrorDict()


def apply_service_errors(exc: ValidationFailed, form, formsets: dict, rows: dict) -> None:
    """Put each service error on the form field or row field it names; the rest on top."""
    for key, messages_ in exc.errors.items():
        match = ROW_KEY.match(key)
        if match:
            label, ref, field = match.group("label", "ref", "field")
            target = _find_row(rows[label], ref)
            if target is not None:
                name = field if field in target.fields and field != "id" else None
                target.add_error(name, messages_)
                continue
        elif key in formsets:
            formsets[key].non_form_errors().extend(messages_)
            continue
        elif key in form.fields:
            form.add_error(key, messages_)
            continue
        form.add_error(None, [f"{describe_error_key(key)}: {message}" for message in messages_])


def _find_row(rows: list, ref: str):
    if ref.isdigit():
        index = int(ref)
        return rows[index][0] if index < len(rows) else None
    for row_form, row in rows:
        if (row.get("name") or "").strip().lower() == ref.strip().lower():
            return row_form
    return None


def _charter_form_page(request, charter: Charter | None):
    """Shared GET/POST handling of the create and edit pages."""
    context = {"charter": charter, "error_message": ""}
    if request.method != "POST":
        form, metric_formset, dependency_formset = _initial_forms(request.user, charter)
    else:
        adding = _row_to_add(request.POST)
        data = _with_one_more_row(request.POST, adding) if adding else request.POST
        form = CharterForm(data)
        metric_formset = MetricFormSet(data, prefix="metrics")
        dependency_formset = DependencyFormSet(data, prefix="dependencies")
        if adding:
            _silence(form, metric_formset, dependency_formset)
        else:
            valid = [f.is_valid() for f in (form, metric_formset, dependency_formset)]
            if all(valid):
                rows = {"metrics": metric_formset.rows(), "dependencies": dependency_formset.rows()}
                try:
                    saved = _save(request.user, charter, form.cleaned_data, rows)
                except ValidationFailed as exc:
                    formsets = {"metrics": metric_formset, "dependencies": dependency_formset}
                    apply_service_errors(exc, form, formsets, rows)
                    context["error_message"] = exc.message
                except InvalidTransition as exc:
                    return _not_editable(request, charter, exc.message)
                else:
                    verb = "created" if charter is None else "saved"
                    messages.success(request, f"Charter “{saved.title}” {verb}.")
                    return redirect(saved)
            else:
                context["error_message"] = "Some fields need attention."
    context.update(form=form, metric_formset=metric_formset, dependency_formset=dependency_formset)
    return render(request, "charters/form.html", context)


def _save(actor, charter: Charter | None, cleaned: dict, rows: dict) -> Charter:
    metrics = [row for _, row in rows["metrics"]]
    dependencies = [row for _, row in rows["dependencies"]]
    if charter is None:
        return services.charter_create(
            actor=actor, fields=cleaned, metrics=metrics, dependencies=dependencies
        )
    return services.charter_update(
        actor=actor, charter=charter, fields=cleaned, metrics=metrics, dependencies=dependencies
    )


def _not_editable(request, charter: Charter, message: str):
    return render(
        request, "charters/not_editable.html", {"charter": charter, "message": message}, status=409
    )


@login_required
@_denied_as_page
def charter_create(request):
    """A new draft charter with its metrics and dependency map."""
    permissions.require_create(request.user)
    return _charter_form_page(request, None)


@login_required
@_denied_as_page
def charter_edit(request, slug):
    """Edit a draft charter; anything past draft explains how to get it back to draft."""
    charter = _visible_or_404(request.user, slug)
    permissions.require(request.user, permissions.CHANGE, charter)
    if not charter.is_editable:
        return _not_editable(
            request,
            charter,
            f"Only draft charters can be edited; this one is "
            f"{charter.get_status_display().lower()}.",
        )
    return _charter_form_page(request, charter)


# --- detail -----------------------------------------------------------------------------------


def _metric_groups(charter: Charter) -> list[dict]:
    by_layer: dict[str, list[dict]] = {layer: [] for layer in MetricLayer.values}
    for metric in charter.metrics.all():
        by_layer.setdefault(metric.layer, []).append(
            {
                "metric": metric,
                "baseline": _number(metric.baseline_value),
                "target": _number(metric.target_value),
                "guardrail": _number(metric.guardrail_value),
            }
        )
    return [
        {"layer": MetricLayer(layer).label, "rows": rows}
        for layer, rows in by_layer.items()
        if rows
    ]


def _readiness(errors: dict[str, list[str]]) -> list[dict]:
    """The checklist: every required section, ticked or with its messages, then metric gaps."""
    items = [
        {
            "label": describe_error_key(key),
            "ok": key not in errors,
            "messages": errors.get(key, []),
        }
        for key in READINESS_SECTIONS
    ]
    items += [
        {"label": describe_error_key(key), "ok": False, "messages": msgs}
        for key, msgs in errors.items()
        if key not in READINESS_SECTIONS
    ]
    return items


def _shares(charter: Charter) -> list[dict]:
    shares = [
        {
            "user": user,
            "access": "change" if "change_charter" in perms else "view",
            "is_owner": user.pk == charter.business_owner_id,
        }
        for user, perms in selectors.charter_shared_with(charter).items()
    ]
    return sorted(shares, key=lambda s: (not s["is_owner"], s["user"].username))


def _history_url(user, charter: Charter) -> str | None:
    if not user.is_staff:
        return None
    try:
        return reverse("admin:charters_charter_history", args=[charter.pk])
    except NoReverseMatch:  # the admin is not registered for charters in this deployment
        return None


@login_required
def charter_detail(request, slug):
    """The one-page charter: sections, metrics by layer, dependencies, readiness, actions."""
    charter = _visible_or_404(request.user, slug)
    can_change = permissions.can(request.user, permissions.CHANGE, charter)
    errors = services.charter_completeness_errors(charter) if charter.is_editable else None
    context = {
        "charter": charter,
        "can_change": can_change,
        "can_edit": can_change and charter.is_editable,
        "metric_groups": _metric_groups(charter),
        "dependencies": list(charter.dependencies.all()),
        "readiness": _readiness(errors) if errors is not None else None,
        "ready": errors == {},
        "transitions": services.charter_available_transitions(user=request.user, charter=charter),
        "shares": _shares(charter),
        "share_form": ShareForm() if can_change else None,
        "history_url": _history_url(request.user, charter),
        # Status changes made by someone who does not run the charter (compliance).
        "overrides": AuditEvent.objects.filter(charter_id=charter.pk, verb="charter.override")
        .select_related("actor")
        .order_by("-id")[:10],
    }
    return render(request, "charters/detail.html", context)


# --- commands (POST only) ---------------------------------------------------------------------


@login_required
@require_POST
@_denied_as_page
def charter_transition(request, slug, name):
    """Move the charter along one lifecycle edge, then show the outcome on the detail page."""
    charter = _visible_or_404(request.user, slug, detail=False)
    try:
        if name in services.FOUR_EYES:  # a second person decides: ask, and say who
            opened = approval_services.charter_transition_request(
                actor=request.user,
                charter=charter,
                name=name,
                reason=request.POST.get("reason", ""),
            )
            messages.success(
                request,
                f"Requested (approval request #{opened.pk}): the Accountable for approving "
                "charters decides, never the person asking.",
            )
            return redirect(charter)
        charter = services.charter_transition(
            actor=request.user, charter=charter, name=name, reason=request.POST.get("reason", "")
        )
    except ValidationFailed as exc:
        messages.error(request, exc.message)
        for key, messages_ in exc.errors.items():
            for message in messages_:
                messages.error(request, f"{describe_error_key(key)}: {message}")
    except InvalidTransition as exc:
        messages.error(request, exc.message)
    else:
        messages.success(
            request, f"“{charter.title}” is now {charter.get_status_display().lower()}."
        )
    return redirect(charter)


def _user_named(username: str):
    return get_user_model().objects.filter(username=username.strip()).first()


@login_required
@require_POST
@_denied_as_page
def charter_share(request, slug):
    """Give a person view or edit access to the charter."""
    charter = _visible_or_404(request.user, slug, detail=False)
    permissions.require(request.user, permissions.CHANGE, charter)
    form = ShareForm(request.POST)
    if not form.is_valid():
        messages.error(request, "Give a username and choose view or edit access.")
        return redirect(charter)
    user = _user_named(form.cleaned_data["username"])
    if user is None:
        messages.error(request, f"There is no user called “{form.cleaned_data['username']}”.")
        return redirect(charter)
    try:
        services.charter_share(
            actor=request.user, charter=charter, user=user, access=form.cleaned_data["access"]
        )
    except ValidationFailed as exc:
        messages.error(request, exc.message)
    else:
        what = "view and edit" if form.cleaned_data["access"] == "change" else "view"
        messages.success(request, f"{user.get_username()} can now {what} this charter.")
    return redirect(charter)


@login_required
@require_POST
@_denied_as_page
def charter_unshare(request, slug):
    """Take a person's access to the charter away."""
    charter = _visible_or_404(request.user, slug, detail=False)
    permissions.require(request.user, permissions.CHANGE, charter)
    form = UnshareForm(request.POST)
    user = _user_named(form.cleaned_data["username"]) if form.is_valid() else None
    if user is None:
        messages.error(request, "There is no such user.")
        return redirect(charter)
    try:
        services.charter_unshare(actor=request.user, charter=charter, user=user)
    except ValidationFailed as exc:
        messages.error(request, exc.message)
    else:
        messages.success(request, f"{user.get_username()} no longer has access to this charter.")
    if not permissions.can(request.user, permissions.VIEW, charter):
        return redirect("charters:list")
    return redirect(charter)
