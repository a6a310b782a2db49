"""Datasets over /api/v1: streamed exports and frozen snapshots (admins only)."""

from itertools import chain
from typing import Annotated

from fastapi import APIRouter, Query
from fastapi.responses import StreamingResponse

from app.db import next_cursor
from app.deps import AdminReader, AdminUser, CursorQuery, SessionDep, SettingsDep
from app.export import service
from app.export.models import DatasetSnapshot
from app.export.schemas import ExportFile, ExportOptions, SnapshotList, SnapshotRead
from app.projects.service import get_project

api = APIRouter(tags=["export"])

EXPORT_RESPONSES = {200: {
    "description": "The dataset: JSONL (one object a line, streamed) or Parquet",
    "content": {"application/x-ndjson": {"schema": {"type": "string"}},
                "application/vnd.apache.parquet": {"schema": {"type": "string", "format": "binary"}}},
}}


def _download(chunks, media_type: str, name: str, headers: dict[str, str] | None = None) -> StreamingResponse:
    return StreamingResponse(chunks, media_type=media_type,
                             headers={"content-disposition": f'attachment; filename="{name}"', **(headers or {})})


@api.get("/projects/{project_id}/export", response_class=StreamingResponse, responses=EXPORT_RESPONSES,
         summary="Export a dataset (admin): pairs, rankings, ratings or sft, as JSONL or Parquet")
def export(project_id: int, options: Annotated[ExportOptions, Query()], session: SessionDep, admin: AdminReader,
           settings: SettingsDep) -> StreamingResponse:
    project = get_project(session=session, project_id=project_id, user=admin)
    service.check_options(session=session, project=project, options=options)
    chunks = service.export_chunks(session=session, project=project, options=options,
                                   secret=settings.resolve_secret_key())
    # The first piece is made before the status line is sent, so a failing query is an error
    # response rather than a cut-off download.
    first = next(chunks, b"")
    return _download(chain([first], chunks), service.MEDIA_TYPES[options.file], service.file_name(project, options))


@api.post("/projects/{project_id}/snapshots", response_model=SnapshotRead, status_code=201,
          summary="Freeze an export (admin): its bytes, counts and SHA-256 are kept")
def create_snapshot(project_id: int, options: ExportOptions, session: SessionDep, admin: AdminUser,
                    settings: SettingsDep) -> SnapshotRead:
    project = get_project(session=session, project_id=project_id, user=admin)
    snapshot = service.create_snapshot(session=session, project=project, options=options, created_by_id=admin.id,
                                       settings=settings)
    session.commit()
    return SnapshotRead.model_validate(snapshot)


@api.get("/projects/{project_id}/snapshots", response_model=SnapshotList,
         summary="A project's snapshots, newest first, by cursor (admin)")
def list_snapshots(project_id: int, session: SessionDep, admin: AdminReader,
                   cursor: CursorQuery = None, limit: Annotated[int, Query(ge=1, le=500)] = 50) -> SnapshotList:
    project = get_project(session=session, project_id=project_id, user=admin)
    items = service.list_snapshots(session=session, project=project, before_id=cursor, limit=limit)
    return SnapshotList(items=[SnapshotRead.model_validate(s) for s in items], next_cursor=next_cursor(items, limit))


def _snapshot(session: SessionDep, snapshot_id: int, admin) -> DatasetSnapshot:
    snapshot = service.get_snapshot(session=session, snapshot_id=snapshot_id)
    get_project(session=session, project_id=snapshot.project_id, user=admin)
    return snapshot


@api.get("/snapshots/{snapshot_id}", response_model=SnapshotRead, summary="One snapshot: filters, counts, hash (admin)")
def get_snapshot(snapshot_id: int, session: SessionDep, admin: AdminReader) -> SnapshotRead:
    return SnapshotRead.model_validate(_snapshot(session, snapshot_id, admin))


@api.get("/snapshots/{snapshot_id}/download", response_class=StreamingResponse, responses=EXPORT_RESPONSES,
         summary="A snapshot's bytes, identical on every download (admin)")
def download_snapshot(snapshot_id: int, session: SessionDep, admin: AdminReader) -> StreamingResponse:
    snapshot = _snapshot(session, snapshot_id, admin)
    options = service.snapshot_options(snapshot)
    project = get_project(session=session, project_id=snapshot.project_id, user=admin)
    return _download(service.snapshot_chunks(session=session, snapshot=snapshot),
                     service.MEDIA_TYPES[ExportFile(snapshot.file)],
                     service.file_name(project, options, snapshot.id),
                     {"content-length": str(snapshot.size_bytes), "etag": f'"{snapshot.content_hash}"',
                      "x-content-sha256": snapshot.content_hash})
