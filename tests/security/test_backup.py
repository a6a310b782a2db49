"""Backup and restore: a labeled project backed up with `preflab backup`, restored with `preflab restore` into a
new database, exports the same bytes as before."""

import uuid
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session

from app.backup import BackupError, restore_database
from app.config import Settings
from app.db import make_engine
from app.main import create_app
from tests.conftest import PG_SERVER_URL, POSTGRES
from tests.export.planted import plant
from tests.test_cli import SECRET, preflab

EXPORTS = ["format=pairs&ties=keep&splits=0.6,0.2,0.2&seed=3", "format=pairs&style=conversational",
           "format=rankings", "format=ratings", "format=sft&include_best=true", "format=pairs&file=parquet"]


def exports(database_url: str, data_dir: Path, project_id: int, headers: dict, secret: str = SECRET) -> list[bytes]:
    app = create_app(Settings(data_dir=data_dir, database_url=database_url, secret_key=secret))
    try:
        with TestClient(app) as client:
            answers = [client.get(f"/api/v1/projects/{project_id}/export?{query}", headers=headers)
                       for query in EXPORTS]
    finally:
        app.state.engine.dispose()
    assert [a.status_code for a in answers] == [200] * len(EXPORTS)
    return [a.content for a in answers]


@pytest.fixture
def empty_database_url(backend, tmp_path, request) -> str:
    """A new database without any table (restore refuses anything else)."""
    if backend == "sqlite":
        return f"sqlite:///{tmp_path / 'restored' / 'preflab.db'}"
    return request.getfixturevalue("pg_server").create()


def test_backup_then_restore_exports_the_same_bytes(fresh_database_url, empty_database_url, tmp_path):
    engine = make_engine(fresh_database_url)
    with Session(engine) as db:
        planted = plant(db)
        project_id, headers = planted.project.id, planted.admin_headers
    engine.dispose()
    before = exports(fresh_database_url, tmp_path, project_id, headers)
    assert before[0].count(b"\n") == 24 and before[0].startswith(b'{"prompt":')  # 8 judgments x 3 pairs, ties kept

    backup = tmp_path / "preflab.backup"
    made = preflab("backup", str(backup), url=fresh_database_url, data_dir=tmp_path)
    assert made.returncode == 0, made.stderr
    assert backup.stat().st_size > 10_000
    again = preflab("backup", str(backup), url=fresh_database_url, data_dir=tmp_path)
    assert again.returncode == 1 and "already exists" in again.stderr

    restored = preflab("restore", str(backup), url=empty_database_url, data_dir=tmp_path)
    assert restored.returncode == 0, restored.stderr
    assert exports(empty_database_url, tmp_path, project_id, headers) == before
    # The labeler pseudonyms are keyed by the secret: a restore served with another key exports other bytes.
    assert exports(empty_database_url, tmp_path, project_id, headers, secret="another-" + "k" * 40)[0] != before[0]

    twice = preflab("restore", str(backup), url=empty_database_url, data_dir=tmp_path)
    assert twice.returncode == 1 and "already has tables" in twice.stderr


def test_restore_into_a_missing_database_says_to_create_it(tmp_path):
    backup = tmp_path / "preflab.backup"
    backup.write_bytes(b"PGDMP")
    missing = make_url(PG_SERVER_URL).set(database=f"preflab_missing_{uuid.uuid4().hex[:8]}")
    if not POSTGRES:
        pytest.skip("no PostgreSQL server answers")
    with pytest.raises(BackupError, match=f'create the database first.*database "{missing.database}" does not exist'):
        restore_database(backup, missing.render_as_string(hide_password=False))


def test_a_file_that_is_not_a_sqlite_backup_is_refused(tmp_path):
    backup = tmp_path / "notes.txt"
    backup.write_text("not a database, " * 100)
    with pytest.raises(BackupError, match="is not a SQLite backup"):
        restore_database(backup, f"sqlite:///{tmp_path / 'new.db'}")
