"""Review state kept beside the labeling tables: labelers whose judgments are left out."""

from datetime import datetime

from sqlalchemy import ForeignKey, Text
from sqlalchemy.orm import Mapped, mapped_column

from app.db import Base, utcnow


class LabelerExclusion(Base):
    """A labeler whose judgments in a project, past and later, are kept but left out of figures,
    exports and training. A table of its own, not a project_member column: admins label without
    membership, and taking a labeler off the project must not forget the exclusion."""

    __tablename__ = "labeler_exclusion"

    project_id: Mapped[int] = mapped_column(ForeignKey("project.id", ondelete="CASCADE"), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("user.id", ondelete="CASCADE"), primary_key=True, index=True)
    reason: Mapped[str] = mapped_column(Text, default="")
    excluded_by_id: Mapped[int | None] = mapped_column(ForeignKey("user.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    @property
    def judgment_reason(self) -> str:
        return exclusion_reason(self.reason)


def exclusion_reason(reason: str | None) -> str:
    """What an excluded labeler's judgments carry as their excluded_reason."""
    return f"labeler excluded: {reason}" if reason else "labeler excluded"
