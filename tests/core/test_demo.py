"""The demo workspace that `make run` loads: realistic, complete and safe to load twice."""

import pytest
from django.contrib.auth import authenticate

from apps.charters.models import Charter
from apps.core.demo import DEMO_USERS, banner, demo_setup
from apps.core.models import ApiKey

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
    assert ApiKey.objects.filter(user__username="helpdesk-bot").count() == 1


def test_demo_api_key_is_printed_once_with_the_passwords():
    result = demo_setup()
    text = banner(result)
    assert result["api_key"] in text
    assert all(spec.password in text for spec in DEMO_USERS)
