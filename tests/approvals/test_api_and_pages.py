"""The approvals API and pages: RACI matrix, inbox, decisions, timeline, evidence pack."""

import csv
import io
import json

import pytest
from rest_framework.test import APIClient

from apps.approvals import services
from apps.core import audit

pytestmark = pytest.mark.django_db


@pytest.fixture
def api():
    return APIClient()


def test_raci_matrix_through_the_api(api, owner, engineer, charter):
    api.force_authenticate(owner)
    added = api.post(
        f"/api/v1/charters/{charter.slug}/raci/",
        {"activity": "respond_to_drift", "role": "R", "user": engineer.username},
        format="json",
    )
    assert added.status_code == 201
    matrix = api.get(f"/api/v1/charters/{charter.slug}/raci/").json()
    drift = next(r for r in matrix["effective"] if r["activity"] == "respond_to_drift")
    assert drift["roles"]["R"]["source"] == "charter" and drift["roles"]["A"]["source"] == "global"
    assert matrix["problems"] == {} and matrix["editable"] is True
    first = api.post(
        f"/api/v1/charters/{charter.slug}/raci/",
        {"activity": "respond_to_drift", "role": "A", "user": engineer.username},
        format="json",
    )
    assert first.status_code == 201
    twice = api.post(
        f"/api/v1/charters/{charter.slug}/raci/",
        {"activity": "respond_to_drift", "role": "A", "user": owner.username},
        format="json",
    )
    assert twice.status_code == 400 and "Accountable" in twice.json()["detail"]
    removed = api.delete(f"/api/v1/charters/{charter.slug}/raci/{added.json()['id']}/")
    assert removed.status_code == 204


def test_inbox_decide_and_evidence_pack(api, owner, compliance, outsider, candidate):
    request = services.promotion_request(actor=owner, version=candidate, reason="Grounding fix")
    api.force_authenticate(compliance)
    mine = api.get("/api/v1/approvals/requests/?mine=1").json()["results"]
    assert [r["id"] for r in mine] == [request.pk]
    decided = api.post(
        f"/api/v1/approvals/requests/{request.pk}/decide/",
        {"verdict": "approve", "comment": "Looks right"},
        format="json",
    )
    assert decided.json()["status"] == "executed"
    assert decided.json()["decisions"][0]["actor"] == "carl"
    charter = candidate.prompt.charter
    pack = json.loads(api.get(f"/api/v1/charters/{charter.slug}/evidence/").content)
    assert pack["audit_chain"]["verified"] is True
    assert pack["approvals"][0]["decisions"][0]["comment"] == "Looks right"
    labels = pack["prompts"][0]["label_history"]
    assert [(m["label"], m["to"]) for m in labels][-1] == ("production", 2)
    assert pack["prompts"][0]["diffs"][0]["from"] == 1
    verbs = {e["verb"] for e in pack["audit_events"]}
    assert {"approval.request", "approval.decide", "approval.execute", "prompt.promote"} <= verbs
    rows = list(
        csv.reader(
            io.StringIO(
                api.get(f"/api/v1/charters/{charter.slug}/evidence/?as=csv").content.decode()
            )
        )
    )
    assert rows[0] == ["section", "subject", "when", "who", "what", "detail"]
    assert any(r[0] == "decision" and r[4] == "approve" for r in rows)
    assert rows[-1][4] == "verified"
    api.force_authenticate(outsider)
    assert api.get(f"/api/v1/charters/{charter.slug}/evidence/").status_code == 404
    assert api.get(f"/api/v1/approvals/requests/{request.pk}/").status_code == 404
    timeline = api.get("/api/v1/audit/?verb=approval.execute").json()
    assert timeline == []


def test_timeline_filters_by_object_person_and_verb(client, owner, compliance, candidate):
    request = services.promotion_request(actor=owner, version=candidate)
    services.approval_decide(actor=compliance, request=request, verdict="approve")
    client.force_login(compliance)
    page = client.get("/approvals/audit/?verb=approval.decide").content.decode()
    assert "approval.decide" in page and "approval.request</code>" not in page
    page = client.get(
        f"/approvals/audit/?object_type=approvals.approvalrequest&object_id={request.pk}"
    ).content.decode()
    assert "approval.request" in page and "approval.execute" in page
    assert audit.verify_chain().ok


def test_pages_for_requester_approver_and_matrix(client, owner, compliance, candidate):
    request = services.promotion_request(actor=owner, version=candidate)
    client.force_login(compliance)
    inbox = client.get("/approvals/").content.decode()
    assert f"#{request.pk}" in inbox and "support-reply v2 → production" in inbox
    detail = client.get(request.get_absolute_url()).content.decode()
    assert "accountable_approved" in detail and "Record decision" in detail
    client.force_login(owner)
    matrix = client.get(f"/approvals/raci/{candidate.prompt.charter.slug}/").content.decode()
    assert "Every activity has exactly one Accountable." in matrix and "(default)" in matrix
    response = client.post(
        f"/approvals/raci/{candidate.prompt.charter.slug}/",
        {"activity": "approve_charter", "role": "A", "user": compliance.pk},
    )
    assert response.status_code == 302
    again = client.post(
        f"/approvals/raci/{candidate.prompt.charter.slug}/",
        {"activity": "approve_charter", "role": "A", "user": owner.pk},
    ).content.decode()
    assert "already has an Accountable" in again
