"""The app order holds, and `make lint` fails on an import that breaks it."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from django.conf import settings

LINT = Path(sys.executable).with_name("lint-imports")
pytestmark = pytest.mark.skipif(not LINT.exists(), reason="import-linter is a dev requirement")


def _lint(root: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(LINT), "--no-cache"],
        cwd=root,
        capture_output=True,
        text=True,
        env={"PYTHONPATH": str(root), "PATH": "/usr/bin:/bin"},
        timeout=300,
    )


def test_the_tree_keeps_the_app_order():
    result = _lint(settings.BASE_DIR)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize(
    "module, planted",
    [
        ("apps/charters/models.py", "from apps.approvals import services as _planted"),
        ("apps/core/services.py", "import apps.workspace.demo as _planted"),
        ("apps/approvals/gates.py", "from apps.gateway import services as _planted"),
        ("apps/evaluations/services/runs.py", "from apps.scorecards import drift as _planted"),
    ],
)
def test_an_import_up_the_order_fails_lint(tmp_path, module, planted):
    """A scratch copy of the code with one upward import planted in a domain module."""
    shutil.copytree(
        settings.BASE_DIR / "apps", tmp_path / "apps", ignore=shutil.ignore_patterns("__pycache__")
    )
    shutil.copy(settings.BASE_DIR / "pyproject.toml", tmp_path / "pyproject.toml")
    target = tmp_path / module
    target.write_text(target.read_text() + f"\n{planted}  # noqa\n")
    result = _lint(tmp_path)
    assert result.returncode != 0
    assert "BROKEN" in result.stdout
    assert module.removesuffix(".py").replace("/", ".") in result.stdout
