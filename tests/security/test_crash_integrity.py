"""integrity_report(), which the crash tests and bench/labeling_load.py rely on, finds each kind of damage."""

from sqlalchemy import delete, select

from app.labeling.models import Assignment, AssignmentState, Comparison, CompletionRating
from app.labeling.service import integrity_report
from tests.export.planted import plant

CLEAN = {"half_written": 0, "counter_mismatch": 0, "over_collected": 0, "duplicated": 0}


def test_integrity_report_counts_each_kind_of_damage(db):
    planted, other = plant(db), plant(db)
    assert integrity_report(session=db, project_id=planted.project.id) == {"judgments": 9, **CLEAN}
    assert integrity_report(session=db) == {"judgments": 18, **CLEAN}

    first, second, third = planted.judgments[:3]
    db.execute(delete(CompletionRating).where(CompletionRating.id == db.scalar(
        select(CompletionRating.id).where(CompletionRating.judgment_id == first.id).limit(1))))
    db.execute(delete(Comparison).where(Comparison.id == db.scalar(
        select(Comparison.id).where(Comparison.judgment_id == second.id).limit(1))))
    db.get(Assignment, third.assignment_id).state = AssignmentState.leased
    planted.tasks[2].labels_done += 1          # one judgment, counted twice
    planted.tasks[0].labels_needed = 2         # three judgments where two were needed
    other.tasks[1].labels_needed = 1           # a gold task may take more: not over-collected
    other.tasks[1].gold_ranks = {str(c.id): 1 for c in other.completions[1]}
    db.flush()

    assert integrity_report(session=db, project_id=planted.project.id) == {
        "judgments": 9, "half_written": 3, "counter_mismatch": 1, "over_collected": 1, "duplicated": 0}
    assert integrity_report(session=db, project_id=other.project.id) == {"judgments": 9, **CLEAN}
