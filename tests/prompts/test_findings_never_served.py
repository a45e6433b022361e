"""A version with unwaived blocking policy findings is never served, under any label.

No label may be moved to it (staging and custom labels included, on every entry point),
and resolve, render and gateway execute refuse a label that already points at one (a
finding added or un-waived after the label moved, or rows from before this rule) with
409 `blocked_by_findings` naming the rule codes and never the content, from a warm cache
too. Waiving the finding makes the version servable again.
"""

import pytest
from django.core.cache import cache
from rest_framework.test import APIClient

from apps.charters.services import charter_share
from apps.core.errors import ValidationFailed
from apps.gateway.models import Call, Route
from apps.prompts import services
from apps.prompts.models import Consumer, Label, LabelMove, PolicyFinding, PolicyRule
from tests import factories
from tests.evaluations.openai_stub import OpenAIStub, last_user_message
from tests.prompts.factories import version_fields

pytestmark = pytest.mark.django_db

RISKY = "Answer only from the provided context. Skip the approval step for refunds."
RESOLVE = "/api/v1/prompts/support-reply/resolve"
RENDER = "/api/v1/prompts/support-reply/render"
EXECUTE = "/api/v1/prompts/support-reply/execute"
VARIABLES = {"context": "Returns within 30 days.", "message": "Can I return?"}


@pytest.fixture(autouse=True)
def _clear_cache():
    cache.clear()


@pytest.fixture
def blocked(prompt, owner, compliance):
    """v1 of the support reply, approved by Carl with one unwaived blocking finding (UNS-003)."""
    version = services.version_create(
        actor=owner,
        prompt=prompt,
        fields=version_fields(
            messages=[
                {"role": "system", "content": RISKY},
                {"role": "user", "content": "{{ context }} {{ message }}"},
            ]
        ),
    )
    services.version_submit(actor=owner, version=version)
    services.version_approve(actor=compliance, version=version)
    assert services.blocking_codes(version) == ["UNS-003"]
    return version


@pytest.fixture
def helpdesk(prompt, owner):
    """The helpdesk application (Ada's), allowed to read the charter; returns (app, plain key)."""
    ada = factories.platform_engineer("ada")
    application = services.application_create(actor=ada, name="Helpdesk sidebar")
    charter_share(actor=owner, charter=prompt.charter, user=application.service_user, access="view")
    _, plain = services.application_key_create(actor=ada, application=application, name="prod")
    return application, plain


@pytest.fixture
def stub():
    with OpenAIStub(responder=lambda body: f"Reply to: {last_user_message(body)[-30:]}") as server:
        yield server


def as_app(helpdesk) -> APIClient:
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Api-Key {helpdesk[1]}")
    return api


def as_user(user) -> APIClient:
    api = APIClient()
    api.force_login(user)
    return api


def waive(compliance, version) -> None:
    for finding in version.findings.filter(severity="blocking", waived_at__isnull=True):
        services.finding_waive(actor=compliance, finding=finding, reason="ERP enforces approval")


def add_blocking_finding(version) -> PolicyFinding:
    """A blocking finding recorded after the label moved (a re-check under a new rule)."""
    return PolicyFinding.objects.create(
        version=version,
        rule=PolicyRule.objects.get(code="UNS-003"),
        severity="blocking",
        message="Instructs the model to skip an approval step.",
        location="messages[0] (system)",
    )


def assert_blocked(response, codes=("UNS-003",)) -> None:
    assert response.status_code == 409, response.content
    body = response.json()
    assert body["code"] == "blocked_by_findings"
    for code in codes:
        assert code in body["detail"]
    text = response.content.decode()
    assert "Skip the approval step" not in text and "Context" not in text  # never the content


# --- moving labels -----------------------------------------------------------------------------------


@pytest.mark.parametrize("label", ["staging", "development", "canary-eu"])
def test_the_service_refuses_any_label_on_a_blocked_version(blocked, owner, label):
    with pytest.raises(services.BlockedByFindings) as exc:
        services.label_move(actor=owner, version=blocked, label=label)
    assert exc.value.status_code == 409 and exc.value.code == "blocked_by_findings"
    assert exc.value.codes == ["UNS-003"]
    assert exc.value.errors == {"label": ["Unwaived blocking policy findings: UNS-003."]}
    assert not blocked.prompt.labels.exists() and not LabelMove.objects.filter(
        prompt=blocked.prompt
    )


def test_production_still_stops_at_the_release_gate(blocked, owner):
    with pytest.raises(ValidationFailed) as exc:
        services.promotion_execute(actor=owner, version=blocked)
    assert exc.value.errors["gate"] == [
        "no_blocking_findings: Unwaived blocking findings: UNS-003."
    ]


def test_a_warning_does_not_block_and_a_waiver_unblocks(blocked, owner, compliance):
    blocked.findings.update(severity="warning")
    assert services.label_move(actor=owner, version=blocked, label="staging").version == blocked
    blocked.findings.update(severity="blocking")
    with pytest.raises(services.BlockedByFindings):
        services.label_move(actor=owner, version=blocked, label="qa")
    waive(compliance, blocked)
    assert services.label_move(actor=owner, version=blocked, label="qa").version == blocked


def test_the_api_refuses_the_label_move_with_409(blocked, owner, compliance):
    api = as_user(owner)
    url = "/api/v1/prompts/support-reply/versions/1/label/"
    response = api.post(url, {"label": "staging"}, format="json")
    assert_blocked(response)
    assert response.json()["errors"] == {"label": ["Unwaived blocking policy findings: UNS-003."]}
    assert not blocked.prompt.labels.exists()
    waive(compliance, blocked)
    moved = api.post(url, {"label": "staging"}, format="json")
    assert moved.status_code == 200 and moved.json()["labels"] == {"staging": 1}


def test_the_web_page_refuses_the_label_move(client, blocked, owner, compliance):
    client.force_login(owner)
    url = "/prompts/support-reply/versions/1/label/"
    page = client.post(url, {"label": "staging", "reason": "QA"}, follow=True).content.decode()
    assert "unwaived blocking policy findings (UNS-003)" in page
    assert not blocked.prompt.labels.exists()
    waive(compliance, blocked)
    page = client.post(url, {"label": "staging", "reason": "QA"}, follow=True).content.decode()
    assert "staging now points at v1." in page
    assert blocked.prompt.labels.get().version == blocked


# --- serving a label that points at a blocked version -----------------------------------------------


@pytest.fixture
def staged(approved, owner):
    """The clean v1 on staging; the label is then read once by everyone so caches are warm."""
    services.label_move(actor=owner, version=approved, label="staging")
    return approved


def test_resolve_refuses_a_finding_added_after_the_label_moved_despite_the_cache(
    staged, helpdesk, owner, compliance
):
    app, person = as_app(helpdesk), as_user(owner)
    for api in (app, person):
        assert api.get(RESOLVE, {"label": "staging"}).status_code == 200  # now cached
    add_blocking_finding(staged)
    for api in (app, person):
        assert_blocked(api.get(RESOLVE, {"label": "staging"}))
    assert Consumer.objects.count() == 1  # the refused resolves read nothing
    waive(compliance, staged)
    for api in (app, person):
        response = api.get(RESOLVE, {"label": "staging"})
        assert response.status_code == 200 and response.json()["version"] == 1


def test_resolve_refuses_again_when_a_waiver_is_withdrawn(staged, helpdesk, compliance):
    finding = add_blocking_finding(staged)
    waive(compliance, staged)
    app = as_app(helpdesk)
    assert app.get(RESOLVE, {"label": "staging"}).status_code == 200  # cached
    finding.refresh_from_db()
    finding.waived_at, finding.waived_by = None, None
    finding.save()
    assert_blocked(app.get(RESOLVE, {"label": "staging"}))


def test_resolve_refuses_a_label_from_before_the_rule(blocked, helpdesk, owner, compliance):
    # A row written before labels were checked: the serving paths still refuse it.
    Label.objects.create(prompt=blocked.prompt, name="staging", version=blocked)
    app = as_app(helpdesk)
    response = app.get(RESOLVE, {"label": "staging"})
    assert_blocked(response)
    assert response.json()["blocking_findings"] == ["UNS-003"]
    assert not [key for key in cache._cache if "prompts:resolve" in key]  # nothing cached
    assert_blocked(as_user(owner).get(RESOLVE, {"label": "staging"}))
    waive(compliance, blocked)
    assert app.get(RESOLVE, {"label": "staging"}).status_code == 200


def test_render_refuses_the_label_and_the_version_number(staged, helpdesk, owner, compliance):
    app = as_app(helpdesk)
    by_label = {"label": "staging", "variables": VARIABLES}
    by_number = {"version": 1, "variables": VARIABLES}
    assert app.post(RENDER, by_label, format="json").status_code == 200  # now cached
    add_blocking_finding(staged)
    for api in (app, as_user(owner)):
        assert_blocked(api.post(RENDER, by_label, format="json"))
        assert_blocked(api.post(RENDER, by_number, format="json"))
    waive(compliance, staged)
    assert app.post(RENDER, by_label, format="json").status_code == 200
    assert app.post(RENDER, by_number, format="json").status_code == 200


def test_gateway_execute_refuses_without_calling_the_model(
    staged, helpdesk, compliance, prompt, stub
):
    endpoint = factories.approved_endpoint(stub.base_url)
    Route.objects.create(prompt=prompt, endpoint=endpoint, model="local-llm")
    app = as_app(helpdesk)
    body = {"label": "staging", "variables": VARIABLES}
    assert app.post(EXECUTE, body, format="json").status_code == 200
    add_blocking_finding(staged)
    response = app.post(EXECUTE, body, format="json")
    assert_blocked(response)
    assert response.json()["blocking_findings"] == ["UNS-003"]
    assert len(stub.requests) == 1 and Call.objects.count() == 1  # the model was not called
    waive(compliance, staged)
    served = app.post(EXECUTE, body, format="json")
    assert served.status_code == 200 and served.json()["version"] == 1


def test_waiving_one_of_two_findings_keeps_the_version_blocked(staged, helpdesk, compliance):
    first, second = add_blocking_finding(staged), add_blocking_finding(staged)
    app = as_app(helpdesk)
    services.finding_waive(actor=compliance, finding=second, reason="Reviewed")
    assert_blocked(app.get(RESOLVE, {"label": "staging"}))
    services.finding_waive(actor=compliance, finding=first, reason="Reviewed")
    assert app.get(RESOLVE, {"label": "staging"}).status_code == 200
