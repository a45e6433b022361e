"""Reads for auditors: the effective RACI matrix, audit timelines, and a charter's complete
evidence pack (charter, RACI, versions, diffs, findings, waivers, evaluation verdicts,
approvals, label history, audit events and the chain's verification) as JSON or CSV."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
from collections.abc import Mapping
from typing import Any

from django.db.models import Q, QuerySet
from django.http import HttpResponse

from apps.charters.models import Charter
from apps.charters.selectors import charter_list_visible
from apps.core import csvsafe
from apps.core.audit import verify_chain
from apps.core.models import AuditEvent

from . import raci
from .choices import Activity, Role
from .models import ApprovalRequest


def effective_matrix(charter: Charter | None) -> list[dict[str, Any]]:
    """Activities × roles with who applies and whether it is the charter's own or the default."""
    rows = []
    for activity in Activity:
        cells = {}
        for role in Role:
            assignments = raci.effective(charter, activity, role)
            cells[role.value] = {
                "who": [a.who for a in assignments],
                "ids": [a.pk for a in assignments],
                "source": (
                    "charter"
                    if assignments and assignments[0].charter_id
                    else ("global" if assignments else "")
                ),
            }
        rows.append({"activity": activity.value, "label": activity.label, "roles": cells})
    return rows


def timeline(user, params: Mapping[str, str]) -> QuerySet[AuditEvent]:
    """Audit events the user may see (their charters', or all for compliance), filtered."""
    events = AuditEvent.objects.select_related("actor").order_by("-id")
    if not user.has_perm("charters.view_charter"):
        visible = charter_list_visible(user).values_list("pk", flat=True)
        events = events.filter(Q(charter_id__in=list(visible)) | Q(actor=user))
    if params.get("charter"):
        charter = (
            Charter.objects.filter(slug=params["charter"]).values_list("pk", flat=True).first()
        )
        events = events.filter(charter_id=charter)
    for key in ("object_type", "object_id", "verb"):
        if params.get(key):
            events = events.filter(**{key: params[key]})
    if params.get("actor"):
        events = events.filter(actor_name=params["actor"])
    for key, lookup in (("since", "created_at__date__gte"), ("until", "created_at__date__lte")):
        if params.get(key):
            try:
                events = events.filter(**{lookup: dt.date.fromisoformat(params[key])})
            except ValueError:
                events = events.none()
    return events


def event_dict(event: AuditEvent) -> dict[str, Any]:
    return {
        "id": event.pk,
        "created_at": event.created_at.isoformat(),
        "verb": event.verb,
        "actor": event.actor_name,
        "object_type": event.object_type,
        "object_id": event.object_id,
        "object": event.object_repr,
        "charter_id": event.charter_id,
        "data": event.data,
        "correlation_id": event.correlation_id,
        "hash": event.hash,
    }


def _version(version) -> dict[str, Any]:
    return {
        "number": version.number,
        "status": version.status,
        "change_kind": version.change_kind,
        "content_hash": version.content_hash,
        "author": version.author.get_username() if version.author_id else "",
        "decided_by": version.decided_by.get_username() if version.decided_by_id else "",
        "decided_at": version.decided_at.isoformat() if version.decided_at else None,
        "decision_reason": version.decision_reason,
        "release_notes": version.release_notes,
        "findings": [
            {
                "rule": f.rule.code if f.rule_id else "",
                "severity": f.severity,
                "message": f.message,
                "waived_by": f.waived_by.get_username() if f.waived_by_id else "",
                "waived_at": f.waived_at.isoformat() if f.waived_at else None,
                "waiver_reason": f.waiver_reason,
            }
            for f in version.findings.select_related("rule", "waived_by")
        ],
    }


def pack(charter: Charter) -> dict[str, Any]:
    """Everything an auditor needs about one charter, in one document."""
    from apps.evaluations.models import Run
    from apps.prompts import content
    from apps.prompts.models import LabelMove

    prompts = []
    for prompt in charter.prompts.order_by("slug"):
        versions = list(prompt.versions.select_related("author", "decided_by").order_by("number"))
        prompts.append(
            {
                "slug": prompt.slug,
                "name": prompt.name,
                "status": prompt.status,
                "risk_level": prompt.risk_level,
                "versions": [_version(v) for v in versions],
                "diffs": [
                    {"from": a.number, "to": b.number, "diff": content.diff(a, b)}
                    for a, b in zip(versions, versions[1:], strict=False)
                ],
                "label_history": [
                    {
                        "label": move.label,
                        "from": move.from_version.number if move.from_version_id else None,
                        "to": move.to_version.number,
                        "by": move.moved_by.get_username() if move.moved_by_id else "",
                        "at": move.moved_at.isoformat(),
                        "reason": move.reason,
                    }
                    for move in LabelMove.objects.filter(prompt=prompt)
                    .select_related("from_version", "to_version", "moved_by")
                    .order_by("moved_at", "id")
                ],
            }
        )
    runs = Run.objects.filter(suite__charter=charter, status="completed").select_related(
        "suite", "prompt_version__prompt"
    )
    approvals = ApprovalRequest.objects.filter(charter=charter).prefetch_related("decisions__actor")
    events = AuditEvent.objects.filter(charter_id=charter.pk).order_by("id")
    chain = verify_chain()
    return {
        "generated_at": dt.datetime.now(dt.UTC).isoformat(),
        "charter": {
            "slug": charter.slug,
            "title": charter.title,
            "status": charter.status,
            "risk_tier": charter.risk_tier,
            "business_owner": charter.business_owner.get_username(),
            "problem": charter.problem,
            "process": charter.process,
            "proof": charter.proof,
            "review_date": charter.review_date.isoformat() if charter.review_date else None,
            "metrics": [
                {
                    "name": m.name,
                    "layer": m.layer,
                    "role": m.role,
                    "baseline": str(m.baseline_value),
                    "target": str(m.target_value),
                }
                for m in charter.metrics.all()
            ],
        },
        "model_endpoints": [
            {
                "dependency": d.name,
                "endpoint": d.endpoint.slug,
                "status": d.endpoint.status,
                "vendor": d.endpoint.vendor,
                "data_location": d.endpoint.data_location,
                "region": d.endpoint.region,
                "retention_days": d.endpoint.retention_days,
                "training_use": d.endpoint.training_use,
            }
            for d in charter.dependencies.filter(endpoint__isnull=False).select_related("endpoint")
        ],
        "raci": effective_matrix(charter),
        "raci_problems": raci.problems(charter),
        "prompts": prompts,
        "evaluations": [
            {
                "run": run.pk,
                "suite": run.suite.slug,
                "subject": run.subject,
                "content_hash": run.content_hash,
                "verdict": run.verdict,
                "finished_at": run.finished_at.isoformat() if run.finished_at else None,
                "scorer_artifacts": run.scorer_artifacts,
                "gate": run.gate,
                "output_source": run.output_source,
                # Which registry endpoint, model and data location produced the outputs.
                "generated_by": {
                    k: run.endpoint.get(k, "")
                    for k in ("endpoint", "name", "model", "vendor", "data_location", "region")
                }
                if (run.endpoint or {}).get("endpoint")
                else None,
            }
            for run in runs.order_by("finished_at")
        ],
        "approvals": [
            {
                "id": a.pk,
                "kind": a.kind,
                "subject": a.subject,
                "status": a.status,
                "requested_by": a.requested_by.get_username(),
                "reason": a.reason,
                "evidence": a.evidence,
                "outcome": a.outcome,
                "decisions": [
                    {
                        "by": d.actor.get_username(),
                        "verdict": d.verdict,
                        "comment": d.comment,
                        "roles": d.roles,
                        "at": d.created_at.isoformat(),
                    }
                    for d in a.decisions.all()
                ],
            }
            for a in approvals.select_related("requested_by")
        ],
        # Status changes made directly by someone who does not run the charter, with why.
        "overrides": [event_dict(e) for e in events if e.verb == "charter.override"],
        "audit_events": [event_dict(e) for e in events],
        "audit_chain": {
            "verified": chain.ok,
            "checked": chain.checked,
            "broken_at": chain.broken_at,
            "reason": chain.reason,
        },
    }


class _SafeWriter:
    """A csv writer whose cells cannot run as spreadsheet formulas."""

    def __init__(self, writer) -> None:
        self.writer = writer

    def writerow(self, values) -> None:
        self.writer.writerow(csvsafe.row(values))


def pack_csv(data: dict[str, Any]) -> str:
    """The pack flattened for spreadsheets: one row per fact, section first."""
    out = io.StringIO()
    writer = _SafeWriter(csv.writer(out))
    writer.writerow(["section", "subject", "when", "who", "what", "detail"])
    charter = data["charter"]
    writer.writerow(
        [
            "charter",
            charter["slug"],
            "",
            charter["business_owner"],
            charter["status"],
            charter["title"],
        ]
    )
    for row in data["raci"]:
        for role, cell in row["roles"].items():
            if cell["who"]:
                writer.writerow(
                    ["raci", row["activity"], "", "; ".join(cell["who"]), role, cell["source"]]
                )
    for prompt in data["prompts"]:
        for v in prompt["versions"]:
            writer.writerow(
                [
                    "version",
                    f"{prompt['slug']} v{v['number']}",
                    v["decided_at"] or "",
                    v["decided_by"] or v["author"],
                    v["status"],
                    v["content_hash"],
                ]
            )
            for f in v["findings"]:
                writer.writerow(
                    [
                        "finding",
                        f"{prompt['slug']} v{v['number']}",
                        f["waived_at"] or "",
                        f["waived_by"],
                        f"{f['severity']} {f['rule']}",
                        f["waiver_reason"] or f["message"],
                    ]
                )
        for move in prompt["label_history"]:
            writer.writerow(
                [
                    "label",
                    prompt["slug"],
                    move["at"],
                    move["by"],
                    f"{move['label']}: {move['from']} → {move['to']}",
                    move["reason"],
                ]
            )
    for endpoint in data["model_endpoints"]:
        writer.writerow(
            [
                "model_endpoint",
                endpoint["dependency"],
                "",
                endpoint["vendor"],
                endpoint["status"],
                f"{endpoint['endpoint']}: data {endpoint['data_location']} {endpoint['region']}".strip(),
            ]
        )
    for run in data["evaluations"]:
        generated = run["generated_by"]
        writer.writerow(
            [
                "evaluation",
                f"run #{run['run']} {run['subject']}",
                run["finished_at"] or "",
                "",
                run["verdict"],
                run["suite"]
                + (
                    f" (outputs: {generated['endpoint']} {generated['model']}, "
                    f"data {generated['data_location']})"
                    if generated
                    else f" (outputs: {run['output_source']})"
                ),
            ]
        )
    for a in data["approvals"]:
        writer.writerow(
            [
                "approval",
                f"#{a['id']} {a['subject']}",
                "",
                a["requested_by"],
                a["status"],
                a["reason"],
            ]
        )
        for d in a["decisions"]:
            writer.writerow(
                ["decision", f"#{a['id']}", d["at"], d["by"], d["verdict"], d["comment"]]
            )
    for e in data["audit_events"]:
        writer.writerow(
            [
                "audit",
                f"{e['object_type']}:{e['object_id']}",
                e["created_at"],
                e["actor"],
                e["verb"],
                json.dumps(e["data"], ensure_ascii=False),
            ]
        )
    chain = data["audit_chain"]
    writer.writerow(
        [
            "audit_chain",
            "",
            "",
            "",
            "verified" if chain["verified"] else "BROKEN",
            chain["reason"] or f"{chain['checked']} events",
        ]
    )
    return out.getvalue()


def pack_response(charter: Charter, fmt: str) -> HttpResponse:
    data = pack(charter)
    if fmt == "csv":
        response = HttpResponse(pack_csv(data), content_type="text/csv; charset=utf-8")
        response["Content-Disposition"] = f'attachment; filename="{charter.slug}-evidence.csv"'
        return response
    response = HttpResponse(
        json.dumps(data, indent=2, ensure_ascii=False, default=str), content_type="application/json"
    )
    response["Content-Disposition"] = f'attachment; filename="{charter.slug}-evidence.json"'
    return response
