"""Hostile text in every free-text field is shown as text, never run as markup or formulas."""

import pytest

from apps.approvals import services as approval_services
from apps.approvals.models import ApprovalRequest
from tests.approvals.conftest import make_version
from tests.prompts.factories import PromptFactory

pytestmark = pytest.mark.django_db
SCRIPT = '<script>alert("x")</script>'


def test_script_in_titles_reasons_and_comments_is_escaped_on_every_page(
    client, owner, compliance, charter
):
    charter.title = f"Pilot {SCRIPT}"
    charter.status = "pilot"
    charter.save()
    prompt = PromptFactory(charter=charter, owner=owner, name=f"Reply {SCRIPT}")
    version = make_version(owner, compliance, prompt)
    request = approval_services.promotion_request(actor=owner, version=version, reason=SCRIPT)
    approval_services.approval_decide(
        actor=compliance, request=request, verdict="comment", comment=SCRIPT
    )
    client.force_login(compliance)
    compliance.is_staff = True
    compliance.save()
    pages = [
        charter.get_absolute_url(),
        prompt.get_absolute_url(),
        request.get_absolute_url(),
        "/approvals/",
        f"/approvals/raci/{charter.slug}/",
        "/approvals/audit/",
        "/scorecards/",
        f"/scorecards/{charter.slug}/",
        f"/admin/approvals/approvalrequest/{request.pk}/change/",
        "/admin/core/auditevent/",
    ]
    for url in pages:
        response = client.get(url)
        assert response.status_code == 200, url
        body = response.content.decode()
        assert SCRIPT not in body, url
    assert "&lt;script&gt;" in client.get(request.get_absolute_url()).content.decode()
    assert ApprovalRequest.objects.get().reason == SCRIPT  # stored as given, escaped when shown


def test_very_long_and_control_character_variables_render_safely(owner, compliance, charter):
    from apps.evaluations import generation

    charter.status = "pilot"
    charter.save()
    prompt = PromptFactory(charter=charter, owner=owner)
    version = make_version(owner, compliance, prompt)
    hostile = "{{ ''.__class__ }}\x00\x1b[31m" + "A" * 100_000
    messages = generation.build_messages(
        version.template_kind,
        version.messages,
        version.text,
        version.variables,
        {"context": hostile, "message": "{% import os %}"},
    )
    rendered = messages[1]["content"]
    assert hostile in rendered and "{% import os %}" in rendered  # substituted as text, not run
    with pytest.raises(generation.RenderError) as refused:
        generation.build_messages(
            version.template_kind,
            version.messages,
            version.text,
            version.variables,
            {"context": "A" * 300_000, "message": "hi"},
        )
    assert refused.value.variables == ["context"] and "longer than" in str(refused.value)
