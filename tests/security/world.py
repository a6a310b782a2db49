"""A small labeled world for the security tests: two projects, their labelers, an admin, and one of everything."""

from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.db import Base, utcnow
from app.export.schemas import ExportOptions
from app.export.service import create_snapshot
from app.jobs.models import JobKind
from app.jobs.service import enqueue
from app.labeling.models import Assignment, Task, TaskCompletion
from app.prompts.models import Prompt
from app.users.models import ApiToken, Role, Scope, User
from app.users.service import revoke_token
from tests.factories import bearer, csrf_from, login, make_admin, make_project, make_token, make_user
from tests.review.helpers import by_position, label, make_tasks, make_versions

# Principals every route is tried as. Cookie ones log in through the form; token ones send only the token.
PRINCIPALS = ("anon", "member", "outsider", "admin", "read", "label", "admin_token", "admin_read", "revoked")


@dataclass
class World:
    ids: dict[str, int]
    tokens: dict[str, str]
    completions: dict[str, list[int]] = field(default_factory=dict)  # task name -> completion ids

    def ranks(self, task: str) -> dict[str, int]:
        """A valid ranking of a task's completions (best first by id)."""
        return {str(cid): i + 1 for i, cid in enumerate(self.completions[task])}


def _completion_ids(db: Session, task_id: int) -> list[int]:
    return list(db.scalars(select(TaskCompletion.completion_id).where(TaskCompletion.task_id == task_id)
                           .order_by(TaskCompletion.position)))


def _lease(db: Session, task: Task, user_id: int) -> int:
    assignment = Assignment(task_id=task.id, user_id=user_id, display_order=_completion_ids(db, task.id),
                            lease_expires_at=utcnow() + timedelta(hours=1))
    db.add(assignment)
    db.flush()
    return assignment.id


def build_world(db: Session, settings) -> World:
    """Project A (member labeler M) and project B (outsider labeler O), built by one admin.

    In A: one judged task (M's judgment), three tasks M holds leases on (for submit, heartbeat and skip),
    one open task, one prompt without a task (for a sample job), a queued job and a snapshot.
    B mirrors A with O, so cross-project access can be tried both ways.
    """
    admin = make_admin(db, username="root")
    member = make_user(db, Role.labeler, username="member")
    outsider = make_user(db, Role.labeler, username="outsider")
    versions = make_versions(db, "policy-a", "policy-b")
    ids: dict[str, int] = {"admin": admin.id, "member": member.id, "outsider": outsider.id, "model": versions[0].id}
    completions: dict[str, list[int]] = {}
    for name, labeler in (("a", member), ("b", outsider)):
        project = make_project(db, admin, name=f"project-{name}", k=3, labels_per_task=1,
                               labeler_ids=[labeler.id])
        project.current_policy_id = versions[0].id
        tasks = make_tasks(db, project, n=5, versions=versions)
        judgment = label(db, project, labeler, by_position(1, 2, 3), rationale=f"rationale {name}")
        held = [t for t in tasks if t.id != judgment.task_id][:3]
        ids.update({f"project_{name}": project.id, f"task_{name}": judgment.task_id, f"judgment_{name}": judgment.id,
                    f"prompt_{name}": db.get(Task, judgment.task_id).prompt_id,
                    f"lease_submit_{name}": _lease(db, held[0], labeler.id),
                    f"lease_heartbeat_{name}": _lease(db, held[1], labeler.id),
                    f"lease_skip_{name}": _lease(db, held[2], labeler.id)})
        completions[f"task_{name}"] = _completion_ids(db, judgment.task_id)
        completions[f"lease_submit_{name}"] = _completion_ids(db, held[0].id)
        db.add(Prompt(project_id=project.id, kind="text", text=f"unsampled {name}", content_hash=f"u-{name}",
                      meta={}))
        ids[f"job_{name}"] = enqueue(session=db, kind=JobKind.sample, payload={"count": 1},
                                     project_id=project.id).id
        ids[f"snapshot_{name}"] = create_snapshot(session=db, project=project, options=ExportOptions(),
                                                  created_by_id=admin.id, settings=settings).id
        db.commit()
    tokens = {
        "read": make_token(db, member, Scope.read), "label": make_token(db, member, Scope.label),
        "admin_token": make_token(db, admin, Scope.admin), "admin_read": make_token(db, admin, Scope.read),
        "revoked": make_token(db, member, Scope.label), "spare": make_token(db, member, Scope.read),
    }
    by_hash = {t.prefix: t for t in db.scalars(select(ApiToken))}
    revoke_token(session=db, user=member, token_id=by_hash[tokens["revoked"][:12]].id)
    ids["token"] = by_hash[tokens["spare"][:12]].id
    db.commit()
    return World(ids=ids, tokens=tokens, completions=completions)


def principal_headers(client: TestClient, db: Session, world: World, principal: str) -> dict[str, str]:
    """Make `client` act as the principal; returns the headers to send (a token, or the CSRF token)."""
    if principal in ("member", "outsider", "admin"):
        return {"X-CSRF-Token": login(client, db.get(User, world.ids[principal]))}
    if principal == "anon":
        return {"X-CSRF-Token": csrf_from(client.get("/login").text)}
    return bearer(world.tokens[principal])


# Columns a denied request may still change, by design: a token's last use is recorded (once a minute)
# whatever the request's outcome, and failed logins are counted for the rate limit.
VOLATILE = {("api_token", "last_used_at")}
UNCOMPARED_TABLES = {"login_failure"}


def dump(db: Session) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table, in primary-key order (what a denied request must leave alone)."""
    db.rollback()  # a new snapshot: see what the app committed
    tables: dict[str, list[tuple[Any, ...]]] = {}
    for table in Base.metadata.sorted_tables:
        if table.name in UNCOMPARED_TABLES:
            continue
        columns = [c for c in table.columns if (table.name, c.name) not in VOLATILE]
        order = list(table.primary_key.columns) or columns
        tables[table.name] = [tuple(r) for r in db.execute(select(*columns).order_by(*order))]
    return tables
