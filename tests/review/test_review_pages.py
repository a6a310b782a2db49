"""Review pages render the API's numbers (parsed HTML), and their forms act with CSRF, admins only."""

import random

import pytest
from bs4 import BeautifulSoup
from sqlalchemy import select

from app.labeling.models import Judgment, Task
from app.labeling.schemas import RatingIn
from app.users.models import Role
from tests.factories import login, make_project, make_user
from tests.review.helpers import by_position, label, make_tasks, make_versions


def page(client, path: str) -> BeautifulSoup:
    response = client.get(path)
    assert response.status_code == 200, response.text
    return BeautifulSoup(response.text, "html.parser")


@pytest.fixture
def reviewed(db, admin):
    """Two model versions, three labelers, one of whom disagrees; a harmful flag and a report."""
    users = [make_user(db, Role.labeler, username=n) for n in ("ann", "bob", "cid")]
    project = make_project(db, admin, k=3, labels_per_task=3, labeler_ids=[u.id for u in users])
    make_tasks(db, project, n=4, versions=make_versions(db, "old", "new <v2>"))
    rng = random.Random(0)
    plans = {"ann": by_position(2, 1, 3), "bob": by_position(2, 1, 3), "cid": by_position(1, 2, 3)}
    for user in users:
        for n in range(4):
            label(db, project, user, plans[user.username], duration_ms=rng.randint(5_000, 60_000),
                  ratings=lambda c, r: RatingIn(likert=8 - 2 * r, flags=["violent_content"] if r == 3 else []),
                  prompt_flags=["reported"] if (user.username, n) == ("ann", 0) else [])
    return project, users


def test_dashboard_shows_the_numbers_of_the_api(client, db, admin, admin_headers, reviewed):
    project, _users = reviewed
    figures = client.get(f"/api/v1/projects/{project.id}/agreement", headers=admin_headers).json()
    login(client, admin)
    soup = page(client, f"/projects/{project.id}/review")
    progress = figures["progress"]
    for element, key in (("stat-ready", "tasks_ready"), ("stat-done", "tasks_done"), ("stat-judgments", "judgments"),
                         ("stat-pairs", "pairs"), ("stat-prompts", "prompts")):
        assert soup.find(id=element).get_text() == str(progress[key])
    assert soup.find(id="alpha-ranks").get_text() == f"{figures['alpha']['ranks']:.2f}"
    rows = {tr.find("td").get_text(" ", strip=True).split(" ")[0]: tr for tr in soup.select("#labeler-table tbody tr")}
    assert set(rows) == {"ann", "bob", "cid"}
    for labeler in figures["labelers"]:
        cell = rows[labeler["username"]].select_one("td.agreement").get_text()
        assert cell == f"{labeler['agreement']:.2f}"
    leaderboard = [tr.find("td").get_text() for tr in soup.select("#leaderboard tbody tr")]
    # The version name is escaped text, not markup, in the table and in the chart.
    assert leaderboard == [v["name"] for v in figures["leaderboard"]] == ["new <v2>", "old"]
    assert "new <v2>" in {t.get_text() for t in soup.find(id="chart-leaderboard").find_all("text")}
    # Every chart is a real picture with a title and drawn marks.
    for chart, mark in (("chart-throughput", "circle"), ("chart-histogram", "rect.bin"), ("chart-scatter", "circle"),
                        ("chart-leaderboard", "path.interval"), ("chart-over-time", "circle")):
        svg = soup.find(id=chart).find("svg")
        assert svg["role"] == "img" and svg.find("title").get_text()
        assert svg.select(mark), chart
    bins = soup.find(id="chart-histogram").select("rect.bin")
    assert sum(int(b.find("title").get_text().rsplit(": ", 1)[1]) for b in bins) == figures["tasks_total"]
    scatter_labels = {t.get_text() for t in soup.find(id="chart-scatter").find_all("text")}
    assert {"ann", "bob", "cid"} <= scatter_labels


def test_queue_page_lists_what_needs_review(client, db, admin, reviewed):
    project, _ = reviewed
    login(client, admin)
    soup = page(client, f"/projects/{project.id}/review/queue?threshold=0.9")
    assert len(soup.select("#low-agreement tbody tr")) == 4  # cid disagrees on every task
    assert len(soup.select("#flagged tbody tr")) == 4  # rank 3 is flagged violent on every task
    assert "violent_content" in soup.select_one("#flagged tbody tr").get_text()
    assert len(soup.select("#reported tbody tr")) == 1
    bad = client.get(f"/projects/{project.id}/review/queue?threshold=7")
    assert bad.status_code == 422 and "threshold" in bad.text


def test_task_page_forms_exclude_reopen_and_set_gold(client, db, admin, reviewed):
    project, users = reviewed
    task_id = db.scalar(select(Task.id).where(Task.project_id == project.id).order_by(Task.id))
    csrf = login(client, admin)
    soup = page(client, f"/tasks/{task_id}/review")
    assert len(soup.select("#judgments tbody tr")) == 3 and len(soup.select("#completions article")) == 3
    judgment = db.scalar(select(Judgment).where(Judgment.task_id == task_id, Judgment.user_id == users[2].id))

    refused = client.post(f"/judgments/{judgment.id}/review/exclude", data={"reason": "x"}, follow_redirects=False)
    assert refused.status_code == 403  # no CSRF token
    done = client.post(f"/judgments/{judgment.id}/review/exclude", data={"reason": "backwards", "csrf_token": csrf},
                       follow_redirects=False)
    assert done.status_code == 303 and done.headers["location"] == f"/tasks/{task_id}/review"
    row = page(client, f"/tasks/{task_id}/review").find(id=f"judgment-{judgment.id}")
    assert "excluded" in row["class"] and "backwards" in row.get_text()

    client.post(f"/tasks/{task_id}/review/reopen", data={"extra_labels": "2", "csrf_token": csrf})
    ids = [int(a["data-id"]) for a in soup.select("#completions article")]
    client.post(f"/tasks/{task_id}/review/gold", data={**{f"rank-{cid}": str(n + 1) for n, cid in enumerate(ids)},
                                                       "csrf_token": csrf})
    db.expire_all()
    task = db.get(Task, task_id)
    assert (task.labels_needed, task.state) == (5, "open")
    assert task.gold_ranks == {str(cid): n + 1 for n, cid in enumerate(ids)}
    wrong = client.post(f"/tasks/{task_id}/review/gold", data={f"rank-{ids[0]}": "1", "csrf_token": csrf})
    assert wrong.status_code == 422
    assert "exactly the task's completions" in BeautifulSoup(wrong.text, "html.parser").get_text()

    client.post(f"/projects/{project.id}/review/gold-rate", data={"gold_rate": "10", "csrf_token": csrf})
    client.post(f"/projects/{project.id}/review/labelers/{users[1].id}/exclude", data={"reason": "", "csrf_token": csrf})
    db.expire_all()
    assert db.get(type(project), project.id).gold_rate == pytest.approx(0.1)
    assert all(j.excluded for j in db.scalars(select(Judgment).where(Judgment.user_id == users[1].id)))
    dashboard = page(client, f"/projects/{project.id}/review")
    assert "excluded" in dashboard.select_one(f'#labeler-table tr[data-user-id="{users[1].id}"]').get_text()


def test_labelers_cannot_open_review_pages(client, db, reviewed):
    project, users = reviewed
    login(client, users[0])
    for path in (f"/projects/{project.id}/review", f"/projects/{project.id}/review/queue",
                 f"/tasks/{project.id}/review"):
        assert client.get(path).status_code == 403
