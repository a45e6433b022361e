"""Integrations resolve and render the live version, with caching headers and lineage."""

import datetime as dt

import pytest
from django.core.cache import cache
from django.utils import timezone

from apps.prompts import services
from apps.prompts.models import Consumer
from tests.prompts.factories import PromptFactory, version_fields

pytestmark = pytest.mark.django_db
URL = "/api/v1/prompts/support-reply/resolve"


@pytest.fixture(autouse=True)
def _clear_cache():
    cache.clear()


def as_app(api, helpdesk):
    api.credentials(HTTP_AUTHORIZATION=f"Api-Key {helpdesk[1]}")
    return api


def test_resolve_returns_the_live_version_with_an_etag(api, helpdesk, live):
    response = as_app(api, helpdesk).get(URL)
    assert response.status_code == 200
    body = response.json()
    assert (body["version"], body["label"], body["status"]) == (1, "production", "active")
    assert body["messages"][0]["role"] == "system" and body["variables"][0]["name"] == "context"
    assert response["ETag"] == f'"{live.content_hash}-v1"'
    assert response["Cache-Control"] == "private, no-cache"


def test_if_none_match_gets_304(api, helpdesk, live):
    api = as_app(api, helpdesk)
    etag = api.get(URL)["ETag"]
    response = api.get(URL, HTTP_IF_NONE_MATCH=etag)
    assert response.status_code == 304 and not response.content


def test_etag_changes_when_production_moves(api, helpdesk, live, owner, compliance, prompt):
    api = as_app(api, helpdesk)
    first = api.get(URL)["ETag"]
    v2 = services.version_create(
        actor=owner, prompt=prompt, fields=version_fields(model_config={"temperature": 0})
    )
    services.version_submit(actor=owner, version=v2)
    services.version_approve(actor=compliance, version=v2)
    services.promotion_execute(actor=owner, version=v2)
    response = api.get(URL, HTTP_IF_NONE_MATCH=first)
    assert (
        response.status_code == 200
        and response.json()["version"] == 2
        and response["ETag"] != first
    )


def test_unknown_label_is_404(api, helpdesk, live):
    assert as_app(api, helpdesk).get(URL + "?label=canary").status_code == 404


def test_deprecated_prompt_carries_deprecation_sunset_and_successor(
    api, helpdesk, live, owner, prompt
):
    successor = PromptFactory(charter=prompt.charter, owner=owner, slug="support-reply-v2")
    sunset = timezone.localdate() + dt.timedelta(days=30)
    services.prompt_deprecate(
        actor=owner, prompt=prompt, reason="v2 is better", sunset_date=sunset, successor=successor
    )
    response = as_app(api, helpdesk).get(URL)
    assert response.status_code == 200
    assert response["Deprecation"].startswith("@")
    assert response["Sunset"].endswith("GMT") and str(sunset.day) in response["Sunset"]
    assert response["Link"] == '</api/v1/prompts/support-reply-v2/resolve>; rel="successor-version"'
    assert response.json()["successor"] == "support-reply-v2"


def test_retired_prompt_is_410_with_the_successor(api, helpdesk, live, owner, prompt):
    successor = PromptFactory(charter=prompt.charter, owner=owner, slug="support-reply-v2")
    services.prompt_retire(actor=owner, prompt=prompt, reason="gone", successor=successor)
    response = as_app(api, helpdesk).get(URL)
    assert response.status_code == 410
    assert response.json()["successor"] == "support-reply-v2" and response.json()["code"] == "gone"


def test_resolve_records_the_consuming_application(api, helpdesk, live):
    as_app(api, helpdesk).get(URL)
    consumer = Consumer.objects.get()
    assert (consumer.application, consumer.label, consumer.count) == (helpdesk[0], "production", 1)


def test_an_application_without_access_gets_404(api, live, app_owner):
    other = services.application_create(actor=app_owner, name="Other app")
    _, plain = services.application_key_create(actor=app_owner, application=other, name="k")
    api.credentials(HTTP_AUTHORIZATION=f"Api-Key {plain}")
    assert api.get(URL).status_code == 404


def test_render_with_variables(api, helpdesk, live):
    response = as_app(api, helpdesk).post(
        "/api/v1/prompts/support-reply/render",
        {"variables": {"context": "Returns within 30 days.", "message": "Can I return?"}},
        format="json",
    )
    assert response.status_code == 200
    assert (
        response.json()["messages"][1]["content"]
        == "Context:\nReturns within 30 days.\n\nCustomer: Can I return?"
    )


def test_render_names_the_missing_variable(api, helpdesk, live):
    response = as_app(api, helpdesk).post(
        "/api/v1/prompts/support-reply/render", {"variables": {"context": "x"}}, format="json"
    )
    assert response.status_code == 400
    assert response.json()["errors"] == {
        "variables.message": ["Variable 'message' is required but no value was given."]
    }


def test_keys_are_shown_once_and_revocation_is_immediate(api, app_owner, helpdesk, live):
    application, plain = helpdesk
    api.credentials(HTTP_AUTHORIZATION=f"Api-Key {plain}")
    assert api.get(URL).status_code == 200  # the key's facts are now cached
    api.credentials()
    api.force_login(app_owner)
    created = api.post(
        f"/api/v1/applications/{application.slug}/keys/", {"name": "second"}, format="json"
    ).json()
    assert created["key"].startswith(created["prefix"])
    listed = api.get(f"/api/v1/applications/{application.slug}/keys/").json()
    assert len(listed) == 2 and all("key" not in row for row in listed)
    first = next(row["prefix"] for row in listed if row["name"] == "prod")
    assert (
        api.post(f"/api/v1/applications/{application.slug}/keys/{first}/revoke/").status_code == 204
    )
    api.logout()
    api.credentials(HTTP_AUTHORIZATION=f"Api-Key {plain}")
    assert api.get(URL).status_code == 401


def test_only_the_owner_sees_an_application(api, outsider, helpdesk):
    api.force_login(outsider)
    assert api.get("/api/v1/applications/").json()["results"] == []
    assert api.get(f"/api/v1/applications/{helpdesk[0].slug}/").status_code == 404


def test_unsharing_the_charter_revokes_an_applications_access_at_once(
    api, helpdesk, live, owner, prompt
):
    from apps.charters.services import charter_unshare

    api = as_app(api, helpdesk)
    assert api.get(URL).status_code == 200  # the decision is now cached
    charter_unshare(actor=owner, charter=prompt.charter, user=helpdesk[0].service_user)
    assert api.get(URL).status_code == 404


def test_a_deprecation_is_visible_at_once_despite_the_cache(api, helpdesk, live, owner, prompt):
    api = as_app(api, helpdesk)
    assert "Deprecation" not in api.get(URL)
    services.prompt_deprecate(actor=owner, prompt=prompt, reason="v2 soon")
    assert api.get(URL)["Deprecation"].startswith("@")


def test_resolve_needs_no_query_once_warm(api, helpdesk, live, django_assert_num_queries):
    api = as_app(api, helpdesk)
    api.get(URL)
    with django_assert_num_queries(0):
        assert api.get(URL).status_code == 200


def test_resolve_refuses_an_address_that_keeps_guessing_keys(api, helpdesk, live, settings):
    settings.AIFACTORY_AUTH_FAILURE_LIMIT = 2
    prefix = helpdesk[1].partition(".")[0]
    api.credentials(HTTP_AUTHORIZATION=f"Api-Key {prefix}.guess")
    assert [api.get(URL).status_code for _ in range(2)] == [401, 401]
    response = as_app(api, helpdesk).get(URL)
    assert response.status_code == 429 and response.json()["code"] == "throttled"
    assert int(response["Retry-After"]) > 0


RENDER = "/api/v1/prompts/support-reply/render"
VARIABLES = {"variables": {"context": "Returns within 30 days.", "message": "Can I return?"}}


def test_render_follows_the_label_and_access_at_once_despite_the_cache(
    api, helpdesk, live, owner, compliance, prompt
):
    from apps.charters.services import charter_unshare

    api = as_app(api, helpdesk)
    assert api.post(RENDER, VARIABLES, format="json").json()["version"] == 1  # now cached
    v2 = services.version_create(
        actor=owner, prompt=prompt, fields=version_fields(model_config={"temperature": 0})
    )
    services.version_submit(actor=owner, version=v2)
    services.version_approve(actor=compliance, version=v2)
    services.promotion_execute(actor=owner, version=v2)
    moved = api.post(RENDER, VARIABLES, format="json").json()
    assert moved["version"] == 2 and moved["model_config"] == {"temperature": 0}

    charter_unshare(actor=owner, charter=prompt.charter, user=helpdesk[0].service_user)
    assert api.post(RENDER, VARIABLES, format="json").status_code == 404


def test_render_of_a_label_needs_only_the_key_check_once_warm(
    api, helpdesk, live, django_assert_max_num_queries
):
    api = as_app(api, helpdesk)
    api.post(RENDER, VARIABLES, format="json")
    with django_assert_max_num_queries(1):  # the API key check; nothing of the prompt
        assert api.post(RENDER, VARIABLES, format="json").status_code == 200


def test_a_label_that_is_no_slug_is_no_label_and_never_a_cache_key(api, helpdesk, live):
    api = as_app(api, helpdesk)
    for junk in ["prod uction", "a:b", "\u00e9t\u00e9", "x" * 65]:
        assert api.get(URL, {"label": junk}).status_code == 404
        rendered = api.post(RENDER, {**VARIABLES, "label": junk}, format="json")
        assert rendered.status_code in (400, 404)  # the serializer may refuse it first
    assert not [key for key in cache._cache if "resolve" in key and "production" not in key]
