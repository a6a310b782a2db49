"""Review pages: the project dashboard with its charts, the review queue, a task's judgments, and their forms."""

from datetime import date
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response
from markupsafe import Markup

from app.deps import AdminUser, FormDep, SessionDep, SettingsDep
from app.errors import Invalid
from app.jobs.service import recent_jobs
from app.pages import render
from app.plots import Bar, Point, Series, histogram, interval_bars, line_chart, scatter
from app.projects.schemas import ProjectUpdate
from app.projects.service import get_project, update_project
from app.review import actions, gold, queue, service
from app.review.routes import admin_task

pages = APIRouter(include_in_schema=False)
TABLE_TASKS = 20  # lowest-agreement tasks listed on the dashboard


def _day_labels(days: list[str]):
    labels = [date.fromisoformat(d).strftime("%b %d") for d in days]
    return lambda v: labels[int(v)] if v == int(v) and 0 <= v < len(labels) else ""


def dashboard_charts(figures: dict[str, Any], all_tasks: list[dict[str, Any]]) -> dict[str, Markup]:
    """The dashboard's pictures, drawn from the same numbers the agreement API returns."""
    days = [row["day"] for row in figures["throughput"]]
    periods = [row["period"] for row in figures["over_time"]]

    def over_time(key: str) -> list[tuple[int, float]]:
        return [(i, row[key]) for i, row in enumerate(figures["over_time"]) if row[key] is not None]

    return {
        "throughput": line_chart([Series("judgments", [(i, row["judgments"])
                                                       for i, row in enumerate(figures["throughput"])])],
                                 title="Judgments per day", x_label="day", y_label="judgments",
                                 x_format=_day_labels(days), y_range=(0, 1)),
        "over_time": line_chart([Series("alpha on ranks", over_time("alpha_ranks")),
                                 Series("alpha on Likert", over_time("alpha_likert")),
                                 Series("mean tau-b", over_time("mean_tau_b"))],
                                title="Agreement of the tasks completed each period", x_label="completed",
                                y_label="agreement (1 = perfect, 0 = chance)", x_format=_day_labels(periods),
                                y_range=(0, 1), empty="Needs tasks with 2 or more judgments"),
        "histogram": histogram([t["agreement"]["mean_tau_b"] for t in all_tasks
                                if t["agreement"]["mean_tau_b"] is not None],
                               title="Tasks by agreement", x_label="mean Kendall tau-b between labelers (-1 .. 1)",
                               y_label="tasks", bins=10, value_range=(-1.0, 1.0),
                               empty="Needs tasks with 2 or more judgments"),
        "scatter": scatter([Point(row["median_seconds"], row["agreement"], row["username"], row["outlier"])
                            for row in figures["labelers"]
                            if row["median_seconds"] is not None and row["agreement"] is not None],
                           title="Labelers: agreement vs speed (red: outlier)", x_label="median seconds per task",
                           y_label="agreement with the others (tau-b)", empty="Needs labelers who share tasks"),
        "leaderboard": interval_bars([Bar(row["name"], row["rating"], row["rating_low"], row["rating_high"])
                                      for row in figures["leaderboard"]],
                                     title="Model versions (95% intervals)", x_label="rating (1000 = average version)",
                                     baseline=1000, empty="Needs tasks with completions from 2 or more versions"),
    }


@pages.get("/projects/{project_id}/review")
def dashboard_page(project_id: int, request: Request, session: SessionDep, admin: AdminUser) -> Response:
    project = get_project(session=session, project_id=project_id, user=admin)
    figures = service.project_agreement(session=session, project=project, task_limit=10**9)
    return render(request, "review/dashboard.html", {
        "project": project, "figures": figures, "tasks": figures["tasks"][:TABLE_TASKS],
        "charts": dashboard_charts(figures, figures["tasks"]),
        "jobs": recent_jobs(session=session, project_id=project.id),
    })


@pages.get("/projects/{project_id}/review/queue")
def queue_page(project_id: int, request: Request, session: SessionDep, admin: AdminUser, settings: SettingsDep,
               threshold: float | None = None) -> Response:
    project = get_project(session=session, project_id=project_id, user=admin)
    if threshold is not None and not -1 <= threshold <= 1:
        raise Invalid("threshold must be between -1 and 1", code="invalid_threshold")
    limit = settings.review_min_agreement if threshold is None else threshold
    return render(request, "review/queue.html", {
        "project": project, "queue": queue.review_queue(session=session, project=project, threshold=limit)})


@pages.get("/tasks/{task_id}/review")
def task_page(task_id: int, request: Request, session: SessionDep, admin: AdminUser) -> Response:
    task = admin_task(session, admin, task_id)
    project = get_project(session=session, project_id=task.project_id, user=admin)
    return render(request, "review/task.html", {
        "project": project, "review": queue.task_review(session=session, task=task, project=project)})


def _text(form: FormDep, name: str, limit: int = 2000) -> str:
    value = form.get(name, "")
    if not isinstance(value, str) or len(value) > limit:
        raise Invalid(f"{name} must be text of at most {limit} characters", code="invalid_form")
    return value.strip()


def _number(form: FormDep, name: str, low: float, high: float, kind=int) -> Any:
    try:
        value = kind(_text(form, name, 50))
    except ValueError:
        value = None
    if value is None or not low <= value <= high:
        raise Invalid(f"{name} must be a number from {low:g} to {high:g}", code="invalid_form")
    return value


def _back(path: str) -> RedirectResponse:
    return RedirectResponse(path, status_code=303)


@pages.post("/judgments/{judgment_id}/review/exclude")
def exclude_judgment_submit(judgment_id: int, session: SessionDep, admin: AdminUser, form: FormDep) -> Response:
    judgment = actions.get_judgment(session=session, judgment_id=judgment_id)
    admin_task(session, admin, judgment.task_id)
    actions.exclude_judgment(session=session, judgment=judgment, reason=_text(form, "reason"))
    session.commit()
    return _back(f"/tasks/{judgment.task_id}/review")


@pages.post("/judgments/{judgment_id}/review/include")
def include_judgment_submit(judgment_id: int, session: SessionDep, admin: AdminUser) -> Response:
    judgment = actions.get_judgment(session=session, judgment_id=judgment_id)
    admin_task(session, admin, judgment.task_id)
    actions.include_judgment(session=session, judgment=judgment)
    session.commit()
    return _back(f"/tasks/{judgment.task_id}/review")


def _after_labeler_action(project_id: int, form: FormDep) -> str:
    # Back to the page the form was on: a task's review or the dashboard's labeler table.
    task_id = _text(form, "task_id", 20)
    return f"/tasks/{task_id}/review" if task_id.isdecimal() else f"/projects/{project_id}/review#labelers"


@pages.post("/projects/{project_id}/review/labelers/{user_id}/exclude")
def exclude_labeler_submit(project_id: int, user_id: int, session: SessionDep, admin: AdminUser,
                           form: FormDep) -> Response:
    project = get_project(session=session, project_id=project_id, user=admin)
    labeler = actions.get_user(session=session, user_id=user_id)
    actions.exclude_labeler(session=session, project=project, labeler=labeler, reason=_text(form, "reason"),
                            admin=admin)
    session.commit()
    return _back(_after_labeler_action(project.id, form))


@pages.post("/projects/{project_id}/review/labelers/{user_id}/include")
def include_labeler_submit(project_id: int, user_id: int, session: SessionDep, admin: AdminUser,
                           form: FormDep) -> Response:
    project = get_project(session=session, project_id=project_id, user=admin)
    actions.include_labeler(session=session, project=project, labeler=actions.get_user(session=session, user_id=user_id))
    session.commit()
    return _back(_after_labeler_action(project.id, form))


@pages.post("/tasks/{task_id}/review/reopen")
def reopen_submit(task_id: int, session: SessionDep, admin: AdminUser, form: FormDep) -> Response:
    task = admin_task(session, admin, task_id)
    actions.reopen_task(session=session, task=task, extra_labels=_number(form, "extra_labels", 1, 20))
    session.commit()
    return _back(f"/tasks/{task.id}/review")


@pages.post("/tasks/{task_id}/review/gold")
def gold_submit(task_id: int, session: SessionDep, admin: AdminUser, form: FormDep) -> Response:
    task = admin_task(session, admin, task_id)
    project = get_project(session=session, project_id=task.project_id, user=admin)
    ranks = {key.removeprefix("rank-"): _number(form, key, 1, project.k) for key in form if key.startswith("rank-")}
    gold.set_gold(session=session, task=task, project=project, ranks=ranks)
    session.commit()
    return _back(f"/tasks/{task.id}/review")


@pages.post("/tasks/{task_id}/review/gold/clear")
def gold_clear_submit(task_id: int, session: SessionDep, admin: AdminUser) -> Response:
    task = admin_task(session, admin, task_id)
    gold.clear_gold(session=session, task=task)
    session.commit()
    return _back(f"/tasks/{task.id}/review")


@pages.post("/projects/{project_id}/review/gold-rate")
def gold_rate_submit(project_id: int, session: SessionDep, admin: AdminUser, form: FormDep) -> Response:
    project = get_project(session=session, project_id=project_id, user=admin)
    rate = _number(form, "gold_rate", 0, 100, float) / 100  # the form asks for a percentage
    update_project(session=session, project=project, data=ProjectUpdate(gold_rate=rate))
    session.commit()
    return _back(f"/projects/{project.id}/review#gold")
