"""Fixtures: every database test runs on SQLite and on PostgreSQL, each test on a fresh database.

SQLite: a copy of a migrated template file per test. PostgreSQL: one throwaway database per test
run (migrated once), each test inside a transaction that is rolled back, the app's commits
becoming savepoints. PostgreSQL is skipped only when no server answers, and the run says so.
"""

import os
import shutil
import uuid
from collections.abc import Iterator

import pytest
from argon2 import PasswordHasher
from hypothesis import settings as hypothesis_settings
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session

from app import migrate
from app.config import Settings
from app.db import get_session, make_engine
from app.main import create_app
from app.users import service as users_service

# Property tests check values, not speed: hypothesis's 200 ms per-example deadline failed once on the
# shared 2-core machine (test_tau_b_matches_scipy) while other work ran.
hypothesis_settings.register_profile("preflab", deadline=None)
hypothesis_settings.load_profile("preflab")

PG_SERVER_URL = os.environ.get("PREFLAB_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
TEST_SECRET = "test-secret-key-0123456789-abcdefghijklmnop"


def _postgres_answers() -> bool:
    try:
        engine = create_engine(PG_SERVER_URL, connect_args={"connect_timeout": 3})
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        engine.dispose()
        return True
    except Exception:  # noqa: BLE001
        return False


POSTGRES = _postgres_answers()
BACKENDS = ["sqlite", pytest.param("postgresql", marks=pytest.mark.skipif(
    not POSTGRES, reason=f"no PostgreSQL server answers at {PG_SERVER_URL}"))]


def pytest_report_header(config: pytest.Config) -> str:
    return "postgresql: " + (f"yes ({make_url(PG_SERVER_URL).render_as_string()})" if POSTGRES
                             else "NOT AVAILABLE - PostgreSQL tests are SKIPPED")


def pytest_terminal_summary(terminalreporter, exitstatus, config) -> None:  # noqa: ANN001
    if not POSTGRES:
        terminalreporter.write_sep("!", "PostgreSQL did not answer: every PostgreSQL test was SKIPPED", red=True)


@pytest.fixture(autouse=True)
def cheap_password_hashing(monkeypatch: pytest.MonkeyPatch) -> None:
    # Argon2 at its default cost takes ~0.15 s per account and per login, most of the suite's
    # time; the lowest cost still runs the real hash and verify code.
    monkeypatch.setattr(users_service, "_hasher", PasswordHasher(time_cost=1, memory_cost=8, parallelism=1))


class PostgresServer:
    """Creates and drops throwaway databases on the test server."""

    def __init__(self) -> None:
        self.admin = create_engine(PG_SERVER_URL, isolation_level="AUTOCOMMIT")
        self.created: list[str] = []

    def create(self, template: str | None = None) -> str:
        name = f"preflab_test_{uuid.uuid4().hex[:12]}"
        clause = f" TEMPLATE {template}" if template else ""
        with self.admin.connect() as conn:
            conn.execute(text(f"CREATE DATABASE {name}{clause}"))
        self.created.append(name)
        return make_url(PG_SERVER_URL).set(database=name).render_as_string(hide_password=False)

    def drop_all(self) -> None:
        with self.admin.connect() as conn:
            for name in reversed(self.created):
                conn.execute(text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        self.admin.dispose()


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PostgresServer]:
    if not POSTGRES:
        pytest.skip("no PostgreSQL server answers")
    server = PostgresServer()
    yield server
    server.drop_all()


@pytest.fixture(scope="session")
def pg_template(pg_server: PostgresServer) -> str:
    """A migrated database that nothing stays connected to: PostgreSQL copies a template only then."""
    url = pg_server.create()
    migrate.upgrade(url)
    return url


@pytest.fixture(scope="session")
def pg_shared(pg_server: PostgresServer, pg_template: str) -> str:
    """The database the rolled-back tests share."""
    return pg_server.create(template=make_url(pg_template).database)


@pytest.fixture(scope="session")
def pg_engine(pg_shared: str):
    engine = make_engine(pg_shared)
    yield engine
    engine.dispose()


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> str:
    path = tmp_path_factory.mktemp("template") / "preflab.db"
    migrate.upgrade(f"sqlite:///{path}")
    return str(path)


def _sqlite_copy(request: pytest.FixtureRequest, path) -> str:
    shutil.copy(request.getfixturevalue("sqlite_template"), path)
    return f"sqlite:///{path}"


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def database_url(backend: str, tmp_path, request: pytest.FixtureRequest) -> str:
    """The URL of this test's database (on PostgreSQL shared, but isolated by the rolled-back transaction)."""
    if backend == "sqlite":
        return _sqlite_copy(request, tmp_path / "preflab.db")
    return request.getfixturevalue("pg_shared")


@pytest.fixture
def fresh_database_url(backend: str, tmp_path, request: pytest.FixtureRequest) -> str:
    """A migrated database of its own, for tests where other processes must see committed rows."""
    if backend == "sqlite":
        return _sqlite_copy(request, tmp_path / "own.db")
    server: PostgresServer = request.getfixturevalue("pg_server")
    return server.create(template=make_url(request.getfixturevalue("pg_template")).database)


@pytest.fixture
def db(backend: str, database_url: str, request: pytest.FixtureRequest) -> Iterator[Session]:
    """The test's session on a fresh database."""
    if backend == "sqlite":
        engine = make_engine(database_url)
        with Session(engine) as session:
            yield session
        engine.dispose()
        return
    conn = request.getfixturevalue("pg_engine").connect()
    outer = conn.begin()
    session = Session(bind=conn, join_transaction_mode="create_savepoint")
    yield session
    session.close()
    outer.rollback()
    conn.close()


@pytest.fixture
def settings(tmp_path, database_url: str) -> Settings:
    return Settings(data_dir=tmp_path / "data", database_url=database_url, secret_key=TEST_SECRET,
                    max_body_mb=8)


@pytest.fixture
def app(settings: Settings, backend: str, db: Session):
    application = create_app(settings)
    if backend == "postgresql":
        # The app works inside the test's transaction; whatever a request leaves uncommitted is
        # rolled back to its last commit, as closing a real request session would.
        def test_session() -> Iterator[Session]:
            try:
                yield db
            finally:
                db.rollback()

        application.dependency_overrides[get_session] = test_session
    yield application
    application.state.engine.dispose()


@pytest.fixture
def client(app) -> Iterator[TestClient]:
    with TestClient(app) as test_client:
        yield test_client


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory):
    """A tiny random causal LM with the default policy's tokenizer (worker-side tests only)."""
    from tests.policy.models import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("tiny-model"))


@pytest.fixture
def admin(db: Session):
    """An admin account (tests/factories.py makes others)."""
    from tests.factories import make_admin

    return make_admin(db)


@pytest.fixture
def admin_headers(db: Session, admin) -> dict[str, str]:
    """Bearer headers of an admin-scoped token of `admin`."""
    from app.users.models import Scope
    from tests.factories import bearer, make_token

    return bearer(make_token(db, admin, Scope.admin))
