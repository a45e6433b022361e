import pytest

from apps.prompts import services
from tests.prompts.factories import PromptFactory, version_fields


@pytest.fixture
def prompt(charter, owner):
    """Olivia's support-reply prompt under her charter, which is in pilot."""
    charter.status = "pilot"
    charter.save(update_fields=["status"])
    return PromptFactory(charter=charter, owner=owner, slug="support-reply", name="Support reply")


@pytest.fixture
def draft(prompt, owner):
    """Version 1 of the prompt, a clean draft written by Olivia."""
    return services.version_create(actor=owner, prompt=prompt, fields=version_fields())


@pytest.fixture
def approved(draft, owner, compliance):
    """Version 1 submitted by Olivia and approved by Carl."""
    services.version_submit(actor=owner, version=draft)
    return services.version_approve(actor=compliance, version=draft)
