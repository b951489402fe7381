"""The admin UI's outbox page in Chromium: the relay's lag as the database has it, before and
after a real relay run to the NATS JetStream server on 127.0.0.1:4222."""

from __future__ import annotations

import pytest
from click.testing import CliRunner
from sqlalchemy import func, select

from qbank.cli.main import cli
from service.events import emit
from service.models import OutboxEvent
from tests.service.relay_support import SHARED_NATS, broker_url, delete_stream, unique_stream

pytestmark = pytest.mark.browser

TENANT = "00000000-0000-0000-0000-000000000001"


def _unsent(session_factory) -> int:
    with session_factory() as session:
        return session.scalar(
            select(func.count()).select_from(OutboxEvent).where(OutboxEvent.published_at.is_(None))
        )


def test_outbox_page_shows_the_lag_and_the_drained_outbox(page, ui_server, sign_in, shot):
    with ui_server.session_factory() as session:
        for position in range(3):
            emit(session, TENANT, "question_served", "quiz", "ui-outbox", {"position": position})
        session.commit()
    backlog = _unsent(ui_server.session_factory)
    assert backlog >= 3

    page.goto("/admin/outbox")
    sign_in.password(page, *ui_server.admin)
    page.wait_for_url("**/admin/outbox")
    assert page.locator("#outbox-backlog").inner_text() == str(backlog)
    assert " s old (written " in page.locator("#outbox-age").inner_text()
    assert page.get_by_role("link", name="Outbox").get_attribute("aria-current") == "page"
    shot(page, "admin-outbox-backlog")

    name, prefix = unique_stream()
    try:
        result = CliRunner().invoke(
            cli,
            [
                "relay",
                "--broker",
                broker_url(SHARED_NATS, name, prefix),
                "--once",
                "--database-url",
                ui_server.database_url,
            ],
        )
    finally:
        delete_stream(SHARED_NATS, name)
    assert result.exit_code == 0, result.output
    page.reload()
    assert page.locator("#outbox-backlog").inner_text() == "0"
    assert page.locator("#outbox-age").inner_text() == "none waiting"
    assert page.locator("#outbox-status").inner_text() == "The relay is up to date."
    shot(page, "admin-outbox-drained")
