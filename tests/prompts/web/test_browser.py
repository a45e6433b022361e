"""A prompt author's journey in real headless Chromium, without JavaScript help."""

import tempfile
from pathlib import Path

import pytest
from playwright.sync_api import expect

from apps.prompts.models import PromptVersion
from tests.browser import log_in

pytestmark = pytest.mark.browser
SCREENSHOT = Path(tempfile.gettempdir()) / "aifactory-prompt-catalog.png"


def test_author_fixes_a_variable_typo_previews_and_submits(page, prompt, owner, password):
    log_in(page, "olivia", password)
    page.goto(f"/prompts/{prompt.slug}/versions/new/")
    page.fill("#id_messages-0-content", "You answer only using the provided context.")
    page.fill("#id_messages-1-content", "Context: {{ context }}\nQuestion: {{ questoin }}")
    page.get_by_role("button", name="Add variable").click()
    page.fill("#id_variables-0-name", "context")
    page.fill("#id_variables-0-example", "Returns within 30 days.")
    page.get_by_role("button", name="Add variable").click()
    page.fill("#id_variables-1-name", "question")
    page.fill("#id_variables-1-example", "Can I return shoes?")
    page.fill("#id_release_notes", "First draft")
    page.get_by_role("button", name="Check & preview").click()
    result = page.locator("#check-result")
    expect(result).to_contain_text(
        "line 2, column 11: Variable 'questoin' is used but not declared."
    )
    expect(result).to_contain_text("Variable 'question' is declared but never used")

    page.fill("#id_messages-1-content", "Context: {{ context }}\nQuestion: {{ question }}")
    page.get_by_role("button", name="Check & preview").click()
    expect(page.locator("#preview")).to_contain_text("Question: Can I return shoes?")
    page.get_by_role("button", name="Save draft").click()
    expect(page.locator("#version-status")).to_contain_text("Draft")

    page.get_by_role("button", name="Submit for review").click()
    expect(page.locator("#version-status")).to_contain_text("In review")
    expect(page.get_by_text("No findings.")).to_be_visible()
    assert PromptVersion.objects.get(prompt=prompt).status == "in_review"
    assert page.errors == []


def test_catalog_renders_cleanly(page, approved, owner, password):
    log_in(page, "olivia", password)
    page.goto("/prompts/")
    expect(page.get_by_role("heading", name="Prompts", exact=True)).to_be_visible()
    expect(page.get_by_role("link", name="Starter: faithful summary")).to_be_visible()
    page.screenshot(path=str(SCREENSHOT), full_page=True)
    page.goto(f"/prompts/{approved.prompt.slug}/versions/1/")
    expect(page.locator("#gate")).to_contain_text("Version is approved.")
    assert page.errors == []
