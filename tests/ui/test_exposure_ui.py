"""The exposure-administration pages in Chromium: bundles (upload, refusal, validation report
and plots, promote and roll back with confirmation, audit trail), the exposure table's bundle
column, the selector flag with cohorts and the A/B report, and the drift report with its plot."""

from __future__ import annotations

import json
from functools import cache

import httpx
import pytest
from sqlalchemy import select, update
from test_admin_ui import DEMO_POOL, _column

from qbank.exposure import build_bundle, calibrate_exposure, validate_exposure
from qbank.pool import load_pool
from qbank.stopping import FixedLength
from service import exposure
from service.models import ExposureBundle, FeatureFlag, Question

pytestmark = pytest.mark.browser

EXAM = "DEMO-EXAM"


@cache
def _bundle_json(r_max: float) -> str:
    """A validated classic Sympson-Hetter bundle of the demo pool, 5-item tests (small N)."""
    calibration = calibrate_exposure(
        load_pool(DEMO_POOL), r_max, stopping=FixedLength(5), n_examinees=4000, rng=0
    )
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


@pytest.fixture(autouse=True, scope="module")
def _no_bundle_in_force_afterwards(ui_server):
    """Bundles these tests promote govern every later quiz's rules (the bundle's stopping rule, not
    the request's length); the other UI modules start quizzes with no bundle in force."""
    yield
    with ui_server.session_factory() as session:
        session.execute(
            update(ExposureBundle).where(ExposureBundle.status == "active").values(status="superseded")
        )
        session.commit()


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
    assert refusal.startswith(
        "Not uploaded: exposure bundle refused, failed check(s) malformed: (document): not valid JSON"
    )
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
        question_id = session.scalar(
            select(Question.id).where(Question.external_ref == controlled["item_id"])
        )
    # In force = the active bundle's K, read through the API (the bundle is its one store).
    listed = httpx.get(
        f"{ui_server.base_url}/v1/admin/exposure/items?limit=10000",
        headers=ui_server.api_headers("exposure-reader"),
        timeout=60,
    )
    assert listed.status_code == 200, listed.text
    listing = {r["question_id"]: r for r in listed.json()}
    assert listing[question_id]["sh_p"] == pytest.approx(controlled["sh_p"])

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
    assert [row.split("\t")[2] for row in audit[:5]] == [
        "bundle.rollback",
        "bundle.promote",
        "bundle.upload",
        "bundle.promote",
        "bundle.upload",
    ]
    shot(page, "admin-bundles-rolled-back")


@pytest.fixture(scope="module")
def active_bundle(ui_server, bundle_files):
    """The r_max 0.25 bundle of the demo pool, uploaded (or found) and promoted through the API
    unless it is active already; returns its summary."""
    headers = ui_server.api_headers("bundle-fixture")
    uploaded = httpx.post(
        f"{ui_server.base_url}/v1/admin/exposure/bundles",
        content=bundle_files[0.25].read_bytes(),
        headers={**headers, "Content-Type": "application/json"},
        timeout=60,
    )
    assert uploaded.status_code in (200, 201), uploaded.text
    summary = uploaded.json()
    if summary["status"] != "active":
        promoted = httpx.post(
            f"{ui_server.base_url}/v1/admin/exposure/bundles/{summary['id']}/promote",
            headers=headers,
            timeout=60,
        )
        assert promoted.status_code == 200, promoted.text
        summary = promoted.json()
    yield summary
    _supersede_active(ui_server)  # later tests start quizzes with no bundle in force


def _take_quizzes(ui_server, users: list[str], length: int = 3) -> None:
    """Each user starts an adaptive exam-mode quiz of DEMO-EXAM through the API and is served
    ``length`` items (answers are not needed for exposure)."""
    with httpx.Client(base_url=ui_server.base_url, timeout=30) as client:
        for user in users:
            headers = ui_server.api_headers(user, roles=("student",))
            started = client.post(
                "/v1/quizzes",
                headers=headers,
                json={"filters": {"num_questions": length, "exam_code": EXAM, "mode": "exam"}},
            )
            assert started.status_code == 201, started.text
            quiz_id = started.json()["quiz_id"]
            for _ in range(length):
                item = client.get(f"/v1/quizzes/{quiz_id}/next", headers=headers)
                assert item.status_code == 200, item.text
                answer = client.post(
                    f"/v1/quizzes/{quiz_id}/answers",
                    headers=headers,
                    json={"question_id": item.json()["question_id"], "selected": "A"},
                )
                assert answer.status_code == 200, answer.text


def test_selector_flag_weights_cohorts_and_ab_report(page, ui_server, sign_in, shot, active_bundle):
    sign_in.dev(page, "flag-admin", role="admin", next_path="/admin/flags")
    form = page.locator("#flag-form")
    try:
        form.get_by_label("Weight of vanilla").fill("3")
        form.get_by_label("Weight of sympson_hetter").fill("-1")
        form.get_by_label("Weight of conditional_sympson_hetter").fill("")
        form.get_by_label("Experiment key").fill("ui-selector-test")
        form.get_by_role("button", name="Save flag", exact=True).click()
        assert page.locator("#flags-error").inner_text() == (
            "Not saved: value_json.variants.sympson_hetter: weight must be a number >= 0, got -1.0"
        )
        assert form.get_by_label("Weight of sympson_hetter").input_value() == "-1"  # kept for correction
        form.get_by_label("Weight of sympson_hetter").fill("1")
        form.get_by_role("button", name="Save flag", exact=True).click()
        page.wait_for_url("**/admin/flags?done=saved")
        assert page.locator("#flag-state").inner_text() == (
            "Flag is on; variants sympson_hetter = 1.0, vanilla = 3.0; experiment ui-selector-test."
        )
        assert form.get_by_label("Weight of vanilla").input_value() == "3.0"
        with ui_server.session_factory() as session:
            flag = session.get(FeatureFlag, (ui_server.tenant, "selector_strategy"))
            assert (flag.enabled, flag.value_json) == (
                True,
                {"variants": {"vanilla": 3.0, "sympson_hetter": 1.0}, "experiment": "ui-selector-test"},
            )

        users = [f"ab-student-{i}" for i in range(8)]
        _take_quizzes(ui_server, users)
        expected = {}
        for user in users:
            variant = exposure.assign_variant(
                "ui-selector-test", user, {"vanilla": 3.0, "sympson_hetter": 1.0}
            )
            expected[variant] = expected.get(variant, 0) + 1
        page.reload()
        cohorts = {
            row.split("\t")[0]: row.split("\t")[1:]
            for row in page.locator("#cohorts-table tbody tr").all_inner_texts()
        }
        assert {name: int(cells[0]) for name, cells in cohorts.items()} == {
            "sympson_hetter": expected.get("sympson_hetter", 0),
            "vanilla": expected.get("vanilla", 0),
        }
        assert cohorts["vanilla"][2] == "0.750" and cohorts["sympson_hetter"][2] == "0.250"
        report = {
            row.split("\t")[0]: row.split("\t")[1:]
            for row in page.locator("#ab-table tbody tr").all_inner_texts()
        }
        assert {name: int(cells[1]) for name, cells in report.items()} == expected  # quizzes per cohort
        assert report.get("vanilla", ["max_info"])[0] == "max_info"
        shot(page, "admin-flags")
    finally:  # later tests' students keep the default selector
        with ui_server.session_factory() as session:
            exposure.set_flag(session, ui_server.tenant, "ui-tests", "selector_strategy", False, {})


def test_drift_table_and_plot(page, ui_server, sign_in, shot, active_bundle):
    _take_quizzes(ui_server, [f"drift-student-{i}" for i in range(3)])
    with ui_server.session_factory() as session:
        exposure.set_flag(
            session, ui_server.tenant, "ui-tests", "selector_strategy", True, {"value": "sympson_hetter"}
        )
    try:
        _take_quizzes(ui_server, [f"drift-sh-student-{i}" for i in range(4)])
    finally:
        with ui_server.session_factory() as session:
            exposure.set_flag(session, ui_server.tenant, "ui-tests", "selector_strategy", False, {})
    sign_in.dev(page, "drift-admin", role="admin", next_path="/admin/drift")
    summary = page.locator("#drift-summary").inner_text()
    report = httpx.get(
        f"{ui_server.base_url}/v1/admin/exposure/drift", headers=ui_server.api_headers("auditor"), timeout=60
    ).json()
    assert report["bundle_id"] == active_bundle["id"] and report["quizzes"] >= 4
    assert summary.startswith(
        f"Bundle {active_bundle['id'][:8]} (sympson_hetter, r_max 0.25): "
        f"{report['quizzes']} quizzes in 7 days"
    )
    rows = page.locator("#drift-table tbody tr").all_inner_texts()
    assert len(report["items"]) == 600 and len(rows) == 50  # the first page
    first = report["items"][0]  # largest |z| first, as in the API
    cells = rows[0].split("\t")
    assert cells[:4] == [
        first["item_id"],
        f"{first['predicted_rate']:.3f}",
        f"{first['observed_rate']:.3f} n = {report['quizzes']}" + ("*" if report["quizzes"] < 30 else ""),
        str(first["quizzes_administered"]),
    ]
    flagged = [row for row in report["items"] if row["drift"] or row["over_r_max"]]
    assert page.locator("#drift-table tbody tr.flagged").count() == len(
        [r for r in flagged if r in report["items"][:50]]
    )
    assert _image_loaded(page, "#drift-plot") > 300
    shot(page, "admin-drift")
    page.get_by_label("Only flagged items").check()
    page.get_by_role("button", name="Show", exact=True).click()
    assert page.locator("#drift-table tbody tr").count() == min(max(len(flagged), 1), 50)


def test_changes_need_the_pages_csrf_token(page, ui_server, sign_in, active_bundle):
    sign_in.dev(page, "csrf-admin", role="admin", next_path="/admin/bundles")
    for path in (
        "/admin/bundles",
        f"/admin/bundles/{active_bundle['id']}/promote",
        "/admin/bundles/rollback",
        "/admin/flags",
    ):
        assert page.request.post(path, form={"csrf_token": "forged"}).status == 403, path
    active = httpx.get(
        f"{ui_server.base_url}/v1/admin/exposure/bundles",
        params={"status": "active"},
        headers=ui_server.api_headers("auditor"),
    ).json()
    assert [b["id"] for b in active] == [active_bundle["id"]]  # the forged rollback changed nothing


def _supersede_active(ui_server) -> None:
    """No bundle in force: later tests start quizzes under explicit settings (their own length)."""
    with ui_server.session_factory() as session:
        session.execute(
            update(ExposureBundle).where(ExposureBundle.status == "active").values(status="superseded")
        )
        session.commit()
