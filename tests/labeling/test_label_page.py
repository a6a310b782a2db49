"""The labeling page in a real browser (headless Debian Chromium driven by Playwright)."""

import os
import shutil
import socket
import threading
import time
from pathlib import Path

import pytest
import uvicorn
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.config import Settings
from app.db import make_engine
from app.labeling.models import Comparison, CompletionRating, Judgment
from app.main import create_app
from app.users.models import Role
from tests.factories import PASSWORD, make_admin, make_project, make_user
from tests.labeling.test_judgments import make_tasks

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--no-first-run", "--disable-sync"]


@pytest.fixture
def browser():
    if CHROMIUM is None:
        message = "Chromium is not installed (scripts/install.sh --dev installs it on Debian)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield browser
        browser.close()


@pytest.fixture
def served(tmp_path, sqlite_template):
    """Preflab on a free loopback port, on its own SQLite database."""
    db_path = tmp_path / "browser.db"
    shutil.copy(sqlite_template, db_path)
    settings = Settings(data_dir=tmp_path, database_url=f"sqlite:///{db_path}", secret_key="b" * 40)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(create_app(settings), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.02)
    engine = make_engine(settings.sqlalchemy_url)
    yield f"http://127.0.0.1:{port}", engine
    server.should_exit = True
    thread.join(timeout=10)
    engine.dispose()


def log_in(page, url: str, username: str) -> None:
    """Through the login form, as a labeler would."""
    page.goto(f"{url}/login")
    page.fill("#login-username", username)
    page.fill("#login-password", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(f"{url}/")


def test_labeler_ranks_by_drag_and_by_keyboard(browser, served):
    from playwright.sync_api import expect

    url, engine = served
    with Session(engine) as db:
        admin = make_admin(db)
        labeler = make_user(db, Role.labeler, username="lena")
        project = make_project(db, admin, k=3, labels_per_task=1, allow_ties=True, labeler_ids=[labeler.id],
                               guidelines="Prefer **short** answers. <script>alert(1)</script>")
        make_tasks(db, project, n=2, k=3)
        project_id = project.id
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    log_in(page, url, "lena")
    page.goto(f"{url}/projects/{project_id}")
    page.click("#start-labeling")
    page.wait_for_selector("#task:not(.hidden)")
    assert page.locator("#guidelines-panel script").count() == 0  # guidelines' HTML shown as text

    # Task 1, with the mouse: drag the completions into the ranking, C first, then A, then B.
    letters = {c.inner_text().split(" ")[0]: int(c.get_attribute("data-id"))
               for c in page.locator("#completions article").all()}
    ranking = page.locator("#ranking")
    for name in ("C", "A", "B"):  # dropped on the list's free space at the bottom: placed last
        height = ranking.bounding_box()["height"]
        page.locator(f'#unranked li[data-id="{letters[name]}"]').drag_to(ranking, target_position={"x": 4, "y": height - 4})
    # Then B dragged onto A's place and back again: dropping on an item puts it before that item.
    page.locator(f'#ranking li[data-id="{letters["B"]}"]').drag_to(page.locator(f'#ranking li[data-id="{letters["A"]}"]'))
    page.locator(f'#ranking li[data-id="{letters["A"]}"]').drag_to(page.locator(f'#ranking li[data-id="{letters["B"]}"]'))
    assert page.locator("#ranking li").count() == 3
    page.locator(f'input[name="likert-{letters["C"]}"][value="6"]').check()
    page.locator(f'input[name="flag-{letters["B"]}"][value="hallucination"]').check()
    page.fill("#rationale", "C answers the question")
    page.screenshot(path=str(artifact("label_page.png")), full_page=True)
    page.click("#submit", click_count=2)  # a double click must store one judgment
    page.wait_for_selector("#status:not(.hidden)")
    expect(page.locator("#my-count")).to_have_text("1")

    # Task 2, keyboard only: 2, 3, 1 places B, C, A; T ties A with C; Ctrl+Enter submits.
    page.wait_for_selector("#unranked li")
    second = [int(c.get_attribute("data-id")) for c in page.locator("#completions article").all()]
    for key in ("2", "3", "1", "t"):
        page.keyboard.press(key)
    page.keyboard.press("Control+Enter")
    expect(page.locator("#my-count")).to_have_text("2")
    page.wait_for_selector("#empty:not(.hidden)")

    # Reopen the first judgment and revise it: A moves to the top (select A, up), so A, C, B.
    page.reload()
    page.locator("#recent a").last.click()
    page.wait_for_selector("#task:not(.hidden)")
    expect(page.locator("#rationale")).to_have_value("C answers the question")
    expect(page.locator("#ranking li")).to_have_count(3)
    a_key = str(list(letters).index("A") + 1)
    for key in (a_key, "ArrowUp"):
        page.keyboard.press(key)
    page.keyboard.press("Control+Enter")
    expect(page.locator("#status")).to_contain_text("revision 2")
    expect(page.locator("#my-count")).to_have_text("2")
    assert errors == []

    with Session(engine) as db:
        first, last = list(db.scalars(select(Judgment).order_by(Judgment.id)))
        assert first.rationale == "C answers the question"
        ranks = {r.completion_id: r for r in db.scalars(select(CompletionRating).where(CompletionRating.judgment_id == first.id))}
        assert [ranks[letters[n]].rank for n in "ACB"] == [1, 2, 3]
        assert ranks[letters["C"]].likert == 6 and ranks[letters["B"]].flags == ["hallucination"]
        pairs = {(c.chosen_id, c.rejected_id, c.margin, c.is_tie)
                 for c in db.scalars(select(Comparison).where(Comparison.judgment_id == first.id))}
        assert first.revision == 2  # revised: A, C, B
        assert pairs == {(letters["A"], letters["C"], 1, False), (letters["A"], letters["B"], 2, False),
                         (letters["C"], letters["B"], 1, False)}
        assert ranks[letters["C"]].likert == 6  # the ratings came back with the reopened judgment
        b, c, a = second[1], second[2], second[0]
        tied = {(x.chosen_id, x.rejected_id, x.margin, x.is_tie)
                for x in db.scalars(select(Comparison).where(Comparison.judgment_id == last.id))}
        assert tied == {(b, c, 1, False), (b, a, 1, False), (min(a, c), max(a, c), 0, True)}
        assert db.scalar(select(Judgment.duration_ms).where(Judgment.id == last.id)) > 0


def artifact(name: str) -> Path:
    """Where CI artifacts (screenshots) go: artifacts/ in the checkout."""
    folder = ROOT / "artifacts"
    folder.mkdir(exist_ok=True)
    return folder / name


def test_two_completions_are_an_a_b_choice(browser, served):
    from playwright.sync_api import expect

    url, engine = served
    with Session(engine) as db:
        admin = make_admin(db)
        labeler = make_user(db, Role.labeler, username="abe")
        project = make_project(db, admin, k=2, labels_per_task=1, allow_ties=True, labeler_ids=[labeler.id])
        make_tasks(db, project, n=2, k=2)
        project_id = project.id
    page = browser.new_page()
    log_in(page, url, "abe")
    page.goto(f"{url}/projects/{project_id}/label")
    page.wait_for_selector("#ab-buttons:not(.hidden)")
    first = [int(c.get_attribute("data-id")) for c in page.locator("#completions article").all()]
    page.click('[data-ab="B"]')
    page.click("#submit")
    expect(page.locator("#my-count")).to_have_text("1")
    page.wait_for_selector("#unranked li")
    second = [int(c.get_attribute("data-id")) for c in page.locator("#completions article").all()]
    page.click('[data-ab="bad"]')
    expect(page.locator("#none-acceptable")).to_be_checked()
    page.click("#submit")
    expect(page.locator("#my-count")).to_have_text("2")
    with Session(engine) as db:
        b_wins, both_bad = list(db.scalars(select(Judgment).order_by(Judgment.id)))
        [pair] = db.scalars(select(Comparison).where(Comparison.judgment_id == b_wins.id))
        assert (pair.chosen_id, pair.rejected_id, pair.is_tie) == (first[1], first[0], False)
        [tie] = db.scalars(select(Comparison).where(Comparison.judgment_id == both_bad.id))
        assert tie.is_tie and {tie.chosen_id, tie.rejected_id} == set(second) and both_bad.none_acceptable
