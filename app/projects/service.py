"""Creating, changing and finding projects; who may see them."""

from sqlalchemy import and_, bindparam, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app.db import MAX_ROW_ID, get_by_id
from app.errors import Conflict, Invalid, NotFound
from app.labeling.models import Judgment, Task
from app.models.models import ModelRole, ModelVersion
from app.models.service import default_policy
from app.projects.models import Project, ProjectMember
from app.projects.schemas import ProjectCreate, ProjectRead, ProjectUpdate
from app.prompts.models import Prompt
from app.users.models import Caller, Role, User


def _check_name_free(session: Session, name: str, project_id: int | None = None) -> None:
    query = select(Project.id).where(func.lower(Project.name) == name.lower())
    if project_id is not None:
        query = query.where(Project.id != project_id)
    if session.scalar(query) is not None:
        raise Conflict(f"a project named {name!r} already exists", code="project_name_taken")


def _set_labelers(session: Session, project: Project, labeler_ids: list[int]) -> None:
    wanted = set(labeler_ids)
    valid = {uid for uid in wanted if 0 < uid <= MAX_ROW_ID}
    found = dict(session.execute(select(User.id, User.role).where(User.id.in_(valid))).all()) if valid else {}
    unknown = sorted(wanted - found.keys())
    if unknown:
        raise Invalid(f"no user with id {', '.join(map(str, unknown))}", code="unknown_labeler")
    admins = sorted(uid for uid, role in found.items() if role != Role.labeler)
    if admins:
        raise Invalid(f"user {', '.join(map(str, admins))} is an admin; admins may work on every project "
                      "and are not added as labelers", code="not_a_labeler")
    current = {m.user_id: m for m in project.members}
    for uid in current.keys() - wanted:
        project.members.remove(current[uid])
    for uid in sorted(wanted - current.keys()):
        project.members.append(ProjectMember(user_id=uid))


def _check_best_of(session: Session, project: Project) -> None:
    """Best-of-N sampling needs N >= K and a reward model to rank the N."""
    best_of, reward_id = project.sampling_params.get("best_of"), project.sampling_params.get("reward_model_id")
    if best_of is None:
        return
    if best_of < project.k:
        raise Invalid(f"sampling_params.best_of ({best_of}) must be at least K ({project.k})", code="invalid_best_of")
    reward = get_by_id(session, ModelVersion, reward_id)
    if reward is None or reward.role != ModelRole.reward:
        raise Invalid(f"sampling_params.reward_model_id: {reward_id} is not a registered reward model",
                      code="not_a_reward_model")


def create_project(*, session: Session, data: ProjectCreate, creator: User) -> Project:
    """A new project; its name must be unused."""
    _check_name_free(session, data.name)
    project = Project(
        name=data.name, description=data.description, k=data.k, labels_per_task=data.labels_per_task,
        allow_ties=data.allow_ties, rating_schema=data.rating_schema.model_dump(),
        guidelines=data.guidelines, sampling_params=data.sampling_params.model_dump(),
        near_duplicate_prefix=data.near_duplicate_prefix, gold_rate=data.gold_rate, created_by_id=creator.id,
        members=[],
    )
    policy = default_policy(session=session)
    project.current_policy_id = policy.id if policy else None
    _check_best_of(session, project)
    _set_labelers(session, project, data.labeler_ids)
    try:
        with session.begin_nested():
            session.add(project)
    except IntegrityError:
        raise Conflict(f"a project named {data.name!r} was created at the same moment", code="project_name_taken") from None
    return project


def update_project(*, session: Session, project: Project, data: ProjectUpdate) -> Project:
    """Change the fields given; K is fixed once tasks exist (their completions are sampled)."""
    fields = data.model_fields_set
    if "name" in fields and data.name is not None:
        name = data.name.strip()
        if not name:
            raise Invalid("name must not be blank", code="invalid_name")
        _check_name_free(session, name, project.id)
        project.name = name
    if "k" in fields and data.k != project.k and _task_count(session, project) > 0:
        raise Conflict(f"K cannot change from {project.k} to {data.k}: the project already has tasks of "
                       f"{project.k} completions; create a new project instead", code="k_locked")
    for name in ("description", "guidelines", "near_duplicate_prefix", "k", "labels_per_task", "allow_ties",
                 "gold_rate"):
        if name in fields:
            setattr(project, name, getattr(data, name))
    if "rating_schema" in fields and data.rating_schema is not None:
        project.rating_schema = data.rating_schema.model_dump()
    if "sampling_params" in fields and data.sampling_params is not None:
        project.sampling_params = data.sampling_params.model_dump()
    _check_best_of(session, project)
    if "labeler_ids" in fields and data.labeler_ids is not None:
        _set_labelers(session, project, data.labeler_ids)
    session.flush()
    return project


def can_access(session: Session, user: User, project: Project) -> bool:
    # One indexed lookup: every labeling request asks, so the member list is not loaded for it.
    return user.is_admin or session.get(ProjectMember, (project.id, user.id)) is not None


# With the membership in the same query, built once (building it cost more than running it): every
# labeling request asks.
_VISIBLE = (select(Project, ProjectMember.user_id)
            .outerjoin(ProjectMember, and_(ProjectMember.project_id == Project.id,
                                           ProjectMember.user_id == bindparam("user_id")))
            .where(Project.id == bindparam("project_id")))


def get_project(*, session: Session, project_id: int, user: User) -> Project:
    """The project, if this user may see it; others' projects look like missing ones."""
    row = None
    if 0 < project_id <= MAX_ROW_ID:
        row = session.execute(_VISIBLE, {"user_id": user.id, "project_id": project_id}).one_or_none()
    if row is None or not may_see(user, row[1]):
        raise project_not_found(project_id)
    return row[0]


def may_see(user: User | Caller, member_id: int | None) -> bool:
    """Whether the user sees a project: admins see every one, labelers those they are members of
    (`member_id`: the user's membership row, None without one)."""
    return user.is_admin or member_id is not None


def project_not_found(project_id: int) -> NotFound:
    """What a missing project, or another's, answers: the two look the same."""
    return NotFound(f"project {project_id} not found", code="project_not_found")


def find_project(*, session: Session, ref: str) -> Project:
    """A project by id or by name (for the command line)."""
    project = get_by_id(session, Project, int(ref)) if ref.isdecimal() else None
    if project is None:
        project = session.scalar(select(Project).where(func.lower(Project.name) == ref.lower()))
    if project is None:
        raise NotFound(f"no project with id or name {ref!r}", code="project_not_found")
    return project


def list_projects(*, session: Session, user: User, before_id: int | None = None,
                  limit: int | None = None) -> list[Project]:
    """The projects this user may see, newest first (older than `before_id` when given)."""
    query = select(Project).order_by(Project.id.desc()).limit(limit)
    if not user.is_admin:
        query = query.join(ProjectMember).where(ProjectMember.user_id == user.id)
    if before_id is not None:
        query = query.where(Project.id < before_id)
    return list(session.scalars(query))


def _task_count(session: Session, project: Project) -> int:
    return session.scalar(select(func.count()).select_from(Task).where(Task.project_id == project.id)) or 0


def prompt_counts(*, session: Session, project_ids: list[int]) -> dict[int, int]:
    if not project_ids:
        return {}
    rows = session.execute(
        select(Prompt.project_id, func.count()).where(Prompt.project_id.in_(project_ids)).group_by(Prompt.project_id)
    )
    return {pid: 0 for pid in project_ids} | dict(rows.all())


def project_stats(*, session: Session, project: Project) -> dict[str, int]:
    judgments = session.scalar(
        select(func.count()).select_from(Judgment).join(Task, Task.id == Judgment.task_id)
        .where(Task.project_id == project.id)
    ) or 0
    return {
        "prompts": prompt_counts(session=session, project_ids=[project.id])[project.id],
        "tasks": _task_count(session, project),
        "judgments": judgments,
    }


def members(*, session: Session, project: Project) -> list[User]:
    return list(session.scalars(
        select(User).join(ProjectMember, ProjectMember.user_id == User.id)
        .where(ProjectMember.project_id == project.id).order_by(User.username)
    ))


def to_read(project: Project, prompt_count: int) -> ProjectRead:
    return ProjectRead.model_validate({
        **{c: getattr(project, c) for c in (
            "id", "name", "description", "k", "labels_per_task", "allow_ties", "rating_schema",
            "sampling_params", "guidelines", "near_duplicate_prefix", "current_policy_id", "gold_rate",
            "created_at")},
        "labeler_ids": sorted(m.user_id for m in project.members),
        "prompt_count": prompt_count,
    })
