"""Personas and a model server on the loopback for the registry's tests."""

import pytest

from apps.registry import services
from tests import factories
from tests.evaluations.openai_stub import OpenAIStub


@pytest.fixture
def compliance_two(db):
    """Cleo, a second compliance officer (the four eyes on Carl's own requests)."""
    return factories.compliance_officer("cleo")


@pytest.fixture
def stub():
    with OpenAIStub(responder=lambda body: "a generated answer") as server:
        yield server


@pytest.fixture
def proposed(engineer, stub):
    """Pat proposes the on-premises model server (a private address, allowed with a reason)."""
    return services.endpoint_propose(
        actor=engineer,
        fields={
            "name": "On-prem LLM",
            "slug": "onprem-llm",
            "base_url": stub.base_url,
            "model_names": ["local-llm"],
            "vendor": "internal",
            "data_location": "on_premises",
            "allow_private": True,
            "allow_private_reason": "Our GPU server in the data centre",
        },
    )
