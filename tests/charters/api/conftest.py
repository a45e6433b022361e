import pytest
from rest_framework.test import APIClient

from apps.core.services import api_key_create
from tests import factories


@pytest.fixture
def api():
    """A fresh API client; use `api.force_authenticate(user)` or an API key header."""
    return APIClient()


@pytest.fixture
def as_user(api):
    def login(user):
        api.force_login(user)
        return api

    return login


@pytest.fixture
def integration_key(db):
    """A key for the service user 'ci-bot' in the integrations group; returns (user, plain key)."""
    bot = factories.UserFactory(username="ci-bot", groups=["integrations"])
    _, plain = api_key_create(user=bot, name="ci")
    return bot, plain
