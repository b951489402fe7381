"""The exposure-administration pages in Chromium: bundles (upload, refusal, validation report
and plots, promote and roll back with confirmation, audit trail), the exposure table's bundle
column, the selector flag with cohorts and the A/B report, and the drift report with its plot."""

from __future__ import annotations

import json
from functools import lru_cache

import httpx
import pytest
from sqlalchemy import select

from qbank.exposure import build_bundle, calibrate_exposure, validate_exposure
from qbank.pool import load_pool
from qbank.stopping import FixedLength
from service import exposure_admin
from service.models import FeatureFlag, ItemExposureControl, Question

from test_admin_ui import DEMO_POOL, _column

pytestmark = pytest.mark.browser

EXAM = "DEMO-EXAM"


@lru_cache(maxsize=None)
def _bundle_json(r_max: float) -> str:
    """A validated classic Sympson-Hetter bundle of the demo pool, 5-item tests (small N)."""
    calibration = calibrate_exposure(load_pool(DEMO_POOL), r_max, stopping=FixedLength(5), n_examinees=4000, rng=0)
    validation = validate_exposure(calibration, n_examinees=8000, rng=1)
    assert validation.passed, validation.problems
    return json.dumps(build_bundle(calibration, validation))


@pytest.fixture(scope="module")
def bundle_files(tmp_path_factory):
    """{r_max: path of the bundle file} for r_max 0.25 and 0.3."""
    folder = tmp_path_factory.mktemp("bundles")
    files = {}
    for r_max in (0.25, 0.3):
        files[r_max] = folder / f"bundle-{r_max}.json"
        files[r_max].write_text(_bundle_json(r_max))
    return files


def _upload(page, path) -> None:
    page.goto("/admin/bundles")
    page.get_by_label("Bundle JSON file").set_input_files(str(path))
    page.get_by_role("button", name="Upload bundle", exact=True).click()


def _promote_from_detail(page) -> None:
    page.get_by_role("link", name="Promote this bundle").click()
    assert "Promote bundle" in page.locator("h1").inner_text()
    page.get_by_role("button", name="Promote bundle", exact=True).click()
    page.wait_for_url("**/admin/bundles?done=promoted")


def _image_loaded(page, selector: str) -> int:
    """Natural width of an image once loaded (0 when it failed)."""
    image = page.locator(selector)
    image.scroll_into_view_if_needed()
    page.wait_for_function("(el) => el.complete", arg=image.element_handle())
    return image.evaluate("(el) => el.naturalWidth")


def _bundle_status(page, bundle_id: str) -> str:
    return page.locator(f"#bundles-table tr[data-bundle-id='{bundle_id}'] .status").inner_text()


def test_upload_refusal_promote_rollback_and_audit(page, ui_server, sign_in, shot, bundle_files, tmp_path):
    sign_in.dev(page, "bundle-admin", role="admin", next_path="/admin/bundles")
    broken = tmp_path / "broken.json"
    broken.write_text('{"schema": "qbank.exposure-bundle/1", "items": [')
    _upload(page, broken)
    refusal = page.locator("#bundles-error").inner_text()
    assert refusal.startswith("Not uploaded: exposure bundle refused, failed check(s) malformed: (document): "
                              "not valid JSON")
    shot(page, "admin-bundle-refused")

    first = json.loads(bundle_files[0.25].read_text())
    _upload(page, bundle_files[0.25])
    page.wait_for_url("**/admin/bundles/*?done=*")
    first_id = page.url.split("/admin/bundles/")[1].split("?")[0]
    assert page.locator("#bundle-status").inner_text() == "staged"
    figures = page.locator("#validation-table").inner_text()
    assert f"{first['validation']['max_exposure']:.4f} vs 0.25" in figures
    assert f"RMSE of θ with control\t{first['validation']['rmse']:.4f}" in figures
    assert f"RMSE of θ without control\t{first['validation']['uncontrolled']['rmse']:.4f}" in figures
    assert f"Iterations\t{first['simulation']['iterations']} of at most" in figures
    assert "Converged\tyes" in figures
    for plot in ("#plot-convergence", "#plot-exposure", "#plot-k"):
        assert _image_loaded(page, plot) > 300, plot
    shot(page, "admin-bundle-detail")

    _promote_from_detail(page)
    assert _bundle_status(page, first_id) == "active"
    shot(page, "admin-bundles-promoted")

    # The exposure table shows the bundle's sh_p, now also in force.
    controlled = next(item for item in first["items"] if item["sh_p"] < 1)
    page.goto(f"/admin/exposure?q={controlled['item_id']}")
    assert _column(page, "Item") == [controlled["item_id"]]
    assert _column(page, "Bundle sh_p")[0] == f"{controlled['sh_p']:.3f}"
    assert _column(page, "sh_p")[0].startswith(f"{controlled['sh_p']:.3f}")
    shot(page, "admin-exposure-bundle")
    with ui_server.session_factory() as session:
        question_id = session.scalar(select(Question.id).where(Question.external_ref == controlled["item_id"]))
        assert session.get(ItemExposureControl, (question_id, 1)).sh_p == pytest.approx(controlled["sh_p"])

    # A second bundle replaces it; rolling back (after confirming) brings the first back.
    _upload(page, bundle_files[0.3])
    page.wait_for_url("**/admin/bundles/*?done=*")
    second_id = page.url.split("/admin/bundles/")[1].split("?")[0]
    _promote_from_detail(page)
    assert (_bundle_status(page, second_id), _bundle_status(page, first_id)) == ("active", "superseded")
    page.get_by_role("link", name="Roll back to the previous bundle").click()
    assert first_id[:8] in page.locator("#confirm-question").inner_text()
    shot(page, "admin-rollback-confirm")
    page.get_by_role("link", name="Cancel").click()  # cancelling changes nothing
    assert _bundle_status(page, second_id) == "active"
    page.get_by_role("link", name="Roll back to the previous bundle").click()
    page.get_by_role("button", name="Roll back", exact=True).click()
    page.wait_for_url("**/admin/bundles?done=rolled-back")
    assert (_bundle_status(page, first_id), _bundle_status(page, second_id)) == ("active", "superseded")
    audit = page.locator("#audit-table tbody tr").all_inner_texts()
    assert audit[0].split("\t")[1:4] == ["bundle-admin", "bundle.rollback", first_id[:8]]
    assert [row.split("\t")[2] for row in audit[:5]] == ["bundle.rollback", "bundle.promote", "bundle.upload",
                                                         "bundle.promote", "bundle.upload"]
    shot(page, "admin-bundles-rolled-back")
