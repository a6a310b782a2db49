"""A small labeled project whose every export row is known: ties, flags, an excluded judgment,
an old judgment, a second model version, chat and text prompts, demonstrations."""

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from sqlalchemy.orm import Session

from app.labeling.judgments import expand_pairs
from app.labeling.models import (
    Assignment, AssignmentState, Comparison, CompletionRating, Judgment, Task, TaskCompletion,
)
from app.models.models import ModelRole, ModelVersion
from app.prompts.models import Completion, Prompt
from app.users.models import Role, Scope, User
from tests.factories import bearer, make_admin, make_project, make_token, make_user

OLD = datetime(2020, 1, 1, tzinfo=UTC)

# task -> (prompt, source user, model version index, [(labeler index, ranks by position, extras)])
PLAN = [
    ({"prompt": "Name a prime."}, "alice", 0, [
        (0, [1, 2, 3], {}), (1, [1, 2, 3], {"likert": [7, 4, 1]}), (2, [1, 3, 2], {})]),
    ({"messages": [{"role": "system", "content": "Be terse."}, {"role": "user", "content": "Say hi."}]}, "alice", 0, [
        (0, [1, 1, 2], {}), (1, [2, 1, 3], {})]),
    ({"prompt": "Explain tides."}, "bob", 0, [
        (0, [3, 2, 1], {"flags": {2: ["hallucination"]}, "demonstration": "The moon pulls the sea."})]),
    ({"prompt": "Write a haiku."}, None, 0, [(1, [1, 2, 3], {"excluded": True})]),
    ({"prompt": "Sort 3 1 2."}, "bob", 0, [(0, [1, 2, 3], {"created_at": OLD})]),
    ({"prompt": "Translate 'cat'."}, None, 1, [(2, [2, 1, 3], {"none_acceptable": True})]),
]


@dataclass
class Planted:
    admin: User
    labelers: list[User]
    project: object
    versions: list[ModelVersion]
    tasks: list[Task]
    prompts: list[Prompt]
    completions: list[list[Completion]]          # per task, in canonical position order
    judgments: list[Judgment] = field(default_factory=list)
    admin_headers: dict[str, str] = field(default_factory=dict)
    read_headers: dict[str, str] = field(default_factory=dict)
    labeler_headers: dict[str, str] = field(default_factory=dict)

    def text(self, completion_id: int) -> str:
        return next(c.text for row in self.completions for c in row if c.id == completion_id)


def judge(db: Session, task: Task, user: User, completion_ids: list[int], ranks: list[int], extras: dict,
           n: int) -> Judgment:
    """A submitted judgment with its ratings and K-choose-2 pairs, written as the labeling service stores them."""
    assignment = Assignment(task_id=task.id, user_id=user.id, display_order=completion_ids,
                            state=AssignmentState.submitted, lease_expires_at=datetime.now(UTC) + timedelta(hours=1))
    db.add(assignment)
    db.flush()
    judgment = Judgment(task_id=task.id, user_id=user.id, assignment_id=assignment.id, idempotency_key=f"plant-{n}",
                        request_hash="x", rationale=f"because {n}", none_acceptable=extras.get("none_acceptable", False),
                        prompt_flags=[], demonstration=extras.get("demonstration"),
                        excluded=extras.get("excluded", False), excluded_reason="careless" if extras.get("excluded") else None,
                        created_at=extras.get("created_at", datetime.now(UTC)))
    db.add(judgment)
    db.flush()
    likert = extras.get("likert", [None] * len(ranks))
    flags = extras.get("flags", {})
    db.add_all(CompletionRating(judgment_id=judgment.id, completion_id=cid, rank=rank, likert=likert[i],
                                flags=flags.get(i, []), note=f"note {n}.{i}")
               for i, (cid, rank) in enumerate(zip(completion_ids, ranks)))
    db.add_all(Comparison(judgment_id=judgment.id, task_id=task.id, chosen_id=chosen, rejected_id=rejected,
                          margin=margin, is_tie=tie)
               for chosen, rejected, margin, tie in expand_pairs(dict(zip(completion_ids, ranks))))
    task.labels_done += 1
    db.flush()
    return judgment


def plant(db: Session) -> Planted:
    admin = make_admin(db)
    labelers = [make_user(db, Role.labeler) for _ in range(3)]
    project = make_project(db, admin, k=3, labels_per_task=3, allow_ties=True, labeler_ids=[u.id for u in labelers])
    versions = [ModelVersion(role=ModelRole.policy, name=f"policy-{i}", source=f"s{i}", config={}, metrics={})
                for i in range(2)]
    db.add_all(versions)
    db.flush()
    planted = Planted(admin, labelers, project, versions, [], [], [])
    n = 0
    for t, (content, user, version, plan) in enumerate(PLAN):
        chat = "messages" in content
        text = ("\n\n".join(f"{m['role']}: {m['content']}" for m in content["messages"]) if chat
                else content["prompt"])
        prompt = Prompt(project_id=project.id, kind="chat" if chat else "text", text=text,
                        messages=content.get("messages"), content_hash=f"hash-{t}", source_user=user, meta={})
        db.add(prompt)
        db.flush()
        task = Task(project_id=project.id, prompt_id=prompt.id, labels_needed=3, labels_done=0)
        db.add(task)
        db.flush()
        row = []
        for position in range(3):
            completion = Completion(prompt_id=prompt.id, model_version_id=versions[version].id,
                                    text=f"answer {t}.{position} \"quoted\" ü", text_hash=f"{t}.{position}",
                                    token_count=4, finish_reason="stop", sampling_params={}, seed=position)
            db.add(completion)
            db.flush()
            db.add(TaskCompletion(task_id=task.id, completion_id=completion.id, position=position))
            row.append(completion)
        db.flush()
        for labeler, ranks, extras in plan:
            planted.judgments.append(judge(db, task, labelers[labeler], [c.id for c in row], ranks, extras, n))
            n += 1
        planted.prompts.append(prompt)
        planted.tasks.append(task)
        planted.completions.append(row)
    db.commit()
    planted.admin_headers = bearer(make_token(db, admin, Scope.admin))
    planted.read_headers = bearer(make_token(db, admin, Scope.read))
    planted.labeler_headers = bearer(make_token(db, labelers[0], Scope.label))
    return planted
