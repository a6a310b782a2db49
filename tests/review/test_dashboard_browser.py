"""The review dashboard and a task's review in a real browser (headless Debian Chromium via Playwright)."""

import random

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.labeling.models import Judgment
from app.labeling.schemas import RatingIn
from app.users.models import Role
from tests.factories import make_admin, make_project, make_user
from tests.labeling.test_label_page import artifact, browser, log_in, served  # noqa: F401  (fixtures)
from tests.review.helpers import by_position, label, make_tasks, make_versions


def test_admin_reviews_in_the_browser(browser, served):  # noqa: F811
    from playwright.sync_api import expect

    url, engine = served
    rng = random.Random(3)
    with Session(engine) as db:
        admin = make_admin(db, username="boss")
        users = [make_user(db, Role.labeler, username=n) for n in ("ann", "bob", "cid", "dee", "eve")]
        project = make_project(db, admin, name="Dashboard demo", k=3, labels_per_task=3,
                               labeler_ids=[u.id for u in users])
        make_tasks(db, project, n=15, versions=make_versions(db, "policy v1", "policy v2"))
        for _round in range(9):
            for user in users:
                careful = by_position(2, 1, 3) if rng.random() < 0.8 else by_position(1, 2, 3)
                sloppy = by_position(*rng.sample([1, 2, 3], 3))
                label(db, project, user, sloppy if user.username == "eve" else careful,
                      duration_ms=rng.randint(8_000, 90_000) // (3 if user.username == "eve" else 1),
                      ratings=lambda c, r: RatingIn(likert=8 - 2 * r + rng.choice([-1, 0, 0, 1])))
        project_id = project.id
        judgment = db.scalar(select(Judgment).where(Judgment.user_id == users[4].id).order_by(Judgment.id))
        judgment_id, task_id = judgment.id, judgment.task_id

    page = browser.new_page(viewport={"width": 1300, "height": 1000})
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)  # CSP violations land here
    log_in(page, url, "boss")
    page.goto(f"{url}/projects/{project_id}")
    page.click("#review-link")
    expect(page.locator("#chart-scatter svg circle.marked")).to_have_count(1)  # eve, the random labeler
    for chart in ("throughput", "over-time", "histogram", "scatter", "leaderboard"):
        box = page.locator(f"#chart-{chart} svg").bounding_box()
        assert box["width"] > 300 and box["height"] > 120, chart
    expect(page.locator("#leaderboard tbody tr").first).to_contain_text("policy v2")
    expect(page.locator('#labeler-table tr.outlier')).to_contain_text("eve")
    page.screenshot(path=str(artifact("dashboard.png")), full_page=True)

    page.goto(f"{url}/tasks/{task_id}/review")
    row = page.locator(f"#judgment-{judgment_id}")
    row.locator('.exclude-form input[name="reason"]').fill("random clicks")
    row.locator(".exclude-form button").click()
    expect(page.locator(f"#judgment-{judgment_id}")).to_have_class("row-muted excluded")
    expect(page.locator(f"#judgment-{judgment_id}")).to_contain_text("random clicks")
    page.screenshot(path=str(artifact("task_review.png")), full_page=True)
    assert errors == []
    with Session(engine) as db:
        assert db.get(Judgment, judgment_id).excluded
