"""Pure helpers over a version's content: validation, canonical hash, diff."""

from __future__ import annotations

import difflib
import hashlib
import json
from collections.abc import Mapping, Sequence
from typing import Any

from . import rendering
from .choices import MessageRole, TemplateKind

MAX_MESSAGES = 50
MODEL_CONFIG_KEYS = {
    "model": str,
    "temperature": (int, float),
    "top_p": (int, float),
    "max_tokens": int,
    "presence_penalty": (int, float),
    "frequency_penalty": (int, float),
    "stop": list,
    "seed": int,
    "response_format": dict,
    "tools": list,
}
NUMERIC_BOUNDS = {
    "temperature": (0, 2),
    "top_p": (0, 1),
    "max_tokens": (1, 1_000_000),
    "presence_penalty": (-2, 2),
    "frequency_penalty": (-2, 2),
}


def sources(kind: str, messages: Sequence[Mapping], text: str) -> list[tuple[str, str]]:
    """The template texts of a version as (location, text) pairs."""
    if kind == TemplateKind.TEXT:
        return [("text", text or "")]
    return [
        (f"messages[{i}] ({m.get('role', '?')})", str(m.get("content", "")))
        for i, m in enumerate(messages)
    ]


def validate(
    kind: str, messages: Any, text: Any, variables: Any, model_config: Any
) -> dict[str, list[str]]:
    """Field errors for a version's content: shapes, template syntax, variables, model config."""
    errors: dict[str, list[str]] = {}

    def add(field: str, message: str) -> None:
        errors.setdefault(field, []).append(message)

    if kind not in TemplateKind.values:
        add("template_kind", f"Choose one of: {', '.join(TemplateKind.values)}.")
        return errors
    if kind == TemplateKind.CHAT:
        if not isinstance(messages, list) or not messages:
            add("messages", "A chat template needs at least one message.")
        elif len(messages) > MAX_MESSAGES:
            add("messages", f"At most {MAX_MESSAGES} messages.")
        else:
            for i, message in enumerate(messages):
                if not isinstance(message, dict):
                    add(f"messages[{i}]", "Each message is an object with a role and content.")
                    continue
                if message.get("role") not in MessageRole.values:
                    add(f"messages[{i}].role", "Role must be system, user or assistant.")
                if not isinstance(message.get("content"), str) or not message["content"].strip():
                    add(f"messages[{i}].content", "Content must be non-empty text.")
                extra = set(message) - {"role", "content"}
                if extra:
                    add(f"messages[{i}]", f"Unknown keys: {', '.join(sorted(extra))}.")
    elif not isinstance(text, str) or not text.strip():
        add("text", "A text template needs text.")

    if not isinstance(variables, list):
        add("variables", "Variables are a list of objects with a name.")
        variables = []
    else:
        for i, var in enumerate(variables):
            if not isinstance(var, dict) or "name" not in var:
                add(f"variables[{i}]", "Each variable is an object with at least a name.")
                continue
            extra = set(var) - {"name", "description", "required", "example"}
            if extra:
                add(f"variables[{i}]", f"Unknown keys: {', '.join(sorted(extra))}.")
            if "required" in var and not isinstance(var["required"], bool):
                add(f"variables[{i}].required", "Must be true or false.")
        for problem in rendering.check_declarations(v for v in variables if isinstance(v, dict)):
            add(problem.location or "variables", problem.message)

    if errors.get("messages") is None and errors.get("text") is None:
        names = [str(v.get("name")) for v in variables if isinstance(v, dict)]
        problems, used = rendering.check(sources(kind, messages or [], text or ""), names)
        for problem in problems:
            add("template", problem.as_text())
        unused = [n for n in names if n not in used]
        for name in unused:
            add("variables", f"Variable '{name}' is declared but never used in the template.")

    if not isinstance(model_config, dict):
        add("model_config", "Model configuration is a JSON object.")
    else:
        for key, value in model_config.items():
            expected = MODEL_CONFIG_KEYS.get(key)
            if expected is None:
                continue  # provider-specific parameters pass through unchanged
            if isinstance(value, bool) or not isinstance(value, expected):
                add(f"model_config.{key}", "Has the wrong type.")
            elif key in NUMERIC_BOUNDS:
                low, high = NUMERIC_BOUNDS[key]
                if not low <= value <= high:
                    add(f"model_config.{key}", f"Must be between {low} and {high}.")
    return errors


def canonical(
    kind: str,
    messages: Sequence[Mapping],
    text: str,
    variables: Sequence[Mapping],
    model_config: Mapping,
) -> str:
    """The canonical JSON a content hash is taken over (release notes do not count)."""
    body = {
        "kind": kind,
        "template": [{"role": m["role"], "content": m["content"]} for m in messages]
        if kind == TemplateKind.CHAT
        else text,
        "variables": sorted(
            ({"name": v["name"], "required": v.get("required", True)} for v in variables),
            key=lambda v: v["name"],
        ),
        "model_config": model_config,
    }
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def content_hash(kind: str, messages, text: str, variables, model_config) -> str:
    """sha256 over the canonical form of template, variables and model configuration."""
    return hashlib.sha256(
        canonical(kind, messages, text, variables, model_config).encode()
    ).hexdigest()


def template_lines(kind: str, messages: Sequence[Mapping], text: str) -> list[str]:
    if kind == TemplateKind.TEXT:
        return (text or "").splitlines()
    lines: list[str] = []
    for message in messages:
        lines.append(f"## {message.get('role', '?')}")
        lines.extend(str(message.get("content", "")).splitlines())
    return lines


def diff(a, b) -> dict:
    """Side-by-side difference between two versions: template lines, variables, model config."""
    left = template_lines(a.template_kind, a.messages, a.text)
    right = template_lines(b.template_kind, b.messages, b.text)
    rows = []
    matcher = difflib.SequenceMatcher(a=left, b=right, autojunk=False)
    for op, i1, i2, j1, j2 in matcher.get_opcodes():
        if op == "equal":
            rows += [
                {"op": "equal", "left": left[i], "right": right[j1 + k]}
                for k, i in enumerate(range(i1, i2))
            ]
            continue
        span = max(i2 - i1, j2 - j1)
        for k in range(span):
            rows.append(
                {
                    "op": op,
                    "left": left[i1 + k] if i1 + k < i2 else None,
                    "right": right[j1 + k] if j1 + k < j2 else None,
                }
            )
    unified = "\n".join(
        difflib.unified_diff(left, right, f"v{a.number}", f"v{b.number}", lineterm="")
    )
    vars_a = {v["name"]: v for v in a.variables}
    vars_b = {v["name"]: v for v in b.variables}
    config_keys = sorted(set(a.model_config) | set(b.model_config))
    return {
        "from": a.number,
        "to": b.number,
        "same_content": a.content_hash == b.content_hash,
        "template": rows,
        "unified": unified,
        "variables": {
            "added": sorted(set(vars_b) - set(vars_a)),
            "removed": sorted(set(vars_a) - set(vars_b)),
            "changed": sorted(n for n in set(vars_a) & set(vars_b) if vars_a[n] != vars_b[n]),
        },
        "model_config": [
            {"key": k, "from": a.model_config.get(k), "to": b.model_config.get(k)}
            for k in config_keys
            if a.model_config.get(k) != b.model_config.get(k)
        ],
    }
