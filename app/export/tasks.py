"""Tasks with their judgments' rankings: agreement filters, consensus pairs and consensus-best answers."""

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.export.lookups import CACHE_LIMIT, Lookups, grouped
from app.export.queries import flagged_in_tasks, judgment_filters, sampled_only_from_version, stream
from app.export.schemas import ExportOptions
from app.labeling.models import CompletionRating, Judgment, Task, TaskCompletion
from app.projects.models import Project


@dataclass
class JudgmentRanking:
    judgment_id: int
    user_id: int
    none_acceptable: bool
    ranks: dict[int, int] = field(default_factory=dict)


@dataclass
class TaskRankings:
    task_id: int
    prompt_id: int
    completion_ids: list[int]
    judgments: list[JudgmentRanking]

    def consensus(self) -> Any:
        from app.review.metrics import consensus

        return consensus([j.ranks for j in self.judgments])


def _rankings(rows: list) -> list[JudgmentRanking]:
    """Rows of (task, prompt, judgment, user, none acceptable, completion, rank), one task, by judgment."""
    judgments: list[JudgmentRanking] = []
    for _task, _prompt, judgment_id, user_id, none_acceptable, completion_id, rank in rows:
        if not judgments or judgments[-1].judgment_id != judgment_id:
            judgments.append(JudgmentRanking(judgment_id, user_id, none_acceptable))
        judgments[-1].ranks[completion_id] = rank
    return judgments


class TaskJudgments:
    """Per-task figures an export filters on, computed from the rankings of the task's judgments."""

    def __init__(self, session: Session, project: Project, options: ExportOptions) -> None:
        self.session, self.project, self.options = session, project, options
        self._agreement: dict[int, float | None] = {}

    def _columns(self) -> tuple:
        return (Judgment.task_id, Task.prompt_id, Judgment.id, Judgment.user_id, Judgment.none_acceptable,
                CompletionRating.completion_id, CompletionRating.rank)

    def _source(self):
        return (select(*self._columns()).select_from(Judgment).join(Task, Task.id == Judgment.task_id)
                .join(CompletionRating, CompletionRating.judgment_id == Judgment.id))

    def agreed(self, task_ids: set[int]) -> set[int] | None:
        """The tasks among these whose pair agreement reaches min_agreement; None when there is no minimum.
        Agreement counts every judgment of the task that is not excluded, whatever the date range."""
        minimum = self.options.min_agreement
        if minimum is None:
            return None
        from app.review.metrics import task_agreement

        missing = sorted(task_ids - self._agreement.keys())
        if missing:
            if len(self._agreement) > CACHE_LIMIT:
                self._agreement.clear()
            query = self._source().where(Judgment.task_id.in_(missing)).order_by(Judgment.task_id, Judgment.id)
            if not self.options.include_excluded:
                query = query.where(Judgment.excluded.is_(False))
            by_task = {t: [] for t in missing}
            for row in self.session.execute(query):
                by_task[row[0]].append(row)
            for task_id, rows in by_task.items():
                rankings = [j.ranks for j in _rankings(rows)]
                self._agreement[task_id] = task_agreement(rankings).pair_agreement if rankings else None
        # A task with one judgment has no agreement to measure, so it cannot reach a minimum.
        return {t for t in task_ids if (a := self._agreement.get(t)) is not None and a >= minimum - 1e-9}

    def keeper(self, lookups: Lookups, task_ids: set[int]) -> Callable[[int, int], bool]:
        """Whether a row of (task, prompt) is exported: its task reaches min_agreement and its prompt
        falls in the wanted split (the lookups must hold the batch's prompts)."""
        agreed, only, split = self.agreed(task_ids), self.options.split, lookups.split
        return lambda task_id, prompt_id: ((agreed is None or task_id in agreed)
                                           and (only is None or split[prompt_id] == only))

    def stream(self, session: Session, project: Project, options: ExportOptions,
               lookups: Lookups) -> Iterator[tuple[list[TaskRankings], set[int]]]:
        """Tasks in id order with the rankings of the exported judgments, and the batch's flagged completions;
        only tasks that reach min_agreement and fall in the wanted split. The lookups are loaded for each batch."""
        query = self._source().where(*judgment_filters(project, options)).order_by(Judgment.task_id, Judgment.id)
        if options.model_version_id is not None:
            query = query.where(sampled_only_from_version(options))
        for groups in grouped(stream(session, query), key=lambda r: r[0]):
            task_ids = [g[0][0] for g in groups]
            order: dict[int, list[int]] = {t: [] for t in task_ids}
            for task_id, completion_id in session.execute(
                    select(TaskCompletion.task_id, TaskCompletion.completion_id)
                    .where(TaskCompletion.task_id.in_(task_ids)).order_by(TaskCompletion.task_id, TaskCompletion.position)):
                order[task_id].append(completion_id)
            lookups.load({g[0][1] for g in groups}, {cid for ids in order.values() for cid in ids})
            keep = self.keeper(lookups, set(task_ids))
            batch = [TaskRankings(g[0][0], g[0][1], order[g[0][0]], _rankings(g)) for g in groups if keep(g[0][0], g[0][1])]
            flagged = flagged_in_tasks(session, project, options, task_ids) if options.exclude_flags else set()
            yield batch, flagged
