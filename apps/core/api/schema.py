"""The OpenAPI schema tells every error an operation can answer with, in the one error shape.

Views document the errors of their own logic (409 for a state that forbids the change, 422
for a failed gate …). The errors that come from the framework around them are the same for
every view, so they are added here once: 401 and 429 from API-key authentication, 403 from
the CSRF check on a signed-in session, 404 for an object named in the path, 400 for a query
string or body that does not validate, 415 for a body of a type the operation does not read. Every error without a body of its own is described
with the body the exception handler renders (aifactory/exceptions.py).
"""

from __future__ import annotations

from drf_spectacular.openapi import AutoSchema as SpectacularAutoSchema
from rest_framework import serializers

UNSAFE_METHODS = {"POST", "PUT", "PATCH", "DELETE"}

IMPLIED = {
    "400": "Invalid input: {detail, code, errors: {field: [messages]}}",
    "401": "Not signed in, or the API key is missing, malformed, unknown, revoked or expired",
    "403": "Not allowed (for a signed-in session, also a missing or wrong CSRF token)",
    "404": "Not found, or not visible to you",
    "415": "The body's Content-Type is missing or not one this operation reads",
    "429": "Too many failed API-key attempts from this address; try again later",
}


class ErrorSerializer(serializers.Serializer):
    """The body of every API error (apps' own and the framework's)."""

    detail = serializers.CharField()
    code = serializers.CharField()
    errors = serializers.DictField(child=serializers.ListField(child=serializers.CharField()))


class AutoSchema(SpectacularAutoSchema):
    """drf-spectacular's AutoSchema, plus the errors every view inherits from the framework."""

    def get_operation(self, path, path_regex, path_prefix, method, registry):
        operation = super().get_operation(path, path_regex, path_prefix, method, registry)
        if operation is None:
            return None
        responses = operation["responses"]
        for code in self._implied_errors(operation):
            responses.setdefault(code, {"description": IMPLIED[code]})
        error = {
            "application/json": {"schema": self.resolve_serializer(ErrorSerializer, "response").ref}
        }
        for code, response in responses.items():
            if code.startswith("4") and "content" not in response:
                response["content"] = error
        operation["responses"] = dict(sorted(responses.items()))
        return operation

    def _implied_errors(self, operation) -> list[str]:
        codes = []
        parameters = operation.get("parameters", [])
        if any(p["in"] == "path" for p in parameters):
            codes.append("404")
        if "requestBody" in operation or any(p["in"] == "query" for p in parameters):
            codes.append("400")
        if "requestBody" in operation:
            codes.append("415")
        schemes = {name for requirement in operation.get("security", []) for name in requirement}
        if "ApiKeyAuth" in schemes:
            codes += ["401", "429"]
        if "cookieAuth" in schemes and self.method in UNSAFE_METHODS:
            codes.append("403")
        return codes
