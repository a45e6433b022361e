"""Web pages: the approvals inbox, a request with its evidence, a charter's RACI matrix,
the audit timeline and the evidence pack download."""

from __future__ import annotations

from django import forms
from django.contrib import messages
from django.contrib.auth import get_user_model
from django.contrib.auth.decorators import login_required
from django.contrib.auth.models import Group
from django.core.paginator import Paginator
from django.http import Http404
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from apps.charters.selectors import charter_list_visible
from apps.core.errors import ApplicationError
from apps.core.web import form_add_errors, report_error

from . import evidence, raci, services
from .choices import Activity, RequestStatus, Role, Verdict
from .models import ApprovalRequest, RaciAssignment


class DecideForm(forms.Form):
    verdict = forms.ChoiceField(choices=Verdict.choices, widget=forms.RadioSelect)
    comment = forms.CharField(widget=forms.Textarea(attrs={"rows": 3}), required=False)


class RaciForm(forms.Form):
    activity = forms.ChoiceField(choices=Activity.choices)
    role = forms.ChoiceField(choices=Role.choices)
    user = forms.ModelChoiceField(
        queryset=get_user_model().objects.filter(is_active=True).order_by("username"),
        required=False,
    )
    group = forms.ModelChoiceField(queryset=Group.objects.order_by("name"), required=False)
    note = forms.CharField(max_length=200, required=False)


@login_required
def inbox(request):
    """What waits for my decision, what I asked for, and the recent decisions I can see."""
    visible = services.visible_requests(request.user).select_related(
        "prompt_version__prompt", "charter", "requested_by"
    )
    return render(
        request,
        "approvals/inbox.html",
        {
            "waiting": services.inbox_for(request.user),
            "mine": visible.filter(requested_by=request.user)[:20],
            "recent": visible.exclude(status=RequestStatus.OPEN)[:20],
        },
    )


def _request_or_404(user, pk) -> ApprovalRequest:
    found = services.visible_requests(user).filter(pk=pk).first()
    if found is None:
        raise Http404("No such approval request.")
    return found


@login_required
def request_detail(request, pk):
    approval = _request_or_404(request.user, pk)
    form = DecideForm()
    if request.method == "POST":
        form = DecideForm(request.POST)
        if form.is_valid():
            try:
                services.approval_decide(actor=request.user, request=approval, **form.cleaned_data)
            except ApplicationError as exc:
                report_error(request, exc)
            else:
                approval.refresh_from_db()
                if approval.status == RequestStatus.EXECUTED:
                    messages.success(request, f"Approved and executed: {approval.subject}.")
                else:
                    messages.success(request, "Your decision is recorded.")
                return redirect(approval)
    return render(
        request,
        "approvals/request_detail.html",
        {
            "approval": approval,
            "decisions": approval.decisions.select_related("actor"),
            "form": form,
            "may_decide": services.may_decide(request.user, approval),
            "is_open": approval.status == RequestStatus.OPEN,
        },
    )


@login_required
@require_POST
def request_withdraw(request, pk):
    approval = _request_or_404(request.user, pk)
    try:
        services.approval_withdraw(
            actor=request.user, request=approval, reason=request.POST.get("reason", "")
        )
        messages.success(request, "Withdrawn.")
    except ApplicationError as exc:
        report_error(request, exc)
    return redirect(approval)


@login_required
def raci_matrix(request, slug):
    charter = charter_list_visible(request.user).filter(slug=slug).first()
    if charter is None:
        raise Http404("No such charter.")
    editable = raci.can_edit(request.user, charter)
    form = RaciForm()
    if request.method == "POST":
        if not editable:
            from django.core.exceptions import PermissionDenied

            raise PermissionDenied("You may not change this RACI matrix.")
        try:
            if request.POST.get("remove"):
                assignment = get_object_or_404(
                    RaciAssignment, pk=request.POST["remove"], charter=charter
                )
                raci.raci_remove(
                    actor=request.user, assignment=assignment, reason="Removed on the RACI page"
                )
                messages.success(request, "Assignment removed; access follows at once.")
                return redirect("approvals:raci", slug=slug)
            form = RaciForm(request.POST)
            if form.is_valid():
                raci.raci_assign(actor=request.user, charter=charter, **form.cleaned_data)
                messages.success(request, "Assignment added; access follows at once.")
                return redirect("approvals:raci", slug=slug)
        except ApplicationError as exc:
            form_add_errors(form, exc)
    return render(
        request,
        "approvals/raci.html",
        {
            "charter": charter,
            "matrix": evidence.effective_matrix(charter),
            "roles": Role.choices,
            "problems": raci.problems(charter),
            "warnings": raci.warnings(charter),
            "own": RaciAssignment.objects.filter(charter=charter).select_related("user", "group"),
            "editable": editable,
            "form": form,
        },
    )


@login_required
@require_POST
def charter_request(request, slug):
    """The charter page's "Request go-live" (and resume, retire) button."""
    charter = charter_list_visible(request.user).filter(slug=slug).first()
    if charter is None:
        raise Http404("No such charter.")
    try:
        approval = services.charter_transition_request(
            actor=request.user,
            charter=charter,
            name=request.POST.get("name", ""),
            reason=request.POST.get("reason", ""),
        )
    except ApplicationError as exc:
        report_error(request, exc)
        return redirect(charter)
    messages.success(
        request, f"Requested: approval request #{approval.pk} waits for its approvers."
    )
    return redirect(approval)


@login_required
def timeline(request):
    """The audit timeline: portfolio-wide, or one object's, with filters."""
    events = evidence.timeline(request.user, request.GET)
    page = Paginator(events, 50).get_page(request.GET.get("page"))
    return render(
        request,
        "approvals/timeline.html",
        {"page": page, "filters": request.GET, "charters": charter_list_visible(request.user)},
    )


@login_required
def evidence_pack(request, slug, fmt):
    charter = charter_list_visible(request.user).filter(slug=slug).first()
    if charter is None or fmt not in ("json", "csv"):
        raise Http404("No such charter.")
    return evidence.pack_response(charter, fmt)
