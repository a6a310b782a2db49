"""What export rows share: prompt and completion texts fetched once per batch, splits, labeler pseudonyms."""

import hashlib
import hmac
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

import orjson
from sqlalchemy import Row, select
from sqlalchemy.orm import Session

from app.export.queries import id_in
from app.export.schemas import ExportOptions, SplitBy, SplitName
from app.prompts.models import Completion, Prompt, PromptKind

# Texts kept between batches: rows come in task order, so a batch mostly needs what the last one had.
CACHE_LIMIT = 10_000
SPLIT_BUCKETS = 1_000_000
IN_CHUNK = 20_000


def labeler_pseudonym(secret: str, user_id: int) -> str:
    """A stable labeler id that cannot be turned back into the account without the server's secret."""
    digest = hmac.new(secret.encode(), f"preflab-labeler:{user_id}".encode(), hashlib.sha256).hexdigest()
    return f"lab-{digest[:8]}"


def split_of(key: str, seed: int, fractions: Sequence[float]) -> SplitName:
    """train, validation or test for a split key: a hash of (seed, key), not Python's per-process hash."""
    digest = hashlib.sha256(f"{seed}:{key}".encode()).digest()
    point = int.from_bytes(digest[:8], "big") % SPLIT_BUCKETS / SPLIT_BUCKETS
    train, validation, _test = fractions
    if point < train:
        return SplitName.train
    if point < train + validation:
        return SplitName.validation
    return SplitName.test


def split_key(split_by: SplitBy, prompt_id: int, source_user: str | None) -> str:
    if split_by == SplitBy.user and source_user:
        return f"user:{source_user}"
    return f"prompt:{prompt_id}"


def as_json(value: Any) -> orjson.Fragment:
    """A value serialized once, for rows that repeat it (JSONL); parquet rows take plain values."""
    # orjson's result keeps its over-sized buffer (kilobytes for a short text): cache an exact copy.
    return orjson.Fragment(bytes(memoryview(orjson.dumps(value))))


def plain(value: Any) -> Any:
    return value


def _chunks(ids: list[int]) -> Iterator[list[int]]:
    for start in range(0, len(ids), IN_CHUNK):
        yield ids[start:start + IN_CHUNK]


class Lookups:
    """Prompt and completion data for one batch of rows at a time, with memory bounded by CACHE_LIMIT."""

    def __init__(self, session: Session, options: ExportOptions, secret: str, wrap: Callable[[Any], Any]) -> None:
        self.options, self.secret, self.wrap = options, secret, wrap
        self.connection = session.connection()
        self.dialect = self.connection.dialect.name
        self.conversational = options.style == "conversational"
        self.completion_text: dict[int, str] = {}
        self.completion_version: dict[int, int] = {}
        self.completion_out: dict[int, Any] = {}     # the value a pairs row shows for the completion
        self.prompt_out: dict[int, Any] = {}         # the value a pairs row shows for the prompt
        self.prompt_text: dict[int, str] = {}
        self.prompt_messages: dict[int, list[dict[str, str]]] = {}
        self.split: dict[int, str] = {}
        self.labelers: dict[int, str] = {}

    def labeler(self, user_id: int) -> str:
        name = self.labelers.get(user_id)
        if name is None:
            name = self.labelers[user_id] = labeler_pseudonym(self.secret, user_id)
        return name

    def load(self, prompt_ids: Iterable[int], completion_ids: Iterable[int] = (), user_ids: Iterable[int] = ()) -> None:
        """Fetch what the next batch needs and is not cached yet; afterwards `labelers` holds its users."""
        for user_id in set(user_ids) - self.labelers.keys():
            self.labeler(user_id)
        if len(self.completion_text) > CACHE_LIMIT or len(self.prompt_text) > CACHE_LIMIT:
            for cache in (self.completion_text, self.completion_version, self.completion_out, self.prompt_out,
                          self.prompt_text, self.prompt_messages, self.split):
                cache.clear()
        self._load_prompts(sorted(set(prompt_ids) - self.prompt_text.keys()))
        self._load_completions(sorted(set(completion_ids) - self.completion_text.keys()))

    def _load_prompts(self, ids: list[int]) -> None:
        options = self.options
        for chunk in _chunks(ids):
            rows = self.connection.execute(select(Prompt.id, Prompt.kind, Prompt.text, Prompt.messages,
                                                  Prompt.source_user).where(id_in(Prompt.id, chunk, self.dialect)))
            for pid, kind, text, messages, source_user in rows:
                turns = messages if kind == PromptKind.chat and messages else [{"role": "user", "content": text}]
                self.prompt_text[pid] = text
                self.prompt_messages[pid] = turns
                self.prompt_out[pid] = self.wrap(turns if self.conversational else text)
                self.split[pid] = split_of(split_key(options.split_by, pid, source_user), options.seed,
                                           options.splits).value

    def _load_completions(self, ids: list[int]) -> None:
        for chunk in _chunks(ids):
            rows = self.connection.execute(select(Completion.id, Completion.text, Completion.model_version_id)
                                           .where(id_in(Completion.id, chunk, self.dialect)))
            for cid, text, version in rows:
                self.completion_text[cid] = text
                self.completion_version[cid] = version
                self.completion_out[cid] = self.wrap(
                    [{"role": "assistant", "content": text}] if self.conversational else text)


def grouped(partitions: Iterable[Sequence[Row]], key: Callable[[Row], Any]) -> Iterator[list[list[Row]]]:
    """Batches of row groups (consecutive rows with one key), a group never split across batches."""
    carry: list[Row] = []
    for batch in partitions:
        groups: list[list[Row]] = []
        current = carry
        for row in batch:
            if current and key(current[0]) != key(row):
                groups.append(current)
                current = []
            current.append(row)
        carry = current
        if groups:
            yield groups
    if carry:
        yield [carry]
