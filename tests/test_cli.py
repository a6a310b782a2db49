"""The `preflab` command, run as a subprocess against a database other processes can see."""

import os
import signal
import subprocess
import sys
import threading

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.cli import _bootstrap
from app.config import Settings
from app.db import make_engine
from app.projects.demo import DEMO_NAME, DEMO_PROMPTS
from app.projects.models import Project
from app.prompts.models import Prompt
from app.users.models import ApiToken, Role, User
from app.users.service import authenticate

SECRET = "cli-test-secret-0123456789abcdefghijklmnop"


def preflab(*args: str, url: str, data_dir, secret: str | None = SECRET, timeout: float = 120) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFLAB_")}
    env.update(PREFLAB_DATABASE_URL=url, PREFLAB_DATA_DIR=str(data_dir))
    if secret is not None:
        env["PREFLAB_SECRET_KEY"] = secret
    return subprocess.run([sys.executable, "-m", "app.cli", *args], env=env, capture_output=True, text=True,
                          timeout=timeout)


def test_create_user_and_token_then_use_the_token(fresh_database_url, tmp_path):
    from fastapi.testclient import TestClient

    from app.main import create_app

    made = preflab("create-user", "margaret", "--role", "admin", url=fresh_database_url, data_dir=tmp_path)
    assert made.returncode == 0, made.stderr
    password = made.stdout.strip().splitlines()[-1].split(": ", 1)[1]
    token = preflab("create-token", "margaret", "--scope", "admin", url=fresh_database_url, data_dir=tmp_path)
    assert token.returncode == 0, token.stderr
    plain = token.stdout.strip().splitlines()[-1]
    assert plain.startswith("pfl_") and " " not in plain

    engine = make_engine(fresh_database_url)
    with Session(engine) as db:
        assert authenticate(session=db, username="margaret", password=password).role == Role.admin
        stored = db.scalar(select(ApiToken))
        assert stored.scope == "admin" and stored.token_hash != plain
    engine.dispose()

    app = create_app(Settings(data_dir=tmp_path, database_url=fresh_database_url, secret_key=SECRET))
    with TestClient(app) as client:
        me = client.get("/api/v1/me", headers={"Authorization": f"Bearer {plain}"})
        assert me.status_code == 200 and me.json()["username"] == "margaret"
    app.state.engine.dispose()


def test_cli_errors_are_one_clear_line(fresh_database_url, tmp_path):
    first = preflab("create-user", "alan", "--role", "labeler", "--password", "long-enough-1",
                    url=fresh_database_url, data_dir=tmp_path)
    assert first.returncode == 0
    again = preflab("create-user", "alan", "--role", "labeler", "--password", "long-enough-1",
                    url=fresh_database_url, data_dir=tmp_path)
    assert again.returncode == 1 and again.stderr.strip() == "error: user 'alan' already exists"
    weak = preflab("create-user", "bob", "--role", "labeler", "--password", "short", url=fresh_database_url,
                   data_dir=tmp_path)
    assert weak.returncode == 1 and "at least 8 characters" in weak.stderr
    no_user = preflab("create-token", "nobody", url=fresh_database_url, data_dir=tmp_path)
    assert no_user.returncode == 1 and "not found" in no_user.stderr
    scope = preflab("create-token", "alan", "--scope", "admin", url=fresh_database_url, data_dir=tmp_path)
    assert scope.returncode == 1 and "cannot hold a token with scope admin" in scope.stderr


def test_serve_refuses_a_sample_secret(tmp_path):
    result = preflab("serve", url=f"sqlite:///{tmp_path / 'p.db'}", data_dir=tmp_path, secret="changeme", timeout=60)
    assert result.returncode == 1
    assert "PREFLAB_SECRET_KEY" in result.stderr and "sample value" in result.stderr


def test_serve_refuses_a_missing_secret(tmp_path):
    result = preflab("serve", url=f"sqlite:///{tmp_path / 'p.db'}", data_dir=tmp_path, secret=None, timeout=60)
    assert result.returncode == 1 and "missing" in result.stderr


def test_migrate_creates_the_schema_and_the_secret_file(tmp_path):
    result = preflab("migrate", url=f"sqlite:///{tmp_path / 'new.db'}", data_dir=tmp_path / "data", secret=None)
    assert result.returncode == 0, result.stderr
    assert len((tmp_path / "data" / "secret_key").read_text()) >= 32
    engine = make_engine(f"sqlite:///{tmp_path / 'new.db'}")
    with Session(engine) as db:
        assert db.scalar(select(func.count()).select_from(User)) == 0
    engine.dispose()


def test_first_start_creates_one_admin_and_the_demo_project_once(fresh_database_url, tmp_path, capsys):
    settings = Settings(data_dir=tmp_path, database_url=fresh_database_url, secret_key=SECRET)
    _bootstrap(settings)
    printed = capsys.readouterr().out
    password = next(line.split(": ", 1)[1] for line in printed.splitlines() if "password:" in line)
    _bootstrap(settings)
    assert "password:" not in capsys.readouterr().out

    engine = make_engine(fresh_database_url)
    with Session(engine) as db:
        users = list(db.scalars(select(User)))
        assert [(u.username, u.role) for u in users] == [("admin", Role.admin)]
        assert authenticate(session=db, username="admin", password=password) is not None
        projects = list(db.scalars(select(Project)))
        assert [p.name for p in projects] == [DEMO_NAME]
        kinds = sorted(db.scalars(select(Prompt.kind).where(Prompt.project_id == projects[0].id)))
        assert len(kinds) == len(DEMO_PROMPTS) == 9 and kinds.count("chat") == 1
    engine.dispose()


def test_worker_starts_and_stops_cleanly(tmp_path):
    url = f"sqlite:///{tmp_path / 'w.db'}"
    assert preflab("migrate", url=url, data_dir=tmp_path).returncode == 0
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFLAB_")}
    env.update(PREFLAB_DATABASE_URL=url, PREFLAB_DATA_DIR=str(tmp_path), PREFLAB_SECRET_KEY=SECRET)
    proc = subprocess.Popen([sys.executable, "-m", "app.cli", "worker"], env=env, stderr=subprocess.PIPE, text=True)
    lines: list[str] = []

    def read_until_started() -> None:  # the start-up line, however long imports take on a busy machine
        for line in proc.stderr:
            lines.append(line)
            if "started on" in line:
                return

    reader = threading.Thread(target=read_until_started, daemon=True)
    reader.start()
    reader.join(timeout=120)
    assert proc.poll() is None and any("started on" in line for line in lines), "".join(lines)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=30)
    err = "".join(lines) + err
    assert proc.returncode == 0
    assert "started on sqlite; handles sample" in err and "worker stopped" in err
