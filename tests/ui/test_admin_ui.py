"""The admin UI in Chromium: the exposure table (sort, filter, paging) and the inline sh_p edit."""

from __future__ import annotations

import re
from pathlib import Path

import httpx
import pandas as pd
import pytest
from sqlalchemy import func, select

from service.models import AuditLog, ExposureBundle, Question

pytestmark = pytest.mark.browser

DEMO_POOL = Path(__file__).resolve().parents[2] / "data" / "demo_pool.csv"
N_LIVE = 600 + 2 + 3  # the demo bank, the two XSS-CHECK and the three POLY-CHECK items of the seed


def _column(page, header: str) -> list[str]:
    """The cells of one column of the exposure table, by its header text."""
    headers = page.locator("#exposure-table thead th").all_inner_texts()
    index = next(i for i, text in enumerate(headers) if re.sub(r"\s*[▲▼]$", "", text.strip()) == header)
    return page.locator(f"#exposure-table tbody tr > :nth-child({index + 1})").all_inner_texts()


def _count_line(page) -> str:
    return page.locator("#exposure-count").inner_text()


def test_exposure_table_sort_filter_and_paging(page, ui_server, sign_in, shot):
    pool = pd.read_csv(DEMO_POOL, dtype={"item_id": str})
    page.goto("/admin")
    assert "/signin?next=%2Fadmin" in page.url
    sign_in.password(page, *ui_server.admin)
    page.wait_for_url("**/admin/exposure")
    assert _count_line(page).startswith(f"Items 1–50 of {N_LIVE}, sorted by Attempts (7 d), descending")
    assert page.locator("#exposure-table tbody tr").count() == 50
    shot(page, "admin-exposure")

    page.get_by_role("link", name="Next page").click()
    assert _count_line(page).startswith(f"Items 51–100 of {N_LIVE}")
    assert "Page 2 of 13" in page.get_by_role("navigation", name="Pages").inner_text()

    page.get_by_role("link", name="b", exact=True).click()  # first click: descending, back to page 1
    assert page.locator("th[aria-sort=descending]").inner_text().startswith("b")
    b_desc = [float(v) for v in _column(page, "b")]
    assert b_desc == sorted(b_desc, reverse=True) and b_desc[0] == pytest.approx(pool["b"].max(), abs=5e-4)
    page.get_by_role("link", name="b", exact=True).click()  # second click: ascending
    b_asc = [float(v) for v in _column(page, "b")]
    assert b_asc == sorted(b_asc) and b_asc[0] == pytest.approx(pool["b"].min(), abs=5e-4)

    page.get_by_label("Topic").select_option("division")
    page.get_by_label("Rows per page").select_option("100")
    page.get_by_role("button", name="Apply filters", exact=True).click()
    n_division = int((pool["topic"] == "division").sum())
    assert f"of {n_division} (filtered from {N_LIVE})" in _count_line(page)
    assert set(_column(page, "Topic")) == {"division"}
    b_filtered = [float(v) for v in _column(page, "b")]
    assert b_filtered == sorted(b_filtered)  # the sort survives filtering
    shot(page, "admin-exposure-filtered")


def test_inline_sh_p_edit_validates_saves_and_audits(page, ui_server, sign_in, shot):
    sign_in.dev(page, "admin-editor", role="admin", next_path="/admin/exposure")
    page.get_by_label("Item", exact=True).fill("DEMO-0042")
    page.get_by_role("button", name="Apply filters", exact=True).click()
    assert page.locator("#exposure-table tbody tr").count() == 1
    assert _column(page, "sh_p")[0].startswith("1.000")

    page.get_by_role("button", name="Edit sh_p of DEMO-0042", exact=True).click()
    dialog = page.get_by_role("dialog", name="Set sh_p")
    field = dialog.get_by_label("New sh_p (from 0 to 1)")
    field.fill("1.5")
    dialog.get_by_role("button", name="Save sh_p", exact=True).click()
    assert (
        dialog.get_by_role("alert").inner_text()
        == "Not saved: sh_p: Input should be less than or equal to 1."
    )
    shot(page, "admin-sh-edit-refused")
    field.fill("0.35")
    dialog.get_by_role("button", name="Save sh_p", exact=True).click()
    dialog.wait_for(state="hidden")
    # K is stored once, in bundle revisions: the edit is a new unvalidated revision, pending.
    assert page.locator(".sh-value").inner_text() == "1.000"
    assert page.locator(".sh-pending").inner_text() == "→ 0.350 pending"
    assert _count_line(page).startswith("Saved: sh_p of DEMO-0042 is 0.350 in unvalidated revision ")

    with ui_server.session_factory() as session:
        question_id = session.scalar(select(Question.id).where(Question.external_ref == "DEMO-0042"))
        entry = session.scalars(
            select(AuditLog).where(AuditLog.action == "exposure.set").order_by(AuditLog.id.desc())
        ).first()
        revision = session.get(ExposureBundle, entry.details["revision"])
        assert (entry.actor, entry.entity_id, entry.details["sh_p"]) == (
            "admin-editor",
            f"{question_id}:1",
            0.35,
        )
        assert revision.status == "unvalidated" and revision.created_by == "admin-editor"
        assert {"item_id": "DEMO-0042", "sh_p_old": 1.0, "sh_p_new": 0.35} in revision.document["revision"][
            "changes"
        ]
    listing = httpx.get(
        f"{ui_server.base_url}/v1/admin/exposure/items",
        params={"limit": 10_000},
        headers=ui_server.api_headers("auditor"),
    ).json()
    row = next(r for r in listing if r["question_id"] == question_id)
    assert (row["sh_p"], row["pending_sh_p"]) == (1.0, 0.35)

    page.goto("/admin/exposure?q=DEMO-0042")  # a reload shows the pending value
    assert _column(page, "Item") == ["DEMO-0042"] and "0.350 pending" in _column(page, "sh_p")[0]
    shot(page, "admin-sh-edited")

    # The revision's page shows it unvalidated and offers a validation run (the run itself, a
    # background job of 20,000 simulees, is tested through the API with fewer).
    page.goto(f"/admin/bundles/{revision.id}")
    assert "unvalidated" in page.locator("#validation-state").inner_text()
    assert page.get_by_role("button", name="Run a validation", exact=True).is_visible()
    shot(page, "admin-revision-validation")


def test_sh_p_edit_needs_the_pages_csrf_token_and_admin_role(page, ui_server, sign_in):
    sign_in.dev(page, "admin-csrf", role="admin", next_path="/admin/exposure")
    body = {"question_id": 1, "version": 1, "sh_p": 0.5}

    def revisions():
        with ui_server.session_factory() as session:
            return session.scalar(select(func.count()).select_from(ExposureBundle))

    before = revisions()
    assert page.request.post("/admin/exposure/set", data=body).status == 403
    assert (
        page.request.post("/admin/exposure/set", data=body, headers={"X-CSRF-Token": "forged"}).status == 403
    )
    student = page.context.browser.new_context(base_url=ui_server.base_url)
    try:
        student_page = student.new_page()
        sign_in.dev(student_page, "student-not-admin")
        refused = student_page.request.post("/admin/exposure/set", data=body, max_redirects=0)
        assert refused.status == 303 and "/signin?next=" in refused.headers["location"]
    finally:
        student.close()
    assert revisions() == before  # refused: no revision was made
