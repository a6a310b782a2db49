"""Snapshots: the bytes frozen in the database come back identical, with their hash and counts."""

import hashlib
import io

import orjson
import pyarrow.parquet as pq
from sqlalchemy import func, select

from app.config import Settings
from app.export import service
from app.export.models import DatasetSnapshot, DatasetSnapshotChunk
from app.export.schemas import ExportOptions
from app.labeling.models import Judgment
from app.users.models import Role
from tests.conftest import TEST_SECRET
from tests.export.planted import judge, plant
from tests.factories import make_user


def _add_judgment(db, planted) -> None:
    """A new labeler judges a task, so a fresh export differs from the snapshot."""
    user = make_user(db, Role.labeler)
    judge(db, planted.tasks[4], user, [c.id for c in planted.completions[4]], [1, 2, 3], {}, 99)
    db.commit()


def test_snapshot_downloads_identical_bytes_after_the_data_changed(client, db):
    planted = plant(db)
    project = planted.project.id
    body = {"format": "pairs", "splits": [0.5, 0.25, 0.25], "seed": 4, "ties": "keep"}
    created = client.post(f"/api/v1/projects/{project}/snapshots", json=body, headers=planted.admin_headers)
    assert created.status_code == 201, created.text
    snapshot = created.json()
    live = client.get(f"/api/v1/projects/{project}/export?format=pairs&splits=0.5,0.25,0.25&seed=4&ties=keep",
                      headers=planted.admin_headers).content
    assert snapshot["content_hash"] == hashlib.sha256(live).hexdigest()
    assert snapshot["size_bytes"] == len(live) and snapshot["file"] == "jsonl"
    splits = [orjson.loads(line)["split"] for line in live.splitlines()]
    assert snapshot["counts"] == {"rows": 24, "splits": {name: splits.count(name)
                                                         for name in ("train", "validation", "test")}}
    assert snapshot["filters"]["seed"] == 4 and snapshot["filters"]["splits"] == [0.5, 0.25, 0.25]
    assert snapshot["created_by_id"] == planted.admin.id

    _add_judgment(db, planted)
    changed = client.get(f"/api/v1/projects/{project}/export?format=pairs&splits=0.5,0.25,0.25&seed=4&ties=keep",
                         headers=planted.admin_headers).content
    assert changed != live
    for _ in range(2):
        download = client.get(f"/api/v1/snapshots/{snapshot['id']}/download", headers=planted.read_headers)
        assert download.status_code == 200
        assert download.content == live
        assert download.headers["etag"] == f'"{snapshot["content_hash"]}"'
        assert download.headers["content-length"] == str(len(live))
    one = client.get(f"/api/v1/snapshots/{snapshot['id']}", headers=planted.read_headers)
    assert one.json() == snapshot
    listing = client.get(f"/api/v1/projects/{project}/snapshots", headers=planted.read_headers).json()
    assert [s["id"] for s in listing["items"]] == [snapshot["id"]] and listing["next_cursor"] is None


def test_large_snapshot_spans_chunks_and_parquet_round_trips(db, monkeypatch):
    planted = plant(db)
    settings = Settings(secret_key=TEST_SECRET)
    options = ExportOptions(format="rankings", file="parquet")
    monkeypatch.setattr(service, "SNAPSHOT_CHUNK", 1000)  # several chunks from a small export
    snapshot = service.create_snapshot(session=db, project=planted.project, options=options,
                                       created_by_id=None, settings=settings)
    db.commit()
    assert snapshot.chunk_count > 2
    assert db.scalar(select(func.count()).select_from(DatasetSnapshotChunk)
                     .where(DatasetSnapshotChunk.snapshot_id == snapshot.id)) == snapshot.chunk_count
    data = b"".join(service.snapshot_chunks(session=db, snapshot=snapshot))
    assert hashlib.sha256(data).hexdigest() == snapshot.content_hash and len(data) == snapshot.size_bytes
    table = pq.read_table(io.BytesIO(data))
    assert table.num_rows == snapshot.counts["rows"] == 8
    assert table.column("judgment_id").to_pylist() == sorted(
        j.id for j in db.scalars(select(Judgment).where(Judgment.excluded.is_(False))))


def test_bad_snapshot_request_writes_nothing(client, db):
    planted = plant(db)
    bad = client.post(f"/api/v1/projects/{planted.project.id}/snapshots",
                      json={"format": "pairs", "exclude_flags": ["unknown_flag"]}, headers=planted.admin_headers)
    assert bad.status_code == 422 and "unknown_flag" in bad.json()["error"]["message"]
    missing = client.get("/api/v1/snapshots/424242", headers=planted.admin_headers)
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "snapshot_not_found"
    db.expire_all()
    assert db.scalar(select(func.count()).select_from(DatasetSnapshot)) == 0


def test_export_streams_batch_by_batch(db, monkeypatch):
    """The first bytes leave before later rows are read: rows come through a cursor, a batch at a time."""
    from app.export import lookups, queries, writers

    planted = plant(db)
    monkeypatch.setattr(queries, "BATCH", 4)
    monkeypatch.setattr(writers, "JSONL_CHUNK", 1)
    loads = []
    real_load = lookups.Lookups.load
    monkeypatch.setattr(lookups.Lookups, "load", lambda self, *args: loads.append(1) or real_load(self, *args))
    chunks = service.export_chunks(session=db, project=planted.project, options=ExportOptions(), secret=TEST_SECRET)
    first = next(chunks)
    assert orjson.loads(first.splitlines()[0])["prompt"] == "Name a prime." and len(loads) == 1
    rest = list(chunks)
    assert len(loads) == 6 and len(rest) == 22  # 23 pairs read 4 at a time, one line per chunk
