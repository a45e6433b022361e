"""The demo workspace: known users and realistic charters, built through the services."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from decimal import Decimal

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.db import transaction
from django.utils import timezone

from apps.approvals import raci
from apps.approvals import services as approval_services
from apps.approvals.choices import Activity, Role
from apps.approvals.models import ApprovalRequest, RaciAssignment
from apps.charters import services as charter_services
from apps.charters.models import Charter
from apps.core import groups
from apps.core.models import ApiKey
from apps.evaluations.demo import demo_evaluations
from apps.prompts import services as prompt_services
from apps.prompts.models import Application, Prompt
from apps.registry import services as registry_services
from apps.registry.models import ModelEndpoint
from apps.scorecards.demo import demo_telemetry


@dataclass(frozen=True)
class DemoUser:
    username: str
    password: str
    name: str
    role: str
    group: str | None
    staff: bool = False
    superuser: bool = False


DEMO_USERS = (
    DemoUser(
        "olivia", "olivia-demo-2026", "Olivia Owner", "business owner", groups.BUSINESS_OWNERS
    ),
    DemoUser(
        "bruno", "bruno-demo-2026", "Bruno Business", "business owner", groups.BUSINESS_OWNERS
    ),
    DemoUser(
        "carl",
        "carl-demo-2026",
        "Carl Compliance",
        "compliance officer (admin)",
        groups.COMPLIANCE,
        staff=True,
    ),
    DemoUser("pat", "pat-demo-2026", "Pat Platform", "platform engineer", groups.PLATFORM),
    DemoUser(
        "admin",
        "admin-demo-2026",
        "Ada Admin",
        "operator (superuser)",
        None,
        staff=True,
        superuser=True,
    ),
)
INTEGRATION_USER = "app-helpdesk-sidebar"


def _user(spec: DemoUser):
    User = get_user_model()
    first, last = spec.name.split(" ", 1)
    user, _ = User.objects.get_or_create(username=spec.username)
    user.first_name, user.last_name = first, last
    user.email = f"{spec.username}@demo.aifactory.local"
    user.is_staff, user.is_superuser = spec.staff, spec.superuser
    user.set_password(spec.password)
    user.save()
    if spec.group:
        user.groups.add(Group.objects.get(name=spec.group))
    return user


def _metric(name, layer, role, direction, unit, baseline, target, guardrail=None, description=""):
    return {
        "name": name,
        "layer": layer,
        "role": role,
        "direction": direction,
        "unit": unit,
        "baseline_value": Decimal(baseline),
        "target_value": Decimal(target),
        "guardrail_value": Decimal(guardrail) if guardrail is not None else None,
        "description": description,
        "allowed_segment_keys": ["language", "geography", "user_role", "task_type"],
    }


SUPPORT_CHARTER = {
    "title": "Support reply drafting",
    "slug": "support-reply-drafting",
    "problem": (
        "Tier-1 agents spend about 40% of each shift typing routine replies (order status, "
        "refunds, password resets). Backlogs build every Monday and customers wait a median of "
        "9 hours for a first answer."
    ),
    "process": (
        "When an agent opens a ticket in Zendesk, the model drafts a reply grounded in the "
        "knowledge base article the router picked. The agent reads, edits and sends it; nothing is "
        "sent without a human. Team leads review a 5% sample weekly and correct the knowledge base."
    ),
    "proof": (
        "Over an 8-week pilot with 40 agents against a matched control group: average handle time "
        "falls from 12 to 9.5 minutes while CSAT stays at or above 4.3 and the reopen rate does not "
        "rise. Measured per language; German and French must each meet the target on their own."
    ),
    "target_users": "Tier-1 support agents in Berlin, Lisbon and Manila (EN, DE, FR, PT)",
    "risk_tier": "medium",
    "data_sensitivity": "confidential",
    "intended_use": (
        "Drafting customer replies for agent review. Not for refunds above EUR 200, legal "
        "complaints or anything the agent has not read."
    ),
    "retirement_condition": (
        "Retire if handle time has not improved by 10% after two quarters, or if CSAT falls "
        "below the guardrail for four consecutive weeks."
    ),
}
SUPPORT_METRICS = [
    _metric(
        "Average handle time",
        "business_outcome",
        "primary",
        "decrease",
        "minutes",
        "12",
        "9.5",
        description="Minutes from ticket open to reply sent, per ticket.",
    ),
    _metric(
        "Customer satisfaction (CSAT)",
        "business_outcome",
        "supporting",
        "increase",
        "score",
        "4.3",
        "4.4",
        "4.2",
    ),
    _metric(
        "Draft acceptance rate",
        "output_quality",
        "supporting",
        "increase",
        "%",
        "0",
        "70",
        "50",
        description="Share of drafts sent with light or no edits.",
    ),
    _metric("Reopen rate", "workflow_efficiency", "supporting", "decrease", "%", "8", "7", "9"),
    _metric(
        "Draft latency p95", "platform_health", "supporting", "decrease", "seconds", "6", "3", "8"
    ),
]
SUPPORT_DEPENDENCIES = [
    {
        "kind": "system",
        "name": "Zendesk",
        "criticality": "critical",
        "notes": "Tickets in, drafts out via the app sidebar.",
    },
    {
        "kind": "data_source",
        "name": "Help-centre knowledge base",
        "criticality": "high",
        "notes": "Grounding passages; owned by Support Ops.",
    },
    {
        "kind": "team",
        "name": "Support Operations",
        "criticality": "high",
        "notes": "Weekly sample review and KB fixes.",
    },
    {
        "kind": "vendor",
        "name": "Model hosting provider (EU region)",
        "criticality": "high",
        "notes": "DPA signed; no training on our data.",
        "endpoint": "eu-hosting",
    },
    {
        "kind": "model",
        "name": "Instruction-tuned chat model",
        "criticality": "high",
        "notes": "Pinned version; evaluated per release.",
        "endpoint": "eu-hosting",
    },
]

CLAIMS_CHARTER = {
    "title": "Claims intake triage",
    "slug": "claims-intake-triage",
    "problem": "Incoming property claims wait two days in a shared inbox before anyone routes them.",
    "process": "The model classifies each claim e-mail by peril and urgency; a claims handler confirms the route.",
    "proof": "",
    "target_users": "Claims handlers, property team",
    "risk_tier": "high",
    "data_sensitivity": "restricted",
    "intended_use": "Routing suggestions only; no decision on cover or payout.",
}
CLAIMS_METRICS = [
    _metric("Time to first touch", "business_outcome", "primary", "decrease", "hours", "48", "4"),
    _metric("Routing accuracy", "output_quality", "supporting", "increase", "%", "0", "92", "85"),
]

CONTRACTS_CHARTER = {
    "title": "Supplier contract clause extraction",
    "slug": "supplier-contract-clauses",
    "problem": "Procurement reads every supplier contract renewal by hand to find liability caps and auto-renewal terms.",
    "process": "The model extracts the clauses into a checklist; a procurement lawyer checks each extracted clause against the source page.",
    "proof": "Review time per contract halves with no missed auto-renewal in a 200-contract back-test.",
    "target_users": "Procurement lawyers",
    "risk_tier": "high",
    "data_sensitivity": "confidential",
    "intended_use": "Checklist preparation for lawyer review; never a legal opinion.",
    "retirement_condition": "Retire when the contract system ships native clause extraction.",
}
CONTRACTS_METRICS = [
    _metric(
        "Review time per contract", "business_outcome", "primary", "decrease", "minutes", "95", "45"
    ),
    _metric("Clause recall", "output_quality", "supporting", "increase", "%", "0", "98", "95"),
    _metric(
        "Contracts reviewed per week",
        "workflow_efficiency",
        "supporting",
        "increase",
        "count",
        "30",
        "60",
    ),
]
CONTRACTS_DEPENDENCIES = [
    {"kind": "system", "name": "Contract repository", "criticality": "critical", "notes": ""},
    {"kind": "team", "name": "Legal operations", "criticality": "high", "notes": ""},
]


def _charter(actor, fields, metrics, dependencies, review_in_days):
    existing = Charter.objects.filter(slug=fields["slug"]).first()
    if existing:
        return existing, False
    review = timezone.localdate() + dt.timedelta(days=review_in_days)
    return (
        charter_services.charter_create(
            actor=actor,
            fields={**fields, "review_date": review},
            metrics=metrics,
            dependencies=dependencies,
        ),
        True,
    )


@transaction.atomic
def demo_setup(*, evaluations: bool = True) -> dict:
    """Create (or refresh) the demo users and charters; returns what a banner should print."""
    groups.ensure_groups()
    users = {spec.username: _user(spec) for spec in DEMO_USERS}
    olivia, bruno, carl = users["olivia"], users["bruno"], users["carl"]

    _demo_registry(users)
    support, created = _charter(olivia, SUPPORT_CHARTER, SUPPORT_METRICS, SUPPORT_DEPENDENCIES, 120)
    if created:
        charter_services.charter_share(
            actor=olivia, charter=support, user=users["pat"], access="view"
        )
        charter_services.charter_submit(actor=olivia, charter=support)
        charter_services.charter_approve(
            actor=carl, charter=support, reason="Metrics and guardrails are clear."
        )
        charter_services.charter_start_pilot(actor=olivia, charter=support)
    _charter(olivia, CLAIMS_CHARTER, CLAIMS_METRICS, [], 60)
    contracts, created = _charter(
        bruno, CONTRACTS_CHARTER, CONTRACTS_METRICS, CONTRACTS_DEPENDENCIES, 90
    )
    if created:
        charter_services.charter_submit(actor=bruno, charter=contracts)

    api_key = _demo_prompts(users, support)
    result = {"users": DEMO_USERS, "api_key": api_key, "integration_user": INTEGRATION_USER}
    if evaluations:
        result["evaluations"] = demo_evaluations(
            users, Prompt.objects.get(slug="support-reply-draft")
        )
    result["approvals"] = _demo_approvals(users, support)

    result["telemetry"] = demo_telemetry(olivia, support)
    return result


DEMO_ENDPOINT = {
    "name": "EU model hosting",
    "slug": "eu-hosting",
    "description": "The hosting provider's OpenAI-compatible API in its EU region.",
    "base_url": "https://llm.eu-hosting.example/v1",
    "model_names": ["gpt-4o-mini"],
    "vendor": "Model hosting provider",
    "data_location": "vendor_region",
    "region": "EU (Frankfurt)",
    "retention_days": 30,
    "training_use": "no",
    "terms": "DPA signed 2026-03; prompts and outputs kept 30 days for abuse monitoring only.",
    "risk_tiers": ["low", "medium", "high"],
    "price_per_1k_input": "0.000150",
    "price_per_1k_output": "0.000600",
}


def _demo_registry(users) -> None:
    """The vendor endpoint the support charter depends on: proposed by Pat, approved by Carl
    through an approval request (nothing calls it: the address is a documentation name)."""

    if ModelEndpoint.objects.filter(slug=DEMO_ENDPOINT["slug"]).exists():
        return
    endpoint = registry_services.endpoint_propose(actor=users["pat"], fields=DEMO_ENDPOINT)
    request = approval_services.endpoint_request(
        actor=users["pat"],
        endpoint=endpoint,
        change="approve",
        reason="EU region, DPA signed, no training on our data.",
    )
    approval_services.approval_decide(
        actor=users["carl"],
        request=ApprovalRequest.objects.get(pk=request.pk),
        verdict="approve",
        comment="Data stays in the EU; retention matches our policy.",
    )


def _demo_approvals(users, support) -> dict:
    """RACI on the support charter and Pat's promotion request for v2, waiting in Carl's inbox
    (with the evaluations loaded, its gate shows v2's failing partner segment)."""

    olivia, carl, pat = users["olivia"], users["carl"], users["pat"]
    if not RaciAssignment.objects.filter(charter=support).exists():
        for activity, role, person in (
            (Activity.APPROVE_PRODUCTION_PROMPT, Role.RESPONSIBLE, pat),
            (Activity.APPROVE_PRODUCTION_PROMPT, Role.ACCOUNTABLE, carl),
            (Activity.APPROVE_PRODUCTION_PROMPT, Role.INFORMED, olivia),
            (Activity.CHANGE_RETRIEVAL_SOURCES, Role.RESPONSIBLE, pat),
            (Activity.RESPOND_TO_DRIFT, Role.CONSULTED, pat),
        ):
            raci.raci_assign(
                actor=olivia, charter=support, activity=activity, role=role, user=person
            )
    prompt = Prompt.objects.get(slug="support-reply-draft")
    v2 = prompt.versions.get(number=2)
    if v2.status == "in_review":
        prompt_services.version_approve(actor=carl, version=v2, reason="Wording reviewed.")
    if not ApprovalRequest.objects.filter(prompt_version=v2).exists():
        approval_services.promotion_request(
            actor=pat, version=v2, reason="Quote the supporting passage; shorter replies."
        )
    return {"requests": ApprovalRequest.objects.filter(prompt_version=v2).count()}


SUPPORT_PROMPT_V1 = [
    {
        "role": "system",
        "content": (
            "You draft replies for ACME support agents, who review every draft before sending. "
            "Answer only using the provided context passages. If the answer is not in the context, "
            "say that you will check with a specialist. Reply in the customer's language."
        ),
    },
    {
        "role": "user",
        "content": 'Context passages:\n{{ context }}\n\nCustomer message:\n"""\n{{ message }}\n"""',
    },
]
SUPPORT_PROMPT_V2 = [
    {
        "role": "system",
        "content": (
            "You draft replies for ACME support agents, who review every draft before sending. "
            "Answer only using the provided context passages and quote the passage you rely on. If the "
            "answer is not in the context, say that you will check with a specialist. Reply in the "
            "customer's language, in at most {{ max_sentences }} sentences. For account questions "
            "suggest writing to help@acme.example."
        ),
    },
    {
        "role": "user",
        "content": 'Context passages:\n{{ context }}\n\nCustomer message:\n"""\n{{ message }}\n"""',
    },
]
SUPPORT_VARIABLES = [
    {
        "name": "context",
        "description": "Knowledge-base passages chosen by the retriever.",
        "required": True,
        "example": "Returns are accepted within 30 days of delivery with the receipt.",
    },
    {
        "name": "message",
        "description": "The customer's message.",
        "required": True,
        "example": "Hi, can I still return shoes I bought 40 days ago?",
    },
]


def _demo_prompts(users, support) -> str | None:
    """The support charter's reply prompt (v1 live, v2 in review) and the helpdesk application."""

    olivia, carl, pat = users["olivia"], users["carl"], users["pat"]
    if not Prompt.objects.filter(slug="support-reply-draft").exists():
        prompt = prompt_services.prompt_create(
            actor=olivia,
            fields={
                "slug": "support-reply-draft",
                "name": "Support reply draft",
                "charter": support,
                "description": "Drafts a grounded reply for a tier-1 agent from knowledge-base passages.",
                "business_function": "Customer service",
                "task_type": "drafting",
                "risk_level": "medium",
                "model_family": "gpt-4o",
                "policy_tags": ["confidential", "human-in-the-loop"],
                "tags": ["support", "zendesk"],
                "listed_in_catalog": True,
                "review_date": timezone.localdate() + dt.timedelta(days=90),
            },
        )
        v1 = prompt_services.version_create(
            actor=olivia,
            prompt=prompt,
            fields={
                "template_kind": "chat",
                "messages": SUPPORT_PROMPT_V1,
                "variables": SUPPORT_VARIABLES,
                "model_config": {"model": "gpt-4o-mini", "temperature": 0.3, "max_tokens": 400},
                "release_notes": "First grounded draft prompt for the pilot.",
                "change_kind": "major",
            },
        )
        prompt_services.version_submit(actor=olivia, version=v1)
        prompt_services.version_approve(actor=carl, version=v1, reason="Grounded, no findings.")
        prompt_services.promotion_execute(actor=olivia, version=v1, reason="Pilot start")
        prompt_services.label_move(actor=olivia, version=v1, label="staging", reason="Pilot start")
        v2 = prompt_services.version_create(
            actor=pat,
            prompt=prompt,
            fields={
                "template_kind": "chat",
                "messages": SUPPORT_PROMPT_V2,
                "variables": [
                    *SUPPORT_VARIABLES,
                    {
                        "name": "max_sentences",
                        "description": "Length cap.",
                        "required": False,
                        "example": "4",
                    },
                ],
                "model_config": {"model": "gpt-4o-mini", "temperature": 0.2, "max_tokens": 300},
                "release_notes": "Quote the supporting passage; cap the length.",
                "change_kind": "minor",
            },
        )
        prompt_services.version_submit(actor=pat, version=v2)

    application = Application.objects.filter(slug="helpdesk-sidebar").first()
    if application is None:
        application = prompt_services.application_create(
            actor=pat,
            name="Helpdesk sidebar",
            description="The Zendesk app that shows drafts to agents.",
        )
        charter_services.charter_share(
            actor=olivia, charter=support, user=application.service_user, access="view"
        )
    if ApiKey.objects.filter(user=application.service_user, revoked=False).exists():
        return None
    _, plain = prompt_services.application_key_create(
        actor=pat, application=application, name="demo"
    )
    return plain


def banner(result: dict | None = None) -> str:
    """The lines printed at start: where to go and how to sign in."""
    lines = ["", "AI Factory demo workspace — sign in at http://127.0.0.1:8000/", ""]
    lines.append(f"  {'user':<8} {'password':<18} role")
    for spec in DEMO_USERS:
        lines.append(f"  {spec.username:<8} {spec.password:<18} {spec.role}")
    if result and result.get("api_key"):
        lines += [
            "",
            f"  API key for '{result['integration_user']}' (shown once): {result['api_key']}",
        ]
    lines += [
        "",
        "  Business owners: /charters/   Compliance: /admin/   API docs: /api/docs/   Health: /healthz",
        "",
    ]
    return "\n".join(lines)
