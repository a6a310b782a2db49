"""SQLAlchemy base, engine and per-request sessions."""

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any, TypeVar

from fastapi import Request
from starlette.concurrency import run_in_threadpool
from sqlalchemy import JSON, DateTime, Engine, MetaData, create_engine, event
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker
from sqlalchemy.types import TypeDecorator

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class UTCDateTime(TypeDecorator):
    """A timezone-aware UTC timestamp; SQLite hands back naive values, so re-attach UTC."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        return value.astimezone(UTC) if value is not None else None

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value


JSONType = JSON().with_variant(JSONB(), "postgresql")


def utcnow() -> datetime:
    return datetime.now(UTC)


def iso(value: datetime) -> str:
    """A UTC timestamp as JSON writes it (the form pydantic gives: ...Z)."""
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {datetime: UTCDateTime, dict[str, Any]: JSONType, list[Any]: JSONType}


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    # Web and worker share the file; wait for a writer instead of failing at once.
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def make_engine(url: str, **kwargs: Any) -> Engine:
    """An engine with Preflab's connection settings for SQLite or PostgreSQL."""
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"check_same_thread": False}, **kwargs)
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    # No pool_pre_ping: it costs a round trip per request. A connection that died with its server
    # fails its first statement, SQLAlchemy then discards the whole pool, and the request is
    # answered 503 (app/errors.py); the next ones get fresh connections.
    # The web process passes its thread count (PREFLAB_WEB_THREADS): every sync route may hold a
    # connection at once. A pool smaller than that opened and closed "overflow" connections all
    # through a load test (a new PostgreSQL backend each time: 2.6% of the server's CPU in profiles).
    kwargs.setdefault("pool_size", 40)
    kwargs.setdefault("max_overflow", 10)
    return create_engine(url, **kwargs)


def make_sessionmaker(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


async def get_session(request: Request) -> AsyncIterator[Session]:
    """One session per request; the route commits, anything uncommitted is rolled back.

    Async, because a sync generator dependency costs two trips through the threadpool per request;
    making a Session does no I/O, and neither does closing one after a commit. A close that must
    roll back over the network is sent to the threadpool.
    """
    session = request.app.state.sessionmaker()
    try:
        yield session
    finally:
        if session.in_transaction():
            await run_in_threadpool(session.close)
        else:
            session.close()


# Ids are `integer` columns: a larger number from a URL or a body must read as "not found",
# never reach PostgreSQL (which raises on it).
MAX_ROW_ID = 2**31 - 1
T = TypeVar("T")


def next_cursor(rows: list[Any], limit: int) -> int | None:
    """The keyset cursor of a page: the last row's id when the page is full (more may follow), else None."""
    if not rows or len(rows) != limit:
        return None
    last = rows[-1]
    return last["id"] if isinstance(last, dict) else last.id


def get_by_id(session: Session, model: type[T], ident: int) -> T | None:
    """session.get(), with ids outside the integer range treated as missing."""
    return session.get(model, ident) if 0 < ident <= MAX_ROW_ID else None


def begin_write(session: Session) -> None:
    """Start the session's transaction as a writer: on SQLite take the write lock now (BEGIN IMMEDIATE),
    so read-then-write sequences cannot interleave; PostgreSQL uses row locks instead."""
    connection = session.connection()
    if connection.dialect.name == "sqlite" and not connection.connection.dbapi_connection.in_transaction:
        connection.exec_driver_sql("BEGIN IMMEDIATE")
