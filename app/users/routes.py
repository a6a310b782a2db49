"""Login, logout, accounts and API tokens: pages and /api/v1."""

from datetime import timedelta
from typing import Annotated

from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import RedirectResponse, Response

from app.db import next_cursor
from app.deps import (
    AdminReader, AdminUser, CurrentPrincipal, CurrentUser, CursorQuery, LabelingUser, OptionalPrincipal, SessionDep, SettingsDep, log_in,
)
from app.errors import DomainError, TooManyAttempts
from app.pages import render
from app.users import service
from app.users.models import Role, Scope
from app.users.schemas import (
    PasswordChange, TokenCreate, TokenCreated, TokenList, TokenRead, UserCreate, UserList, UserRead,
)

api = APIRouter(tags=["users"])
pages = APIRouter(include_in_schema=False)


@api.get("/me", response_model=UserRead, summary="The account behind this token or session")
def read_me(user: CurrentUser) -> UserRead:
    return UserRead.model_validate(user)


@api.put("/me/password", status_code=204, summary="Change your password (ends your other browser sessions)")
def change_password(body: PasswordChange, request: Request, session: SessionDep, settings: SettingsDep,
                    user: LabelingUser) -> Response:
    _change_password(request, session, settings, user, body.current_password, body.new_password)
    session.commit()
    return Response(status_code=204)


@api.get("/users", response_model=UserList, summary="Accounts in id order, by cursor (admin)")
def list_users(session: SessionDep, _admin: AdminReader, role: Role | None = None, active: bool | None = None,
               cursor: CursorQuery = None, limit: Annotated[int, Query(ge=1, le=1000)] = 100) -> UserList:
    users = service.page_users(session=session, role=role, active=active, after_id=cursor, limit=limit)
    return UserList(items=[UserRead.model_validate(u) for u in users], next_cursor=next_cursor(users, limit))


@api.post("/users", response_model=UserRead, status_code=201, summary="Create an account (admin)")
def create_user(body: UserCreate, session: SessionDep, _admin: AdminUser) -> UserRead:
    user = service.create_user(session=session, username=body.username, role=body.role,
                               password=body.password, display_name=body.display_name)
    session.commit()
    return UserRead.model_validate(user)


@api.get("/tokens", response_model=TokenList, summary="Your API tokens, newest first, by cursor")
def list_tokens(session: SessionDep, user: CurrentUser, cursor: CursorQuery = None,
                limit: Annotated[int, Query(ge=1, le=1000)] = 100) -> TokenList:
    tokens = service.list_tokens(session=session, user=user, before_id=cursor, limit=limit)
    return TokenList(items=[TokenRead.model_validate(t) for t in tokens], next_cursor=next_cursor(tokens, limit))


@api.post("/tokens", response_model=TokenCreated, status_code=201,
          summary="Create an API token; the response holds it once")
def create_token(body: TokenCreate, session: SessionDep, principal: CurrentPrincipal) -> TokenCreated:
    token, plain = service.create_token(session=session, user=principal.user, name=body.name, scope=body.scope,
                                        caller_scope=principal.scope)
    session.commit()
    return TokenCreated(**TokenRead.model_validate(token).model_dump(), token=plain)


@api.post("/tokens/{token_id}/revoke", response_model=TokenRead, summary="Revoke one of your tokens")
def revoke_token(token_id: int, session: SessionDep, user: CurrentUser) -> TokenRead:
    token = service.revoke_token(session=session, user=user, token_id=token_id)
    session.commit()
    return TokenRead.model_validate(token)


def _safe_next(target: str | None) -> str:
    # Only local paths: an open redirect would let a link bounce a labeler to a look-alike site.
    if target and target.startswith("/") and not target.startswith("//") and "\\" not in target:
        return target
    return "/"


@pages.get("/login")
def login_page(request: Request, principal: OptionalPrincipal, next: str = "/") -> Response:
    if principal is not None:
        return RedirectResponse(_safe_next(next), status_code=303)
    return render(request, "users/login.html", {"next": _safe_next(next), "error": None})


@pages.post("/login")
def login_submit(request: Request, session: SessionDep, settings: SettingsDep,
                 username: Annotated[str, Form(max_length=64)], password: Annotated[str, Form(max_length=1024)],
                 next: Annotated[str, Form(max_length=2000)] = "/") -> Response:
    context = {"next": _safe_next(next), "username": username}
    try:
        _check_guess_limit(request, session, settings, username)
    except TooManyAttempts as exc:
        return render(request, "users/login.html", {**context, "error": exc.message}, status_code=429,
                      headers=exc.headers)
    user = service.authenticate(session=session, username=username, password=password)
    if user is None:
        _count_failed_guess(request, session, settings, username)
        return render(request, "users/login.html", {**context, "error": "Wrong username or password."},
                      status_code=401)
    service.clear_login_failures(session=session, username=username)
    session.commit()
    log_in(request, user)
    return RedirectResponse(_safe_next(next), status_code=303)


def _address(request: Request) -> str | None:
    # The proxy's X-Forwarded-For only when PREFLAB_TRUSTED_PROXIES names the proxy (uvicorn applies it).
    return request.client.host if request.client else None


def _check_guess_limit(request: Request, session: SessionDep, settings: SettingsDep, username: str) -> None:
    """Refuse a password guess (a login, or the current password when changing it) over the limits."""
    retry_after = service.login_retry_after(
        session=session, username=username, address=_address(request), max_per_user=settings.login_max_failures,
        max_per_address=settings.login_max_failures_per_address,
        window=timedelta(seconds=settings.login_window_seconds))
    if retry_after is not None:
        raise TooManyAttempts(retry_after)


def _count_failed_guess(request: Request, session: SessionDep, settings: SettingsDep, username: str) -> None:
    session.rollback()  # whatever the request had started (a rehash, last_login_at) is not kept
    service.record_login_failure(session=session, username=username, address=_address(request),
                                 window=timedelta(seconds=settings.login_window_seconds))
    session.commit()


def _change_password(request: Request, session: SessionDep, settings: SettingsDep, user, current: str,
                     new: str) -> None:
    _check_guess_limit(request, session, settings, user.username)
    try:
        service.change_password(session=session, user=user, current=current, new=new)
    except DomainError as exc:
        if exc.code == "wrong_password":
            _count_failed_guess(request, session, settings, user.username)
        raise


@pages.post("/logout")
def logout(request: Request) -> Response:
    request.session.clear()
    return RedirectResponse("/login", status_code=303)


def _account_page(request: Request, session: SessionDep, user, *, new_token: str | None = None,
                  error: str | None = None, notice: str | None = None, status_code: int = 200) -> Response:
    return render(request, "users/account.html", {
        "user": user, "tokens": service.list_tokens(session=session, user=user),
        "scopes": service.allowed_scopes(user), "new_token": new_token, "error": error, "notice": notice,
    }, status_code=status_code)


@pages.get("/account")
def account_page(request: Request, session: SessionDep, user: CurrentUser) -> Response:
    return _account_page(request, session, user)


@pages.post("/account/tokens")
def account_create_token(request: Request, session: SessionDep, principal: CurrentPrincipal,
                         name: Annotated[str, Form(max_length=100)], scope: Annotated[Scope, Form()]) -> Response:
    user = principal.user
    token, plain = service.create_token(session=session, user=user, name=name, scope=scope,
                                        caller_scope=principal.scope)
    session.commit()
    # Shown in this response only; the page says so and the database keeps just a hash.
    return _account_page(request, session, user, new_token=plain, status_code=201)


@pages.post("/account/tokens/{token_id}/revoke")
def account_revoke_token(token_id: int, session: SessionDep, user: CurrentUser) -> Response:
    service.revoke_token(session=session, user=user, token_id=token_id)
    session.commit()
    return RedirectResponse("/account", status_code=303)


@pages.post("/account/password")
def account_change_password(request: Request, session: SessionDep, settings: SettingsDep, user: CurrentUser,
                            current_password: Annotated[str, Form(max_length=1024)],
                            new_password: Annotated[str, Form(max_length=1024)]) -> Response:
    try:
        _change_password(request, session, settings, user, current_password, new_password)
    except DomainError as exc:
        response = _account_page(request, session, user, error=exc.message, status_code=exc.status_code)
        response.headers.update(exc.headers or {})
        return response
    session.commit()
    log_in(request, user)  # keep this session; the new fingerprint ends the others
    return _account_page(request, session, user, notice="Password changed.")


@pages.get("/admin/users")
def users_page(request: Request, session: SessionDep, admin: AdminUser) -> Response:
    return render(request, "users/users.html", {"user": admin, "users": service.list_users(session=session),
                                                "roles": list(Role), "error": None, "created": None})


@pages.post("/admin/users")
def users_create(request: Request, session: SessionDep, admin: AdminUser,
                 username: Annotated[str, Form(max_length=64)], role: Annotated[Role, Form()],
                 display_name: Annotated[str, Form(max_length=200)] = "") -> Response:
    password = service.generate_password()
    try:
        created = service.create_user(session=session, username=username, role=role, password=password,
                                      display_name=display_name)
    except DomainError as exc:
        session.rollback()
        return render(request, "users/users.html", {
            "user": admin, "users": service.list_users(session=session), "roles": list(Role),
            "error": exc.message, "created": None}, status_code=exc.status_code)
    session.commit()
    return render(request, "users/users.html", {
        "user": admin, "users": service.list_users(session=session), "roles": list(Role), "error": None,
        "created": {"username": created.username, "password": password}}, status_code=201)
