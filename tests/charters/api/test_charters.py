"""The charter API: who sees what, what each command answers, and what it writes."""

import datetime as dt

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from apps.charters import services
from apps.charters.models import Charter, Metric
from tests import factories

pytestmark = pytest.mark.django_db
URL = "/api/v1/charters/"


def detail(slug, suffix=""):
    return f"{URL}{slug}/{suffix}"


NEW = {
    "title": "Claims triage",
    "problem": "Claims wait two days before routing.",
    "risk_tier": "high",
    "metrics": [
        {
            "name": "Time to first touch",
            "layer": "business_outcome",
            "role": "primary",
            "direction": "decrease",
            "baseline_value": "48",
            "target_value": "4",
            "unit": "hours",
        },
    ],
    "dependencies": [{"kind": "system", "name": "Guidewire", "criticality": "critical"}],
}


def test_anonymous_gets_401(api, charter):
    response = api.get(URL)
    assert response.status_code == 401
    assert response.json()["code"] == "not_authenticated"


def test_owner_lists_and_reads_their_charter(as_user, owner, charter):
    api = as_user(owner)
    rows = api.get(URL).json()["results"]
    assert [r["slug"] for r in rows] == ["support-reply-drafting"]
    assert rows[0]["metric_count"] == 3 and rows[0]["available_transitions"] == ["submit"]
    body = api.get(detail(charter.slug)).json()
    assert (
        body["business_owner"] == "olivia"
        and len(body["metrics"]) == 3
        and body["dependencies"][0]["kind"] == "system"
    )


def test_outsider_gets_404_everywhere_and_an_empty_list(as_user, outsider, charter):
    api = as_user(outsider)
    assert api.get(URL).json()["results"] == []
    assert api.get(detail(charter.slug)).status_code == 404
    assert api.patch(detail(charter.slug), {"title": "x"}, format="json").status_code == 404
    assert api.post(detail(charter.slug, "submit/")).status_code == 404
    assert api.delete(detail(charter.slug)).status_code == 404
    assert api.get(detail(charter.slug, "access/")).status_code == 404
    assert api.get("/api/v1/metrics/").json()["results"] == []
    charter.refresh_from_db()
    assert charter.title == "Support reply drafting"


def test_compliance_reads_all_but_cannot_edit(as_user, compliance, charter):
    api = as_user(compliance)
    assert api.get(detail(charter.slug)).status_code == 200
    response = api.patch(detail(charter.slug), {"title": "x"}, format="json")
    assert response.status_code == 403 and response.json()["code"] == "permission_denied"


def test_create_with_nested_rows(as_user, owner):
    response = as_user(owner).post(URL, NEW, format="json")
    assert response.status_code == 201, response.json()
    body = response.json()
    assert body["slug"] == "claims-triage" and body["status"] == "draft"
    assert [m["name"] for m in body["metrics"]] == ["Time to first touch"]
    charter = Charter.objects.get(slug="claims-triage")
    assert charter.history.latest().history_user == owner


def test_bad_create_answers_400_with_field_errors_and_writes_nothing(as_user, owner):
    bad = {**NEW, "title": "", "risk_tier": "extreme", "metrics": [{"name": "", "layer": "vibes"}]}
    response = as_user(owner).post(URL, bad, format="json")
    assert response.status_code == 400
    errors = response.json()["errors"]
    assert {"title", "risk_tier", "metrics[0].layer", "metrics[0].direction"} <= set(errors)
    assert not Charter.objects.exists() and not Metric.objects.exists()


def test_service_validation_errors_are_400_with_fields(as_user, owner):
    dup = {**NEW, "metrics": [NEW["metrics"][0], NEW["metrics"][0]]}
    response = as_user(owner).post(URL, dup, format="json")
    assert response.status_code == 400
    assert "metrics[1].name" in response.json()["errors"]
    assert not Charter.objects.exists()


def test_people_outside_business_owners_cannot_create(as_user, engineer):
    assert as_user(engineer).post(URL, NEW, format="json").status_code == 403


def test_patch_replaces_nested_lists_only_when_given(as_user, owner, charter):
    api = as_user(owner)
    api.patch(detail(charter.slug), {"title": "Renamed"}, format="json")
    assert charter.metrics.count() == 3
    response = api.patch(
        detail(charter.slug),
        {"dependencies": [{"kind": "team", "name": "Support Ops"}]},
        format="json",
    )
    assert response.status_code == 200
    assert [d["name"] for d in response.json()["dependencies"]] == ["Support Ops"]


def test_editing_a_submitted_charter_is_409(as_user, owner, charter):
    api = as_user(owner)
    assert api.post(detail(charter.slug, "submit/")).status_code == 200
    response = api.patch(detail(charter.slug), {"title": "Sneaky"}, format="json")
    assert response.status_code == 409 and response.json()["code"] == "invalid_transition"
    assert api.delete(detail(charter.slug)).status_code == 409


def test_submit_incomplete_lists_each_gap(as_user, owner):
    charter = factories.CharterFactory(
        business_owner=owner, complete=False, proof="", review_date=None
    )
    response = as_user(owner).post(detail(charter.slug, "submit/"))
    assert response.status_code == 400
    errors = response.json()["errors"]
    assert {"proof", "review_date", "metrics", "dependencies"} <= set(errors)
    assert errors["review_date"] == ["A review date is required before submitting."]


def test_every_transition_through_the_api(api, owner, compliance, charter):
    steps = [
        (owner, "submit", {}),
        (owner, "withdraw", {}),
        (owner, "submit", {}),
        (compliance, "approve", {"reason": "ok"}),
        (owner, "start-pilot", {}),
        (owner, "pause", {"reason": "incident"}),
        (compliance, "resume", {"reason": "incident closed (an override, so with a reason)"}),
        (owner, "retire", {"reason": "done"}),
    ]
    for user, name, body in steps[:5]:
        api.force_login(user)
        response = api.post(detail(charter.slug, f"{name}/"), body, format="json")
        assert response.status_code == 200, (name, response.json())
    # Production needs a second person: a direct go-live is refused, even for compliance; the
    # owner asks and compliance decides.
    api.force_login(compliance)
    refused = api.post(detail(charter.slug, "go-live/"), {}, format="json")
    assert refused.status_code == 409 and "second person" in refused.json()["detail"]
    api.force_login(owner)
    asked = api.post(detail(charter.slug, "request/go_live/"), {"reason": "ready"}, format="json")
    assert asked.status_code == 201, asked.content
    api.force_login(compliance)
    decided = api.post(
        f"/api/v1/approvals/requests/{asked.json()['id']}/decide/",
        {"verdict": "approve"},
        format="json",
    )
    assert decided.status_code == 200, decided.content
    for user, name, body in steps[5:]:
        api.force_login(user)
        response = api.post(detail(charter.slug, f"{name}/"), body, format="json")
        assert response.status_code == 200, (name, response.json())
    assert response.json()["status"] == "retired"
    assert response.json()["status_reason"] == "done"


def test_reject_without_a_reason_is_400(api, owner, compliance, charter):
    services.charter_submit(actor=owner, charter=charter)
    api.force_login(compliance)
    response = api.post(detail(charter.slug, "reject/"), {}, format="json")
    assert response.status_code == 400 and response.json()["errors"] == {
        "reason": ["This field is required."]
    }


def test_invalid_transition_is_409_with_the_reason(as_user, compliance, charter):
    response = as_user(compliance).post(detail(charter.slug, "approve/"))
    assert response.status_code == 409
    assert (
        response.json()["detail"] == "Cannot approve a charter that is draft; it must be submitted."
    )


def test_owner_cannot_approve_their_own_charter(as_user, owner, charter):
    services.charter_submit(actor=owner, charter=charter)
    assert as_user(owner).post(detail(charter.slug, "approve/")).status_code == 403


def test_share_then_unshare_takes_effect_at_once(api, owner, outsider, charter):
    api.force_login(owner)
    response = api.post(
        detail(charter.slug, "share/"), {"username": "oscar", "access": "view"}, format="json"
    )
    assert {"username": "oscar", "permissions": ["view_charter"]} in response.json()
    api.force_login(outsider)
    assert api.get(detail(charter.slug)).status_code == 200
    assert api.patch(detail(charter.slug), {"title": "x"}, format="json").status_code == 403
    api.force_login(owner)
    assert (
        api.post(detail(charter.slug, "unshare/"), {"username": "oscar"}, format="json").status_code
        == 200
    )
    api.force_login(outsider)
    assert api.get(detail(charter.slug)).status_code == 404


def test_share_with_unknown_user_is_400(as_user, owner, charter):
    response = as_user(owner).post(
        detail(charter.slug, "share/"), {"username": "nobody"}, format="json"
    )
    assert response.status_code == 400 and "username" in response.json()["errors"]


def test_filters(as_user, compliance, owner, charter):
    other = factories.CharterFactory(
        business_owner=owner,
        risk_tier="critical",
        review_date=timezone.localdate() - dt.timedelta(days=3),
    )
    api = as_user(compliance)
    slugs = lambda query: sorted(r["slug"] for r in api.get(URL + query).json()["results"])  # noqa: E731
    assert slugs("?risk_tier=critical") == [other.slug]
    assert slugs("?review_overdue=true") == [other.slug]
    assert slugs("?review_overdue=false") == [charter.slug]
    assert slugs("?owner=olivia") == sorted([charter.slug, other.slug])
    assert slugs("?q=reply&status=draft") == sorted([charter.slug, other.slug])
    assert slugs("?status=approved") == []


def _list_queries(api) -> int:
    with CaptureQueriesContext(connection) as ctx:
        assert api.get(URL).status_code == 200
    return len(ctx)


@pytest.mark.parametrize("persona", ["owner", "compliance"])
def test_list_query_count_does_not_grow_with_rows(api, owner, compliance, persona):
    user = {"owner": owner, "compliance": compliance}[persona]
    api.force_login(user)
    for _ in range(2):
        factories.CharterFactory(business_owner=owner)
    few = _list_queries(api)
    for _ in range(8):
        factories.CharterFactory(business_owner=owner)
    assert _list_queries(api) == few


def test_metric_resource_crud(as_user, owner, charter):
    api = as_user(owner)
    response = api.post(
        "/api/v1/metrics/",
        {
            "charter": charter.slug,
            "name": "Escalations",
            "layer": "workflow_efficiency",
            "role": "supporting",
            "direction": "decrease",
            "baseline_value": "10",
            "target_value": "6",
        },
        format="json",
    )
    assert response.status_code == 201, response.json()
    metric_id = response.json()["id"]
    assert (
        api.get(f"/api/v1/metrics/?charter={charter.slug}&layer=workflow_efficiency").json()[
            "count"
        ]
        == 2
    )
    assert (
        api.patch(f"/api/v1/metrics/{metric_id}/", {"unit": "%"}, format="json").json()["unit"]
        == "%"
    )
    assert api.delete(f"/api/v1/metrics/{metric_id}/").status_code == 204
    assert not Metric.objects.filter(pk=metric_id).exists()


def test_metric_on_an_invisible_charter_is_400_not_a_leak(as_user, outsider, charter):
    response = as_user(outsider).post(
        "/api/v1/metrics/",
        {
            "charter": charter.slug,
            "name": "x",
            "layer": "output_quality",
            "direction": "increase",
        },
        format="json",
    )
    assert response.status_code == 400 and "charter" in response.json()["errors"]


def test_api_key_acts_as_its_service_user_and_history_records_it(
    api, owner, charter, integration_key
):
    bot, plain = integration_key
    services.charter_share(actor=owner, charter=charter, user=bot, access="change")
    api.credentials(HTTP_AUTHORIZATION=f"Api-Key {plain}")
    assert api.get("/api/v1/me/").json()["username"] == "ci-bot"
    response = api.patch(detail(charter.slug), {"target_users": "All agents"}, format="json")
    assert response.status_code == 200
    charter.refresh_from_db()
    assert charter.history.latest().history_user == bot
    assert bot.api_keys.get().last_used_at is not None


def test_revoked_and_garbage_keys_are_401(api, integration_key):
    bot, plain = integration_key
    api.credentials(HTTP_AUTHORIZATION="Api-Key nonsense.value")
    assert api.get(URL).status_code == 401
    bot.api_keys.update(revoked=True)
    api.credentials(HTTP_AUTHORIZATION=f"Api-Key {plain}")
    assert api.get(URL).status_code == 401


def test_schema_and_docs_are_served_without_a_cdn(client, owner):
    client.force_login(owner)
    schema = client.get("/api/schema/")
    assert schema.status_code == 200 and b"/api/v1/charters/{slug}/submit/" in schema.content
    docs = client.get("/api/docs/")
    assert docs.status_code == 200
    assert b"cdn.jsdelivr" not in docs.content and b"drf_spectacular_sidecar" in docs.content
