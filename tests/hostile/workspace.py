"""A workspace whose every free-text field holds hostile text, and the payloads themselves.

The payload opens like a spreadsheet formula, then carries a script tag, an attribute
break-out, template syntax of three engines, terminal escapes, a bell, a bidi override and
a line break. Text fields get it followed by a long tail. Fields too short for it get the
longest prefix that fits, or a tiny tag (`TINY`) when not even the script tag fits.

Everything is made through the services where a user would type it (web, API, admin all call
them); rows only a worker or an upstream system writes (gateway calls, drift alerts) are
made directly, holding the text an attacker could get into them.
"""

from __future__ import annotations

import datetime as dt
import io
import json
from decimal import Decimal

from django.contrib.auth import get_user_model
from django.test import TestCase
from django.utils import timezone

from apps.approvals import raci
from apps.approvals import services as approval_services
from apps.approvals.choices import Activity, Role
from apps.charters import services as charter_services
from apps.charters.choices import DependencyKind, MetricDirection, MetricLayer
from apps.core import audit
from apps.core.middleware import correlation_id
from apps.evaluations import services as eval_services
from apps.evaluations.models import ModelArtifact
from apps.gateway.models import Call, OnlineScore, Route
from apps.prompts import services as prompt_services
from apps.prompts.models import PolicyFinding, PolicyRule
from apps.registry.models import ModelEndpoint
from apps.scorecards.models import DriftAlert
from apps.scorecards.services import telemetry_ingest
from tests import factories

FORMULA = '=HYPERLINK("http://x")'
SCRIPT = "<script>alert(1)</script>"
IMG = '"><img src=x onerror=alert(1)>'
TEMPLATE = "{{ 7*7 }}{% debug %}${7*7}"
CONTROL = "\x1b[31m\x07\u202e\r\nend"
# What a field a user types into holds (112 characters).
CORE = FORMULA + SCRIPT + IMG + TEMPLATE + CONTROL
# Prompt templates refuse template syntax (tested on its own): the rest of the payload.
NO_TEMPLATE = FORMULA + SCRIPT + IMG + CONTROL
LONG = CORE + " " + "x" * 20_000
# For the few fields too short for the script tag.
TINY = "=<b>\u202e"

# People's names say alert(2): every page shows the signed-in user's name, so a page shows
# an object's text only where alert(1) is found.
NAME = CORE.replace("alert(1)", "alert(2)")
# Markup as a browser would run it; the escaped form; template syntax evaluated (49).
RAW_MARKUP = ("<script>alert(", "<img src=x onerror")
ESCAPED_SCRIPT = "&lt;script&gt;alert(1)&lt;/script&gt;"
EVALUATED = (")>49", ")&gt;49", "49\x1b", "49\\u001b")

SEGMENT = f"seg{SCRIPT}"  # a segment key and value an integration sends
# Tags that tell a model endpoint's texts apart where a page must (or must not) show them.
CREDENTIAL_TAG = " cred-name"
SNAPSHOT_NAME_TAG = " snap-name"
SNAPSHOT_VENDOR_TAG = " snap-vendor"


def text(max_length: int | None = None, tag: str = "") -> str:
    """The payload for a field of `max_length` characters (None: unlimited), `tag` making it
    unique where the field must be."""
    if max_length is None:
        return LONG + tag
    value = CORE + tag
    if len(value) <= max_length:
        return value
    short = FORMULA[:1] + SCRIPT + IMG + tag
    if len(short) <= max_length:
        return short
    if len(SCRIPT) + len(tag) + 1 <= max_length:
        return "=" + SCRIPT[: max_length - 1 - len(tag)] + tag
    return (TINY + tag)[:max_length]


def _jsonl(rows) -> io.BytesIO:
    return io.BytesIO("".join(json.dumps(r) + "\n" for r in rows).encode())


def _capture():
    """Run on-commit callbacks (notifications) as the block ends: the workspace never commits."""
    return TestCase.captureOnCommitCallbacks(execute=True)


class Workspace(dict):
    """The objects by name; the users by persona under `users`."""

    @property
    def users(self) -> dict:
        return self["users"]


def build() -> Workspace:
    """Every object the pages show, each free-text field holding the payload."""
    ws = Workspace()
    User = get_user_model()
    names = {"first_name": NAME, "last_name": NAME + " ln"}
    owner = factories.business_owner("olivia", **names)
    compliance = factories.compliance_officer("carl", is_staff=True, **names)
    engineer = factories.platform_engineer("pat", is_staff=True, **names)
    reviewer = factories.UserFactory(username="colin", **names)
    admin = User.objects.create_superuser("root", "root@example.com", factories.PASSWORD, **names)
    ws["users"] = {
        "owner": owner,
        "compliance": compliance,
        "engineer": engineer,
        "reviewer": reviewer,
        "admin": admin,
    }

    with _capture():
        charter_metrics = [
            {
                "name": text(120, " #1"),
                "description": text(),
                "layer": MetricLayer.BUSINESS_OUTCOME,
                "role": "primary",
                "unit": text(32),
                "direction": MetricDirection.DECREASE,
                "baseline_value": Decimal("12"),
                "target_value": Decimal("9"),
                "allowed_segment_keys": [SEGMENT],
            },
            *(
                {
                    "name": text(120, f" #{n}"),
                    "description": text(),
                    "layer": MetricLayer.OUTPUT_QUALITY,
                    "role": "supporting",
                    "unit": "%",
                    "direction": MetricDirection.INCREASE,
                    "baseline_value": Decimal("40"),
                    "target_value": Decimal("70"),
                }
                for n in (2, 3)
            ),
        ]
        charter = charter_services.charter_create(
            actor=owner,
            fields={
                "title": text(200),
                "slug": "hostile",
                "problem": text(),
                "process": text(),
                "proof": text(),
                "target_users": text(),
                "intended_use": text(),
                "retirement_condition": text(),
                "review_date": timezone.localdate() + dt.timedelta(days=90),
            },
            metrics=charter_metrics,
            dependencies=[
                {"kind": DependencyKind.SYSTEM, "name": text(200), "notes": text()},
            ],
        )
        for role, person in (
            (Role.RESPONSIBLE, engineer),
            (Role.ACCOUNTABLE, compliance),
            (Role.CONSULTED, reviewer),
        ):
            for activity in Activity.values:
                raci.raci_assign(
                    actor=owner,
                    charter=charter,
                    activity=activity,
                    role=role,
                    user=person,
                    note=text(200),
                )
        charter_services.charter_submit(actor=owner, charter=charter)
        charter_services.charter_transition(
            actor=compliance, charter=charter, name="reject", reason=text()
        )
        charter_services.charter_submit(actor=owner, charter=charter)
        charter_services.charter_transition(
            actor=compliance, charter=charter, name="approve", reason=text()
        )
        charter_services.charter_transition(
            actor=owner, charter=charter, name="start_pilot", reason=text()
        )
        charter.refresh_from_db()
        ws["charter"] = charter
        # A draft, so its edit form shows the payload in inputs and text areas.
        ws["draft"] = charter_services.charter_create(
            actor=owner,
            fields={"title": text(200, " draft"), "slug": "hostile-draft", "problem": text()},
            metrics=charter_metrics[:1],
            dependencies=[{"kind": DependencyKind.DATA_SOURCE, "name": text(200), "notes": text()}],
        )
        ws["metric"] = charter.metrics.get(role="primary")

        # A compliance rule that flags the payload, with hostile texts of its own.
        rule = PolicyRule.objects.create(
            code=text(16),
            title=text(120),
            description=text(),
            kind="pattern",
            # Holds the script tag as typed; the second branch is what matches.
            pattern=SCRIPT + r"|<script>alert\(1\)</script>",
            severity="warning",
            message=text(300),
            example_true=text(),
            example_false=text(),
        )
        ws["rule"] = rule

        prompt = prompt_services.prompt_create(
            actor=owner,
            fields={
                "slug": "hostile-reply",
                "name": text(200),
                "description": text(),
                "charter": charter,
                "business_function": text(100),
                "task_type": "drafting",
                "risk_level": "medium",
                "model_family": text(100),
                "policy_tags": [text(None)[:300]],
                "tags": [text(None)[:300]],
                "retirement_condition": text(),
            },
        )
        variables = [
            {"name": "context", "description": text(), "required": True, "example": text()},
        ]
        chat = {
            "template_kind": "chat",
            "messages": [
                {"role": "system", "content": NO_TEMPLATE + " Answer from the context."},
                {"role": "user", "content": NO_TEMPLATE + "\n{{ context }}"},
            ],
            "variables": variables,
            "model_config": {"model": text(200), "temperature": 0.2, "x-note": text()},
            "release_notes": text(),
            "change_kind": "minor",
        }
        v1 = prompt_services.version_create(actor=owner, prompt=prompt, fields=chat)
        prompt_services.version_submit(actor=owner, version=v1)
        finding = PolicyFinding.objects.filter(version=v1, rule=rule).first()
        assert finding is not None, "the payload rule should flag v1"
        prompt_services.finding_waive(actor=compliance, finding=finding, reason=text())
        prompt_services.version_approve(actor=compliance, version=v1, reason=text())
        prompt_services.promotion_execute(actor=owner, version=v1, reason=text())
        prompt_services.label_move(actor=owner, version=v1, label="staging", reason=text())
        plain = {
            **chat,
            "template_kind": "text",
            "text": NO_TEMPLATE + " {{ context }}",
            "messages": [],
            "model_config": {"model": "support-chat-v1", "temperature": 0.1},
        }
        v2 = prompt_services.version_create(actor=owner, prompt=prompt, fields=plain)
        prompt_services.version_submit(actor=owner, version=v2)
        prompt_services.version_approve(actor=compliance, version=v2, reason=text())
        promotion = approval_services.promotion_request(actor=owner, version=v2, reason=text())
        approval_services.approval_decide(
            actor=reviewer, request=promotion, verdict="comment", comment=text()
        )
        approval_services.approval_decide(
            actor=compliance, request=promotion, verdict="request_changes", comment=text()
        )
        v3 = prompt_services.version_create(actor=owner, prompt=prompt, fields=plain)
        prompt_services.version_submit(actor=owner, version=v3)
        prompt_services.version_reject(actor=compliance, version=v3, reason=text())
        go_live = approval_services.charter_transition_request(
            actor=owner, charter=charter, name="go_live", reason=text()
        )
        v4 = prompt_services.version_create(actor=owner, prompt=prompt, fields=chat)
        ws.update(prompt=prompt, v1=v1, v2=v2, v3=v3, v4=v4, finding=finding)
        ws.update(promotion=promotion, go_live=go_live)

        application = prompt_services.application_create(
            actor=engineer, name=text(150), slug="hostile-app", description=text()
        )
        key, plain_key = prompt_services.application_key_create(
            actor=engineer, application=application, name=text(50)
        )
        ws.update(application=application, api_key=key, plain_key=plain_key)

        # Evaluations: a dataset of hostile cases, a suite, a posted run with hostile outputs.
        dataset = eval_services.dataset_create(
            actor=owner,
            name=text(200),
            slug="hostile-cases",
            description=text(),
            charter=charter,
            prompt=prompt,
        )
        rows = [
            {
                "id": text(200, f" c{n}"),
                "variables": {"context": text()},
                "expected": text(),
                "contexts": [text()],
                "segments": {SEGMENT: SEGMENT + str(n % 2)},
                "tags": [text(None)[:200]],
            }
            for n in range(4)
        ]
        version = eval_services.dataset_version_upload(
            actor=owner,
            dataset=dataset,
            stream=_jsonl(rows),
            filename=text(200) + ".jsonl",
            notes=text(),
        )
        suite = eval_services.suite_create(
            actor=owner,
            charter=charter,
            slug="hostile-quality",
            fields={
                "name": text(200),
                "description": text(),
                "prompt": prompt,
                "dataset_version": version,
                "scorers": [
                    {"scorer": "token_f1"},
                    {"scorer": "contains", "params": {"text": [text(200)]}},
                ],
                "min_segment_cases": 1,
            },
        )
        threshold = eval_services.threshold_set(
            actor=owner,
            suite=suite,
            fields={
                "metric": "token_f1",
                "aggregate": "worst_segment",
                "comparator": ">=",
                "value": 0.5,
                "segment_key": SEGMENT,
                "rationale": text(),
            },
        )
        run = eval_services.run_start(
            actor=owner,
            suite=suite,
            prompt_version=v2,
            note=text(300),
            # Both are typed into the API's run request (a posted run ignores them).
            queue=text(64),
            input_variable=text(100),
        )
        eval_services.run_outputs_post(
            actor=owner,
            run=run,
            items=enumerate(({"id": r["id"], "output": text()} for r in rows), start=1),
            complete=True,
        )
        run.refresh_from_db()
        # Someone other than its owner asks to change the threshold: an approval request.
        change = approval_services.threshold_change(
            actor=engineer, threshold=threshold, fields={"rationale": text()}, reason=text()
        )
        prompt_services.prompt_deprecate(actor=owner, prompt=prompt, reason=text())
        ws.update(threshold_change=change)
        ws.update(dataset=dataset, dataset_version=version, suite=suite, threshold=threshold)
        ws["run"] = run

    # Rows a worker or an upstream system writes, holding what an attacker could get there.
    artifact = ModelArtifact.objects.create(
        slug="hostile-model",
        name=text(200),
        description=text(),
        charter=charter,
        task="sequence_classification",
        status="valid",
        sha256="0" * 64,
        labels=[text(100), "ok"],
        source=text(300),
        license=text(100),
        storage_dir="models/hostile",
        # Validation problems quote names read from the uploaded ONNX file.
        validation={"ok": False, "problems": [text(300)]},
        owner=owner,
    )
    # A generated run records the endpoint's own error message for a case.
    run.outputs.filter(pk=run.outputs.order_by("pk").first().pk).update(error=text())
    # Operators type an endpoint's texts; made directly, since the services refuse a hostile
    # proxy or credential name. The credential's name is tagged: only stewards may read it.
    endpoint = ModelEndpoint.objects.create(
        name=text(120),
        slug="hostile-endpoint",
        description=text(),
        base_url="http://llm.invalid/v1",
        model_names=[text(200)],
        vendor=text(120),
        region=text(80),
        terms=text(),
        status="approved",
        status_reason=text(300),
        credential=text(100, CREDENTIAL_TAG),
        allow_private_reason=text(300),
        proxy=text(300),
    )
    # The run page shows the snapshot's name and vendor: tagged, so the page proves it.
    type(run).objects.filter(pk=run.pk).update(
        endpoint={
            **endpoint.snapshot(text(200)),
            "name": text(120, SNAPSHOT_NAME_TAG),
            "vendor": text(120, SNAPSHOT_VENDOR_TAG),
        }
    )
    route = Route.objects.create(prompt=prompt, endpoint=endpoint, model=text(200))
    call = Call.objects.create(
        prompt=prompt,
        version=v1,
        application=application,
        charter_id=charter.pk,
        label="production",
        status="flagged",
        findings=[{"rule": rule.code, "excerpt": text(120)}],
        error=text(500),
    )
    OnlineScore.objects.create(
        call=call,
        charter_id=charter.pk,
        output=text(),
        variables={"context": text()},
        metrics={"token_f1": 0.5},
    )
    DriftAlert.objects.create(
        charter=charter, prompt=prompt, run=run, summary=text(), regressions=[{"metric": text()}]
    )
    ws.update(artifact=artifact, endpoint=endpoint, route=route, call=call)

    now = timezone.now().isoformat()
    result = telemetry_ingest(
        actor=owner,
        source=text(100),
        observations=[
            {
                "charter": charter.slug,
                "metric": ws["metric"].name,
                "value": 10.0,
                "time": now,
                "segments": {SEGMENT: text(100)},
                "idempotency_key": text(200),
            }
        ],
        events=[
            {
                "charter": charter.slug,
                "event": "finished",
                "task_id": text(200),
                "time": now,
                "segments": {"language": text(100)},
                "idempotency_key": text(200, " e"),
            }
        ],
    )
    assert result["rejected"] == [], result
    # The correlation id comes from the caller's X-Request-ID header (64 characters).
    token = correlation_id.set(text(64))
    try:
        audit.record(
            "charter.transition",
            actor=owner,
            obj=charter,
            data={"reason": text(), "note": [text(200)]},
        )
    finally:
        correlation_id.reset(token)
    return ws
