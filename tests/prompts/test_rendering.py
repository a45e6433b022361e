"""The template language renders declared variables and nothing else, with precise errors."""

import pytest

from apps.prompts import rendering
from apps.prompts.rendering import TemplateError, render_text

DECLARED = [{"name": "name", "required": True}, {"name": "city", "required": False}]


def problems(text, values=None, declared=DECLARED):
    with pytest.raises(TemplateError) as exc:
        render_text(text, values if values is not None else {"name": "Ada"}, declared=declared)
    return exc.value.problems


def test_renders_declared_variables_with_or_without_spaces():
    assert (
        render_text(
            "Hi {{name}} from {{ city }}!", {"name": "Ada", "city": "Oslo"}, declared=DECLARED
        )
        == "Hi Ada from Oslo!"
    )


def test_optional_variable_may_be_left_out():
    assert render_text("Hi {{ name }}{{ city }}", {"name": "Ada"}, declared=DECLARED) == "Hi Ada"


def test_json_braces_are_literal_text():
    text = 'Reply as {"label": "x", "meta": {"n": 1}} for {{ name }}'
    assert render_text(text, {"name": "Ada"}, declared=DECLARED).endswith("}} for Ada")


def test_values_are_never_re_interpreted_as_templates():
    out = render_text("{{ name }}", {"name": "{{ city }} {% import os %}"}, declared=DECLARED)
    assert out == "{{ city }} {% import os %}"


def test_undeclared_variable_is_reported_with_its_position():
    [problem] = rendering.check([("messages[1] (user)", "Hello\n  {{ surname }}")], ["name"])[0]
    assert (problem.variable, problem.line, problem.column) == ("surname", 2, 3)
    assert (
        problem.as_text()
        == "messages[1] (user) line 2, column 3: Variable 'surname' is used but not declared."
    )


def test_missing_required_variable_is_named():
    [problem] = problems("Hi {{ name }}", values={})
    assert problem.message == "Variable 'name' is required but no value was given."


def test_unknown_value_is_named():
    [problem] = problems("Hi {{ name }}", values={"name": "Ada", "role": "admin"})
    assert problem.variable == "role"


@pytest.mark.parametrize(
    ("template", "fragment"),
    [
        ("{{ ''.__class__ }}", "not a valid variable name"),
        ("{{ name.__class__.__mro__ }}", "no attribute access"),
        ("{{ name[0] }}", "no attribute access"),
        ("{{ name|upper }}", "no attribute access"),
        ("{{ open('/etc/passwd') }}", "calls"),
        ("{% import os %}", "block tags"),
        ("{% for x in y %}{{ name }}{% endfor %}", "block tags"),
        ("{# secret #}", "comments"),
        ("{{ name", "Unclosed"),
        ("{{ }}", "Empty placeholder"),
        ("{{ 0bad }}", "not a valid variable name"),
    ],
)
def test_hostile_or_malformed_templates_are_refused(template, fragment):
    found = problems(template)
    assert any(fragment in p.message for p in found), [p.message for p in found]


def test_error_positions_point_at_the_offending_token():
    [problem, *_] = problems("line one\nsay {% import os %}")
    assert (problem.line, problem.column) == (2, 5)


def test_very_long_template_is_refused_without_scanning_it():
    parsed = rendering.parse("x" * (rendering.MAX_TEMPLATE_CHARS + 1))
    assert "longer than" in parsed.problems[0].message


def test_very_long_value_is_refused():
    [problem] = problems("{{ name }}", values={"name": "x" * (rendering.MAX_VALUE_CHARS + 1)})
    assert "longer than" in problem.message


def test_rendered_output_is_bounded():
    declared = [{"name": "name"}]
    template = "{{ name }}" * 10
    with pytest.raises(TemplateError) as exc:
        render_text(template, {"name": "x" * 150_000}, declared=declared)
    assert "Rendered prompt is longer" in str(exc.value)


def test_deeply_nested_braces_do_not_explode():
    text = "{" * 5000 + "}" * 5000
    parsed = rendering.parse(text)
    assert parsed.problems  # reported, quickly, not a crash


def test_non_text_values_are_refused():
    [problem] = problems("{{ name }}", values={"name": {"__class__": 1}})
    assert "must be text or a number" in problem.message


def test_declarations_must_be_valid_and_unique():
    found = rendering.check_declarations([{"name": "a"}, {"name": "a"}, {"name": "1x"}])
    assert [p.location for p in found] == ["variables[1]", "variables[2]"]
