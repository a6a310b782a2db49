"""docker-compose.yml, the Dockerfile and README agree with the code (Docker itself cannot run here)."""

import re
from pathlib import Path

import yaml

from app.config import Settings

ROOT = Path(__file__).resolve().parent.parent


def test_every_setting_is_documented_in_readme():
    readme = (ROOT / "README.md").read_text()
    missing = [f"PREFLAB_{name.upper()}" for name in Settings.model_fields if f"`PREFLAB_{name.upper()}`" not in readme]
    assert missing == []


def test_compose_runs_postgres_migrate_web_and_a_gpu_worker():
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services = compose["services"]
    assert set(services) == {"postgres", "migrate", "web", "worker"}
    assert "pg_isready" in " ".join(services["postgres"]["healthcheck"]["test"])
    assert services["migrate"]["command"] == ["preflab", "migrate"]
    assert services["migrate"]["depends_on"] == {"postgres": {"condition": "service_healthy"}}
    assert services["web"]["command"][:2] == ["preflab", "serve"]
    assert services["worker"]["command"] == ["preflab", "worker"]
    for name in ("web", "worker"):
        assert services[name]["depends_on"] == {"migrate": {"condition": "service_completed_successfully"}}
    gpu = services["worker"]["deploy"]["resources"]["reservations"]["devices"][0]
    assert gpu["capabilities"] == ["gpu"] and gpu["driver"] == "nvidia"
    env = services["web"]["environment"]
    assert env["PREFLAB_DATABASE_URL"].startswith("postgresql://preflab:") and "@postgres:5432/preflab" in env["PREFLAB_DATABASE_URL"]
    settings = {f"PREFLAB_{n.upper()}" for n in Settings.model_fields}
    for service in ("migrate", "web", "worker"):
        assert set(services[service]["environment"]) <= settings


def test_dockerfile_copies_what_the_app_reads_at_run_time():
    dockerfile = (ROOT / "Dockerfile").read_text()
    copied = set(re.findall(r"^COPY (.+?) \S+$", dockerfile, re.M))
    copied = {part for line in copied for part in line.split()}
    for needed in ("app", "migrations", "templates", "static", "alembic.ini", "pyproject.toml"):
        assert needed in copied, needed
    assert "preflab fetch-policy" in dockerfile
