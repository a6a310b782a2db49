"""`preflab export`: the REST export's bytes from the command line, and snapshots."""

import hashlib
import io

import pyarrow.parquet as pq
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.db import make_engine
from app.export.models import DatasetSnapshot
from app.export.schemas import ExportOptions
from app.export.service import export_chunks
from tests.export.planted import plant
from tests.test_cli import SECRET, preflab


def test_cli_export_matches_the_service_and_snapshots(fresh_database_url, tmp_path):
    engine = make_engine(fresh_database_url)
    with Session(engine) as db:
        planted = plant(db)
        project = planted.project
        expected = b"".join(export_chunks(session=db, project=project, secret=SECRET, options=ExportOptions(
            format="pairs", style="conversational", ties="keep", splits=(0.5, 0.5, 0.0), seed=9,
            exclude_flags=["hallucination"])))
    out = tmp_path / "pairs.jsonl"
    done = preflab("export", project.name, "--format", "pairs", "--style", "conversational", "--ties", "keep",
                   "--splits", "0.5,0.5,0", "--seed", "9", "--exclude-flag", "hallucination", "--output", str(out),
                   url=fresh_database_url, data_dir=tmp_path)
    assert done.returncode == 0, done.stderr
    assert out.read_bytes() == expected and expected.count(b"\n") == 22

    stdout = preflab("export", str(project.id), "--format", "sft", url=fresh_database_url, data_dir=tmp_path)
    assert stdout.returncode == 0 and '"source":"demonstration"' in stdout.stdout

    frozen = tmp_path / "rankings.parquet"
    snap = preflab("export", str(project.id), "--format", "rankings", "--file", "parquet", "--snapshot",
                   "--output", str(frozen), url=fresh_database_url, data_dir=tmp_path)
    assert snap.returncode == 0, snap.stderr
    digest = hashlib.sha256(frozen.read_bytes()).hexdigest()
    assert f"8 rows, sha256 {digest}" in snap.stderr
    assert pq.read_table(io.BytesIO(frozen.read_bytes())).num_rows == 8
    with Session(engine) as db:
        stored = db.scalars(select(DatasetSnapshot)).one()
        assert (stored.content_hash, stored.file, stored.format) == (digest, "parquet", "rankings")

    bad = preflab("export", str(project.id), "--format", "rankings", "--ties", "keep", url=fresh_database_url,
                  data_dir=tmp_path)
    assert bad.returncode == 1 and "applies to format=pairs only" in bad.stderr
    unknown = preflab("export", "no-such-project", url=fresh_database_url, data_dir=tmp_path)
    assert unknown.returncode == 1 and "no project with id or name 'no-such-project'" in unknown.stderr
    engine.dispose()
