"""Imports every domain's ORM models so Base.metadata holds the whole schema."""

from app.export.models import DatasetSnapshot, DatasetSnapshotChunk
from app.jobs.models import Job, JobMetric
from app.labeling.models import Assignment, Comparison, CompletionRating, Judgment, Task, TaskCompletion
from app.models.models import CompletionScore, ModelVersion
from app.projects.models import Project, ProjectMember
from app.prompts.models import Completion, Prompt
from app.review.models import LabelerExclusion
from app.users.models import ApiToken, LoginFailure, User

__all__ = [
    "ApiToken", "Assignment", "Comparison", "Completion", "CompletionRating", "CompletionScore", "DatasetSnapshot",
    "DatasetSnapshotChunk", "Job", "JobMetric", "Judgment", "LabelerExclusion", "LoginFailure", "ModelVersion", "Project",
    "ProjectMember", "Prompt", "Task",
    "TaskCompletion", "User",
]
