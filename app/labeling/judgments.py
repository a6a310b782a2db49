"""Submitting a judgment: validated against the task, idempotent, expanded into its K-choose-2 pairs."""

import hashlib
import json
from datetime import datetime
from itertools import combinations
from typing import Any

from sqlalchemy import Boolean, Integer, Text, and_, bindparam, column, delete, func, insert, select, true, update
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Session

from app.db import MAX_ROW_ID, begin_write, get_by_id, utcnow
from app.errors import Conflict, Invalid, NotFound
from app.labeling.models import (
    Assignment, AssignmentState, Comparison, CompletionRating, Judgment, Task, TaskCompletion, TaskState,
)
from app.labeling.schemas import JudgmentCreate
from app.projects.models import Project
from app.review.gold import takes_gold_labels
from app.review.models import LabelerExclusion, exclusion_reason
from app.users.models import Caller, User

MAX_KEY_CHARS = 100


def expand_pairs(ranks: dict[int, int]) -> list[tuple[int, int, int, bool]]:
    """(chosen, rejected, margin, is_tie) for every pair of completions; 1 is the best rank."""
    pairs = []
    for a, b in combinations(sorted(ranks), 2):
        if ranks[a] == ranks[b]:
            pairs.append((a, b, 0, True))  # a tie keeps both sides, lower id first
        elif ranks[a] < ranks[b]:
            pairs.append((a, b, ranks[b] - ranks[a], False))
        else:
            pairs.append((b, a, ranks[a] - ranks[b], False))
    return pairs


def request_hash(body: JudgmentCreate) -> str:
    canonical = json.dumps(body.model_dump(mode="json", exclude={"duration_ms"}), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def _validate(body: JudgmentCreate, completion_ids: list[int], allow_ties: bool, schema: dict[str, Any]) -> dict[int, int]:
    problems: list[str] = []
    try:
        ranks = {int(cid): rank for cid, rank in body.ranks.items()}
    except ValueError:
        raise Invalid("ranks must map completion ids to ranks", code="invalid_ranking") from None
    expected, given = set(completion_ids), set(ranks)
    if given != expected:
        missing, unknown = sorted(expected - given), sorted(given - expected)
        if missing:
            problems.append(f"completions {missing} have no rank")
        if unknown:
            problems.append(f"completions {unknown} are not in this task")
    k = len(completion_ids)
    bad = sorted(cid for cid, rank in ranks.items() if not 1 <= rank <= k)
    if bad:
        problems.append(f"ranks must be between 1 and {k} (completions {bad})")
    if ranks and min(ranks.values()) != 1:
        problems.append("the best completion must have rank 1")
    if not allow_ties and len(set(ranks.values())) != len(ranks):
        problems.append("this project does not allow ties: give every completion its own rank")
    low, high = schema["likert"]["min"], schema["likert"]["max"]
    allowed_flags = {f["key"] for f in schema["flags"]}
    for cid, rating in body.ratings.items():
        if not cid.isdecimal() or int(cid) not in expected:
            problems.append(f"rating for completion {cid}, which is not in this task")
            continue
        if rating.likert is not None and not low <= rating.likert <= high:
            problems.append(f"Likert for completion {cid} is {rating.likert}; the scale is {low} to {high}")
        unknown_flags = sorted(set(rating.flags) - allowed_flags)
        if unknown_flags:
            problems.append(f"flags {unknown_flags} on completion {cid} are not in the project's rating form")
    if problems:
        raise Invalid("; ".join(problems), code="invalid_judgment", details=[{"message": p} for p in problems])
    return ranks


def _checked_key(idempotency_key: str) -> str:
    key = idempotency_key.strip()
    if not key or len(key) > MAX_KEY_CHARS:
        raise Invalid(f"the Idempotency-Key header must be 1 to {MAX_KEY_CHARS} characters", code="invalid_key")
    return key


_task, _assignment, _project = Task.__table__, Assignment.__table__, Project.__table__
_judgment, _rating, _comparison = Judgment.__table__, CompletionRating.__table__, Comparison.__table__
_earlier, _exclusion = _judgment.alias("earlier"), LabelerExclusion.__table__
# Built once: constructing statements costs more CPU than running them (see assignments.py).
_LOCK_TASK = (select(_task.c.id, _task.c.project_id, _task.c.state, _task.c.labels_needed, _task.c.labels_done,
                     _task.c.gold_ranks)
              .where(_task.c.id == select(_assignment.c.task_id).where(_assignment.c.id == bindparam("assignment_id"))
                     .scalar_subquery())
              .with_for_update())
_SUBMISSION = (select(_assignment.c.user_id, _assignment.c.state, _assignment.c.display_order, _project.c.allow_ties,
                      _project.c.rating_schema, _earlier.c.id.label("earlier_id"), _earlier.c.request_hash,
                      _earlier.c.assignment_id.label("earlier_assignment_id"),
                      _earlier.c.task_id.label("earlier_task_id"), _earlier.c.created_at.label("earlier_created_at"),
                      _earlier.c.revision.label("earlier_revision"),
                      _exclusion.c.user_id.label("excluded_labeler"), _exclusion.c.reason.label("exclusion_reason"))
               .select_from(_assignment).join(_project, _project.c.id == bindparam("project_id"))
               .outerjoin(_exclusion, and_(_exclusion.c.project_id == _project.c.id,
                                           _exclusion.c.user_id == bindparam("user_id")))
               .outerjoin(_earlier, and_(_earlier.c.user_id == bindparam("user_id"),
                                         _earlier.c.idempotency_key == bindparam("key")))
               .where(_assignment.c.id == bindparam("assignment_id")))
_INSERT_JUDGMENT = insert(_judgment).returning(_judgment.c.id)
_INSERT_RATINGS = insert(_rating)
_INSERT_PAIRS = insert(_comparison)
_MARK_SUBMITTED = update(_assignment).where(_assignment.c.id == bindparam("b_assignment_id")).values(
    state=AssignmentState.submitted)
_COUNT_LABEL = update(_task).where(_task.c.id == bindparam("b_task_id"))


def _submission_in_one_statement() -> Any:
    """PostgreSQL: the judgment, its ratings and pairs, the assignment's state and the task's count written
    by one statement (data-modifying WITH clauses), the rows passed as two JSON arrays. Each statement is a
    round trip with its own cost in both processes; the separate statements below took six."""
    # Parameter names that are no column's (new_*, counted_*): the UPDATEs below would SET a column an
    # execution parameter names.
    judgment = insert(_judgment).values({name: bindparam("new_" + name, type_=_judgment.c[name].type) for name in (
        "task_id", "user_id", "assignment_id", "idempotency_key", "request_hash", "duration_ms", "rationale",
        "none_acceptable", "prompt_flags", "demonstration", "revision", "excluded", "excluded_with_labeler",
        "excluded_reason", "created_at", "updated_at")}).returning(_judgment.c.id).cte("new_judgment")

    def rows(name: str, *columns: Any) -> Any:  # n: the row's place, so that ids follow the order given
        return (func.jsonb_to_recordset(bindparam(name, type_=JSONB))
                .table_valued(*columns, column("n", Integer)).render_derived(name=name + "_row", with_types=True))

    ratings = rows("ratings", column("completion_id", Integer), column("rank", Integer), column("likert", Integer),
                   column("flags", JSONB), column("note", Text))
    pairs = rows("pairs", column("chosen_id", Integer), column("rejected_id", Integer), column("margin", Integer),
                 column("is_tie", Boolean))
    rating_columns = ["completion_id", "rank", "likert", "flags", "note"]
    pair_columns = ["chosen_id", "rejected_id", "margin", "is_tie"]
    return select(judgment.c.id).add_cte(
        insert(_rating).from_select(["judgment_id", *rating_columns], select(
            judgment.c.id, *(ratings.c[name] for name in rating_columns)).join_from(judgment, ratings, true())
            .order_by(ratings.c.n)).cte("new_ratings"),
        insert(_comparison).from_select(["judgment_id", "task_id", *pair_columns], select(
            judgment.c.id, bindparam("new_task_id", type_=Integer), *(pairs.c[name] for name in pair_columns)
        ).join_from(judgment, pairs, true()).order_by(pairs.c.n)).cte("new_pairs"),
        _MARK_SUBMITTED.cte("submitted"),
        _COUNT_LABEL.values(labels_done=bindparam("counted_labels_done"), state=bindparam("counted_state"))
        .cte("counted"))


_WRITE_SUBMISSION = _submission_in_one_statement()


def _rating_rows(body: JudgmentCreate, ranks: dict[int, int]) -> list[dict[str, Any]]:
    ratings = body.ratings
    return [{"completion_id": cid, "rank": ranks[cid],
             "likert": ratings[str(cid)].likert if str(cid) in ratings else None,
             "flags": sorted(set(ratings[str(cid)].flags)) if str(cid) in ratings else [],
             "note": ratings[str(cid)].note if str(cid) in ratings else ""}
            for cid in sorted(ranks)]


def _pair_rows(pairs: list[tuple[int, int, int, bool]]) -> list[dict[str, Any]]:
    return [{"chosen_id": c, "rejected_id": r, "margin": m, "is_tie": t} for c, r, m, t in pairs]


def _numbered(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{**row, "n": n} for n, row in enumerate(rows)]


def _write_pairs(session: Session, judgment_id: int, task_id: int, body: JudgmentCreate, ranks: dict[int, int],
                 pairs: list[tuple[int, int, int, bool]]) -> None:
    connection = session.connection()
    # executemany: a multi-row INSERT (.values([...])) is compiled again on every call (not cached), which
    # cost the web process more CPU than the rest of the submission in a load-test profile.
    connection.execute(_INSERT_RATINGS, [{"judgment_id": judgment_id, **row} for row in _rating_rows(body, ranks)])
    connection.execute(_INSERT_PAIRS, [{"judgment_id": judgment_id, "task_id": task_id, **row}
                                       for row in _pair_rows(pairs)])


def _task_completion_ids(session: Session, task: Task) -> list[int]:
    return list(session.scalars(select(TaskCompletion.completion_id).where(TaskCompletion.task_id == task.id)))


def submit_judgment(*, session: Session, assignment_id: int, user: User | Caller, body: JudgmentCreate,
                    idempotency_key: str) -> dict[str, Any]:
    """Store a labeler's judgment once and return its summary; a retry with the same key and body returns the first.

    The task row is the lock every lease and submission of the task goes through; what is read
    after taking it (this labeler's assignment, an earlier use of the key) is current.
    """
    key = _checked_key(idempotency_key)
    digest = request_hash(body)
    not_found = NotFound(f"assignment {assignment_id} not found", code="assignment_not_found")
    if not 0 < assignment_id <= MAX_ROW_ID:
        raise not_found
    begin_write(session)
    connection = session.connection()
    task = connection.execute(_LOCK_TASK, {"assignment_id": assignment_id}).one_or_none()
    if task is None:
        raise not_found
    row = connection.execute(_SUBMISSION, {"assignment_id": assignment_id, "project_id": task.project_id,
                                           "user_id": user.id, "key": key}).one()
    if row.user_id != user.id:
        raise not_found
    if row.earlier_id is not None:
        if row.request_hash != digest or row.earlier_assignment_id != assignment_id:
            raise Invalid("this Idempotency-Key was already used for a different submission; send a new key",
                          code="idempotency_key_reused")
        # A retry: the first answer again, from what this statement read and the judgment's pairs.
        return _summary(session, row.earlier_id, row.earlier_task_id, assignment_id, row.earlier_created_at,
                        row.earlier_revision)
    if row.state == AssignmentState.submitted:
        raise Conflict("this task is already judged by you; revise the judgment instead", code="already_judged")
    if row.state == AssignmentState.skipped:
        raise Conflict("you skipped this task", code="skipped")
    ranks = _validate(body, row.display_order, row.allow_ties, row.rating_schema)
    if (task.state != TaskState.open or task.labels_done >= task.labels_needed) and not takes_gold_labels(task):
        raise Conflict("this task already has all the labels it needs; your lease had expired", code="task_full")

    now = utcnow()
    # An excluded labeler's later judgments are kept, and left out too.
    excluded = row.excluded_labeler is not None
    judgment = {
        "task_id": task.id, "user_id": user.id, "assignment_id": assignment_id, "idempotency_key": key,
        "request_hash": digest, "duration_ms": body.duration_ms, "rationale": body.rationale,
        "none_acceptable": body.none_acceptable, "prompt_flags": sorted(set(body.prompt_flags)),
        "demonstration": body.demonstration, "revision": 1, "excluded": excluded, "excluded_with_labeler": excluded,
        "excluded_reason": exclusion_reason(row.exclusion_reason) if excluded else None, "created_at": now,
        "updated_at": now}
    done = task.labels_done + 1
    counted = {"labels_done": done, "state": TaskState.complete if done >= task.labels_needed else TaskState.open}
    pairs = expand_pairs(ranks)
    if connection.dialect.name == "postgresql":
        judgment_id = connection.execute(_WRITE_SUBMISSION, {
            **{"new_" + name: value for name, value in judgment.items()},
            **{"counted_" + name: value for name, value in counted.items()},
            "ratings": _numbered(_rating_rows(body, ranks)), "pairs": _numbered(_pair_rows(pairs)),
            "b_assignment_id": assignment_id, "b_task_id": task.id}).scalar_one()
    else:
        judgment_id = connection.execute(_INSERT_JUDGMENT, judgment).scalar_one()
        _write_pairs(session, judgment_id, task.id, body, ranks, pairs)
        connection.execute(_MARK_SUBMITTED, {"b_assignment_id": assignment_id})
        connection.execute(_COUNT_LABEL, {"b_task_id": task.id, **counted})
    return {"id": judgment_id, "task_id": task.id, "assignment_id": assignment_id, "created_at": now, "revision": 1,
            "comparisons": _pair_rows(pairs)}


def revise_judgment(*, session: Session, judgment: Judgment, user: User, body: JudgmentCreate,
                    idempotency_key: str) -> Judgment:
    """Replace a labeler's own judgment (see get_own_judgment); its ratings and pairs follow.
    A retry of the same revision is a no-op."""
    key = _checked_key(idempotency_key)
    digest = request_hash(body)
    if judgment.idempotency_key == key:
        if judgment.request_hash != digest:
            raise Invalid("this Idempotency-Key was already used for a different submission; send a new key",
                          code="idempotency_key_reused")
        return judgment
    if session.scalar(select(Judgment.id).where(Judgment.user_id == user.id, Judgment.idempotency_key == key)):
        raise Invalid("this Idempotency-Key was already used for another judgment; send a new key",
                      code="idempotency_key_reused")
    begin_write(session)
    task = session.scalar(select(Task).where(Task.id == judgment.task_id).with_for_update())
    project = session.get(Project, task.project_id)
    ranks = _validate(body, _task_completion_ids(session, task), project.allow_ties, project.rating_schema)
    session.execute(delete(CompletionRating).where(CompletionRating.judgment_id == judgment.id))
    session.execute(delete(Comparison).where(Comparison.judgment_id == judgment.id))
    _write_pairs(session, judgment.id, task.id, body, ranks, expand_pairs(ranks))
    judgment.idempotency_key, judgment.request_hash = key, digest
    judgment.rationale, judgment.none_acceptable = body.rationale, body.none_acceptable
    judgment.prompt_flags, judgment.demonstration = sorted(set(body.prompt_flags)), body.demonstration
    judgment.duration_ms = (judgment.duration_ms or 0) + (body.duration_ms or 0)
    judgment.revision += 1
    judgment.updated_at = utcnow()
    session.flush()
    return judgment


def get_own_judgment(*, session: Session, judgment_id: int, user: User) -> Judgment:
    judgment = get_by_id(session, Judgment, judgment_id)
    if judgment is None or judgment.user_id != user.id:
        raise NotFound(f"judgment {judgment_id} not found", code="judgment_not_found")
    return judgment


def recent_judgments(*, session: Session, project: Project, user: User, limit: int = 10,
                     before_id: int | None = None) -> list[Judgment]:
    """The user's judgments in the project, newest first (older than `before_id` when given)."""
    query = (select(Judgment).join(Task, Task.id == Judgment.task_id)
             .where(Task.project_id == project.id, Judgment.user_id == user.id))
    if before_id is not None:
        query = query.where(Judgment.id < before_id)
    return list(session.scalars(query.order_by(Judgment.id.desc()).limit(limit)))


def judgment_detail(*, session: Session, judgment: Judgment) -> dict[str, Any]:
    """A judgment with what the labeler saw and answered, to reopen it for revision."""
    assignment = session.get(Assignment, judgment.assignment_id)
    ratings = {r.completion_id: r for r in session.scalars(
        select(CompletionRating).where(CompletionRating.judgment_id == judgment.id))}
    return {
        **judgment_summary(session=session, judgment=judgment), "revision": judgment.revision,
        "rationale": judgment.rationale, "none_acceptable": judgment.none_acceptable,
        "prompt_flags": judgment.prompt_flags, "demonstration": judgment.demonstration,
        "display_order": assignment.display_order,
        "ranks": {str(cid): r.rank for cid, r in ratings.items()},
        "ratings": {str(cid): {"likert": r.likert, "flags": r.flags, "note": r.note} for cid, r in ratings.items()},
    }


_PAIRS_OF = (select(_comparison.c.chosen_id, _comparison.c.rejected_id, _comparison.c.margin, _comparison.c.is_tie)
             .where(_comparison.c.judgment_id == bindparam("judgment_id")).order_by(_comparison.c.id))


def judgment_summary(*, session: Session, judgment: Judgment) -> dict[str, Any]:
    return _summary(session, judgment.id, judgment.task_id, judgment.assignment_id, judgment.created_at,
                    judgment.revision)


def _summary(session: Session, judgment_id: int, task_id: int, assignment_id: int, created_at: datetime,
             revision: int) -> dict[str, Any]:
    pairs = session.connection().execute(_PAIRS_OF, {"judgment_id": judgment_id}).all()
    return {"id": judgment_id, "task_id": task_id, "assignment_id": assignment_id, "created_at": created_at,
            "revision": revision, "comparisons": _pair_rows(pairs)}
