"""Jinja2 setup and the one way pages are rendered."""

from pathlib import Path
from typing import Any

from fastapi import Request
from fastapi.templating import Jinja2Templates
from markdown_it import MarkdownIt
from markupsafe import Markup
from starlette.responses import Response

from app.deps import CSRF_FIELD, csrf_token

ROOT = Path(__file__).resolve().parent.parent
# Raw HTML in markdown is shown as text, and markdown-it refuses javascript:/vbscript:/data:
# links, so guidelines and completions can never carry script into the page.
_markdown = MarkdownIt("commonmark", {"html": False, "linkify": False, "typographer": False}).enable("table")


def render_markdown(text: str | None) -> Markup:
    return Markup(_markdown.render(text or ""))


def make_templates() -> Jinja2Templates:
    templates = Jinja2Templates(directory=str(ROOT / "templates"))
    templates.env.filters["markdown"] = render_markdown
    templates.env.globals["csrf_field_name"] = CSRF_FIELD
    return templates


def render(request: Request, name: str, context: dict[str, Any] | None = None, *,
           status_code: int = 200, headers: dict[str, str] | None = None) -> Response:
    """Render a page with what every page needs: the user and this session's CSRF token."""
    ctx = {"user": getattr(request.state, "user", None), "csrf_token": csrf_token(request)}
    ctx.update(context or {})
    return request.app.state.templates.TemplateResponse(request, name, ctx, status_code=status_code,
                                                        headers=headers)
