"""The export formats as streams of row batches: one ordered query each, read with a server-side cursor."""

from collections.abc import Iterator
from typing import Any

from sqlalchemy import Select, func, select
from sqlalchemy.orm import Session

from app.db import iso
from app.export.lookups import Lookups, grouped
from app.export.schemas import ExportOptions, PairMode, TiePolicy
from app.export.queries import (
    flagged_completions, judgment_filters, sampled_only_from_version, stream, version_completions,
)
from app.export.tasks import TaskJudgments
from app.labeling.models import Comparison, CompletionRating, Judgment, Task, TaskCompletion
from app.projects.models import Project

Rows = Iterator[list[dict[str, Any]]]


def pair_rows(session: Session, project: Project, options: ExportOptions, lookups: Lookups,
              tasks: TaskJudgments) -> Rows:
    """TRL's prompt/chosen/rejected, one row per comparison of each judgment."""
    if options.mode == PairMode.consensus:
        yield from consensus_pair_rows(session, project, options, lookups, tasks)
        return
    c = Comparison
    stmt = (select(c.id, c.judgment_id, c.task_id, c.chosen_id, c.rejected_id, c.margin, c.is_tie, Judgment.user_id,
                   Task.prompt_id)
            .join(Judgment, Judgment.id == c.judgment_id).join(Task, Task.id == c.task_id)
            .where(*judgment_filters(project, options)).order_by(c.id))
    if options.ties == TiePolicy.drop:
        stmt = stmt.where(c.is_tie.is_(False))
    if options.exclude_flags:
        flagged = flagged_completions(session, project, options)
        stmt = stmt.where(c.chosen_id.not_in(flagged), c.rejected_id.not_in(flagged))
    if options.model_version_id is not None:
        stmt = stmt.where(c.chosen_id.in_(version_completions(options)), c.rejected_id.in_(version_completions(options)))
    keep_ties = options.ties == TiePolicy.keep
    for batch in stream(session, stmt):
        lookups.load({r[8] for r in batch}, {cid for r in batch for cid in (r[3], r[4])}, {r[7] for r in batch})
        agreed = tasks.agreed({r[2] for r in batch})
        prompts, completions, versions = lookups.prompt_out, lookups.completion_out, lookups.completion_version
        labelers, splits, only = lookups.labelers, lookups.split, options.split
        rows = []
        for comparison_id, judgment_id, task_id, chosen, rejected, margin, tie, user_id, prompt_id in batch:
            split = splits[prompt_id]
            if (agreed is not None and task_id not in agreed) or (only is not None and split != only):
                continue
            row = {"prompt": prompts[prompt_id], "chosen": completions[chosen], "rejected": completions[rejected],
                   "margin": margin, "prompt_id": prompt_id, "task_id": task_id, "judgment_id": judgment_id,
                   "comparison_id": comparison_id, "labeler": labelers[user_id],
                   "chosen_model_version_id": versions[chosen], "rejected_model_version_id": versions[rejected],
                   "split": split}
            if keep_ties:
                row["tie"] = tie
            rows.append(row)
        yield rows


def consensus_pair_rows(session: Session, project: Project, options: ExportOptions, lookups: Lookups,
                        tasks: TaskJudgments) -> Rows:
    """One set of pairs per task, from the consensus ranking of its judgments."""
    from app.labeling.judgments import expand_pairs

    version = options.model_version_id
    for batch, excluded in tasks.stream(session, project, options, lookups):
        rows = []
        for task in batch:
            consensus = task.consensus()
            for chosen, rejected, margin, tie in expand_pairs(consensus.ranks):
                if (tie and options.ties == TiePolicy.drop) or chosen in excluded or rejected in excluded:
                    continue
                if version is not None and not (lookups.completion_version[chosen] == version
                                                == lookups.completion_version[rejected]):
                    continue
                row = {"prompt": lookups.prompt_out[task.prompt_id], "chosen": lookups.completion_out[chosen],
                       "rejected": lookups.completion_out[rejected], "margin": margin,
                       "score_margin": round(consensus.scores[chosen] - consensus.scores[rejected], 6),
                       "prompt_id": task.prompt_id, "task_id": task.task_id,
                       "judgment_ids": [j.judgment_id for j in task.judgments],
                       "labelers": [lookups.labeler(j.user_id) for j in task.judgments],
                       "consensus_strength": round(consensus.strength, 6),
                       "chosen_model_version_id": lookups.completion_version[chosen],
                       "rejected_model_version_id": lookups.completion_version[rejected],
                       "split": lookups.split[task.prompt_id]}
                if options.ties == TiePolicy.keep:
                    row["tie"] = tie
                rows.append(row)
        yield rows


def _rating_source(session: Session, project: Project, options: ExportOptions, *columns: Any) -> Select:
    """Ratings of the exported judgments, in judgment order and the task's canonical completion order."""
    stmt = (select(*columns).select_from(Judgment).join(Task, Task.id == Judgment.task_id)
            .join(CompletionRating, CompletionRating.judgment_id == Judgment.id)
            .join(TaskCompletion, (TaskCompletion.task_id == Judgment.task_id)
                  & (TaskCompletion.completion_id == CompletionRating.completion_id))
            .where(*judgment_filters(project, options)).order_by(Judgment.id, TaskCompletion.position))
    if options.exclude_flags:
        stmt = stmt.where(CompletionRating.completion_id.not_in(flagged_completions(session, project, options)))
    return stmt


def ranking_rows(session: Session, project: Project, options: ExportOptions, lookups: Lookups,
                 tasks: TaskJudgments) -> Rows:
    """One row per judgment: the K completions in canonical task order with their ranks and ratings."""
    stmt = _rating_source(session, project, options, Judgment.id, Judgment.task_id, Judgment.user_id,
                          Judgment.created_at, Judgment.none_acceptable, Judgment.rationale, Judgment.prompt_flags,
                          Judgment.demonstration, Task.prompt_id, CompletionRating.completion_id, CompletionRating.rank,
                          CompletionRating.likert, CompletionRating.flags, CompletionRating.note)
    if options.model_version_id is not None:
        stmt = stmt.where(sampled_only_from_version(options))
    for groups in grouped(stream(session, stmt), key=lambda r: r[0]):
        lookups.load({g[0][8] for g in groups}, {r[9] for g in groups for r in g})
        keep = tasks.keeper(lookups, {g[0][1] for g in groups})
        rows = []
        for group in groups:
            (judgment_id, task_id, user_id, created_at, none_acceptable, rationale, prompt_flags, demonstration,
             prompt_id) = group[0][:9]
            if not keep(task_id, prompt_id):
                continue
            rows.append({
                "judgment_id": judgment_id, "task_id": task_id, "prompt_id": prompt_id,
                "labeler": lookups.labeler(user_id), "split": lookups.split[prompt_id],
                "prompt": lookups.prompt_text[prompt_id], "prompt_messages": lookups.prompt_messages[prompt_id],
                "completions": [{"completion_id": r[9], "text": lookups.completion_text[r[9]], "rank": r[10],
                                 "likert": r[11], "flags": r[12], "note": r[13],
                                 "model_version_id": lookups.completion_version[r[9]]} for r in group],
                "none_acceptable": none_acceptable, "rationale": rationale, "prompt_flags": prompt_flags,
                "demonstration": demonstration, "created_at": iso(created_at),
            })
        yield rows


def rating_rows(session: Session, project: Project, options: ExportOptions, lookups: Lookups,
                tasks: TaskJudgments) -> Rows:
    """One row per rated completion: its rank, Likert rating, flags and note."""
    stmt = _rating_source(session, project, options, CompletionRating.id, Judgment.id, Judgment.task_id,
                          Judgment.user_id, Judgment.created_at, Task.prompt_id, CompletionRating.completion_id,
                          CompletionRating.rank, CompletionRating.likert, CompletionRating.flags, CompletionRating.note)
    if options.model_version_id is not None:
        stmt = stmt.where(CompletionRating.completion_id.in_(version_completions(options)))
    for batch in stream(session, stmt):
        lookups.load({r[5] for r in batch}, {r[6] for r in batch})
        keep = tasks.keeper(lookups, {r[2] for r in batch})
        rows = []
        for rating_id, judgment_id, task_id, user_id, created_at, prompt_id, cid, rank, likert, flags, note in batch:
            if not keep(task_id, prompt_id):
                continue
            rows.append({
                "rating_id": rating_id, "judgment_id": judgment_id, "task_id": task_id, "prompt_id": prompt_id,
                "completion_id": cid, "model_version_id": lookups.completion_version[cid],
                "labeler": lookups.labeler(user_id), "split": lookups.split[prompt_id],
                "prompt": lookups.prompt_text[prompt_id], "completion": lookups.completion_text[cid],
                "rank": rank, "likert": likert, "flags": flags, "note": note, "created_at": iso(created_at),
            })
        yield rows


def sft_rows(session: Session, project: Project, options: ExportOptions, lookups: Lookups,
             tasks: TaskJudgments) -> Rows:
    """Demonstrations as chat messages; with include_best, each task's consensus-best completion too."""
    stmt = (select(Judgment.id, Judgment.task_id, Judgment.user_id, Judgment.created_at, Task.prompt_id,
                   Judgment.demonstration)
            .join(Task, Task.id == Judgment.task_id)
            .where(*judgment_filters(project, options), Judgment.demonstration.is_not(None),
                   func.length(func.trim(Judgment.demonstration)) > 0)
            .order_by(Judgment.id))
    if options.model_version_id is not None:
        stmt = stmt.where(sampled_only_from_version(options))
    for batch in stream(session, stmt):
        lookups.load({r[4] for r in batch})
        keep = tasks.keeper(lookups, {r[1] for r in batch})
        yield [_sft_row(lookups, prompt_id, demonstration, source="demonstration", task_id=task_id,
                        judgment_id=judgment_id, labeler=lookups.labeler(user_id), completion_id=None,
                        model_version_id=None, created_at=iso(created_at))
               for judgment_id, task_id, user_id, created_at, prompt_id, demonstration in batch
               if keep(task_id, prompt_id)]
    if options.include_best:
        yield from _best_rows(session, project, options, lookups, tasks)


def _sft_row(lookups: Lookups, prompt_id: int, answer: str, **fields: Any) -> dict[str, Any]:
    return {"messages": [*lookups.prompt_messages[prompt_id], {"role": "assistant", "content": answer}],
            "prompt_id": prompt_id, **fields, "split": lookups.split[prompt_id]}


def _best_rows(session: Session, project: Project, options: ExportOptions, lookups: Lookups,
               tasks: TaskJudgments) -> Rows:
    for batch, excluded in tasks.stream(session, project, options, lookups):
        rows = []
        for task in batch:
            if 2 * sum(j.none_acceptable for j in task.judgments) > len(task.judgments):
                continue
            ranks = task.consensus().ranks
            best = [cid for cid, rank in ranks.items() if rank == 1]
            # A tie at the top names no single best answer to imitate.
            if len(best) != 1 or best[0] in excluded:
                continue
            if options.model_version_id is not None and lookups.completion_version[best[0]] != options.model_version_id:
                continue
            rows.append(_sft_row(lookups, task.prompt_id, lookups.completion_text[best[0]], source="consensus_best",
                                 task_id=task.task_id, judgment_id=None, labeler=None, completion_id=best[0],
                                 model_version_id=lookups.completion_version[best[0]], created_at=None))
        yield rows


FORMATS = {"pairs": pair_rows, "rankings": ranking_rows, "ratings": rating_rows, "sft": sft_rows}
