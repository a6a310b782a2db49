"""Reading prompt files (JSONL, JSON, CSV) and importing them into a project, all or nothing."""

import codecs
import csv
import hashlib
import io
import json
import math
import re
from typing import Any

from sqlalchemy import func, insert, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app.errors import Conflict, Invalid
from app.projects.models import Project
from app.prompts.models import Prompt, PromptKind
from app.prompts.schemas import ImportResult, PromptIn
from app.users.models import User

FORMATS = ("jsonl", "json", "csv")
ALLOWED_KEYS = ("prompt", "messages", "id", "user", "meta")
ROLES = ("system", "user", "assistant")
MAX_PROMPT_CHARS = 100_000
MAX_MESSAGES = 100
MAX_META_BYTES = 64 * 1024
MAX_ID_CHARS = 200
MAX_ERRORS_SHOWN = 200
LOOKUP_CHUNK = 500
# JSON's \ud800-\udfff escapes decode to lone surrogates, which no UTF-8 text can hold.
SURROGATE_RE = re.compile("[\ud800-\udfff]")


class _LineError(Exception):
    pass


def _content_hash(kind: PromptKind, text: str, messages: list[dict[str, str]] | None) -> str:
    canonical = json.dumps(messages, sort_keys=True, separators=(",", ":"), ensure_ascii=False) if messages else text
    return hashlib.sha256(f"{kind}\0{canonical}".encode()).hexdigest()


def _text(value: Any, what: str, limit: int) -> str:
    if not isinstance(value, str):
        raise _LineError(f"{what} must be a string, not {type(value).__name__}")
    if "\x00" in value:
        raise _LineError(f"{what} contains a NUL character")
    if SURROGATE_RE.search(value):
        raise _LineError(f"{what} contains a lone surrogate (a \\ud800-\\udfff escape without its pair)")
    if len(value) > limit:
        raise _LineError(f"{what} is {len(value):,} characters long; the limit is {limit:,}")
    return value


def _ident(value: Any, what: str) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise _LineError(f"{what} must be a string or an integer")
    text = _text(str(value), what, MAX_ID_CHARS).strip()
    if not text:
        raise _LineError(f"{what} must not be blank")
    return text


def _messages(value: Any) -> list[dict[str, str]]:
    if not isinstance(value, list) or not value:
        raise _LineError("messages must be a non-empty list of {\"role\", \"content\"} objects")
    if len(value) > MAX_MESSAGES:
        raise _LineError(f"messages has {len(value)} turns; the limit is {MAX_MESSAGES}")
    turns = []
    for i, turn in enumerate(value, 1):
        if not isinstance(turn, dict) or set(turn) != {"role", "content"}:
            raise _LineError(f"message {i} must be an object with exactly 'role' and 'content'")
        if turn["role"] not in ROLES:
            raise _LineError(f"message {i} has role {turn['role']!r}; use one of {', '.join(ROLES)}")
        content = _text(turn["content"], f"message {i} content", MAX_PROMPT_CHARS)
        turns.append({"role": turn["role"], "content": content})
    if turns[-1]["role"] != "user":
        raise _LineError("the last message must have role 'user': it is what the policy answers")
    if not turns[-1]["content"].strip():
        raise _LineError("the last user message is empty")
    return turns


def _unstorable(value: Any) -> str | None:
    """What in a JSON value PostgreSQL's jsonb cannot store, if anything."""
    stack = [value]  # a loop, not recursion: the value may be nested as deep as the parser allowed
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
        elif isinstance(item, str) and "\x00" in item:
            return "a NUL character"
        elif isinstance(item, str) and SURROGATE_RE.search(item):
            return "a lone surrogate (a \\ud800-\\udfff escape without its pair)"
        elif isinstance(item, float) and not math.isfinite(item):
            return "NaN or Infinity"
    return None


def validate_item(obj: Any, line: int) -> PromptIn:
    """One prompt object from a file, checked; raises _LineError with the reason."""
    if not isinstance(obj, dict):
        raise _LineError(f"expected a JSON object, got {type(obj).__name__}")
    unknown = sorted(set(obj) - set(ALLOWED_KEYS))
    if unknown:
        raise _LineError(f"unknown field {', '.join(map(repr, unknown))}; allowed: {', '.join(ALLOWED_KEYS)}")
    has_prompt, has_messages = obj.get("prompt") is not None, obj.get("messages") is not None
    if has_prompt == has_messages:
        raise _LineError("give exactly one of 'prompt' (text) or 'messages' (chat turns)")
    if has_prompt:
        text = _text(obj["prompt"], "prompt", MAX_PROMPT_CHARS).strip()
        if not text:
            raise _LineError("prompt is empty")
        kind, messages = PromptKind.text, None
    else:
        kind, messages = PromptKind.chat, _messages(obj["messages"])
        text = "\n\n".join(f"{m['role']}: {m['content']}" for m in messages)
    meta = obj.get("meta")
    if meta is None:
        meta = {}
    if not isinstance(meta, dict):
        raise _LineError("meta must be an object")
    problem = _unstorable(meta)
    if problem:
        raise _LineError(f"meta holds {problem}")
    if len(json.dumps(meta, ensure_ascii=False).encode()) > MAX_META_BYTES:
        raise _LineError(f"meta is larger than {MAX_META_BYTES // 1024} KB")
    return PromptIn(
        line=line, kind=kind, text=text, messages=messages, content_hash=_content_hash(kind, text, messages),
        external_id=_ident(obj.get("id"), "id"), source_user=_ident(obj.get("user"), "user"), meta=meta,
    )


def _decode(data: bytes) -> str:
    # The BOM is cut off here rather than by "utf-8-sig", whose error offsets skip it.
    body = data.removeprefix(codecs.BOM_UTF8)
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError as exc:
        offset = len(data) - len(body) + exc.start
        line = data[:offset].count(b"\n") + 1
        raise Invalid(
            f"the file is not UTF-8 text: byte 0x{data[offset]:02x} at offset {offset} (line {line}) "
            "cannot be decoded; save the file as UTF-8", code="not_utf8",
        ) from None


def _rows_jsonl(text: str) -> list[tuple[int, Any]]:
    rows = []
    # Only "\n" ends a JSONL line: str.splitlines() would also split at U+2028 and other
    # characters that JSON strings may hold unescaped.
    for number, raw in enumerate(text.split("\n"), 1):
        if raw.strip():
            rows.append((number, raw))
    return rows


def _load_json(text: str) -> Any:
    """json.loads; its other failures (deep nesting, numbers too long to convert) raised as JSONDecodeError too."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        raise
    except RecursionError:
        raise json.JSONDecodeError("nested too deeply", text, 0) from None
    except ValueError:
        raise json.JSONDecodeError("a number has too many digits", text, 0) from None


def _parse_rows(text: str, fmt: str) -> tuple[list[PromptIn], list[dict[str, Any]]]:
    items: list[PromptIn] = []
    errors: list[dict[str, Any]] = []

    def take(line: int, obj: Any) -> None:
        try:
            items.append(validate_item(obj, line))
        except _LineError as exc:
            errors.append({"line": line, "message": str(exc)})

    if fmt == "jsonl":
        for number, raw in _rows_jsonl(text):
            try:
                obj = _load_json(raw)
            except json.JSONDecodeError as exc:
                errors.append({"line": number, "message": f"not valid JSON: {exc.msg} at column {exc.colno}"})
                continue
            take(number, obj)
    elif fmt == "json":
        try:
            data = _load_json(text)
        except json.JSONDecodeError as exc:
            raise Invalid(f"not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}",
                          code="invalid_json") from None
        if not isinstance(data, list):
            raise Invalid("a JSON body must be an array of prompt objects (or send JSONL, one object a line)",
                          code="invalid_json")
        for index, obj in enumerate(data, 1):
            # For a JSON array, "line" is the item's position in the array.
            take(index, obj)
    else:
        reader = csv.reader(io.StringIO(text, newline=""))
        try:
            header = [h.strip() for h in next(reader)]
        except StopIteration:
            header = []
        except csv.Error as exc:
            raise Invalid(f"line 1: not valid CSV: {exc}", code="invalid_csv") from None
        if "prompt" not in header and "messages" not in header:
            raise Invalid("the CSV header must name a 'prompt' column (or a 'messages' column of JSON)",
                          code="invalid_csv")
        if len(set(header)) != len(header):
            raise Invalid("the CSV header names a column twice", code="invalid_csv")
        while True:
            start = reader.line_num + 1
            try:
                row = next(reader)
            except StopIteration:
                break
            except csv.Error as exc:
                errors.append({"line": start, "message": f"not valid CSV: {exc}"})
                break
            if not any(cell.strip() for cell in row):
                continue
            if len(row) != len(header):
                errors.append({"line": start, "message": f"has {len(row)} columns; the header has {len(header)}"})
                continue
            cells = dict(zip(header, row, strict=True))
            obj: dict[str, Any] = {}
            for key in ("prompt", "id", "user"):
                if cells.get(key, "").strip():
                    obj[key] = cells[key]
            if cells.get("messages", "").strip():
                try:
                    obj["messages"] = _load_json(cells["messages"])
                except json.JSONDecodeError as exc:
                    errors.append({"line": start, "message": f"messages is not valid JSON: {exc.msg}"})
                    continue
            meta = {k: v for k, v in cells.items() if k not in ("prompt", "messages", "id", "user") and v != ""}
            if meta:
                obj["meta"] = meta
            take(start, obj)
    return items, errors


def parse_prompt_file(data: bytes, fmt: str) -> list[PromptIn]:
    """Every prompt of a file, or Invalid naming every bad line; nothing is partly accepted."""
    if fmt not in FORMATS:
        raise Invalid(f"unknown format {fmt!r}; use one of {', '.join(FORMATS)}", code="unknown_format")
    items, errors = _parse_rows(_decode(data), fmt)
    errors.extend(_duplicate_id_errors(items))
    if errors:
        errors.sort(key=lambda e: e["line"])
        shown = errors[:MAX_ERRORS_SHOWN]
        more = f" (the first {MAX_ERRORS_SHOWN} are listed)" if len(errors) > MAX_ERRORS_SHOWN else ""
        first = "; ".join(f"line {e['line']}: {e['message']}" for e in shown[:3])
        raise Invalid(f"{len(errors)} bad line{'s' if len(errors) != 1 else ''}, nothing imported{more}: {first}",
                      code="invalid_prompt_file", details=shown)
    if not items:
        raise Invalid("the file holds no prompts", code="empty_prompt_file")
    return items


def _duplicate_id_errors(items: list[PromptIn]) -> list[dict[str, Any]]:
    seen: dict[str, PromptIn] = {}
    errors = []
    for item in items:
        if item.external_id is None:
            continue
        first = seen.setdefault(item.external_id, item)
        if first is not item and first.content_hash != item.content_hash:
            errors.append({"line": item.line, "message": f"id {item.external_id!r} is already used on line "
                                                          f"{first.line} for a different prompt"})
    return errors


def detect_format(filename: str | None, content_type: str | None, data: bytes) -> str:
    """jsonl, json or csv, from the file name, then the content type, then the first character."""
    name = (filename or "").lower()
    if name.endswith(".csv"):
        return "csv"
    if name.endswith((".jsonl", ".ndjson")):
        return "jsonl"
    ctype = (content_type or "").split(";")[0].strip().lower()
    if ctype == "text/csv":
        return "csv"
    if name.endswith(".json") or ctype == "application/json":
        # A JSON body may still be JSONL sent with a JSON content type.
        return "json" if data.lstrip(b"\xef\xbb\xbf \t\r\n")[:1] == b"[" else "jsonl"
    return "jsonl"


def _chunks(values: list[str], size: int = LOOKUP_CHUNK) -> list[list[str]]:
    return [values[i:i + size] for i in range(0, len(values), size)]


def import_prompts(*, session: Session, project: Project, items: list[PromptIn], source: str,
                   creator: User | None) -> ImportResult:
    """Add new prompts; exact and near duplicates are skipped and counted, id clashes refused."""
    existing_hashes: set[str] = set()
    for chunk in _chunks(sorted({i.content_hash for i in items})):
        existing_hashes.update(session.scalars(
            select(Prompt.content_hash).where(Prompt.project_id == project.id, Prompt.content_hash.in_(chunk))))
    external_ids = sorted({i.external_id for i in items if i.external_id})
    taken_ids: dict[str, str] = {}
    for chunk in _chunks(external_ids):
        taken_ids.update(session.execute(
            select(Prompt.external_id, Prompt.content_hash)
            .where(Prompt.project_id == project.id, Prompt.external_id.in_(chunk))).all())
    clashes = [{"line": i.line, "message": f"id {i.external_id!r} already belongs to a different prompt "
                                            "in this project"}
               for i in items if i.external_id in taken_ids and taken_ids[i.external_id] != i.content_hash]
    if clashes:
        raise Invalid(f"{len(clashes)} prompt id{'s' if len(clashes) != 1 else ''} already used in this project, "
                      f"nothing imported: line {clashes[0]['line']}: {clashes[0]['message']}",
                      code="prompt_id_taken", details=clashes[:MAX_ERRORS_SHOWN])

    prefix_len = project.near_duplicate_prefix
    prefixes: set[str] = set()
    if prefix_len:
        prefixes.update(session.scalars(
            select(func.substr(Prompt.text, 1, prefix_len))
            .where(Prompt.project_id == project.id, func.length(Prompt.text) >= prefix_len).distinct()))

    rows: list[dict[str, Any]] = []
    duplicates = near_duplicates = 0
    for item in items:
        if item.content_hash in existing_hashes:
            duplicates += 1
            continue
        if prefix_len and len(item.text) >= prefix_len:
            prefix = item.text[:prefix_len]
            if prefix in prefixes:
                near_duplicates += 1
                continue
            prefixes.add(prefix)
        existing_hashes.add(item.content_hash)
        rows.append({
            "project_id": project.id, "external_id": item.external_id, "kind": item.kind, "text": item.text,
            "messages": item.messages, "content_hash": item.content_hash, "source_user": item.source_user,
            "source": source[:200], "meta": item.meta, "created_by_id": creator.id if creator else None,
        })
    if rows:
        try:
            with session.begin_nested():
                session.execute(insert(Prompt), rows)
        except IntegrityError:
            # Another import into this project committed the same prompt or id meanwhile.
            raise Conflict("another import into this project ran at the same time; nothing was imported, "
                           "send the file again", code="concurrent_import") from None
    session.flush()
    return ImportResult(total=len(items), imported=len(rows), duplicates=duplicates, near_duplicates=near_duplicates)


def list_prompts(*, session: Session, project: Project, after_id: int | None = None, limit: int = 50,
                 kind: PromptKind | None = None, source_user: str | None = None,
                 external_id: str | None = None) -> list[Prompt]:
    query = select(Prompt).where(Prompt.project_id == project.id).order_by(Prompt.id).limit(limit)
    for column, value in ((Prompt.kind, kind), (Prompt.source_user, source_user), (Prompt.external_id, external_id)):
        if value is not None:
            query = query.where(column == value)
    if after_id is not None:
        query = query.where(Prompt.id > after_id)
    return list(session.scalars(query))


def recent_prompts(*, session: Session, project: Project, limit: int = 20) -> list[Prompt]:
    return list(session.scalars(
        select(Prompt).where(Prompt.project_id == project.id).order_by(Prompt.id.desc()).limit(limit)))
