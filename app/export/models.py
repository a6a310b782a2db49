"""Frozen exports: what a training run was trained on, with the exact bytes kept in the database."""

from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, ForeignKey, LargeBinary, String
from sqlalchemy.orm import Mapped, mapped_column

from app.db import Base, utcnow


class DatasetSnapshot(Base):
    """One export frozen: its options, counts, size and the SHA-256 of its bytes."""

    __tablename__ = "dataset_snapshot"

    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("project.id", ondelete="CASCADE"), index=True)
    format: Mapped[str] = mapped_column(String(32))
    # jsonl or parquet: the bytes are frozen in one of them.
    file: Mapped[str] = mapped_column(String(16), default="jsonl")
    filters: Mapped[dict[str, Any]]
    counts: Mapped[dict[str, Any]]
    content_hash: Mapped[str] = mapped_column(String(64))
    size_bytes: Mapped[int] = mapped_column(BigInteger, default=0)
    chunk_count: Mapped[int] = mapped_column(default=0)
    path: Mapped[str | None] = mapped_column(String(500))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("user.id", ondelete="SET NULL"))


class DatasetSnapshotChunk(Base):
    """About a megabyte of a snapshot's bytes, zlib-compressed; web and worker share only the database."""

    __tablename__ = "dataset_snapshot_chunk"

    snapshot_id: Mapped[int] = mapped_column(ForeignKey("dataset_snapshot.id", ondelete="CASCADE"), primary_key=True)
    seq: Mapped[int] = mapped_column(primary_key=True)
    raw_size: Mapped[int]
    data: Mapped[bytes] = mapped_column(LargeBinary)
