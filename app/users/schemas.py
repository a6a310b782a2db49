"""Accounts and tokens over the API."""

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from app.users.models import Role, Scope


class UserRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    username: str
    display_name: str
    role: Role
    is_active: bool
    created_at: datetime
    last_login_at: datetime | None


class UserCreate(BaseModel):
    username: str = Field(min_length=1, max_length=64)
    role: Role = Role.labeler
    password: str = Field(min_length=8, max_length=1024)
    display_name: str = Field("", max_length=200)


class TokenCreate(BaseModel):
    name: str = Field("token", max_length=100)
    scope: Scope = Scope.read


class TokenRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    name: str
    prefix: str
    scope: Scope
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None


class TokenCreated(TokenRead):
    token: str = Field(description="The token itself; shown this once and never again.")


class TokenList(BaseModel):
    items: list[TokenRead]
    next_cursor: int | None = None


class UserList(BaseModel):
    items: list[UserRead]
    next_cursor: int | None = None


class PasswordChange(BaseModel):
    current_password: str = Field(max_length=1024)
    new_password: str = Field(max_length=1024)
