"""Partial credit in Chromium (issue 18): a tutor quiz on POLY-CHECK (two items scored 0/1/2,
one dichotomous) shows no score before the answer, the credit earned after it and the points
on the results page; the admin exposure table shows a GRM/GPCM item's thresholds."""

from __future__ import annotations

import re

import pytest

from service.authoring import question_detail
from service.quizzes import summary

pytestmark = pytest.mark.browser


def _scores(ui_server, question_id: int) -> dict:
    """Option label -> score, and the rationale, of a served question (what an auditor knows)."""
    with ui_server.session_factory() as session:
        version = question_detail(session, ui_server.tenant, question_id)["versions"][0]
    return {o["label"]: o["score"] for o in version["options"]}, version["rationale_md"]


def test_partial_credit_quiz_in_tutor_mode(page, ui_server, sign_in, shot):
    user_id = "poly-student"
    sign_in.dev(page, user_id)
    page.goto("/")
    page.get_by_label("Exam", exact=True).select_option(ui_server.poly_exam)
    page.get_by_role("radio", name=re.compile("^Tutor mode")).check()
    page.get_by_label("Number of questions").fill("3")
    page.get_by_role("button", name="Start quiz", exact=True).click()
    page.wait_for_url(re.compile(r"/quiz/[0-9a-f-]{36}$"))
    quiz_id = re.search(r"/quiz/([0-9a-f-]{36})", page.url).group(1)

    earned, possible, full = 0, 0, 0
    for position in range(3):
        question_id = int(page.locator("input[name=question_id]").input_value())
        scores, rationale = _scores(ui_server, question_id)
        top = max(scores.values())
        html = page.content()
        # Neither the scores nor the key nor the rationale reach the page before the answer.
        assert "points" not in html and "score" not in html.lower() and rationale not in html
        assert page.get_by_role("radio").count() == len(scores)
        if position == 0:
            shot(page, "poly-question")
        # Partial credit where there is any, else the key.
        label = next((k for k, s in scores.items() if 0 < s < top), None) or max(scores, key=scores.get)
        page.get_by_role("radio", name=re.compile(rf"^{label}\.")).check()
        page.get_by_role("button", name="Submit answer", exact=True).click()
        page.wait_for_url(re.compile(rf"/quiz/{quiz_id}/answered/{position}$"))
        heading = page.get_by_role("heading", level=1).inner_text()
        if top > 1:
            assert heading == f"Question {position + 1}: Partial credit ({scores[label]} of {top} points)"
            assert page.locator("#credit").inner_text() == f"{scores[label]} of {top} points"
            key = max(scores, key=scores.get)
            assert f"Full-credit answer: {key}." in page.locator("#key").inner_text()
            tags = page.locator(".options-review .credit").all_inner_texts()
            assert [t.lower() for t in tags] == [f"{scores[k]} of {top} points" for k in sorted(scores)]
            shot(page, "poly-partial-credit")
        else:
            assert heading == f"Question {position + 1}: Correct"
            assert page.locator("#key").inner_text() == f"Your answer: {label}. Correct answer: {label}."
        assert page.locator("#rationale").inner_text().strip() == rationale
        earned, possible, full = earned + scores[label], possible + top, full + int(scores[label] == top)
        page.get_by_role("button", name="Finish" if position == 2 else "Next question", exact=True).click()

    page.wait_for_url(re.compile(rf"/quiz/{quiz_id}/results\??$"))
    shot(page, "poly-results")
    assert page.locator("#score").inner_text() == f"{full} of 3 correct ({100 * full / 3:.0f}%)"
    assert (
        page.locator("#points").inner_text()
        == f"{earned} of {possible} points ({100 * earned / possible:.0f}%)"
    )
    with ui_server.session_factory() as session:
        service = summary(session, ui_server.token_user(user_id), quiz_id)
    assert sum(row["score"] for row in service["items"]) == earned
    assert page.locator("#theta").inner_text() == f"{service['theta']:.2f}"
    review = page.locator("ol.review > li").all_inner_texts()
    assert sum("Partial credit (1 of 2 points): your answer" in text for text in review) == 2


def test_admin_exposure_table_shows_category_thresholds(page, ui_server, sign_in, shot):
    sign_in.dev(page, "poly-admin", role="admin", next_path="/admin/exposure")
    page.get_by_label("Topic").select_option("partial-credit")
    page.get_by_role("button", name="Apply filters", exact=True).click()
    cells = page.locator("#exposure-table tbody .thresholds").all_inner_texts()
    assert sorted(cells) == ["GPCM: -0.3 / 0.9", "GRM: -0.8 / 0.6"]
    shot(page, "poly-admin-exposure")


def test_author_writes_a_partial_credit_question(page, ui_server, sign_in, shot):
    sign_in.dev(page, "poly-author", role="admin", next_path="/author/questions/new")
    page.wait_for_url("**/author/questions/new")
    page.get_by_label("Reference").fill("POLY-NEW")
    page.get_by_label("Topic").fill("partial-credit")
    page.get_by_label("Stem").fill("Factor x² − 1 and simplify (x² − 1)/(x − 1).")
    page.get_by_label("Explanation").fill("x² − 1 = (x − 1)(x + 1), so the quotient is x + 1 for x ≠ 1.")
    for label, text, score in (("A", "x + 1, for x ≠ 1", "2"), ("B", "x + 1", "3"), ("C", "x − 1", "0")):
        page.get_by_label(f"Option {label} text").fill(text)
        page.get_by_label(f"Option {label} score").fill(score)
    page.get_by_role("button", name="Save as draft", exact=True).click()
    alert = page.get_by_role("alert").inner_text()
    assert "Options: score: the scores must be 0, 1, .., m-1 with every category present" in alert, alert
    assert page.get_by_label("Option B text").input_value() == "x + 1"  # the form keeps what was typed
    shot(page, "author-score-gap")
    page.get_by_label("Option B score").fill("1")
    page.get_by_role("button", name="Save as draft", exact=True).click()
    page.wait_for_url(re.compile(r"/author/questions/\d+\?saved=1$"))
    assert page.get_by_role("status").inner_text() == "Saved as a draft."
    rows = page.locator(".options-scores tbody tr").all_inner_texts()
    assert [re.sub(r"\s+", " ", r).strip() for r in rows] == [
        "A x + 1, for x ≠ 1 2 of 2 FULL CREDIT",  # a .tag is set in capitals
        "B x + 1 1 of 2",
        "C x − 1 0 of 2",
    ]
    assert page.locator(".scoring").inner_text() == "Partial credit: 3 score categories (0 to 2)."
    assert page.get_by_role("button", name="Publish", exact=True).count() == 1
    shot(page, "author-question")


def test_author_page_shows_a_calibrated_grm_item(page, ui_server, sign_in):
    with ui_server.session_factory() as session:
        from sqlalchemy import select

        from service.models import Question

        qid = session.scalar(select(Question.id).where(Question.external_ref == "POLY-1"))
    sign_in.dev(page, "poly-author-2", role="admin", next_path=f"/author/questions/{qid}")
    page.wait_for_url(f"**/author/questions/{qid}")
    assert (
        page.locator(".calibration")
        .inner_text()
        .startswith("Calibration: GRM, a = 1.200, b = -0.100 (thresholds -0.8 / 0.6), D = 1.0")
    )
    assert page.locator("#publications").inner_text() == "Live: POLY-CHECK version 1"
