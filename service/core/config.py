"""Settings from the environment (``QBANK_*``), pydantic-settings style.

``DatabaseSettings`` is all a database-only command (``qbank load-demo``, ``qbank
create-user``) needs; ``Settings`` adds what the web service needs and refuses to run with
the default secret outside ``QBANK_ENV=dev``.
"""

from __future__ import annotations

import logging
from typing import Literal

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_SECRET = "changethis-local-development-only-secret"
MIN_SECRET_LENGTH = 32  # HS256 wants a key of at least 256 bits (RFC 7518, 3.2)
DEFAULT_DATABASE_URL = "sqlite:///qbank.db"
# The scaffold's single-tenant deployments used this tenant; it is the default claim.
DEFAULT_TENANT = "00000000-0000-0000-0000-000000000001"


class DatabaseSettings(BaseSettings):
    """Where the state lives: a SQLite file by default, PostgreSQL in production."""

    model_config = SettingsConfigDict(env_prefix="QBANK_", extra="ignore")

    database_url: str = DEFAULT_DATABASE_URL
    default_tenant: str = DEFAULT_TENANT


class Settings(DatabaseSettings):
    """Web-service settings.

    Attributes
    ----------
    env : {'dev', 'test', 'production'}
        ``dev`` enables ``POST /v1/auth/mock-login`` and tolerates the default secret.
    secret_key : str
        HS256 key for the JWTs; must be changed outside ``dev``.
    """

    env: Literal["dev", "test", "production"] = "production"
    secret_key: str = DEFAULT_SECRET
    token_ttl_minutes: int = Field(120, ge=1)
    quiz_ttl_minutes: int = Field(120, ge=1)
    exam_code: str = "DEMO-EXAM"
    # Browsers may send the caller's credentials to these origins; "*" is refused (any site could).
    cors_origins: list[str] = []
    # Hardening (service.core.hardening): bodies over this are refused with 413 before parsing;
    # a request with no answer after request_timeout_s gets 503; the database timeouts make a
    # database that is down, frozen or saturated a 503 with Retry-After, not a hang.
    max_body_bytes: int = Field(8 * 1024 * 1024, ge=1024)
    request_timeout_s: float = Field(30, gt=0)
    db_connect_timeout_s: float = Field(3, gt=0)
    db_statement_timeout_s: float = Field(10, gt=0)
    db_pool_timeout_s: float = Field(10, gt=0)
    # Sign-in (service.sign_in): failed logins allowed per account and per client address within
    # login_window_s before 429; password hashes computed at once per process; how stale this
    # process's list of signed-out tokens may get.
    login_max_failures_per_account: int = Field(5, ge=1)
    login_max_failures_per_client: int = Field(100, ge=1)
    login_window_s: int = Field(900, ge=1)
    hash_concurrency: int = Field(1, ge=1)
    revocation_refresh_s: float = Field(1.0, gt=0)
    # Requests run in a thread pool; more threads than the database can serve at once only queue
    # inside it (PostgreSQL gets at most 2 x db_pool_size connections per process).
    worker_threads: int = Field(8, ge=1, le=1000)
    db_pool_size: int = Field(8, ge=1, le=500)
    # The scaffold's MAX_DAILY_EXPOSURES: an adaptive quiz serves an item at most this often per UTC
    # day, counted atomically in the database (0 or None: no cap).
    max_daily_exposures: int | None = Field(500, ge=0)
    # Studies (QBANK_ENV dev or test only): quiz ids, and so every quiz's random draws
    # (qbank.selection.session_rng), derived from this seed, the tenant, the user and the user's
    # quiz count, so a simulated cohort repeats bit for bit. None: random ids (uuid4).
    quiz_seed: int | None = None

    @model_validator(mode="after")
    def _refuse_wildcard_origin(self):
        if "*" in self.cors_origins:
            raise ValueError(
                "QBANK_CORS_ORIGINS: '*' is refused; the API allows credentials, so list the origins"
            )
        return self

    @model_validator(mode="after")
    def _refuse_default_secret(self):
        if self.secret_key == DEFAULT_SECRET:
            message = (
                f"QBANK_SECRET_KEY is {DEFAULT_SECRET!r}; set it to a long random value "
                "(QBANK_ENV=dev allows the default for local demos)"
            )
            if self.env != "dev":
                raise ValueError(message)
            logging.getLogger("qbank.service").warning(message)
        elif len(self.secret_key.encode()) < MIN_SECRET_LENGTH:
            raise ValueError(f"QBANK_SECRET_KEY must be at least {MIN_SECRET_LENGTH} bytes long")
        if self.quiz_seed is not None and self.env == "production":
            raise ValueError(
                "QBANK_QUIZ_SEED makes quiz ids predictable; it is for studies with QBANK_ENV=dev or test"
            )
        return self

    @property
    def mock_login_enabled(self) -> bool:
        return self.env == "dev"
