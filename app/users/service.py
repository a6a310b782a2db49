"""Accounts, passwords and API tokens."""

import hashlib
import math
import re
import secrets
from datetime import datetime, timedelta

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import bindparam, delete, func, select, update
from sqlalchemy.orm import Session

from app.db import get_by_id, utcnow
from app.errors import Conflict, Forbidden, Invalid, NotFound
from app.users.models import ApiToken, Caller, LoginFailure, Role, Scope, User

_hasher = PasswordHasher()
# Verified against when the username does not exist, so a wrong username takes as long as a
# wrong password and response times do not reveal which accounts exist.
_DUMMY_HASH = _hasher.hash("preflab-dummy-password")

TOKEN_PREFIX = "pfl_"
USERNAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
MIN_PASSWORD_LENGTH = 8
SCOPE_ORDER = {Scope.read: 0, Scope.label: 1, Scope.admin: 2}
# Writing last_used_at on every request would turn reads into writes; a minute is precise enough.
LAST_USED_RESOLUTION = timedelta(minutes=1)


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def generate_password() -> str:
    return secrets.token_urlsafe(12)


def validate_password(password: str) -> None:
    if len(password) < MIN_PASSWORD_LENGTH:
        raise Invalid(f"password must have at least {MIN_PASSWORD_LENGTH} characters", code="weak_password")
    if len(password) > 1024:
        raise Invalid("password is longer than 1024 characters", code="invalid_password")


def create_user(*, session: Session, username: str, role: Role, password: str,
                display_name: str = "") -> User:
    """Add an account; the username must be new."""
    if not USERNAME_RE.match(username):
        raise Invalid(
            "username must be 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit",
            code="invalid_username",
        )
    validate_password(password)
    if session.scalar(select(User.id).where(func.lower(User.username) == username.lower())):
        raise Conflict(f"user {username!r} already exists", code="username_taken")
    user = User(username=username, role=role, password_hash=hash_password(password),
                display_name=display_name)
    session.add(user)
    session.flush()
    return user


def count_users(*, session: Session) -> int:
    return session.scalar(select(func.count()).select_from(User)) or 0


def get_user(*, session: Session, user_id: int) -> User:
    user = get_by_id(session, User, user_id)
    if user is None:
        raise NotFound(f"user {user_id} not found")
    return user


def get_user_by_username(*, session: Session, username: str) -> User:
    user = session.scalar(select(User).where(func.lower(User.username) == username.lower()))
    if user is None:
        raise NotFound(f"user {username!r} not found", code="user_not_found")
    return user


def list_users(*, session: Session, role: Role | None = None) -> list[User]:
    query = select(User).order_by(User.username)
    if role is not None:
        query = query.where(User.role == role)
    return list(session.scalars(query))


def page_users(*, session: Session, role: Role | None = None, active: bool | None = None,
               after_id: int | None = None, limit: int = 100) -> list[User]:
    """Accounts in id order, for the API's keyset paging."""
    query = select(User).order_by(User.id).limit(limit)
    if role is not None:
        query = query.where(User.role == role)
    if active is not None:
        query = query.where(User.is_active.is_(active))
    if after_id is not None:
        query = query.where(User.id > after_id)
    return list(session.scalars(query))


def authenticate(*, session: Session, username: str, password: str) -> User | None:
    """The active user with this username and password, or None."""
    user = session.scalar(select(User).where(func.lower(User.username) == username.lower()))
    stored = user.password_hash if user is not None and user.password_hash else _DUMMY_HASH
    try:
        _hasher.verify(stored, password)
    except (VerificationError, InvalidHashError):
        return None
    if user is None or not user.is_active or not user.password_hash:
        return None
    if _hasher.check_needs_rehash(user.password_hash):
        user.password_hash = hash_password(password)
    user.last_login_at = utcnow()
    return user


def _failure_keys(username: str, address: str | None) -> list[str]:
    keys = ["user:" + username.lower()[:64]]
    if address:
        keys.append("addr:" + address[:95])
    return keys


def login_retry_after(*, session: Session, username: str, address: str | None, max_per_user: int,
                      max_per_address: int, window: timedelta) -> int | None:
    """Seconds until this username and address may try again, or None when both are under their limits.

    Checked before the password, so a locked-out guesser costs no password hashing.
    """
    now = utcnow()
    wait = 0.0
    for key, limit in zip(_failure_keys(username, address), (max_per_user, max_per_address), strict=False):
        recent = list(session.scalars(
            select(LoginFailure.at).where(LoginFailure.key == key, LoginFailure.at > now - window)
            .order_by(LoginFailure.at.desc()).limit(limit)))
        if len(recent) >= limit:
            # Once the limit-th latest failure leaves the window, one more attempt is allowed.
            wait = max(wait, (recent[-1] + window - now).total_seconds())
    return max(1, math.ceil(wait)) if wait > 0 else None


def record_login_failure(*, session: Session, username: str, address: str | None, window: timedelta) -> None:
    """Count a failed login against its username and address; forget failures older than the window."""
    now = utcnow()
    session.execute(delete(LoginFailure).where(LoginFailure.at <= now - window))
    session.add_all(LoginFailure(key=key, at=now) for key in _failure_keys(username, address))
    session.flush()


def clear_login_failures(*, session: Session, username: str) -> None:
    """A successful login forgets the username's failures (the address keeps its count)."""
    session.execute(delete(LoginFailure).where(LoginFailure.key == _failure_keys(username, None)[0]))


def change_password(*, session: Session, user: User, current: str, new: str) -> None:
    try:
        _hasher.verify(user.password_hash or _DUMMY_HASH, current)
    except (VerificationError, InvalidHashError):
        raise Invalid("the current password is wrong", code="wrong_password") from None
    validate_password(new)
    user.password_hash = hash_password(new)
    session.flush()


def hash_token(token: str) -> str:
    # Tokens are 256 random bits, so a fast hash is enough: there is nothing to brute-force.
    return hashlib.sha256(token.encode()).hexdigest()


def allowed_scopes(user: User) -> list[Scope]:
    return list(Scope) if user.is_admin else [Scope.read, Scope.label]


def create_token(*, session: Session, user: User, name: str, scope: Scope,
                 caller_scope: Scope | None = None) -> tuple[ApiToken, str]:
    """A new token for this user; the plain token is returned once and never stored.

    caller_scope is the scope of the token asking (None: a browser session or the command line):
    a token never mints one that may do more than itself.
    """
    if scope not in allowed_scopes(user):
        raise Forbidden(f"a {user.role} cannot hold a token with scope {scope}", code="scope_not_allowed")
    if not scope_allows(caller_scope, scope):
        raise Forbidden(f"a token with scope '{caller_scope}' cannot create one with scope '{scope}'",
                        code="insufficient_scope")
    name = name.strip() or "token"
    if len(name) > 100:
        raise Invalid("token name is longer than 100 characters", code="invalid_name")
    plain = TOKEN_PREFIX + secrets.token_urlsafe(32)
    token = ApiToken(user_id=user.id, name=name, scope=scope, prefix=plain[:12], token_hash=hash_token(plain))
    session.add(token)
    session.flush()
    return token, plain


def list_tokens(*, session: Session, user: User, before_id: int | None = None, limit: int | None = None) -> list[ApiToken]:
    """The user's tokens, newest first (older than `before_id` when given)."""
    query = select(ApiToken).where(ApiToken.user_id == user.id).order_by(ApiToken.id.desc())
    if before_id is not None:
        query = query.where(ApiToken.id < before_id)
    return list(session.scalars(query.limit(limit)))


def revoke_token(*, session: Session, user: User, token_id: int) -> ApiToken:
    """Revoke one of the user's own tokens (revoking twice is harmless)."""
    token = get_by_id(session, ApiToken, token_id)
    if token is None or token.user_id != user.id:
        raise NotFound(f"token {token_id} not found")
    if token.revoked_at is None:
        token.revoked_at = utcnow()
    session.flush()
    return token


# Every API request runs one of these: built once, with just the token's columns.
_TOKEN = (select(User, ApiToken.id, ApiToken.scope, ApiToken.revoked_at, ApiToken.last_used_at)
          .join(ApiToken, ApiToken.user_id == User.id).where(ApiToken.token_hash == bindparam("token_hash")))
_user, _token = User.__table__, ApiToken.__table__
# The same lookup without loading the account (about half the CPU): for token_caller.
_TOKEN_CALLER = (select(_user.c.id, _user.c.role, _user.c.is_active, _token.c.id, _token.c.scope, _token.c.revoked_at,
                        _token.c.last_used_at)
                 .join(_token, _token.c.user_id == _user.c.id).where(_token.c.token_hash == bindparam("token_hash")))
_TOUCH = update(_token).where(_token.c.id == bindparam("token_id"))


def token_principal(*, session: Session, plain: str) -> tuple[User, Scope] | None:
    """The active user behind a live bearer token, and the token's scope; None for unknown or revoked tokens.

    Records last_used_at (at most once a minute per token) in its own small committed transaction.
    """
    row = session.execute(_TOKEN, {"token_hash": hash_token(plain)}).one_or_none()
    if row is None:
        return None
    user, token_id, scope, revoked_at, last_used_at = row
    return (user, scope) if _live(session, user.is_active, token_id, revoked_at, last_used_at) else None


def token_caller(*, session: Session, plain: str) -> tuple[Caller, Scope] | None:
    """token_principal without loading the account: its id and role."""
    row = session.connection().execute(_TOKEN_CALLER, {"token_hash": hash_token(plain)}).one_or_none()
    if row is None:
        return None
    user_id, role, is_active, token_id, scope, revoked_at, last_used_at = row
    return (Caller(user_id, role), scope) if _live(session, is_active, token_id, revoked_at, last_used_at) else None


def _live(session: Session, is_active: bool, token_id: int, revoked_at: datetime | None,
          last_used_at: datetime | None) -> bool:
    """Whether the token is usable (not revoked, its user active); records its use when it is."""
    if revoked_at is not None or not is_active:
        return False
    now = utcnow()
    if last_used_at is None or now - last_used_at >= LAST_USED_RESOLUTION:
        session.execute(_TOUCH, {"token_id": token_id, "last_used_at": now})
        session.commit()
    return True


def scope_allows(granted: Scope | None, needed: Scope) -> bool:
    """None is a browser session: it carries the user's full role."""
    return granted is None or SCOPE_ORDER[granted] >= SCOPE_ORDER[needed]
