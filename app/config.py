"""Settings, read from PREFLAB_* environment variables through get_settings()."""

import secrets
from functools import lru_cache
from pathlib import Path

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

# Values that appear in examples and tutorials; a server must never run with one.
SAMPLE_SECRETS = frozenset(
    {"", "changeme", "change-me", "change_me", "secret", "sample", "preflab", "dev", "test",
     "please-change-me", "replace-me"}
)
MIN_SECRET_LENGTH = 32
SECRET_FILE = "secret_key"


def default_data_dir() -> Path:
    return Path.home() / ".local" / "share" / "preflab"


class InsecureSecret(RuntimeError):
    """The configured secret key is missing or a sample value."""


class Settings(BaseSettings):
    """Every setting Preflab reads; see README.md for each one."""

    model_config = SettingsConfigDict(env_prefix="PREFLAB_", extra="ignore")

    data_dir: Path = Field(default_factory=default_data_dir)
    database_url: str | None = None
    secret_key: SecretStr | None = None
    dev: bool = False
    host: str = "127.0.0.1"
    port: int = 8000
    max_body_mb: float = 64.0
    # Threads that run the sync routes, as many for the labeling queue's fast path, and the database
    # connections the web process keeps open.
    web_threads: int = Field(12, ge=1, le=1000)
    session_days: int = 14
    secure_cookies: bool = False
    # Addresses of reverse proxies whose X-Forwarded-For/-Proto headers are believed
    # (comma-separated IPs or "*"); empty: none, the connection itself says who and whether https.
    trusted_proxies: str = ""
    login_max_failures: int = Field(5, ge=1, le=10_000)
    login_max_failures_per_address: int = Field(20, ge=1, le=100_000)
    login_window_seconds: int = Field(900, ge=1, le=86_400)
    models_dir: Path | None = None
    ready_tasks: int = Field(20, ge=0, le=100_000)
    job_lease_seconds: int = Field(300, ge=5, le=86_400)
    openai_api_key: SecretStr | None = None
    policy_timeout_seconds: float = Field(120.0, gt=0, le=3600)
    policy_retries: int = Field(4, ge=0, le=20)
    review_min_agreement: float = Field(0.2, ge=-1.0, le=1.0)

    @property
    def sqlalchemy_url(self) -> str:
        """The database URL with the driver SQLAlchemy should use."""
        if not self.database_url:
            return f"sqlite:///{self.data_dir / 'preflab.db'}"
        url = self.database_url
        for prefix in ("postgres://", "postgresql://"):
            if url.startswith(prefix):
                return "postgresql+psycopg://" + url[len(prefix):]
        return url

    @property
    def policy_dir(self) -> Path:
        """Where the bundled default policy (and later trained models) live."""
        return self.models_dir or self.data_dir / "models"

    @property
    def max_body_bytes(self) -> int:
        return int(self.max_body_mb * 1024 * 1024)

    def ensure_secret_key(self) -> str:
        """Create the data directory's secret key file on first start; return the key."""
        if self.secret_key is not None:
            return self.resolve_secret_key()
        path = self.data_dir / SECRET_FILE
        if not path.exists():
            self.data_dir.mkdir(parents=True, exist_ok=True)
            path.touch(mode=0o600)
            path.write_text(secrets.token_urlsafe(48))
        return self.resolve_secret_key()

    def resolve_secret_key(self) -> str:
        """The secret key; outside dev mode a missing or sample key is refused."""
        if self.secret_key is not None:
            key = self.secret_key.get_secret_value()
            source = "PREFLAB_SECRET_KEY"
        else:
            path = self.data_dir / SECRET_FILE
            key = path.read_text().strip() if path.exists() else ""
            source = str(path)
        if key.lower() in SAMPLE_SECRETS or len(key) < MIN_SECRET_LENGTH:
            if self.dev:
                # Dev mode accepts a weak key but never an empty one: sessions must be signed.
                return key or "preflab-dev-mode-key-not-for-production"
            reason = "missing" if not key else "a sample value or shorter than 32 characters"
            raise InsecureSecret(
                f"the secret key from {source} is {reason}. Run `preflab up` or `preflab migrate` "
                "once to generate one in the data directory, or set PREFLAB_SECRET_KEY to a long "
                "random string (e.g. `python -c 'import secrets; print(secrets.token_urlsafe(48))'`)."
            )
        return key


@lru_cache
def get_settings() -> Settings:
    return Settings()
