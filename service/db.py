"""Engines, sessions and migrations.

SQLite (the embedded default) runs in WAL mode with foreign keys on, and every transaction
starts with ``BEGIN IMMEDIATE``: a transaction that reads and then writes (all of ours)
takes the single writer lock up front instead of failing with ``database is locked`` when
another writer committed in between. Since SQLite runs one writer at a time anyway, a
process keeps one connection and its request threads queue for it in order, rather than
polling SQLite's busy handler, which starves some of them under load. PostgreSQL gets a
connection pool sized for the thread pool that serves requests.
"""

from __future__ import annotations

import math
from pathlib import Path

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from service.errors import Conflict

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"


def _normalise_url(url: str) -> str:
    """Route plain ``postgresql://`` URLs to psycopg 3 (the driver we ship)."""
    parsed = make_url(url)
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed.render_as_string(hide_password=False)


def make_engine(
    url: str,
    *,
    pool_size: int = 20,
    connect_timeout_s: float = 10,
    statement_timeout_s: float | None = None,
    pool_timeout_s: float = 30,
) -> Engine:
    """An engine for ``url`` with the per-backend settings described in the module docstring.

    The timeouts turn a database that is down, frozen or saturated into an error the service
    answers with 503 (``service.core.hardening``) instead of a hang: ``connect_timeout_s`` to
    open a connection, ``statement_timeout_s`` for one statement (PostgreSQL) or to wait for
    SQLite's write lock (None: no limit, for migrations), ``pool_timeout_s`` to wait for a
    pooled connection.
    """
    url = _normalise_url(url)
    backend = make_url(url).get_backend_name()
    if backend == "sqlite":
        database = make_url(url).database
        if database and database != ":memory:":
            Path(database).expanduser().resolve().parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(
            url,
            connect_args={"check_same_thread": False, "timeout": statement_timeout_s or 60},
            pool_size=1,
            max_overflow=0,
            pool_timeout=pool_timeout_s,
        )

        @event.listens_for(engine, "connect")
        def _sqlite_connect(dbapi_connection, _record):
            # Take transaction control away from pysqlite so "begin" below decides.
            dbapi_connection.isolation_level = None
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.close()

        @event.listens_for(engine, "begin")
        def _sqlite_begin(connection):
            connection.exec_driver_sql("BEGIN IMMEDIATE")

        return engine
    if backend == "postgresql":
        connect_args = {"connect_timeout": max(2, math.ceil(connect_timeout_s))}
        if statement_timeout_s:
            connect_args["options"] = f"-c statement_timeout={int(statement_timeout_s * 1000)}"
        return create_engine(
            url,
            pool_size=pool_size,
            max_overflow=pool_size,
            pool_pre_ping=True,
            pool_timeout=pool_timeout_s,
            connect_args=connect_args,
        )
    raise ValueError(f"QBANK_DATABASE_URL: unsupported database {backend!r}; use sqlite or postgresql")


def make_session_factory(engine: Engine) -> sessionmaker[Session]:
    """Sessions on ``engine`` sharing one set of caches of immutable rows (see ``service.pools``)."""
    from service.pools import Caches

    return sessionmaker(bind=engine, expire_on_commit=False, autoflush=False, info={"caches": Caches()})


def alembic_config(url: str):
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.set_main_option("sqlalchemy.url", _normalise_url(url).replace("%", "%%"))
    return config


def migrate(url: str, revision: str = "head") -> None:
    """Bring the database at ``url`` to ``revision`` (Alembic ``upgrade``)."""
    from alembic import command

    config = alembic_config(url)
    engine = make_engine(url, pool_size=1)
    try:
        with engine.begin() as connection:
            config.attributes["connection"] = connection
            command.upgrade(config, revision)
    finally:
        engine.dispose()


def commit_or_conflict(session: Session, message: str) -> None:
    """Commit; a unique-constraint race becomes a 409 ``Conflict(message)`` after a rollback."""
    try:
        session.commit()
    except IntegrityError:
        session.rollback()
        raise Conflict(message) from None


def dialect_insert(session: Session):
    """The INSERT construct of the session's backend, which has ``on_conflict_do_update``."""
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    elif dialect == "sqlite":
        from sqlalchemy.dialects.sqlite import insert
    else:  # pragma: no cover - make_engine admits only these two
        raise NotImplementedError(f"no UPSERT for {dialect}")
    return insert
