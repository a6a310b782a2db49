"""The review queue (low agreement, harmful flags, reported prompts) and one task's judgments side by side."""

from collections import Counter, defaultdict
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.labeling.models import Assignment, CompletionRating, Judgment, Task, TaskCompletion
from app.projects.models import Project
from app.prompts.models import Completion, Prompt
from app.review.actions import excluded_labeler_ids
from app.review.metrics import consensus, task_agreement
from app.review.service import agreement_read, consensus_read, load_judgments, task_figures
from app.users.models import User

# Flag keys that mark a completion as harmful: InstructGPT's (sexual_content, violent_content,
# encourages_violence_abuse_self_harm, denigrates_protected_class, harmful_advice,
# inappropriate_for_customer_assistant) and custom keys that name the same things.
HARMFUL_WORDS = ("harm", "sexual", "violen", "abuse", "denigrat", "hate", "toxic", "unsafe", "inappropriate",
                 "illegal", "dangerous")
REPORT_FLAG = "reported"  # what the labeling page's "Report this prompt" stores in prompt_flags
QUEUE_LIMIT = 200


def harmful_flags(project: Project) -> list[str]:
    return [f["key"] for f in project.rating_schema.get("flags", []) if any(w in f["key"] for w in HARMFUL_WORDS)]


def review_queue(*, session: Session, project: Project, threshold: float) -> dict[str, Any]:
    """Tasks whose labelers agree less than `threshold` (mean tau-b), completions given harmful
    flags, and reported prompts; worst first, at most QUEUE_LIMIT of each."""
    tasks = list(session.scalars(select(Task).where(Task.project_id == project.id).order_by(Task.id)))
    judgments = load_judgments(session=session, project=project)
    included = [j for j in judgments if not j.excluded]
    rows = task_figures(tasks, included, Counter(j.task_id for j in judgments if j.excluded))
    low = sorted((r for r in rows if r["agreement"]["mean_tau_b"] is not None
                  and r["agreement"]["mean_tau_b"] < threshold),
                 key=lambda r: (r["agreement"]["mean_tau_b"], r["task_id"]))[:QUEUE_LIMIT]

    harmful = set(harmful_flags(project))
    flagged: dict[int, Counter] = defaultdict(Counter)
    task_of: dict[int, int] = {}
    for j in included:
        for cid, flags in j.flags.items():
            for flag in harmful.intersection(flags):
                flagged[cid][flag] += 1
                task_of[cid] = j.task_id
    worst = sorted(flagged, key=lambda cid: (-sum(flagged[cid].values()), cid))[:QUEUE_LIMIT]
    texts = dict(session.execute(select(Completion.id, Completion.text).where(Completion.id.in_(worst))).all())

    reports: dict[int, list[int]] = defaultdict(list)
    for j in judgments:
        if REPORT_FLAG in j.prompt_flags:
            reports[j.task_id].append(j.id)
    reported_ids = sorted(reports, key=lambda tid: (-len(reports[tid]), tid))[:QUEUE_LIMIT]
    prompts = {tid: (pid, text) for tid, pid, text in session.execute(
        select(Task.id, Prompt.id, Prompt.text).join(Prompt, Prompt.id == Task.prompt_id)
        .where(Task.id.in_(reported_ids)))} if reported_ids else {}
    rationales: dict[int, list[str]] = defaultdict(list)
    if reported_ids:
        for task_id, rationale in session.execute(select(Judgment.task_id, Judgment.rationale).where(
                Judgment.id.in_([jid for tid in reported_ids for jid in reports[tid]])).order_by(Judgment.id)):
            if rationale:
                rationales[task_id].append(rationale)
    return {
        "threshold": threshold,
        "low_agreement": low,
        "flagged": [{"completion_id": cid, "task_id": task_of[cid], "text": texts.get(cid, ""),
                     "flags": dict(flagged[cid])} for cid in worst],
        "reported": [{"task_id": tid, "prompt_id": prompts[tid][0], "text": prompts[tid][1],
                      "reports": len(reports[tid]), "rationales": rationales[tid]} for tid in reported_ids],
    }


def task_review(*, session: Session, task: Task, project: Project) -> dict[str, Any]:
    """The task with every judgment (excluded ones too) side by side, and the figures of the included."""
    prompt = session.get(Prompt, task.prompt_id)
    completions = session.execute(
        select(TaskCompletion.position, Completion).join(Completion, Completion.id == TaskCompletion.completion_id)
        .where(TaskCompletion.task_id == task.id).order_by(TaskCompletion.position)).all()
    rows = session.execute(
        select(Judgment, Assignment.display_order, User.username)
        .join(Assignment, Assignment.id == Judgment.assignment_id).join(User, User.id == Judgment.user_id)
        .where(Judgment.task_id == task.id).order_by(Judgment.id)).all()
    ratings: dict[int, dict[str, dict[str, Any]]] = defaultdict(dict)
    for r in session.scalars(select(CompletionRating).where(
            CompletionRating.judgment_id.in_([j.id for j, _, _ in rows]))) if rows else []:
        ratings[r.judgment_id][str(r.completion_id)] = {"rank": r.rank, "likert": r.likert, "flags": r.flags,
                                                        "note": r.note}
    excluded_labelers = excluded_labeler_ids(session=session, project=project)
    included = [{int(c): r["rank"] for c, r in ratings[j.id].items()} for j, _, _ in rows if not j.excluded]
    return {
        "id": task.id, "project_id": task.project_id, "state": task.state, "labels_needed": task.labels_needed,
        "labels_done": task.labels_done, "gold_ranks": task.gold_ranks,
        "prompt": {"id": prompt.id, "kind": prompt.kind, "text": prompt.text, "messages": prompt.messages},
        "completions": [{"id": c.id, "position": position, "model_version_id": c.model_version_id, "text": c.text}
                        for position, c in completions],
        "judgments": [{
            "id": j.id, "task_id": j.task_id, "user_id": j.user_id, "username": username,
            "created_at": j.created_at, "revision": j.revision, "duration_ms": j.duration_ms,
            "display_order": order, "ratings": ratings[j.id], "rationale": j.rationale,
            "none_acceptable": j.none_acceptable, "prompt_flags": j.prompt_flags, "demonstration": j.demonstration,
            "excluded": j.excluded, "excluded_reason": j.excluded_reason,
            "labeler_excluded": j.user_id in excluded_labelers,
        } for j, order, username in rows],
        "agreement": agreement_read(task_agreement(included)),
        "consensus": consensus_read(consensus(included)),
    }
