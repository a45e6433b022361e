"""Personas and subjects for approvals: Olivia's live support prompt and its v2 candidate,
Carl (compliance, the global Accountable), Rita (a Consulted reviewer), Ada (owner of the
consuming helpdesk application)."""

import pytest

from apps.prompts import services as prompt_services
from tests import factories
from tests.prompts.factories import PromptFactory, version_fields


@pytest.fixture
def rita(db):
    """Rita, a platform engineer RACI names as Consulted."""
    return factories.platform_engineer("rita")


@pytest.fixture
def ada(db):
    """Ada owns the helpdesk application that reads the prompt."""
    return factories.platform_engineer("ada")


def make_version(owner, compliance, prompt, **overrides):
    version = prompt_services.version_create(
        actor=owner, prompt=prompt, fields=version_fields(**overrides)
    )
    prompt_services.version_submit(actor=owner, version=version)
    return prompt_services.version_approve(actor=compliance, version=version)


@pytest.fixture
def live_prompt(charter, owner, compliance):
    """The support prompt: v1 live on production (promoted directly), v2 approved."""
    charter.status = "pilot"
    charter.save(update_fields=["status"])
    prompt = PromptFactory(charter=charter, owner=owner, slug="support-reply", name="Support reply")
    v1 = make_version(owner, compliance, prompt)
    prompt_services.promotion_execute(actor=owner, version=v1)
    make_version(
        owner,
        compliance,
        prompt,
        model_config={"model": "support-chat-v1", "temperature": 0.1},
        change_kind="minor",
    )
    return prompt


@pytest.fixture
def candidate(live_prompt):
    return live_prompt.versions.get(number=2)
