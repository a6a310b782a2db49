"""Annotated dependencies: the database session and who is asking."""

import hashlib
import hmac
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, Query, Request
from fastapi.dependencies.models import Dependant
from pydantic import BaseModel
from starlette.datastructures import FormData
from sqlalchemy.orm import Session

from app.config import Settings
from app.db import MAX_ROW_ID, get_session
from app.errors import Forbidden, Invalid, Unauthorized
from app.middleware import NUL_MESSAGE, NUL_SEEN
from app.users.models import Caller, Scope, User
from app.users.service import scope_allows, token_caller, token_principal

SessionDep = Annotated[Session, Depends(get_session)]
# Keyset paging: every list answers {"items": [...], "next_cursor": id or null}; pass next_cursor back.
CursorQuery = Annotated[int | None, Query(ge=0, le=MAX_ROW_ID, description="next_cursor of the previous page")]
UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
CSRF_HEADER = "x-csrf-token"
CSRF_FIELD = "csrf_token"
# Bodies read as forms (CSRF field, NUL check per field); app/labeling/fastpath.py hands them on.
FORM_TYPES = ("multipart/form-data", "application/x-www-form-urlencoded")


def get_app_settings(request: Request) -> Settings:
    return request.app.state.settings


SettingsDep = Annotated[Settings, Depends(get_app_settings)]


@dataclass(frozen=True)
class Principal:
    """The user behind a request and what the credential allows (scope None: browser session)."""

    user: User
    scope: Scope | None

    @property
    def via_token(self) -> bool:
        return self.scope is not None


def password_fingerprint(user: User) -> str:
    # Stored in the session cookie: changing the password ends every other session.
    return hashlib.sha256((user.password_hash or "").encode()).hexdigest()[:16]


def csrf_token(request: Request) -> str:
    """This browser session's CSRF token, created on first use."""
    token = request.session.get("csrf")
    if not token:
        token = secrets.token_urlsafe(32)
        request.session["csrf"] = token
    return token


def log_in(request: Request, user: User) -> None:
    request.session.clear()
    request.session.update({"uid": user.id, "pwf": password_fingerprint(user), "csrf": secrets.token_urlsafe(32)})


async def csrf_protect(request: Request) -> None:
    """Refuse a state-changing request carried by the session cookie without its CSRF token."""
    if request.method not in UNSAFE_METHODS:
        return
    if request.headers.get("authorization"):
        return  # a bearer token is not sent by browsers on their own, so it cannot be forged
    if request.scope["path"].startswith("/api/") and "uid" not in request.session:
        return  # no cookie credential: authentication will answer 401
    expected = request.session.get("csrf")
    sent = request.headers.get(CSRF_HEADER)
    content_type = request.headers.get("content-type", "")
    if sent is None and content_type.startswith(FORM_TYPES):
        form = await request.form()
        value = form.get(CSRF_FIELD)
        sent = value if isinstance(value, str) else None
    if not expected or not sent or not hmac.compare_digest(expected, sent):
        raise Forbidden(
            "missing or wrong CSRF token: reload the page and try again "
            f"(scripts: send an API token instead of the session cookie, or the {CSRF_HEADER} header)",
            code="csrf_failed",
        )


def _query_names(dependant: Dependant) -> frozenset[str]:
    """Every query parameter a route reads, its dependencies' and query models' fields included."""
    names: set[str] = set()
    stack = [dependant]
    while stack:
        current = stack.pop()
        for param in current.query_params:
            annotation: Any = param.field_info.annotation
            if isinstance(annotation, type) and issubclass(annotation, BaseModel):
                names.update(f.alias or name for name, f in annotation.model_fields.items())
            else:
                names.add(param.alias)
        stack.extend(current.dependencies)
    return frozenset(names)


async def guard_request(request: Request) -> None:
    """Refuse API query parameters the route does not read (a filter on a field that is not
    offered would otherwise be ignored silently), and NUL characters in form fields and in bodies
    already read (FastAPI reads JSON bodies before dependencies; a route reading its own checks it)."""
    route = request.scope.get("route")
    if request.scope["path"].startswith("/api/") and route is not None and hasattr(route, "dependant"):
        known = getattr(route, "query_names", None)
        if known is None:  # worked out once per route, and kept on it
            known = route.query_names = _query_names(route.dependant)
        unknown = sorted(set(request.query_params) - known)
        if unknown:
            offered = ", ".join(sorted(known)) or "none"
            raise Invalid(f"unknown query parameter{'s' if len(unknown) > 1 else ''} {', '.join(unknown)}; "
                          f"this route takes: {offered}", code="unknown_parameter")
    if request.method in UNSAFE_METHODS and request.headers.get("content-type", "").startswith(FORM_TYPES):
        form = await request.form()
        if any(isinstance(value, str) and "\x00" in value for value in form.values()):
            raise Invalid(NUL_MESSAGE, code="nul_character")
    if request.scope.get(NUL_SEEN):
        raise Invalid(NUL_MESSAGE, code="nul_character")


def _by_token(auth: str, session: Session, lookup: Callable[..., tuple[Any, Scope] | None]) -> tuple[Any, Scope]:
    """The Authorization header's bearer token looked up with `lookup` (token_principal or token_caller)."""
    scheme, _, value = auth.partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        raise Unauthorized("the Authorization header must be 'Bearer <token>'", code="invalid_token")
    found = lookup(session=session, plain=value.strip())
    if found is None:
        raise Unauthorized("the API token is unknown or revoked", code="invalid_token")
    return found


def optional_principal(request: Request, session: SessionDep) -> Principal | None:
    """Who sent the request: a bearer token's user, the session cookie's, or None. Does I/O."""
    auth = request.headers.get("authorization")
    if auth:
        user, scope = _by_token(auth, session, token_principal)
        request.state.user = user
        return Principal(user=user, scope=scope)
    uid = request.session.get("uid")
    if uid is None:
        return None
    user = session.get(User, uid)
    if user is None or not user.is_active or request.session.get("pwf") != password_fingerprint(user):
        request.session.clear()
        return None
    request.state.user = user  # for pages rendered outside a route, such as error pages
    return Principal(user=user, scope=None)


OptionalPrincipal = Annotated[Principal | None, Depends(optional_principal)]
# The checks below do no I/O, so they are async: a sync dependency costs a hop through the threadpool.


def _authenticated(principal: Principal | None) -> Principal:
    if principal is None:
        raise Unauthorized("log in, or send 'Authorization: Bearer <token>'", code="not_authenticated")
    return principal


def _may_label(scope: Scope | None) -> None:
    if not scope_allows(scope, Scope.label):
        raise Forbidden("this API token has scope 'read'; labeling needs 'label'", code="insufficient_scope")


async def current_principal(principal: OptionalPrincipal) -> Principal:
    return _authenticated(principal)


CurrentPrincipal = Annotated[Principal, Depends(current_principal)]


async def current_user(principal: CurrentPrincipal) -> User:
    """Anyone logged in; a token of any scope may read."""
    return principal.user


async def labeling_user(principal: CurrentPrincipal) -> User:
    _may_label(principal.scope)
    return principal.user


def labeler_in_route(request: Request, session: Session) -> Caller:
    """LabelingUser's checks, called inside the route's own thread (the FastAPI route's or the fast path's):
    for the queue's hot routes, where the sync principal dependency cost a second trip to a thread per
    request. A token's account is not loaded (token_caller): the queue needs only its id and role."""
    auth = request.headers.get("authorization")
    if auth:
        caller, scope = _by_token(auth, session, token_caller)
        _may_label(scope)
        return caller
    principal = _authenticated(optional_principal(request, session))
    _may_label(principal.scope)
    return Caller(principal.user.id, principal.user.role)


async def admin_user(principal: CurrentPrincipal) -> User:
    if not principal.user.is_admin:
        raise Forbidden("only admins may do this", code="admin_only")
    if not scope_allows(principal.scope, Scope.admin):
        raise Forbidden(f"this API token has scope '{principal.scope}'; this needs 'admin'",
                        code="insufficient_scope")
    return principal.user


CurrentUser = Annotated[User, Depends(current_user)]
LabelingUser = Annotated[User, Depends(labeling_user)]
AdminUser = Annotated[User, Depends(admin_user)]


async def read_form(request: Request) -> FormData:
    """The submitted form, read once (so `def` routes can take a whole form)."""
    return await request.form()


FormDep = Annotated[FormData, Depends(read_form)]


async def admin_reader(principal: CurrentPrincipal) -> User:
    """An admin reading: any token scope will do."""
    if not principal.user.is_admin:
        raise Forbidden("only admins may see this", code="admin_only")
    return principal.user


AdminReader = Annotated[User, Depends(admin_reader)]
