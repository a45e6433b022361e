"""Release gates: a registry of named checks that each kind of request composes.

Each check returns pass / fail with a human reason and its evidence (ids and links an
auditor can follow). Checks run when a request is opened (the evidence shown to approvers)
and again at execution, so evidence that went stale in between refuses the action.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from django.conf import settings
from django.utils import timezone

from .choices import HIGH_RISK, Activity, RequestKind, Role, Verdict
from .models import ApprovalRequest


@dataclass(frozen=True)
class GateResult:
    """One check's verdict on one request."""

    check: str
    passed: bool
    reason: str
    evidence: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


Check = Callable[[ApprovalRequest], GateResult]
CHECKS: dict[str, Check] = {}


def check(name: str):
    """Register a gate check under `name`."""

    def register(fn: Check) -> Check:
        CHECKS[name] = fn
        return fn

    return register


def _approvals(request: ApprovalRequest) -> dict[int, str]:
    """{person id: their latest verdict} among decisions that are not comments."""
    latest: dict[int, str] = {}
    for decision in request.decisions.order_by("created_at", "id"):
        if decision.verdict != Verdict.COMMENT:
            latest[decision.actor_id] = decision.verdict
    return latest


def _self_ids(request: ApprovalRequest) -> set[int]:
    ids = {request.requested_by_id}
    if request.prompt_version_id:
        ids.add(request.prompt_version.author_id)
    if request.kind == RequestKind.CHARTER_TRANSITION and request.charter_id:
        ids.add(request.charter.business_owner_id)
    return ids


def slot_members(slot: dict) -> set[int]:
    return set(slot.get("members", []))


@check("accountable_approved")
def accountable_approved(request: ApprovalRequest) -> GateResult:
    latest = _approvals(request)
    missing = []
    for slot in request.required:
        if slot["role"] != Role.ACCOUNTABLE:
            continue
        approvers = {
            pk for pk in slot_members(slot) if latest.get(pk) == Verdict.APPROVE
        } - _self_ids(request)
        if not approvers:
            missing.append(f"{slot['label']} ({slot['who']})")
    if missing:
        return GateResult("accountable_approved", False, "Waiting for: " + "; ".join(missing) + ".")
    return GateResult(
        "accountable_approved",
        True,
        "Every Accountable approval is in.",
        {"approvers": sorted(pk for pk, v in latest.items() if v == Verdict.APPROVE)},
    )


@check("no_self_approval")
def no_self_approval(request: ApprovalRequest) -> GateResult:
    selfish = [
        d
        for d in request.decisions.all()
        if d.verdict == Verdict.APPROVE and d.actor_id in _self_ids(request)
    ]
    if selfish:
        return GateResult(
            "no_self_approval", False, "The requester or author approved their own request."
        )
    return GateResult("no_self_approval", True, "No one approved their own request or version.")


def consult_hours(risk_tier: str) -> float:
    hours = getattr(settings, "APPROVALS_CONSULT_HOURS", {})
    return float(hours.get(risk_tier, 0))


@check("consulted_asked")
def consulted_asked(request: ApprovalRequest) -> GateResult:
    consulted = set()
    for slot in request.required:
        if slot["role"] == Role.CONSULTED:
            consulted |= slot_members(slot)
    if not consulted:
        return GateResult("consulted_asked", True, "Nobody is Consulted for this activity.")
    answered = {d.actor_id for d in request.decisions.all()}
    waiting = consulted - answered
    hours = consult_hours(request.risk_tier)
    opened = request.created_at or timezone.now()
    elapsed = (timezone.now() - opened).total_seconds() / 3600
    if not waiting or elapsed >= hours:
        return GateResult(
            "consulted_asked",
            True,
            f"Consulted people were asked {elapsed:.1f} h ago"
            + ("; all answered." if not waiting else f" (at least {hours:g} h given)."),
            {"consulted": sorted(consulted), "answered": sorted(answered & consulted)},
        )
    return GateResult(
        "consulted_asked",
        False,
        f"{len(waiting)} Consulted people have not answered and have had {elapsed:.1f} of the "
        f"{hours:g} hours a {request.risk_tier or 'this'}-risk request gives them.",
        {"waiting": sorted(waiting)},
    )


def evaluation_valid_days() -> int:
    return int(getattr(settings, "APPROVALS_EVALUATION_VALID_DAYS", 30))


@check("evaluation_passed")
def evaluation_passed(request: ApprovalRequest) -> GateResult:
    from apps.evaluations.models import Run, Suite

    version = request.prompt_version
    suites = Suite.objects.filter(prompt_id=version.prompt_id)
    since = timezone.now() - dt.timedelta(days=evaluation_valid_days())
    run = (
        Run.objects.filter(
            suite__in=suites,
            content_hash=version.content_hash,
            status="completed",
            finished_at__gte=since,
        )
        .order_by("-finished_at")
        .first()
    )
    if run is not None and run.verdict == "pass":
        return GateResult(
            "evaluation_passed",
            True,
            f"Run #{run.pk} on {run.suite.slug} passed on this exact content "
            f"({version.content_hash[:12]}…) on {run.finished_at:%Y-%m-%d}.",
            {"run": run.pk, "url": run.get_absolute_url(), "suite": run.suite.slug},
        )
    if run is not None:
        return GateResult(
            "evaluation_passed",
            False,
            f"The newest evaluation of this content, run #{run.pk} on {run.suite.slug}, failed.",
            {"run": run.pk, "url": run.get_absolute_url()},
        )
    if not suites.exists() and request.risk_tier not in HIGH_RISK:
        return GateResult(
            "evaluation_passed",
            True,
            "No suite gates this prompt; not required below high risk.",
        )
    return GateResult(
        "evaluation_passed",
        False,
        f"No passing evaluation of this exact content within {evaluation_valid_days()} days"
        + ("" if suites.exists() else " (no suite gates this prompt)")
        + ".",
    )


@check("prompt_release_checks")
def prompt_release_checks(request: ApprovalRequest) -> GateResult:
    """The prompt library's own checks: version approved, no unwaived blocking findings,
    prompt active, charter live."""
    from apps.prompts.services import promotion_gate

    results = promotion_gate(request.prompt_version)
    failed = [r for r in results if not r.passed]
    reason = " ".join(r.reason for r in (failed or results))
    return GateResult(
        "prompt_release_checks",
        not failed,
        reason,
        {r.check: r.passed for r in results},
    )


@check("high_risk_signoff")
def high_risk_signoff(request: ApprovalRequest) -> GateResult:
    if request.risk_tier not in HIGH_RISK:
        return GateResult(
            "high_risk_signoff", True, f"Not needed at {request.risk_tier or 'this'} risk."
        )
    latest = _approvals(request)
    for slot in request.required:
        if slot["activity"] == Activity.SIGN_OFF_HIGH_RISK and slot["role"] == Role.ACCOUNTABLE:
            signers = {
                pk for pk in slot_members(slot) if latest.get(pk) == Verdict.APPROVE
            } - _self_ids(request)
            if signers:
                return GateResult(
                    "high_risk_signoff", True, "High-risk sign-off given.", {"by": sorted(signers)}
                )
            return GateResult(
                "high_risk_signoff", False, f"Needs the high-risk sign-off of {slot['who']}."
            )
    return GateResult("high_risk_signoff", False, "Nobody is Accountable for high-risk sign-off.")


@check("review_date_not_passed")
def review_date_not_passed(request: ApprovalRequest) -> GateResult:
    today = timezone.localdate()
    overdue = []
    if (
        request.prompt_version_id
        and request.prompt_version.prompt.review_date
        and request.prompt_version.prompt.review_date < today
    ):
        overdue.append(f"prompt review was due {request.prompt_version.prompt.review_date}")
    if request.charter_id and request.charter.review_date and request.charter.review_date < today:
        overdue.append(f"charter review was due {request.charter.review_date}")
    if overdue:
        return GateResult("review_date_not_passed", False, "Overdue: " + "; ".join(overdue) + ".")
    return GateResult("review_date_not_passed", True, "Review dates are in the future.")


@check("charter_complete")
def charter_complete(request: ApprovalRequest) -> GateResult:
    from apps.charters.services import charter_completeness_errors

    if request.transition != "approve":
        return GateResult("charter_complete", True, "Only approval re-checks completeness.")
    errors = charter_completeness_errors(request.charter)
    if errors:
        count = sum(len(v) for v in errors.values())
        return GateResult(
            "charter_complete", False, f"The charter has {count} gap(s) again.", errors
        )
    return GateResult("charter_complete", True, "The charter is complete.")


@check("charter_status_allows")
def charter_status_allows(request: ApprovalRequest) -> GateResult:
    from apps.charters.services import TRANSITIONS

    transition = TRANSITIONS[request.transition]
    ok = request.charter.status in transition.sources
    return GateResult(
        "charter_status_allows",
        ok,
        f"The charter is {request.charter.get_status_display().lower()}"
        + (
            "." if ok else f"; {transition.label.lower()} needs it {', '.join(transition.sources)}."
        ),
    )


@check("prompt_has_no_pending_promotion")
def prompt_has_no_pending_promotion(request: ApprovalRequest) -> GateResult:
    from .choices import RequestStatus

    pending = ApprovalRequest.objects.filter(
        prompt_id=request.prompt_id, kind=RequestKind.PROMOTION, status=RequestStatus.OPEN
    ).count()
    if pending:
        return GateResult(
            "prompt_has_no_pending_promotion",
            False,
            f"{pending} promotion request(s) are still open.",
        )
    return GateResult("prompt_has_no_pending_promotion", True, "No promotion is pending.")


GATES: dict[str, list[str]] = {
    RequestKind.CHARTER_TRANSITION: [
        "accountable_approved",
        "no_self_approval",
        "consulted_asked",
        "charter_status_allows",
        "charter_complete",
        "review_date_not_passed",
    ],
    RequestKind.THRESHOLD_CHANGE: ["accountable_approved", "no_self_approval"],
    RequestKind.ENDPOINT: ["accountable_approved", "no_self_approval"],
    RequestKind.RETIREMENT: [
        "accountable_approved",
        "no_self_approval",
        "consulted_asked",
        "prompt_has_no_pending_promotion",
    ],
    RequestKind.PROMOTION: [
        "accountable_approved",
        "no_self_approval",
        "consulted_asked",
        "evaluation_passed",
        "prompt_release_checks",
        "high_risk_signoff",
        "review_date_not_passed",
    ],
}


def evaluate(request: ApprovalRequest) -> list[GateResult]:
    """Every check the request's kind composes, in order."""
    return [CHECKS[name](request) for name in GATES.get(request.kind, [])]
