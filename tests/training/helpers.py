"""A small labeled project for training-job tests: synthetic completions ranked by a hidden rule."""

from dataclasses import dataclass

from sqlalchemy.orm import Session

from app.labeling.models import Task, TaskCompletion
from app.models.models import ModelVersion
from app.models.schemas import ModelCreate
from app.models.service import promote, register_model
from app.projects.models import Project
from app.prompts.models import Completion, Prompt
from app.users.models import Role, User
from tests.factories import make_admin, make_project, make_tasks, make_user
from tests.review.helpers import label

WORDS = ["sun", "sea", "tree", "stone", "river", "cloud", "bird", "leaf"]


@dataclass
class Labeled:
    admin: User
    project: Project
    policy: ModelVersion
    prompts: list[Prompt]


def shorter_wins(_shown: list[int], task: Task) -> dict[int, int]:
    """Ranks by length, the shortest first (ties share a rank)."""
    from sqlalchemy import select
    from sqlalchemy.orm import object_session

    session = object_session(task)
    texts = dict(session.execute(select(Completion.id, Completion.text).join(
        TaskCompletion, TaskCompletion.completion_id == Completion.id).where(TaskCompletion.task_id == task.id)).all())
    lengths = sorted({len(t) for t in texts.values()})
    return {cid: lengths.index(len(text)) + 1 for cid, text in texts.items()}


def labeled_project(db: Session, policy_source: str, *, prompts: int = 6, k: int = 3) -> Labeled:
    """`prompts` tasks of K completions from a registered policy, each judged once (shorter is better)."""
    admin = make_admin(db)
    labeler = make_user(db, Role.labeler)
    project = make_project(db, admin, k=k, labels_per_task=1, labeler_ids=[labeler.id])
    policy = register_model(session=db, data=ModelCreate(name="tiny policy", backend="transformers",
                                                         source=policy_source))
    promote(model=policy, project=project)
    tasks = make_tasks(db, project, n=prompts, k=k, model=policy,
                       prompt_text=lambda i: f"Describe the {WORDS[i % len(WORDS)]} ({i}).",
                       completion_text=lambda i, position: " ".join(WORDS[(i + j) % len(WORDS)]
                                                                    for j in range(1 + 3 * position)))
    made = [db.get(Prompt, task.prompt_id) for task in tasks]
    for _ in range(prompts):
        assert label(db, project, labeler, shorter_wins) is not None
    return Labeled(admin=admin, project=project, policy=policy, prompts=made)
