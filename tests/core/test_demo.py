"""The demo workspace that `make run` loads: realistic, complete and safe to load twice."""

import pytest
from django.contrib.auth import authenticate

from apps.charters.models import Charter
from apps.core.demo import DEMO_USERS, banner, demo_setup
from apps.core.models import ApiKey
from apps.prompts.models import Prompt

pytestmark = pytest.mark.django_db


def test_demo_loads_twice_without_duplicates_and_users_can_sign_in():
    first = demo_setup()
    second = demo_setup()
    assert first["api_key"] and second["api_key"] is None
    for spec in DEMO_USERS:
        assert authenticate(username=spec.username, password=spec.password) is not None
    assert dict(Charter.objects.values_list("slug", "status")) == {
        "support-reply-drafting": "pilot",
        "claims-intake-triage": "draft",
        "supplier-contract-clauses": "submitted",
    }
    prompt = Prompt.objects.get(slug="support-reply-draft")
    assert prompt.labels.get(name="production").version.number == 1
    assert prompt.versions.get(number=2).status == "in_review"
    assert ApiKey.objects.filter(user__username="app-helpdesk-sidebar").count() == 1


def test_demo_api_key_is_printed_once_with_the_passwords():
    result = demo_setup()
    text = banner(result)
    assert result["api_key"] in text
    assert all(spec.password in text for spec in DEMO_USERS)
