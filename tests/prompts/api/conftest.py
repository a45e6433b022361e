import pytest
from rest_framework.test import APIClient

from apps.charters.services import charter_share
from apps.prompts import services


@pytest.fixture
def api():
    return APIClient()


@pytest.fixture
def app_owner(db):
    """Ada, a platform engineer who owns the helpdesk integration."""
    from tests import factories

    return factories.platform_engineer("ada")


@pytest.fixture
def helpdesk(prompt, owner, app_owner):
    """The helpdesk application, allowed to read the prompt's charter; returns (app, plain key)."""
    application = services.application_create(actor=app_owner, name="Helpdesk sidebar")
    charter_share(actor=owner, charter=prompt.charter, user=application.service_user, access="view")
    _, plain = services.application_key_create(
        actor=app_owner, application=application, name="prod"
    )
    return application, plain


@pytest.fixture
def live(approved, owner):
    """v1 approved and on production."""
    services.promotion_execute(actor=owner, version=approved)
    return approved
