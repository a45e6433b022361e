"""The API's JSON parser: DRF's, refusing NUL characters, which no text column can store."""

from __future__ import annotations

import io

from rest_framework import parsers

from apps.core.errors import ValidationFailed
from apps.core.middleware import JSON_NUL, NUL_MESSAGE


class JSONParser(parsers.JSONParser):
    """Reads the body as DRF does (any size the view accepts); a `\\u0000` escape in it is
    refused as invalid input before anything reaches the database (PostgreSQL would fail)."""

    def parse(self, stream, media_type=None, parser_context=None):
        data = stream.read() if stream is not None else b""
        if JSON_NUL.search(data):
            raise ValidationFailed(NUL_MESSAGE, errors={"body": [NUL_MESSAGE]})
        return super().parse(io.BytesIO(data), media_type, parser_context)
