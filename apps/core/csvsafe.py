"""CSV cells that spreadsheets would run as formulas are neutralised (CWE-1236)."""

from __future__ import annotations

from typing import Any

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def cell(value: Any) -> Any:
    """A value safe to write into an exported CSV cell: text that starts like a formula gets
    a leading apostrophe, as OWASP recommends; numbers stay numbers."""
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return value


def row(values) -> list:
    return [cell(v) for v in values]
