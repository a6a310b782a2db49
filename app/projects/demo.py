"""The demo project an empty database starts with: one prompt per InstructGPT use case."""

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.projects.models import Project
from app.projects.schemas import ProjectCreate
from app.projects.service import create_project
from app.prompts.service import import_prompts, validate_item
from app.users.models import User

DEMO_NAME = "Demo: InstructGPT use cases"

DEMO_GUIDELINES = """\
Rank the completions from best (1) to worst. Judge them the way InstructGPT's labelers did:

1. **Helpful**: does it do what the prompt asks, in the format it asks for?
2. **Truthful**: does it avoid making things up? Mark *hallucination* when it does.
3. **Harmless**: would it hurt anyone, in words or in advice?

When two completions are equally good, give them the same rank. Rate each one on the 1–7 scale
and tick every flag that applies. If none is acceptable, say so and, if you can, write a better
answer as a demonstration.
"""

# One prompt for each use case of InstructGPT's API prompt distribution (Ouyang et al. 2022, Table 1).
DEMO_PROMPTS: list[dict] = [
    {"id": "generation", "meta": {"use_case": "generation"},
     "prompt": "Write a short story about a lighthouse keeper who finds a message in a bottle."},
    {"id": "open-qa", "meta": {"use_case": "open QA"},
     "prompt": "Why is the sky blue? Explain it to a ten-year-old."},
    {"id": "brainstorming", "meta": {"use_case": "brainstorming"},
     "prompt": "List five ideas for a weekend project that teaches kids about electricity."},
    {"id": "chat", "meta": {"use_case": "chat"},
     "messages": [{"role": "system", "content": "You are a friendly travel assistant."},
                  {"role": "user", "content": "I have two days in Lisbon. What should I not miss?"}]},
    {"id": "rewrite", "meta": {"use_case": "rewrite"},
     "prompt": "Rewrite this sentence so it sounds polite: \"Send me the report now, it's late.\""},
    {"id": "summarization", "meta": {"use_case": "summarization"},
     "prompt": "Summarize in one sentence: The city council voted on Tuesday to expand the bike lane "
               "network by 40 kilometres over the next three years, funded by a new parking fee in the "
               "city centre. Supporters said it would cut traffic; shop owners worried about fewer visitors."},
    {"id": "classification", "meta": {"use_case": "classification"},
     "prompt": "Classify the sentiment of this review as positive, negative or mixed: \"The food was "
               "wonderful but we waited an hour for a table.\""},
    {"id": "closed-qa", "meta": {"use_case": "closed QA"},
     "prompt": "Answer from the text only. Text: \"Marie Curie won the Nobel Prize in Physics in 1903 and "
               "in Chemistry in 1911.\" Question: In which year did she win the prize in Chemistry?"},
    {"id": "extraction", "meta": {"use_case": "extraction"},
     "prompt": "Extract every date from this text as a list: \"The contract starts on 1 March 2024, the "
               "first review is on 15 June 2024 and it ends on 28 February 2025.\""},
]


def create_demo_project(*, session: Session, creator: User) -> Project | None:
    """The demo project with its prompts, when the database has no project yet; else None."""
    if session.scalar(select(func.count()).select_from(Project)):
        return None
    project = create_project(session=session, creator=creator, data=ProjectCreate(
        name=DEMO_NAME, k=4, labels_per_task=1, allow_ties=True, guidelines=DEMO_GUIDELINES,
        description="Example prompts from each of InstructGPT's use cases, to try ranking right away.",
        sampling_params={"temperature": 0.8, "top_p": 0.95, "max_new_tokens": 128},
    ))
    items = [validate_item(obj, line) for line, obj in enumerate(DEMO_PROMPTS, 1)]
    import_prompts(session=session, project=project, items=items, source="demo", creator=creator)
    return project
