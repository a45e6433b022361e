"""Factories for the prompt library."""

import factory

from apps.charters.choices import CharterStatus
from apps.prompts import content
from apps.prompts.models import Prompt, PromptVersion
from tests.factories import CharterFactory, UserFactory

GROUNDED_SYSTEM = (
    "You draft replies for support agents. Answer only using the provided context passages. "
    "If the answer is not in the context, say you will check with a specialist."
)
MESSAGES = [
    {"role": "system", "content": GROUNDED_SYSTEM},
    {"role": "user", "content": "Context:\n{{ context }}\n\nCustomer: {{ message }}"},
]
VARIABLES = [
    {
        "name": "context",
        "description": "KB passages",
        "required": True,
        "example": "Returns within 30 days.",
    },
    {
        "name": "message",
        "description": "Customer message",
        "required": True,
        "example": "Can I return shoes?",
    },
]
CONFIG = {"model": "support-chat-v1", "temperature": 0.3, "max_tokens": 400}


class PromptFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Prompt

    slug = factory.Sequence(lambda n: f"support-reply-{n}")
    name = factory.Sequence(lambda n: f"Support reply {n}")
    charter = factory.SubFactory(CharterFactory, status=CharterStatus.PILOT)
    owner = factory.SelfAttribute("charter.business_owner")
    task_type = "drafting"
    risk_level = "medium"
    business_function = "Customer service"
    model_family = "gpt-4o"


class VersionFactory(factory.django.DjangoModelFactory):
    """A draft version with valid, policy-clean content."""

    class Meta:
        model = PromptVersion

    prompt = factory.SubFactory(PromptFactory)
    number = factory.Sequence(lambda n: n + 1)
    template_kind = "chat"
    messages = factory.LazyFunction(lambda: [dict(m) for m in MESSAGES])
    variables = factory.LazyFunction(lambda: [dict(v) for v in VARIABLES])
    model_config = factory.LazyFunction(lambda: dict(CONFIG))
    release_notes = "First version."
    author = factory.SelfAttribute("prompt.owner")
    content_hash = factory.LazyAttribute(
        lambda v: content.content_hash(
            v.template_kind,
            v.messages,
            v.text if hasattr(v, "text") else "",
            v.variables,
            v.model_config,
        )
    )


def version_fields(**overrides):
    """Valid input for version_create."""
    return {
        "template_kind": "chat",
        "messages": [dict(m) for m in MESSAGES],
        "variables": [dict(v) for v in VARIABLES],
        "model_config": dict(CONFIG),
        "release_notes": "What changed and why.",
        "change_kind": "minor",
        **overrides,
    }


__all__ = ["PromptFactory", "VersionFactory", "UserFactory", "version_fields"]
