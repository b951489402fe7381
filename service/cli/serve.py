"""Delivery-service commands: ``serve``, ``load-demo``, ``import-calibration``, ``create-user``.

The database comes from ``--database-url``, else ``QBANK_DATABASE_URL``, else the embedded
SQLite file ``qbank.db`` in the working directory. Every command first brings the schema to
the newest migration. The web stack is imported inside the commands, so listing and parsing
the ``qbank`` command stays fast. These commands join ``qbank`` through ``service.cli.COMMANDS``.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path

import click

_DB_HELP = "SQLAlchemy URL (default: $QBANK_DATABASE_URL, else sqlite:///qbank.db)"
_TENANT_HELP = "tenant id (default: $QBANK_DEFAULT_TENANT, else the built-in default tenant)"


def _database_url(url: str | None) -> str:
    from service.core.config import DatabaseSettings

    return url or DatabaseSettings().database_url


def _tenant(tenant: str | None) -> str:
    from service.core.config import DatabaseSettings

    return tenant or DatabaseSettings().default_tenant


def _migrate(url: str) -> None:
    from sqlalchemy.exc import SQLAlchemyError

    from service.db import migrate

    try:
        migrate(url)
    except (SQLAlchemyError, ValueError, OSError) as exc:
        raise click.ClickException(f"cannot migrate the database {_redact(url)}: {exc}") from None


def _redact(url: str) -> str:
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return url


@contextmanager
def _session(url: str):
    """A migrated database session; service errors become clean CLI errors."""
    from service.db import make_engine, make_session_factory
    from service.errors import ServiceError

    _migrate(url)
    engine = make_engine(url, pool_size=1)
    try:
        with make_session_factory(engine)() as session:
            yield session
    except ServiceError as exc:
        raise click.ClickException(exc.detail) from None
    finally:
        engine.dispose()


def _load_demo(url: str, tenant: str) -> int:
    from service.demo import DEMO_BANK, load_demo

    with _session(url) as session:
        try:
            return load_demo(session, tenant)
        except (ValueError, OSError) as exc:
            raise click.ClickException(f"cannot load the demo bank {DEMO_BANK}: {exc}") from None


@click.command("load-demo")
@click.option("--database-url", help=_DB_HELP)
@click.option("--tenant", help=_TENANT_HELP)
def load_demo_command(database_url, tenant):
    """Load the demo bank (600 questions, published and calibrated for DEMO-EXAM)."""
    url, tenant = _database_url(database_url), _tenant(tenant)
    added = _load_demo(url, tenant)
    click.echo(
        f"demo bank: {added} new question(s) loaded into {_redact(url)} (tenant {tenant}, exam DEMO-EXAM)"
    )


@click.command("import-calibration")
@click.argument("pool_file", type=click.Path(dir_okay=False))
@click.option(
    "--report",
    "report_file",
    type=click.Path(dir_okay=False),
    default=None,
    help="Calibration report of the pool (default: <stem>.report.json beside POOL_FILE, when there is "
    "one): records each item's number of respondents and checks for poorly determined items.",
)
@click.option(
    "--poorly-determined",
    "policy",
    type=click.Choice(["refuse", "skip", "keep"]),
    default="refuse",
    show_default=True,
    help="Items the report flags poorly_determined: refuse the import, import the "
    "others, or import them anyway.",
)
@click.option("--database-url", help=_DB_HELP)
@click.option("--tenant", help=_TENANT_HELP)
def import_calibration_command(pool_file, report_file, policy, database_url, tenant):
    """Import item parameters from a pool CSV/Parquet (item_id = question external_ref)."""
    from qbank._messages import shown
    from qbank.calibration import CalibrationError, CalibrationReport
    from qbank.cli._common import read_pool
    from service.calibration import CheckedPool, PoorlyDetermined, check_against_report, import_calibration
    from service.errors import Invalid

    pool_path = Path(pool_file)
    pool = read_pool(pool_file, option="POOL_FILE")
    report_path = Path(report_file) if report_file else pool_path.with_name(pool_path.stem + ".report.json")
    if report_file is None and not report_path.exists():
        click.echo(
            f"note: no {report_path.name} beside {pool_path.name}: respondents not recorded, "
            "items not checked for poor determination",
            err=True,
        )
        checked = CheckedPool(pool)
    else:
        try:
            checked = check_against_report(
                pool,
                CalibrationReport.read_items(report_path),
                pool_path.name,
                report_path.name,
                policy,
                option="--poorly-determined {}",
            )
        except PoorlyDetermined as exc:
            raise click.BadParameter(str(exc), param_hint="--poorly-determined") from None
        except (CalibrationError, Invalid) as exc:
            raise click.BadParameter(str(exc), param_hint="--report") from None
    if checked.skipped:
        click.echo(
            f"skipped {len(checked.skipped)} poorly determined item(s): {shown(checked.skipped)}", err=True
        )
    if checked.kept:
        click.echo(
            f"warning: importing {len(checked.kept)} poorly determined item(s): {shown(checked.kept)}",
            err=True,
        )
    url, tenant = _database_url(database_url), _tenant(tenant)
    with _session(url) as session:
        count = import_calibration(
            session,
            tenant,
            "cli",
            checked.pool,
            pool_path.name,
            n_respondents=checked.n_respondents,
            details=checked.details,
        )
    click.echo(
        f"imported {count} calibration(s) ({checked.pool.model}) from {pool_file} into tenant {tenant}"
    )


@click.command("create-user")
@click.argument("username")
@click.option(
    "--role",
    "roles",
    multiple=True,
    required=True,
    type=click.Choice(["student", "author", "publisher", "admin"]),
    help="repeat for several roles",
)
@click.option(
    "--password",
    prompt=True,
    hide_input=True,
    confirmation_prompt=True,
    envvar="QBANK_USER_PASSWORD",
    help="prompted when not given (or $QBANK_USER_PASSWORD)",
)
@click.option("--database-url", help=_DB_HELP)
@click.option("--tenant", help=_TENANT_HELP)
def create_user_command(username, roles, password, database_url, tenant):
    """Create a user who logs in with POST /v1/auth/login (password stored as an argon2 hash)."""
    from service.users import create_user

    url, tenant = _database_url(database_url), _tenant(tenant)
    with _session(url) as session:
        user = create_user(session, tenant, username, password, list(roles))
    click.echo(f"created user {user.username} ({', '.join(user.roles)}) in tenant {tenant}: id {user.id}")


@click.command("serve")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=click.IntRange(1, 65535), default=8000, show_default=True)
@click.option("--workers", type=click.IntRange(min=1), default=1, show_default=True)
@click.option("--database-url", help=_DB_HELP)
@click.option("--dev", is_flag=True, help="QBANK_ENV=dev: mock login on, default secret allowed")
@click.option("--with-demo", is_flag=True, help="load the demo bank first (as load-demo)")
@click.option(
    "--log-level",
    default="warning",
    show_default=True,
    type=click.Choice(["critical", "error", "warning", "info", "debug"]),
)
def serve(host, port, workers, database_url, dev, with_demo, log_level):
    """Migrate the database, then run the delivery service (uvicorn)."""
    import uvicorn
    from pydantic import ValidationError

    from service.core.config import Settings

    url = _database_url(database_url)
    # The workers build their app from the environment (uvicorn's --factory).
    os.environ["QBANK_DATABASE_URL"] = url
    if dev:
        os.environ["QBANK_ENV"] = "dev"
    try:
        settings = Settings()
    except ValidationError as exc:
        messages = "; ".join(err["msg"].removeprefix("Value error, ") for err in exc.errors())
        raise click.ClickException(f"invalid settings: {messages}") from None
    _migrate(url)
    if with_demo:
        added = _load_demo(url, settings.default_tenant)
        click.echo(
            f"demo bank: {added} new question(s) loaded (exam DEMO-EXAM, tenant {settings.default_tenant})"
        )
    base = f"http://{host}:{port}"
    click.echo(f"qbank service ({settings.env}) on {_redact(url)}")
    click.echo(f"  API:    {base}/v1   docs: {base}/docs   health: {base}/health")
    if settings.mock_login_enabled:
        click.echo(
            f"  token:  curl -X POST {base}/v1/auth/mock-login -H 'Content-Type: application/json' "
            '-d \'{"user_id": "demo", "roles": ["student"]}\''
        )
    # uvloop and httptools (dependencies) are uvicorn's "auto" choices. The access log only at info
    # or debug: below that uvicorn would still format each request's line for a logger that drops it.
    uvicorn.run(
        "service.main:create_app",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        log_level=log_level,
        access_log=log_level in ("info", "debug"),
    )


@click.command("audit-quiz")
@click.argument("quiz_id")
@click.option("--database-url", help=_DB_HELP)
@click.option("--tenant", help=_TENANT_HELP)
def audit_quiz_command(quiz_id, database_url, tenant):
    """Replay a served quiz in the core under the rules it pinned: identical, or the first
    position where it diverges and why (exit status 1)."""
    from service.exposure.audit import audit_quiz

    url, tenant = _database_url(database_url), _tenant(tenant)
    with _session(url) as session:
        result = audit_quiz(session, tenant, quiz_id)
    bundle = result["bundle_id"] or "no bundle (explicit settings)"
    if result["identical"]:
        click.echo(f"quiz {quiz_id}: identical ({result['positions']} position(s), rules of {bundle})")
        return
    click.echo(
        f"quiz {quiz_id}: diverges at position {result['position']} (rules of {bundle}): {result['reason']}"
    )
    raise SystemExit(1)
