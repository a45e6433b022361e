"""The API's parsers: DRF's, refusing NUL characters in text, which no text column can store
(SQLite keeps them, PostgreSQL fails the query: a 500 wherever they reached one)."""

from __future__ import annotations

import io

from rest_framework import parsers

from apps.core.errors import ValidationFailed
from apps.core.jsonlimits import depth_message, max_depth, too_deep
from apps.core.middleware import JSON_NUL, NUL_MESSAGE, nul_field


def _refuse(field: str):
    raise ValidationFailed(NUL_MESSAGE, errors={field or "body": [NUL_MESSAGE]})


def _check_fields(data) -> None:
    """Refuse a form's text fields (not its files) that hold a NUL."""
    if (field := nul_field(data.lists(), "body")) is not None:
        _refuse(field)


class JSONParser(parsers.JSONParser):
    """Reads the body as DRF does; a `\\u0000` escape in it is refused as invalid input, and
    so is nesting deeper than API_JSON_MAX_DEPTH (a 400, never a RecursionError's 500)."""

    def parse(self, stream, media_type=None, parser_context=None):
        data = stream.read() if stream is not None else b""
        if JSON_NUL.search(data):
            _refuse("body")
        limit = max_depth()
        try:
            parsed = super().parse(io.BytesIO(data), media_type, parser_context)
        except RecursionError:
            deep = True
        else:
            deep = too_deep(parsed, limit)
        if deep:
            raise ValidationFailed(depth_message(limit), errors={"body": [depth_message(limit)]})
        return parsed


class FormParser(parsers.FormParser):
    def parse(self, stream, media_type=None, parser_context=None):
        data = super().parse(stream, media_type, parser_context)
        _check_fields(data)
        return data


class MultiPartParser(parsers.MultiPartParser):
    def parse(self, stream, media_type=None, parser_context=None):
        result = super().parse(stream, media_type, parser_context)
        _check_fields(result.data)
        return result
