"""The registry's rules: what may be registered, who decides, and what a decision does."""

import pytest
from django.core.exceptions import PermissionDenied

from apps.approvals import services as approvals
from apps.approvals.choices import RequestKind, RequestStatus
from apps.core.errors import InvalidTransition, ValidationFailed
from apps.core.models import AuditEvent, Notification
from apps.gateway.models import Route
from apps.registry import services
from apps.registry.models import ModelEndpoint
from tests import factories

BASE = {
    "name": "Vendor LLM",
    "vendor": "Example AI",
    "data_location": "vendor_region",
    "region": "eu-west",
    "model_names": ["big-model"],
}


def _propose(actor, **fields):
    return services.endpoint_propose(actor=actor, fields={**BASE, **fields})


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8000/v1",
        "http://localhost/v1",
        "http://[::1]/v1",
        "http://169.254.169.254/latest/meta-data",
        "http://2130706433/v1",
        "http://0177.0.0.1/v1",
        "http://10.0.0.5/v1",
        "http://192.168.1.10/v1",
        "file:///etc/passwd",
        "gopher://127.0.0.1:6379/_INFO",
        "ftp://example.com/",
        "http://user:secret@example.com/v1",
    ],
)
def test_a_private_or_non_http_address_is_refused_at_save(engineer, url):
    with pytest.raises(ValidationFailed) as refused:
        _propose(engineer, base_url=url)
    assert "base_url" in refused.value.errors
    assert not ModelEndpoint.objects.exists()


def test_a_private_address_needs_an_explicit_recorded_allowance(engineer, stub):
    with pytest.raises(ValidationFailed) as refused:
        _propose(engineer, base_url=stub.base_url, allow_private=True)
    assert "allow_private_reason" in refused.value.errors
    endpoint = _propose(
        engineer, base_url=stub.base_url, allow_private=True, allow_private_reason="on-prem GPU"
    )
    assert endpoint.status == "proposed" and endpoint.allow_private
    event = AuditEvent.objects.get(verb="registry.endpoint.propose")
    assert event.data["allow_private"] is True


def test_the_metadata_address_is_refused_even_with_the_allowance(engineer):
    with pytest.raises(ValidationFailed) as refused:
        _propose(
            engineer,
            base_url="http://169.254.169.254/v1",
            allow_private=True,
            allow_private_reason="trust me",
        )
    assert "base_url" in refused.value.errors


def test_a_credential_must_be_declared_for_this_endpoint(engineer, stub, settings, monkeypatch):
    monkeypatch.setenv("OTHER_KEY", "s3cret")
    settings.MODEL_CREDENTIALS = {"OTHER_KEY": "another-endpoint"}
    for name in ("DJANGO_SECRET_KEY", "OTHER_KEY", "NO_SUCH_VARIABLE_AT_ALL"):
        with pytest.raises(ValidationFailed) as refused:
            _propose(
                engineer,
                slug="vendor-llm",
                base_url=stub.base_url,
                allow_private=True,
                allow_private_reason="test",
                credential=name,
            )
        (message,) = refused.value.errors["credential"]
        # The same words whether the variable exists or not: nothing about the environment.
        assert message == (
            f"No credential named {name!r} is declared for endpoint 'vendor-llm'. "
            "The operator binds each credential to one endpoint in AIFACTORY_MODEL_CREDENTIALS."
        )
    settings.MODEL_CREDENTIALS = {"OTHER_KEY": "vendor-llm"}
    endpoint = _propose(
        engineer,
        slug="vendor-llm",
        base_url=stub.base_url,
        allow_private=True,
        allow_private_reason="test",
        credential="OTHER_KEY",
    )
    assert endpoint.credential == "OTHER_KEY"


def test_only_operators_and_compliance_propose(owner, stub):
    with pytest.raises(PermissionDenied):
        _propose(owner, base_url="https://api.example.com/v1")


def test_approval_is_a_request_compliance_decides(engineer, compliance, proposed):
    request = approvals.endpoint_request(
        actor=engineer, endpoint=proposed, change="approve", reason="Pilot on-prem model"
    )
    assert request.kind == RequestKind.ENDPOINT
    assert request.subject == "model endpoint onprem-llm: approve"
    proposed.refresh_from_db()
    assert proposed.status == "proposed"
    with pytest.raises(PermissionDenied):
        approvals.approval_decide(actor=engineer, request=request, verdict="approve")
    approvals.approval_decide(actor=compliance, request=request, verdict="approve")
    request.refresh_from_db()
    proposed.refresh_from_db()
    assert request.status == RequestStatus.EXECUTED
    assert proposed.status == "approved"
    assert AuditEvent.objects.filter(verb="registry.endpoint.approve").count() == 1


def test_compliance_cannot_approve_its_own_request(compliance, compliance_two, proposed):
    request = approvals.endpoint_request(
        actor=compliance, endpoint=proposed, change="approve", reason="mine"
    )
    with pytest.raises(PermissionDenied):
        approvals.approval_decide(actor=compliance, request=request, verdict="approve")
    approvals.approval_decide(actor=compliance_two, request=request, verdict="approve")
    proposed.refresh_from_db()
    assert proposed.status == "approved"


def test_one_open_decision_per_endpoint(engineer, proposed):
    approvals.endpoint_request(actor=engineer, endpoint=proposed, change="approve", reason="a")
    with pytest.raises(InvalidTransition):
        approvals.endpoint_request(actor=engineer, endpoint=proposed, change="approve", reason="b")


def test_a_change_that_does_not_fit_the_status_is_refused(engineer, proposed):
    with pytest.raises(InvalidTransition):
        approvals.endpoint_request(actor=engineer, endpoint=proposed, change="reinstate")


def _approve(endpoint):
    ModelEndpoint.objects.filter(pk=endpoint.pk).update(status="approved")
    endpoint.refresh_from_db()
    return endpoint


def test_editing_where_data_goes_on_an_approved_endpoint_is_a_request(
    engineer, compliance, proposed
):
    endpoint = _approve(proposed)
    result = approvals.endpoint_change(
        actor=engineer,
        endpoint=endpoint,
        fields={"data_location": "vendor_global", "timeout_s": 12},
        reason="move to the vendor",
    )
    endpoint.refresh_from_db()
    assert endpoint.timeout_s == 12  # not decided: applied at once
    assert endpoint.data_location == "on_premises"  # decided: waits
    assert result.kind == RequestKind.ENDPOINT and result.transition == "change"
    assert result.proposed["before"] == {"data_location": "on_premises"}
    assert result.proposed["fields"] == {"data_location": "vendor_global"}
    approvals.approval_decide(actor=compliance, request=result, verdict="approve")
    endpoint.refresh_from_db()
    assert endpoint.data_location == "vendor_global"


def test_the_registry_service_itself_refuses_a_governed_edit_past_proposal(engineer, proposed):
    endpoint = _approve(proposed)
    with pytest.raises(InvalidTransition):
        services.endpoint_edit(
            actor=engineer, endpoint=endpoint, fields={"base_url": "https://elsewhere.example/v1"}
        )


def test_suspension_is_immediate_and_tells_charter_and_route_owners(
    engineer, owner, proposed, support_prompt, django_capture_on_commit_callbacks
):
    endpoint = _approve(proposed)
    charter = support_prompt.charter
    charter.dependencies.create(kind="model", name="Local LLM", endpoint=endpoint)
    Route.objects.create(prompt=support_prompt, endpoint=endpoint, model="local-llm")
    with pytest.raises(ValidationFailed):
        services.endpoint_suspend(actor=engineer, endpoint=endpoint, reason=" ")
    with django_capture_on_commit_callbacks(execute=True):
        services.endpoint_suspend(actor=engineer, endpoint=endpoint, reason="vendor breach")
    endpoint.refresh_from_db()
    assert endpoint.status == "suspended" and endpoint.status_reason == "vendor breach"
    told = Notification.objects.filter(verb="registry.endpoint.suspended")
    assert {n.recipient for n in told} >= {charter.business_owner, support_prompt.owner}
    assert all("vendor breach" in n.body for n in told)


def test_owners_cannot_suspend(owner, proposed):
    endpoint = _approve(proposed)
    with pytest.raises(PermissionDenied):
        services.endpoint_suspend(actor=owner, endpoint=endpoint, reason="no")


def test_critical_risk_charters_use_only_on_premises_endpoints(engineer, stub):
    vendor = factories.approved_endpoint(
        stub.base_url, slug="vendor", data_location="vendor_region"
    )
    onprem = factories.approved_endpoint(stub.base_url, slug="onprem")
    with pytest.raises(services.EndpointRefused) as refused:
        services.usable(vendor, "local-llm", risk_tier="critical")
    assert "on premises" in refused.value.message
    assert services.usable(onprem, "local-llm", risk_tier="critical") == onprem
    assert services.usable(vendor, "local-llm", risk_tier="high") == vendor


def test_an_endpoint_serves_only_its_models_and_tiers(db, stub):
    endpoint = factories.approved_endpoint(stub.base_url, risk_tiers=["low"])
    with pytest.raises(services.EndpointRefused):
        services.usable(endpoint, "another-model")
    with pytest.raises(services.EndpointRefused):
        services.usable(endpoint, "local-llm", risk_tier="medium")


def test_the_credential_reaches_only_its_own_endpoint(db, stub, settings, monkeypatch):
    monkeypatch.setenv("ONPREM_KEY", "k-123")
    settings.MODEL_CREDENTIALS = {"ONPREM_KEY": "onprem"}
    bound = factories.approved_endpoint(stub.base_url, slug="onprem", credential="ONPREM_KEY")
    other = factories.approved_endpoint(stub.base_url, slug="other", credential="ONPREM_KEY")
    assert services.call_target(bound, "local-llm").api_key == "k-123"
    assert services.call_target(other, "local-llm").api_key == ""
