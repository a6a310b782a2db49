"""A project's agreement figures, loaded in bulk: a fixed number of queries whatever its size.

Excluded judgments are loaded only to be counted; every figure uses the included ones.
"""

from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from itertools import combinations
from statistics import median
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.db import utcnow
from app.labeling.models import (
    Assignment, AssignmentState, Comparison, CompletionRating, Judgment, Task, TaskCompletion, TaskState,
)
from app.models.models import ModelVersion
from app.projects.models import Project
from app.projects.service import prompt_counts
from app.prompts.models import Completion
from app.review.actions import excluded_labeler_ids
from app.review.alpha import krippendorff_alpha
from app.review.metrics import Consensus, TaskAgreement, consensus_many, task_agreement, tau_b
from app.review.quality import (
    ELO_BASE, ELO_SCALE, OUTLIER_Z, eligible_z, first_shown_top, gold_accuracy, likert_spread, version_ratings,
)
from app.users.models import User

WEEKLY_AFTER_DAYS = 90  # longer projects show agreement per week instead of per day


@dataclass
class JudgmentData:
    """One judgment with its ratings, as the figures need it."""

    id: int
    task_id: int
    user_id: int
    duration_ms: int | None
    created_at: datetime
    excluded: bool
    prompt_flags: list[str]
    display_order: list[int]
    ranks: dict[int, int] = field(default_factory=dict)
    likert: dict[int, int] = field(default_factory=dict)
    flags: dict[int, list[str]] = field(default_factory=dict)


def load_judgments(*, session: Session, project: Project,
                   task_ids: list[int] | None = None) -> list[JudgmentData]:
    """Every judgment of the project (or of these tasks) with its ratings, in two queries."""
    scope = Task.project_id == project.id if task_ids is None else Task.id.in_(task_ids)
    judgments = {row.id: JudgmentData(*row) for row in session.execute(
        select(Judgment.id, Judgment.task_id, Judgment.user_id, Judgment.duration_ms, Judgment.created_at,
               Judgment.excluded, Judgment.prompt_flags, Assignment.display_order)
        .join(Task, Task.id == Judgment.task_id).join(Assignment, Assignment.id == Judgment.assignment_id)
        .where(scope).order_by(Judgment.id))}
    ratings = session.execute(
        select(CompletionRating.judgment_id, CompletionRating.completion_id, CompletionRating.rank,
               CompletionRating.likert, CompletionRating.flags)
        .join(Judgment, Judgment.id == CompletionRating.judgment_id).join(Task, Task.id == Judgment.task_id)
        .where(scope))
    for judgment_id, completion_id, rank, likert, flags in ratings:
        j = judgments[judgment_id]
        j.ranks[completion_id] = rank
        if likert is not None:
            j.likert[completion_id] = likert
        j.flags[completion_id] = flags or []
    return list(judgments.values())


def agreement_read(a: TaskAgreement) -> dict[str, Any]:
    return {"n": a.n, "kendall_w": a.kendall_w, "mean_tau_b": a.mean_tau_b, "pair_agreement": a.pair_agreement}


def consensus_read(c: Consensus) -> dict[str, Any]:
    return {"ranks": {str(k): v for k, v in c.ranks.items()}, "scores": {str(k): v for k, v in c.scores.items()},
            "strength": c.strength}


def _by_task(judgments: list[JudgmentData]) -> dict[int, list[JudgmentData]]:
    grouped: dict[int, list[JudgmentData]] = defaultdict(list)
    for j in judgments:
        grouped[j.task_id].append(j)
    return grouped


def task_figures(tasks: list[Task], included: list[JudgmentData], excluded_counts: Counter) -> list[dict[str, Any]]:
    """Per task: agreement, Likert spread and consensus of its included judgments."""
    grouped = _by_task(included)
    consensuses = consensus_many([[j.ranks for j in grouped.get(t.id, [])] for t in tasks])
    rows = []
    for task, cons in zip(tasks, consensuses, strict=True):
        own = grouped.get(task.id, [])
        completions = sorted({c for j in own for c in j.likert})
        rows.append({
            "task_id": task.id, "prompt_id": task.prompt_id, "state": task.state, "labels_needed": task.labels_needed,
            "labels_done": task.labels_done, "excluded": excluded_counts[task.id], "gold": task.gold_ranks is not None,
            "agreement": agreement_read(task_agreement([j.ranks for j in own])),
            "likert_spread": likert_spread([[j.likert[c] for j in own if c in j.likert] for c in completions]),
            "consensus": consensus_read(cons),
        })
    return rows


def _lowest_first(row: dict[str, Any]) -> tuple:
    tau = row["agreement"]["mean_tau_b"]
    return (tau is None, tau if tau is not None else 0.0, row["task_id"])


def leave_one_out(included: list[JudgmentData]) -> dict[int, float]:
    """Each judgment's tau-b against the consensus of the same task's other included judgments."""
    problems, owners = [], []
    for own in _by_task(included).values():
        if len(own) < 2:
            continue
        for j in own:
            problems.append([o.ranks for o in own if o is not j])
            owners.append(j)
    scores = {}
    for j, cons in zip(owners, consensus_many(problems), strict=True):
        tau = tau_b(j.ranks, cons.ranks)
        if tau is not None:  # the others can cancel out into one big tie
            scores[j.id] = tau
    return scores


def labeler_figures(session: Session, project: Project, tasks: list[Task], judgments: list[JudgmentData],
                    included: list[JudgmentData]) -> list[dict[str, Any]]:
    """Per labeler: agreement with the others, gold accuracy, speed, position bias, flags, outliers."""
    gold = {t.id: {int(k): v for k, v in t.gold_ranks.items()} for t in tasks if t.gold_ranks is not None}
    loo = leave_one_out(included)
    mine: dict[int, list[JudgmentData]] = defaultdict(list)
    for j in included:
        mine[j.user_id].append(j)
    excluded_counts = Counter(j.user_id for j in judgments if j.excluded)
    user_ids = sorted({j.user_id for j in judgments})
    names = dict(session.execute(select(User.id, User.username).where(User.id.in_(user_ids))).all())
    agreement, compared = {}, {}
    for uid, own in mine.items():
        taus = [loo[j.id] for j in own if j.id in loo]
        compared[uid] = len(taus)
        if taus:
            agreement[uid] = sum(taus) / len(taus)
    z_scores = eligible_z(agreement, compared)
    excluded_labelers = excluded_labeler_ids(session=session, project=project)
    rows = []
    for uid in user_ids:
        own = mine.get(uid, [])
        golds = [a for j in own if j.task_id in gold and (a := gold_accuracy(j.ranks, gold[j.task_id])) is not None]
        durations = [j.duration_ms / 1000 for j in own if j.duration_ms is not None]
        rated = [flags for j in own for flags in j.flags.values()]
        rows.append({
            "user_id": uid, "username": names.get(uid, f"user {uid}"), "judgments": len(own),
            "excluded_judgments": excluded_counts[uid], "labeler_excluded": uid in excluded_labelers,
            "agreement": agreement.get(uid), "compared": compared.get(uid, 0),
            "gold_accuracy": sum(golds) / len(golds) if golds else None, "gold_judgments": len(golds),
            "median_seconds": median(durations) if durations else None,
            "first_shown_top": sum(first_shown_top(j.ranks, j.display_order) for j in own) / len(own) if own else None,
            "first_shown_chance": sum(1 / len(j.ranks) for j in own) / len(own) if own else None,
            "flag_rate": sum(1 for f in rated if f) / len(rated) if rated else None,
            "reports": sum(1 for j in own if "reported" in j.prompt_flags),
            "outlier": z_scores.get(uid, 0.0) < OUTLIER_Z, "z_score": z_scores.get(uid),
        })
    return rows


def _alpha_units(included: list[JudgmentData], value) -> list[list[float]]:
    units: dict[tuple[int, int], list[float]] = defaultdict(list)
    for j in included:
        for cid in j.ranks:
            v = value(j, cid)
            if v is not None:
                units[(j.task_id, cid)].append(v)
    return list(units.values())


def project_alpha(included: list[JudgmentData], flag_keys: list[str]) -> dict[str, Any]:
    """Krippendorff's alpha: ranks (ordinal), Likert (interval), each flag (nominal)."""
    return {
        "ranks": krippendorff_alpha(_alpha_units(included, lambda j, c: j.ranks[c]), "ordinal"),
        "likert": krippendorff_alpha(_alpha_units(included, lambda j, c: j.likert.get(c)), "interval"),
        "flags": {key: krippendorff_alpha(
            _alpha_units(included, lambda j, c, key=key: float(key in j.flags.get(c, []))), "nominal")
            for key in flag_keys},
    }


def over_time(included: list[JudgmentData], tau_of: dict[int, float | None]) -> list[dict[str, Any]]:
    """Agreement per day (per week for long projects) of the tasks whose last judgment fell in it;
    tau_of holds each task's mean tau-b (from task_figures)."""
    grouped = _by_task(included)
    done = {tid: max(j.created_at for j in own).date() for tid, own in grouped.items() if len(own) >= 2}
    if not done:
        return []
    weekly = (max(done.values()) - min(done.values())).days > WEEKLY_AFTER_DAYS
    periods: dict[date, list[int]] = defaultdict(list)
    for tid, day in done.items():
        periods[day - timedelta(days=day.weekday()) if weekly else day].append(tid)
    rows = []
    for period in sorted(periods):
        own = [j for tid in periods[period] for j in grouped[tid]]
        taus = [tau for tid in periods[period] if (tau := tau_of.get(tid)) is not None]
        rows.append({"period": period.isoformat(), "tasks": len(periods[period]),
                     "alpha_ranks": krippendorff_alpha(_alpha_units(own, lambda j, c: j.ranks[c]), "ordinal"),
                     "alpha_likert": krippendorff_alpha(_alpha_units(own, lambda j, c: j.likert.get(c)), "interval"),
                     "mean_tau_b": sum(taus) / len(taus) if taus else None})
    return rows


def throughput(judgments: list[JudgmentData]) -> list[dict[str, Any]]:
    """Judgments submitted per day, days without any included as 0."""
    counts = Counter(j.created_at.date() for j in judgments)
    if not counts:
        return []
    first, last = min(counts), max(counts)
    return [{"day": (first + timedelta(days=i)).isoformat(), "judgments": counts[first + timedelta(days=i)]}
            for i in range((last - first).days + 1)]


def leaderboard(session: Session, project: Project, included: list[JudgmentData]) -> list[dict[str, Any]]:
    """Bradley-Terry ratings of the model versions whose completions met in the same tasks."""
    version_of = dict(session.execute(
        select(Completion.id, Completion.model_version_id)
        .join(TaskCompletion, TaskCompletion.completion_id == Completion.id)
        .join(Task, Task.id == TaskCompletion.task_id).where(Task.project_id == project.id)).all())
    outcomes: dict[int, list[tuple[int, int, float]]] = defaultdict(list)
    for j in included:
        for x, y in combinations(sorted(j.ranks), 2):
            a, b = version_of.get(x), version_of.get(y)
            if a is not None and b is not None and a != b:
                score = 1.0 if j.ranks[x] < j.ranks[y] else 0.0 if j.ranks[x] > j.ranks[y] else 0.5
                outcomes[j.task_id].append((a, b, score))
    ratings = version_ratings(list(outcomes.values()))
    names = dict(session.execute(select(ModelVersion.id, ModelVersion.name).where(
        ModelVersion.id.in_([r.version_id for r in ratings]))).all())
    return [{**r.__dict__, "name": names.get(r.version_id, f"model {r.version_id}"),
             "rating_low": ELO_BASE + ELO_SCALE * r.low, "rating_high": ELO_BASE + ELO_SCALE * r.high}
            for r in ratings]


def progress(session: Session, project: Project, tasks: list[Task], judgments: list[JudgmentData]) -> dict[str, int]:
    leased = set(session.scalars(
        select(Assignment.task_id).distinct().join(Task, Task.id == Assignment.task_id)
        .where(Task.project_id == project.id, Assignment.state == AssignmentState.leased,
               Assignment.lease_expires_at > utcnow())))
    pairs = session.scalar(
        select(func.count()).select_from(Comparison).join(Judgment, Judgment.id == Comparison.judgment_id)
        .join(Task, Task.id == Judgment.task_id).where(Task.project_id == project.id, Judgment.excluded.is_(False))) or 0
    open_tasks = [t for t in tasks if t.state == TaskState.open]
    in_progress = sum(1 for t in open_tasks if t.labels_done > 0 or t.id in leased)
    excluded = sum(1 for j in judgments if j.excluded)
    return {"prompts": prompt_counts(session=session, project_ids=[project.id])[project.id], "tasks": len(tasks),
            "tasks_ready": len(open_tasks) - in_progress, "tasks_in_progress": in_progress,
            "tasks_done": sum(1 for t in tasks if t.state == TaskState.complete),
            "tasks_retired": sum(1 for t in tasks if t.state == TaskState.retired),
            "gold_tasks": sum(1 for t in tasks if t.gold_ranks is not None),
            "judgments": len(judgments) - excluded, "excluded_judgments": excluded, "pairs": pairs}


def project_agreement(*, session: Session, project: Project, task_limit: int = 100,
                      task_offset: int = 0) -> dict[str, Any]:
    """Every figure the dashboard shows: progress, alpha (and over time), tasks, labelers, leaderboard."""
    tasks = list(session.scalars(select(Task).where(Task.project_id == project.id).order_by(Task.id)))
    judgments = load_judgments(session=session, project=project)
    included = [j for j in judgments if not j.excluded]
    task_rows = sorted(task_figures(tasks, included, Counter(j.task_id for j in judgments if j.excluded)),
                       key=_lowest_first)
    return {
        "project_id": project.id,
        "progress": progress(session, project, tasks, judgments),
        "alpha": project_alpha(included, [f["key"] for f in project.rating_schema.get("flags", [])]),
        "over_time": over_time(included, {r["task_id"]: r["agreement"]["mean_tau_b"] for r in task_rows}),
        "throughput": throughput(judgments),
        "tasks": task_rows[task_offset:task_offset + task_limit], "tasks_total": len(task_rows),
        "labelers": labeler_figures(session, project, tasks, judgments, included),
        "leaderboard": leaderboard(session, project, included),
    }
