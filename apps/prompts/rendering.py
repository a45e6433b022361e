"""The prompt template language: `{{ name }}` placeholders and nothing else.

A pure module, no database. Templates are never passed to `str.format` or a
template engine: a placeholder names a declared variable, and rendering replaces
it with the value's text. There is no attribute access, indexing, filter, call,
block tag or file/environment access to escape through. Problems are reported
with the variable, a message and the 1-based line and column.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

# The only accepted placeholder: an identifier, optionally padded with spaces.
PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]{0,63})\s*\}\}")
# Anything that opens template syntax; each must be a valid placeholder. A lone '}}' is
# literal text: prompts often show JSON such as {"a": {"b": 1}}.
OPENER = re.compile(r"\{\{|\{%|\{#")
VARIABLE_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")

MAX_TEMPLATE_CHARS = 100_000
MAX_VALUE_CHARS = 200_000
MAX_OUTPUT_CHARS = 1_000_000


@dataclass(frozen=True)
class TemplateProblem:
    """One precise problem: what, where, and which variable if any."""

    message: str
    line: int = 0
    column: int = 0
    variable: str = ""
    location: str = ""

    def as_text(self) -> str:
        where = f"{self.location} " if self.location else ""
        if self.line:
            where += f"line {self.line}, column {self.column}: "
        elif where:
            where += ": "
        return f"{where}{self.message}"


class TemplateError(Exception):
    """Raised by `render` with every problem found."""

    def __init__(self, problems: list[TemplateProblem]):
        super().__init__("; ".join(p.as_text() for p in problems))
        self.problems = problems


@dataclass
class Parsed:
    """A template split into literal text and placeholders."""

    parts: list[str | tuple[str, int]] = field(default_factory=list)
    problems: list[TemplateProblem] = field(default_factory=list)

    @property
    def variables(self) -> list[str]:
        seen: dict[str, None] = {}
        for part in self.parts:
            if isinstance(part, tuple):
                seen.setdefault(part[0], None)
        return list(seen)


def _position(text: str, offset: int) -> tuple[int, int]:
    line = text.count("\n", 0, offset) + 1
    column = offset - (text.rfind("\n", 0, offset) + 1) + 1
    return line, column


def parse(text: str, *, location: str = "") -> Parsed:
    """Split `text` into literals and placeholders, collecting syntax problems."""
    parsed = Parsed()
    if len(text) > MAX_TEMPLATE_CHARS:
        parsed.problems.append(
            TemplateProblem(
                f"Template is longer than {MAX_TEMPLATE_CHARS} characters.", location=location
            )
        )
        return parsed
    cursor = 0
    for match in OPENER.finditer(text):
        start = match.start()
        if start < cursor:
            continue
        token = match.group()
        line, column = _position(text, start)
        if token == "{{":
            placeholder = PLACEHOLDER.match(text, start)
            if placeholder:
                parsed.parts.append(text[cursor:start])
                parsed.parts.append((placeholder.group(1), start))
                cursor = placeholder.end()
                continue
            close = text.find("}}", start + 2)
            inner = text[start + 2 : close].strip() if close != -1 else ""
            if close == -1:
                message = "Unclosed '{{': every placeholder ends with '}}'."
            elif not inner:
                message = "Empty placeholder '{{ }}'."
            elif re.match(r"^[A-Za-z_][A-Za-z0-9_]*\s*[.\[(|]", inner):
                message = (
                    f"Only plain variable names are allowed in placeholders, not '{inner[:40]}' "
                    "(no attribute access, indexing, calls or filters)."
                )
            else:
                message = f"'{inner[:40]}' is not a valid variable name."
            parsed.problems.append(TemplateProblem(message, line, column, location=location))
            cursor = close + 2 if close != -1 else len(text)
        else:
            kind = "block tags" if token == "{%" else "comments"
            parsed.problems.append(
                TemplateProblem(
                    f"Template {kind} ('{token}') are not supported; only '{{{{ name }}}}' placeholders.",
                    line,
                    column,
                    location=location,
                )
            )
            cursor = start + 2
    parsed.parts.append(text[cursor:])
    return parsed


def check(
    sources: Iterable[tuple[str, str]], declared: Iterable[str]
) -> tuple[list[TemplateProblem], list[str]]:
    """Syntax problems and undeclared variables across (location, text) pairs.

    Returns (problems, variables used in order of first use).
    """
    declared_set = set(declared)
    problems: list[TemplateProblem] = []
    used: dict[str, None] = {}
    for location, text in sources:
        parsed = parse(text, location=location)
        problems.extend(parsed.problems)
        for part in parsed.parts:
            if isinstance(part, tuple):
                name, offset = part
                used.setdefault(name, None)
                if name not in declared_set:
                    line, column = _position(text, offset)
                    problems.append(
                        TemplateProblem(
                            f"Variable '{name}' is used but not declared.",
                            line,
                            column,
                            variable=name,
                            location=location,
                        )
                    )
    return problems, list(used)


def check_declarations(variables: Iterable[Mapping]) -> list[TemplateProblem]:
    """Declared variables must have valid, unique names."""
    problems = []
    seen: set[str] = set()
    for index, var in enumerate(variables):
        name = str(var.get("name", ""))
        if not VARIABLE_NAME.match(name):
            problems.append(
                TemplateProblem(
                    f"'{name[:40]}' is not a valid variable name.",
                    variable=name,
                    location=f"variables[{index}]",
                )
            )
        elif name in seen:
            problems.append(
                TemplateProblem(
                    f"Variable '{name}' is declared twice.",
                    variable=name,
                    location=f"variables[{index}]",
                )
            )
        seen.add(name)
    return problems


def render_text(
    text: str,
    values: Mapping[str, object],
    *,
    declared: Iterable[Mapping] = (),
    location: str = "",
) -> str:
    """Render one template text with `values`; raise TemplateError listing every problem."""
    return render_many([(location, text)], values, declared=declared)[0]


def render_many(
    sources: list[tuple[str, str]],
    values: Mapping[str, object],
    *,
    declared: Iterable[Mapping] = (),
) -> list[str]:
    """Render several texts (e.g. chat messages) against one set of values."""
    declared = list(declared)
    declared_names = [str(v["name"]) for v in declared]
    problems, _ = check(sources, declared_names)
    required = {str(v["name"]) for v in declared if v.get("required", True)}
    for name in sorted(required - set(values)):
        problems.append(
            TemplateProblem(f"Variable '{name}' is required but no value was given.", variable=name)
        )
    for name in sorted(set(values) - set(declared_names)):
        problems.append(
            TemplateProblem(f"Value given for undeclared variable '{name}'.", variable=name)
        )
    texts: dict[str, str] = {}
    for name, value in values.items():
        if name not in declared_names:
            continue
        if value is None:
            value = ""
        if not isinstance(value, str | int | float | bool):
            problems.append(
                TemplateProblem(
                    f"Variable '{name}' must be text or a number, not {type(value).__name__}.",
                    variable=name,
                )
            )
            continue
        texts[name] = str(value)
        if len(texts[name]) > MAX_VALUE_CHARS:
            problems.append(
                TemplateProblem(
                    f"Value of '{name}' is longer than {MAX_VALUE_CHARS} characters.", variable=name
                )
            )
    if problems:
        raise TemplateError(problems)
    outputs = []
    total = 0
    for location, text in sources:
        out = []
        for part in parse(text, location=location).parts:
            piece = texts.get(part[0], "") if isinstance(part, tuple) else part
            total += len(piece)
            if total > MAX_OUTPUT_CHARS:
                raise TemplateError(
                    [
                        TemplateProblem(
                            f"Rendered prompt is longer than {MAX_OUTPUT_CHARS} characters."
                        )
                    ]
                )
            out.append(piece)
        outputs.append("".join(out))
    return outputs
