"""Backups of the whole database: pg_dump's custom format for PostgreSQL, VACUUM INTO for SQLite."""

import os
import shutil
import sqlite3
import subprocess
from pathlib import Path

from sqlalchemy import create_engine, inspect
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import OperationalError


class BackupError(Exception):
    """A backup or restore that cannot be done, with the reason in words."""


def _sqlite_path(url: URL) -> Path:
    if not url.database or url.database == ":memory:":
        raise BackupError("an in-memory SQLite database has nothing to back up")
    return Path(url.database)


def _postgres_command(program: str, url: URL, *args: str) -> None:
    """Run pg_dump or pg_restore on the database at `url`; the password goes in the environment, not argv."""
    if shutil.which(program) is None:
        raise BackupError(f"{program} is not installed: install PostgreSQL's client programs (postgresql-client)")
    env = dict(os.environ)
    if url.password:
        env["PGPASSWORD"] = str(url.password)
    libpq = url.set(drivername="postgresql", password=None).render_as_string(hide_password=False)
    done = subprocess.run([program, *args, "--dbname", libpq], env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise BackupError(f"{program} failed: {done.stderr.strip() or done.returncode}")


def backup_database(database_url: str, output: Path) -> None:
    """Write a consistent copy of the database to `output`, a new file; the service may keep running."""
    if output.exists():
        raise BackupError(f"{output} already exists; choose a new file name")
    url = make_url(database_url)
    if url.get_backend_name() == "sqlite":
        source = sqlite3.connect(_sqlite_path(url))
        try:  # one read transaction: a consistent copy even while the web process writes
            source.execute("VACUUM INTO ?", (str(output),))
        finally:
            source.close()
        return
    _postgres_command("pg_dump", url, "--format=custom", "--no-owner", "--file", str(output))


def restore_database(backup: Path, database_url: str) -> None:
    """Load a backup into the database at `database_url`, which must exist and be empty (not even migrated)."""
    if not backup.is_file():
        raise BackupError(f"no backup file at {backup}")
    url = make_url(database_url)
    if url.get_backend_name() == "sqlite":
        _sqlite_path(url).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(url)
    try:
        tables = inspect(engine).get_table_names()
    except OperationalError as exc:
        raise BackupError(f"cannot open {url.render_as_string(hide_password=True)} (create the database first): "
                          f"{str(exc.orig).strip().splitlines()[0] if exc.orig else exc}") from None
    finally:
        engine.dispose()
    if tables:
        raise BackupError(f"the database {url.render_as_string(hide_password=True)} already has tables "
                          f"({len(tables)}); restore into a new, empty database")
    if url.get_backend_name() == "sqlite":
        source, target = sqlite3.connect(f"file:{backup}?mode=ro", uri=True), sqlite3.connect(_sqlite_path(url))
        try:
            source.backup(target)
        except sqlite3.DatabaseError as exc:
            raise BackupError(f"{backup} is not a SQLite backup: {exc}") from None
        finally:
            source.close()
            target.close()
        return
    _postgres_command("pg_restore", url, "--no-owner", "--exit-on-error", "--single-transaction", str(backup))
