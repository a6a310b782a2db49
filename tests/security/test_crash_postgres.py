"""PostgreSQL restarted under load: meanwhile clients get 503 with Retry-After (never a 500), and the service
answers again within 10 s of the database being back, with nothing lost or half-written.

The shared server on 5432 is left alone: the test runs a private cluster (initdb, pg_ctl) on a free port, as the
`postgres` account when the tests run as root (initdb refuses root)."""

import os
import pwd
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import create_engine, text

from app import migrate
from tests.security.served import Labelers, free_port, labeling_service, stored_judgments


class PrivatePostgres:
    """A throwaway PostgreSQL cluster: initdb into a temporary directory, started and stopped with pg_ctl."""

    def __init__(self, bindir: Path, base: Path, run_as: str | None) -> None:
        self.bindir, self.base, self.run_as = bindir, base, run_as
        self.data, self.port = base / "data", free_port()
        self.url = f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, program: str, *args: str) -> None:
        command = [str(self.bindir / program), *args]
        if self.run_as:
            command = ["runuser", "-u", self.run_as, "--", *command]
        subprocess.run(command, check=True, capture_output=True, timeout=120)

    def init(self) -> None:
        self._run("initdb", "-D", str(self.data), "-A", "trust", "-U", "postgres", "--no-sync")

    def start(self) -> None:
        """Returns once the server accepts connections (pg_ctl -w)."""
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.base / "log"), "-w", "-t", "60", "-o",
                  f"-p {self.port} -k {self.base} -c listen_addresses=127.0.0.1", "start")

    def stop(self, mode: str = "fast") -> None:
        self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "stop")


def _postgres_bindir() -> Path | None:
    initdb = shutil.which("initdb") or next(iter(sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))), None)
    return Path(os.path.realpath(initdb)).parent if initdb else None


@pytest.fixture
def private_postgres() -> Iterator[PrivatePostgres]:
    bindir = _postgres_bindir()
    if bindir is None or not (bindir / "pg_ctl").exists():
        pytest.skip("initdb and pg_ctl are not installed: no private PostgreSQL cluster to restart")
    run_as = None
    if os.geteuid() == 0:
        try:
            account = pwd.getpwnam("postgres")
        except KeyError:
            pytest.skip("running as root (initdb refuses root) and there is no 'postgres' account to run it as")
        run_as = "postgres"
    base = Path(tempfile.mkdtemp(prefix="preflab-pg-"))
    if run_as:
        os.chown(base, account.pw_uid, account.pw_gid)
    cluster = PrivatePostgres(bindir, base, run_as)
    try:
        cluster.init()
        cluster.start()
        yield cluster
    finally:
        try:
            cluster.stop("immediate")
        except subprocess.CalledProcessError:
            pass  # already stopped
        shutil.rmtree(base, ignore_errors=True)


def test_postgres_restart_under_load_answers_503_then_recovers(private_postgres, tmp_path):
    admin = create_engine(private_postgres.url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text("CREATE DATABASE preflab"))
    admin.dispose()
    url = private_postgres.url.rsplit("/", 1)[0] + "/preflab"
    migrate.upgrade(url)
    with labeling_service(url, tmp_path / "data") as (web, project_id, tokens):
        with Labelers(web.base, project_id, tokens) as labelers:
            labelers.wait_for(acknowledged=20, timeout=60)
            down = time.monotonic()
            private_postgres.stop("immediate")
            time.sleep(3)
            health = httpx.get(web.base + "/healthz", timeout=10)
            before = len(labelers.record.acknowledged)
            private_postgres.start()
            back = time.monotonic()
            labelers.wait_for(acknowledged=before + 10, timeout=30)
        record = labelers.record

        assert health.status_code == 503 and health.json()["status"] == "unavailable"
        statuses = [status for _, _, status in record.statuses]
        assert not [s for s in statuses if s >= 500 and s != 503], sorted(set(statuses))
        meanwhile = [status for at, _, status in record.statuses if down <= at <= back]
        assert 503 in meanwhile
        assert record.retry_after and set(record.retry_after) == {"2"}
        answered_again = min(at for at, _, status in record.statuses if at > back and status < 300)
        assert answered_again - back < 10
        assert len(record.acknowledged) >= before + 10  # labeling goes on after the restart
        stored_judgments(url, project_id, record)
