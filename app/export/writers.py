"""Row batches to bytes: JSONL streamed as it is made, Parquet written row group by row group."""

import tempfile
from collections import Counter
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import orjson

from app.export.schemas import ExportFormat, ExportOptions, PairMode, PairStyle, TiePolicy

if TYPE_CHECKING:
    import pyarrow as pa

# Bytes handed to the server at a time: large enough that the per-chunk cost (a thread hop) is small.
JSONL_CHUNK = 256 * 1024
PARQUET_READ = 1024 * 1024


def parquet_schema(options: ExportOptions) -> "pa.Schema":
    """The columns of each format, in the order of the JSONL keys."""
    # pyarrow is imported on the first Parquet export: it would add ~45 MB to every web process.
    import pyarrow as pa

    messages = pa.list_(pa.struct([("role", pa.string()), ("content", pa.string())]))
    strings = pa.list_(pa.string())
    id_ = pa.int64()
    if options.format == ExportFormat.pairs:
        text = messages if options.style == PairStyle.conversational else pa.string()
        fields = [("prompt", text), ("chosen", text), ("rejected", text), ("margin", id_)]
        if options.mode == PairMode.consensus:
            fields += [("score_margin", pa.float64()), ("prompt_id", id_), ("task_id", id_),
                       ("judgment_ids", pa.list_(id_)), ("labelers", strings), ("consensus_strength", pa.float64())]
        else:
            fields += [("prompt_id", id_), ("task_id", id_), ("judgment_id", id_), ("comparison_id", id_),
                       ("labeler", pa.string())]
        fields += [("chosen_model_version_id", id_), ("rejected_model_version_id", id_), ("split", pa.string())]
        if options.ties == TiePolicy.keep:
            fields.append(("tie", pa.bool_()))
        return pa.schema(fields)
    if options.format == ExportFormat.rankings:
        completion = pa.struct([("completion_id", id_), ("text", pa.string()), ("rank", id_), ("likert", id_),
                                ("flags", strings), ("note", pa.string()), ("model_version_id", id_)])
        return pa.schema([
            ("judgment_id", id_), ("task_id", id_), ("prompt_id", id_), ("labeler", pa.string()),
            ("split", pa.string()), ("prompt", pa.string()), ("prompt_messages", messages),
            ("completions", pa.list_(completion)), ("none_acceptable", pa.bool_()), ("rationale", pa.string()),
            ("prompt_flags", strings), ("demonstration", pa.string()), ("created_at", pa.string())])
    if options.format == ExportFormat.ratings:
        return pa.schema([
            ("rating_id", id_), ("judgment_id", id_), ("task_id", id_), ("prompt_id", id_), ("completion_id", id_),
            ("model_version_id", id_), ("labeler", pa.string()), ("split", pa.string()), ("prompt", pa.string()),
            ("completion", pa.string()), ("rank", id_), ("likert", id_), ("flags", strings), ("note", pa.string()),
            ("created_at", pa.string())])
    return pa.schema([
        ("messages", messages), ("prompt_id", id_), ("source", pa.string()), ("task_id", id_),
        ("judgment_id", id_), ("labeler", pa.string()), ("completion_id", id_), ("model_version_id", id_),
        ("created_at", pa.string()), ("split", pa.string())])


def _count(counts: Counter, rows: list[dict[str, Any]]) -> None:
    counts["rows"] += len(rows)
    for row in rows:
        counts[row["split"]] += 1


def jsonl_bytes(batches: Iterator[list[dict[str, Any]]], counts: Counter) -> Iterator[bytes]:
    """One JSON object a line; memory holds one batch of rows and one chunk of bytes."""
    dumps, newline = orjson.dumps, orjson.OPT_APPEND_NEWLINE
    buffer = bytearray()
    for rows in batches:
        _count(counts, rows)
        for row in rows:
            # Copied into the buffer at once: orjson's result holds a buffer several times its length.
            buffer += dumps(row, option=newline)
            if len(buffer) >= JSONL_CHUNK:
                yield bytes(buffer)
                buffer.clear()
    if buffer:
        yield bytes(buffer)


def parquet_bytes(batches: Iterator[list[dict[str, Any]]], counts: Counter, options: ExportOptions) -> Iterator[bytes]:
    """A Parquet file, one row group per batch. Parquet's footer comes last, so the file is spooled
    to a temporary file first: memory holds one batch, the disk the whole file until it is sent."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = parquet_schema(options)
    with tempfile.TemporaryFile(prefix="preflab-export-") as spool:
        with pq.ParquetWriter(spool, schema) as writer:
            for rows in batches:
                if rows:
                    _count(counts, rows)
                    writer.write_table(pa.Table.from_pylist(rows, schema=schema))
        spool.seek(0)
        while data := spool.read(PARQUET_READ):
            yield data
