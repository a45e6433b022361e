"""Version content: validation messages, a canonical hash, and diffs."""

from types import SimpleNamespace

from apps.prompts import content

MESSAGES = [
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": "Summarise {{ doc }}"},
]
VARIABLES = [{"name": "doc", "required": True}]


def test_valid_chat_content_has_no_errors():
    assert content.validate("chat", MESSAGES, "", VARIABLES, {"temperature": 0.2}) == {}


def test_errors_name_the_field():
    errors = content.validate(
        "chat",
        [{"role": "robot", "content": ""}],
        "",
        [{"name": "doc"}, {"name": "doc"}],
        {"temperature": 5, "max_tokens": "many"},
    )
    assert "messages[0].role" in errors and "messages[0].content" in errors
    assert errors["model_config.temperature"] == ["Must be between 0 and 2."]
    assert errors["model_config.max_tokens"] == ["Has the wrong type."]
    assert any("declared twice" in m for m in errors["variables[1]"])


def test_template_errors_and_unused_declarations():
    errors = content.validate("text", [], "Hello {{ who }}", [{"name": "doc"}], {})
    assert errors["template"] == ["text line 1, column 7: Variable 'who' is used but not declared."]
    assert errors["variables"] == ["Variable 'doc' is declared but never used in the template."]


def test_hash_ignores_formatting_of_config_and_order_of_variables():
    a = content.content_hash(
        "chat", MESSAGES, "", [{"name": "a"}, {"name": "b"}], {"temperature": 0.2, "max_tokens": 10}
    )
    b = content.content_hash(
        "chat", MESSAGES, "", [{"name": "b"}, {"name": "a"}], {"max_tokens": 10, "temperature": 0.2}
    )
    c = content.content_hash(
        "chat", MESSAGES, "", [{"name": "a"}, {"name": "b"}], {"temperature": 0.3, "max_tokens": 10}
    )
    assert a == b != c and len(a) == 64


def version(number, messages, variables, config):
    return SimpleNamespace(
        number=number,
        template_kind="chat",
        messages=messages,
        text="",
        variables=variables,
        model_config=config,
        content_hash=content.content_hash("chat", messages, "", variables, config),
    )


def test_diff_shows_lines_variables_and_config():
    a = version(1, MESSAGES, VARIABLES, {"temperature": 0.2})
    b = version(
        2,
        [MESSAGES[0], {"role": "user", "content": "Summarise {{ doc }} for {{ audience }}"}],
        VARIABLES + [{"name": "audience"}],
        {"temperature": 0.0},
    )
    d = content.diff(a, b)
    assert d["variables"] == {"added": ["audience"], "removed": [], "changed": []}
    assert d["model_config"] == [{"key": "temperature", "from": 0.2, "to": 0.0}]
    changed = [row for row in d["template"] if row["op"] != "equal"]
    assert changed == [
        {
            "op": "replace",
            "left": "Summarise {{ doc }}",
            "right": "Summarise {{ doc }} for {{ audience }}",
        }
    ]
    assert "-Summarise {{ doc }}" in d["unified"] and not d["same_content"]
