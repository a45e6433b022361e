"""The registry over the API, in the admin and on the web."""

import pytest
from rest_framework.test import APIClient

from apps.approvals.models import ApprovalRequest
from apps.core import groups
from apps.core.services import api_key_create
from apps.registry.models import ModelEndpoint
from tests.factories import UserFactory, approved_endpoint

pytestmark = pytest.mark.django_db
BASE = "/api/v1/registry/endpoints/"


def _api(user=None):
    client = APIClient()
    if user is not None:
        client.force_authenticate(user)
    return client


def test_everyone_signed_in_reads_the_registry_and_nobody_else(owner, proposed):
    assert _api().get(BASE).status_code == 401
    service = UserFactory(username="ci-pipeline", groups=[groups.INTEGRATIONS])
    _, key = api_key_create(user=service, name="ci")
    keyed = APIClient()
    keyed.credentials(HTTP_AUTHORIZATION=f"Api-Key {key}")
    for client in (_api(owner), keyed):
        listed = client.get(BASE)
        assert listed.status_code == 200
        (row,) = listed.json()["results"]
        assert row["slug"] == "onprem-llm" and row["status"] == "proposed"
        assert "credential" not in row
        assert client.get(f"{BASE}onprem-llm/").json()["data_location"] == "on_premises"
    assert _api(owner).get(f"{BASE}no-such/").status_code == 404


def test_operators_propose_others_are_refused(engineer, owner):
    body = {
        "name": "Vendor",
        "base_url": "https://api.example.com/v1",
        "vendor": "Example",
        "model_names": ["m"],
    }
    assert _api(owner).post(BASE, body, format="json").status_code == 403
    # example.com may not resolve here: an address that cannot be checked is refused too.
    answer = _api(engineer).post(
        BASE, {**body, "base_url": "http://169.254.169.254/v1"}, format="json"
    )
    assert answer.status_code == 400
    assert "base_url" in answer.json()["errors"]
    assert not ModelEndpoint.objects.exists()


def test_asking_approval_and_suspending_over_the_api(engineer, compliance, proposed):
    asked = _api(engineer).post(
        f"{BASE}onprem-llm/request/", {"change": "approve", "reason": "pilot"}, format="json"
    )
    assert asked.status_code == 201, asked.content
    assert asked.json()["kind"] == "endpoint"
    request = ApprovalRequest.objects.get(pk=asked.json()["id"])
    decided = _api(compliance).post(
        f"/api/v1/approvals/requests/{request.pk}/decide/",
        {"verdict": "approve"},
        format="json",
    )
    assert decided.status_code in (200, 201), decided.content
    assert ModelEndpoint.objects.get(slug="onprem-llm").status == "approved"
    suspended = _api(engineer).post(
        f"{BASE}onprem-llm/suspend/", {"reason": "incident 42"}, format="json"
    )
    assert suspended.status_code == 200
    assert suspended.json()["status"] == "suspended"


def test_patching_where_data_goes_opens_a_request(engineer, stub):
    approved_endpoint(stub.base_url, slug="onprem-llm")
    answer = _api(engineer).patch(
        f"{BASE}onprem-llm/",
        {"region": "us-east", "timeout_s": 9, "reason": "new region"},
        format="json",
    )
    assert answer.status_code == 200, answer.content
    body = answer.json()
    assert body["endpoint"]["timeout_s"] == 9
    assert body["endpoint"]["region"] == ""
    request = ApprovalRequest.objects.get(pk=body["approval_request"])
    assert request.proposed["fields"] == {"region": "us-east"}


def test_registry_pages_for_everyone_signed_in(client, owner, proposed):
    client.force_login(owner)
    listed = client.get("/registry/")
    assert listed.status_code == 200
    assert b"On-prem LLM" in listed.content
    assert b"Propose an endpoint" not in listed.content
    detail = client.get("/registry/onprem-llm/")
    assert detail.status_code == 200
    assert b"On premises" in detail.content
    assert client.get("/registry/missing/").status_code == 404


def test_admin_add_is_a_proposal_and_a_governed_edit_waits(client, engineer, stub):
    engineer.is_staff = True
    engineer.save(update_fields=["is_staff"])
    client.force_login(engineer)
    form = {
        "name": "Admin LLM",
        "slug": "admin-llm",
        "description": "",
        "provider_kind": "openai",
        "base_url": stub.base_url,
        "model_names": "local-llm",
        "vendor": "internal",
        "data_location": "on_premises",
        "region": "",
        "retention_days": "",
        "training_use": "no",
        "terms": "",
        "risk_tiers": ["low", "medium"],
        "credential": "",
        "allow_private": "on",
        "allow_private_reason": "on-prem",
        "proxy": "",
        "price_per_1k_input": "0",
        "price_per_1k_output": "0",
        "timeout_s": "30",
        "max_retries": "2",
        "concurrency": "4",
    }
    added = client.post("/admin/registry/modelendpoint/add/", form)
    assert added.status_code == 302, added.content.decode()[:2000]
    endpoint = ModelEndpoint.objects.get(slug="admin-llm")
    assert endpoint.status == "proposed" and endpoint.risk_tiers == ["low", "medium"]
    ModelEndpoint.objects.filter(pk=endpoint.pk).update(status="approved")
    changed = client.post(
        f"/admin/registry/modelendpoint/{endpoint.pk}/change/",
        {**form, "data_location": "vendor_global", "timeout_s": "11"},
    )
    assert changed.status_code == 302
    endpoint.refresh_from_db()
    assert endpoint.data_location == "on_premises" and endpoint.timeout_s == 11
    assert ApprovalRequest.objects.filter(endpoint=endpoint, transition="change").exists()
    # The status itself is never a form field.
    assert (
        b'name="status"'
        not in client.get(f"/admin/registry/modelendpoint/{endpoint.pk}/change/").content
    )


def test_admin_actions_ask_and_suspend(client, engineer, proposed):
    engineer.is_staff = True
    engineer.save(update_fields=["is_staff"])
    client.force_login(engineer)
    url = "/admin/registry/modelendpoint/"
    client.post(
        url,
        {"action": "ask_approve", "_selected_action": [proposed.pk], "apply": "1", "reason": "go"},
    )
    assert ApprovalRequest.objects.filter(endpoint=proposed, transition="approve").exists()
    proposed.refresh_from_db()
    assert proposed.status == "proposed"
    ModelEndpoint.objects.filter(pk=proposed.pk).update(status="approved")
    client.post(
        url,
        {"action": "suspend", "_selected_action": [proposed.pk], "apply": "1", "reason": "stop"},
    )
    proposed.refresh_from_db()
    assert proposed.status == "suspended"


def test_gateway_route_admin_takes_only_an_approved_endpoint(
    client, compliance, support_prompt, stub
):
    from apps.gateway.models import Route

    compliance.is_superuser = compliance.is_staff = True
    compliance.save(update_fields=["is_superuser", "is_staff"])
    client.force_login(compliance)
    proposed = approved_endpoint(stub.base_url, slug="not-yet", status="proposed")
    form = {
        "prompt": support_prompt.pk,
        "endpoint": proposed.pk,
        "model": "local-llm",
        "filter_mode": "flag",
        "rate_limit_per_minute": "600",
        "sample_rate": "0",
    }
    refused = client.post("/admin/gateway/route/add/", form)
    assert refused.status_code == 200 and not Route.objects.exists()
    ok = approved_endpoint(stub.base_url, slug="ok-llm")
    wrong_model = client.post(
        "/admin/gateway/route/add/", {**form, "endpoint": ok.pk, "model": "x"}
    )
    assert wrong_model.status_code == 200 and not Route.objects.exists()
    assert b"does not serve model" in wrong_model.content
    added = client.post("/admin/gateway/route/add/", {**form, "endpoint": ok.pk})
    assert added.status_code == 302
    assert Route.objects.get().endpoint == ok


def test_a_charter_dependency_links_its_registry_entry(client, owner, charter, stub):
    endpoint = approved_endpoint(stub.base_url, slug="onprem-llm", name="On-prem LLM")
    api = _api(owner)
    url = f"/api/v1/charters/{charter.slug}/"
    wrong_kind = api.patch(
        url,
        {"dependencies": [{"kind": "team", "name": "Ops", "endpoint": "onprem-llm"}]},
        format="json",
    )
    assert wrong_kind.status_code == 400
    assert "dependencies[0].endpoint" in wrong_kind.json()["errors"]
    missing = api.patch(
        url, {"dependencies": [{"kind": "model", "name": "LLM", "endpoint": "nope"}]}, format="json"
    )
    assert missing.status_code == 400
    linked = api.patch(
        url,
        {"dependencies": [{"kind": "model", "name": "LLM", "endpoint": "onprem-llm"}]},
        format="json",
    )
    assert linked.status_code == 200, linked.content
    assert linked.json()["dependencies"][0]["endpoint"] == "onprem-llm"
    ModelEndpoint.objects.filter(pk=endpoint.pk).update(status="suspended")
    client.force_login(owner)
    page = client.get(charter.get_absolute_url()).content.decode()
    assert "On-prem LLM" in page and "Suspended" in page
