"""Guessing credentials: an address (or a user name) that keeps failing is shut out for the
rest of its window, the right credential included; everyone else is unaffected."""

import pytest
from rest_framework.test import APIClient

from apps.core import ratelimit
from apps.core.services import api_key_create
from tests import factories

pytestmark = pytest.mark.django_db
ME = "/api/v1/me/"
LIMIT = 3


@pytest.fixture(autouse=True)
def _small_limit(settings):
    settings.AIFACTORY_AUTH_FAILURE_LIMIT = LIMIT
    settings.AIFACTORY_AUTH_FAILURE_WINDOW_SECONDS = 300


@pytest.fixture
def bot_key(db):
    bot = factories.UserFactory(username="ci-bot", groups=["integrations"])
    return api_key_create(user=bot, name="ci")[1]


def from_address(address: str, key: str) -> APIClient:
    api = APIClient(REMOTE_ADDR=address)
    api.credentials(HTTP_AUTHORIZATION=f"Api-Key {key}")
    return api


def test_bad_keys_lock_the_address_out_even_with_the_right_key(bot_key):
    prefix = bot_key.partition(".")[0]
    for _ in range(LIMIT):
        assert from_address("10.0.0.9", f"{prefix}.wrong-secret").get(ME).status_code == 401
    refused = from_address("10.0.0.9", bot_key).get(ME)
    assert refused.status_code == 429
    assert 0 < int(refused["Retry-After"]) <= 300
    assert refused.json()["code"] == "throttled"
    # Another address with the right key is not affected.
    assert from_address("10.0.0.10", bot_key).get(ME).json()["username"] == "ci-bot"


def test_successes_do_not_count_and_the_lock_ends_with_its_window(bot_key, monkeypatch):
    now = 1_000_000.0
    monkeypatch.setattr(ratelimit.time, "time", lambda: now)
    for _ in range(LIMIT * 2):
        assert from_address("10.0.0.9", bot_key).get(ME).status_code == 200
    for _ in range(LIMIT):
        from_address("10.0.0.9", "nonsense.value").get(ME)
    assert from_address("10.0.0.9", bot_key).get(ME).status_code == 429
    now += 300
    assert from_address("10.0.0.9", bot_key).get(ME).status_code == 200


def test_the_operators_proxy_header_names_the_address(settings, bot_key):
    settings.AIFACTORY_CLIENT_IP_HEADER = "HTTP_X_FORWARDED_FOR"
    for _ in range(LIMIT):
        api = from_address("127.0.0.1", "nonsense.value")
        api.get(ME, HTTP_X_FORWARDED_FOR="1.2.3.4, 203.0.113.7")
    # A client cannot dodge the count by forging the left part of the header.
    api = from_address("127.0.0.1", bot_key)
    assert api.get(ME, HTTP_X_FORWARDED_FOR="9.9.9.9, 203.0.113.7").status_code == 429
    assert api.get(ME, HTTP_X_FORWARDED_FOR="203.0.113.8").status_code == 200


@pytest.mark.parametrize("url", ["/accounts/login/", "/admin/login/"])
def test_bad_passwords_lock_the_address_and_the_name(client, url, password):
    staff = factories.compliance_officer("carl", is_staff=True)
    for _ in range(LIMIT):
        page = client.post(url, {"username": "carl", "password": "guess"}, REMOTE_ADDR="10.0.0.9")
        assert page.status_code == 200 and not page.wsgi_request.user.is_authenticated
    refused = client.post(url, {"username": "carl", "password": password}, REMOTE_ADDR="10.0.0.9")
    assert "Too many failed sign-in attempts" in refused.content.decode()
    assert "_auth_user_id" not in client.session
    # The name is locked from every address; another person at another address signs in.
    elsewhere = client.post(
        url, {"username": "carl", "password": password}, REMOTE_ADDR="10.0.0.77"
    )
    assert "Too many failed sign-in attempts" in elsewhere.content.decode()
    factories.compliance_officer("dana", is_staff=True)
    signed_in = client.post(
        url, {"username": "dana", "password": password}, REMOTE_ADDR="10.0.0.77"
    )
    assert signed_in.status_code == 302
    assert client.session["_auth_user_id"] == str(type(staff).objects.get(username="dana").pk)
