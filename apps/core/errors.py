"""One error vocabulary for services, rendered alike by the API and the web pages."""

from __future__ import annotations


class ApplicationError(Exception):
    """A refusal by a service, with a human message and optional field errors."""

    status_code = 400
    code = "invalid"

    def __init__(self, message: str, *, errors: dict[str, list[str]] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.errors = errors or {}


class ValidationFailed(ApplicationError):
    """The input is wrong; `errors` maps each field to its messages."""


class InvalidTransition(ApplicationError):
    """The object's current state does not allow this change."""

    status_code = 409
    code = "invalid_transition"


class Conflict(ApplicationError):
    """Someone else changed the object first."""

    status_code = 409
    code = "conflict"


def hidden_reference(field: str, value: str) -> ValidationFailed:
    """A reference to an object the caller may not see, refused word for word as the API
    refuses one that does not exist (DRF's slug field), so the two cannot be told apart."""
    from rest_framework.relations import SlugRelatedField

    message = str(SlugRelatedField.default_error_messages["does_not_exist"])
    return ValidationFailed(
        "Invalid input.", errors={field: [message.format(slug_name="slug", value=value)]}
    )
