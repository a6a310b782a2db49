"""Exports: checked options to streamed bytes, and snapshots that freeze those bytes in the database.

Used by the web process and by the worker (training jobs snapshot what they train on), so nothing
here imports web-only code.
"""

import hashlib
import zlib
from collections import Counter
from collections.abc import Iterator

from sqlalchemy import insert, select
from sqlalchemy.orm import Session

from app.config import Settings, get_settings
from app.db import get_by_id
from app.errors import Invalid, NotFound
from app.export.formats import FORMATS
from app.export.lookups import Lookups, as_json, plain
from app.export.models import DatasetSnapshot, DatasetSnapshotChunk
from app.export.schemas import ExportFile, ExportOptions, SplitName
from app.export.tasks import TaskJudgments
from app.export.writers import jsonl_bytes, parquet_bytes
from app.models.models import ModelVersion
from app.projects.models import Project

SNAPSHOT_CHUNK = 1024 * 1024
MEDIA_TYPES = {ExportFile.jsonl: "application/x-ndjson", ExportFile.parquet: "application/vnd.apache.parquet"}


def check_options(*, session: Session, project: Project, options: ExportOptions) -> None:
    """Refuse filters that name things the project does not have, before any byte is sent."""
    known = {flag["key"] for flag in project.rating_schema.get("flags", [])}
    unknown = [key for key in options.exclude_flags if key not in known]
    if unknown:
        raise Invalid(f"exclude_flags {', '.join(map(repr, unknown))} are not flags of project {project.name!r} "
                      f"(its flags: {', '.join(sorted(known)) or 'none'})", code="unknown_flag")
    if options.model_version_id is not None and get_by_id(session, ModelVersion, options.model_version_id) is None:
        raise Invalid(f"model_version_id {options.model_version_id}: no such model version",
                      code="unknown_model_version")


def export_chunks(*, session: Session, project: Project, options: ExportOptions, secret: str,
                  counts: Counter | None = None) -> Iterator[bytes]:
    """The export's bytes, piece by piece; `counts` receives rows per split as they are written."""
    counts = counts if counts is not None else Counter()
    lookups = Lookups(session, options, secret, as_json if options.file == ExportFile.jsonl else plain)
    batches = FORMATS[options.format](session, project, options, lookups, TaskJudgments(session, project, options))
    if options.file == ExportFile.jsonl:
        return jsonl_bytes(batches, counts)
    return parquet_bytes(batches, counts, options)


def file_name(project: Project, options: ExportOptions, snapshot_id: int | None = None) -> str:
    stem = f"preflab-project{project.id}-{options.format}"
    if snapshot_id is not None:
        stem += f"-snapshot{snapshot_id}"
    if options.split is not None:
        stem += f"-{options.split}"
    return f"{stem}.{options.file}"


def create_snapshot(*, session: Session, project: Project, options: ExportOptions, created_by_id: int | None,
                    settings: Settings | None = None) -> DatasetSnapshot:
    """Run the export now and keep its bytes (compressed chunks), counts and SHA-256; flushed, not committed."""
    check_options(session=session, project=project, options=options)
    secret = (settings or get_settings()).resolve_secret_key()
    snapshot = DatasetSnapshot(project_id=project.id, format=options.format.value, file=options.file.value,
                               filters=options.model_dump(mode="json"), counts={}, content_hash="",
                               created_by_id=created_by_id)
    session.add(snapshot)
    session.flush()
    digest, counts = hashlib.sha256(), Counter()
    pending = bytearray()
    size = seq = 0

    def store(raw: bytes) -> None:
        nonlocal seq
        session.execute(insert(DatasetSnapshotChunk).values(snapshot_id=snapshot.id, seq=seq, raw_size=len(raw),
                                                             data=zlib.compress(raw, 6)))
        seq += 1

    for piece in export_chunks(session=session, project=project, options=options, secret=secret, counts=counts):
        digest.update(piece)
        size += len(piece)
        pending += piece
        while len(pending) >= SNAPSHOT_CHUNK:
            store(bytes(pending[:SNAPSHOT_CHUNK]))
            del pending[:SNAPSHOT_CHUNK]
    if pending:
        store(bytes(pending))
    snapshot.counts = {"rows": counts["rows"], "splits": {name.value: counts[name.value] for name in SplitName}}
    snapshot.content_hash, snapshot.size_bytes, snapshot.chunk_count = digest.hexdigest(), size, seq
    session.flush()
    return snapshot


def snapshot_chunks(*, session: Session, snapshot: DatasetSnapshot) -> Iterator[bytes]:
    """Exactly the bytes frozen in the snapshot, one chunk in memory at a time."""
    for seq in range(snapshot.chunk_count):
        data = session.scalar(select(DatasetSnapshotChunk.data).where(
            DatasetSnapshotChunk.snapshot_id == snapshot.id, DatasetSnapshotChunk.seq == seq))
        if data is None:
            raise NotFound(f"snapshot {snapshot.id} is missing chunk {seq}", code="snapshot_incomplete")
        yield zlib.decompress(data)


def get_snapshot(*, session: Session, snapshot_id: int) -> DatasetSnapshot:
    snapshot = get_by_id(session, DatasetSnapshot, snapshot_id)
    if snapshot is None:
        raise NotFound(f"snapshot {snapshot_id} not found", code="snapshot_not_found")
    return snapshot


def list_snapshots(*, session: Session, project: Project, before_id: int | None = None,
                   limit: int = 50) -> list[DatasetSnapshot]:
    """The project's snapshots, newest first."""
    query = select(DatasetSnapshot).where(DatasetSnapshot.project_id == project.id)
    if before_id is not None:
        query = query.where(DatasetSnapshot.id < before_id)
    return list(session.scalars(query.order_by(DatasetSnapshot.id.desc()).limit(limit)))


def snapshot_options(snapshot: DatasetSnapshot) -> ExportOptions:
    return ExportOptions.model_validate(snapshot.filters)
