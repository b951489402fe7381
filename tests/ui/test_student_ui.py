"""The student UI in Chromium: sign-in, tutor and exam quizzes end to end, resume, safe item text."""

from __future__ import annotations

import re

import pytest

from service.authoring import question_detail
from service.quizzes import summary

pytestmark = pytest.mark.browser


def _item_facts(ui_server, question_id: int) -> dict:
    """What an auditor knows about a served question: key, a wrong option, topic, texts."""
    with ui_server.session_factory() as session:
        version = question_detail(session, ui_server.tenant, question_id)["versions"][0]
    options = version["options"]
    return {
        "key": next(o["label"] for o in options if o["is_correct"]),
        "wrong": next(o["label"] for o in options if not o["is_correct"]),
        "topic": version["topic_name"],
        "stem_md": version["stem_md"],
        "rationale_md": version["rationale_md"],
    }


def _served_question_id(page) -> int:
    return int(page.locator("input[name=question_id]").input_value())


def _quiz_id(page) -> str:
    return re.search(r"/quiz/([0-9a-f-]{36})", page.url).group(1)


def _start_quiz(page, exam: str, mode: str, length: int) -> None:
    page.goto("/")
    page.get_by_label("Exam", exact=True).select_option(exam)
    page.get_by_role("radio", name=re.compile("^Tutor mode" if mode == "tutor" else "^Exam mode")).check()
    page.get_by_label("Number of questions").fill(str(length))
    page.get_by_role("button", name="Start quiz", exact=True).click()
    page.wait_for_url(re.compile(r"/quiz/[0-9a-f-]{36}$"))


def _choose(page, label: str) -> None:
    page.get_by_role("radio", name=re.compile(rf"^{label}\.")).check()
    page.get_by_role("button", name="Submit answer", exact=True).click()


def _service_summary(ui_server, user_id: str, quiz_id: str) -> dict:
    with ui_server.session_factory() as session:
        return summary(session, ui_server.token_user(user_id), quiz_id)


def _per_topic_table(page) -> dict:
    rows = {}
    for row in page.locator("#per-topic tbody tr").all():
        topic = row.locator("th").inner_text()
        answered, correct = (int(cell.inner_text()) for cell in row.locator("td").all()[:2])
        rows[topic] = (answered, correct)
    return rows


def test_password_sign_in_wrong_password_then_right_then_sign_out(page, ui_server, sign_in, shot):
    page.goto("/")
    assert "/signin?next=%2F" in page.url  # not signed in: sent to the sign-in page
    shot(page, "signin")
    username, password = ui_server.student
    sign_in.password(page, username, "not-the-password")
    page.get_by_role("alert").filter(has_text="Sign-in failed").wait_for()
    assert (
        page.get_by_role("alert").filter(has_text="Sign-in failed").inner_text()
        == "Sign-in failed: wrong username, password or tenant."
    )
    shot(page, "signin-error")
    sign_in.password(page, username, password)
    page.wait_for_url(f"{ui_server.base_url}/")
    assert page.get_by_role("heading", level=1).inner_text() == "Start a quiz"
    assert "Signed in as ada (student)" in page.locator("header").inner_text()
    shot(page, "student-home")
    page.get_by_role("button", name="Sign out", exact=True).click()
    page.wait_for_url("**/signin")
    page.goto("/")
    assert "/signin?next=" in page.url


def test_sign_in_and_answer_without_javascript(open_page, ui_server, sign_in):
    """The forms work as plain HTML: sign-in posts to the same login handler, answers post and redirect."""
    page = open_page(java_script_enabled=False)
    page.goto("/signin?next=/")
    page.get_by_label("User id").fill("no-script-dev")
    page.get_by_role("button", name="Dev sign-in as student", exact=True).click()
    assert "Signed in as no-script-dev (student)" in page.locator("header").inner_text()
    page.get_by_role("button", name="Sign out", exact=True).click()
    page.wait_for_url("**/signin")
    sign_in.password(page, *ui_server.student)
    page.wait_for_url(f"{ui_server.base_url}/")
    _start_quiz(page, "DEMO-EXAM", "tutor", 1)
    facts = _item_facts(ui_server, _served_question_id(page))
    _choose(page, facts["key"])
    assert page.get_by_role("heading", level=1).inner_text() == "Question 1: Correct"
    page.get_by_role("button", name="Finish", exact=True).click()
    assert page.locator("#score").inner_text() == "1 of 1 correct (100%)"


def test_start_form_names_the_bad_field(page, sign_in):
    sign_in.dev(page, "eager-student")
    length = page.get_by_label("Number of questions")
    length.evaluate("input => input.removeAttribute('max')")  # get past the browser's own check
    length.fill("500")
    page.get_by_role("button", name="Start quiz", exact=True).click()
    alert = page.get_by_role("alert")
    assert "Number of questions: Input should be less than or equal to 120" in alert.inner_text()


def test_tutor_quiz_end_to_end(page, ui_server, sign_in, shot):
    user_id = "tutor-student"
    sign_in.dev(page, user_id)
    _start_quiz(page, "DEMO-EXAM", "tutor", 5)
    quiz_id = _quiz_id(page)
    answer_right = [True, False, True, True, False]
    expected_topics: dict[str, list[int]] = {}
    for position, right in enumerate(answer_right):
        question_id = _served_question_id(page)
        facts = _item_facts(ui_server, question_id)
        main = page.get_by_role("main")
        assert facts["stem_md"] in main.locator("#stem").inner_text()
        assert facts["rationale_md"] not in page.content()  # the key stays on the server until answered
        assert page.get_by_role("heading", level=1).inner_text() == f"Question {position + 1}"
        radios = page.get_by_role("radio")
        assert radios.count() == 4 and all(radios.nth(i).is_visible() for i in range(4))
        if position == 1:
            page.reload()  # a reload shows the same pending question
            assert _served_question_id(page) == question_id
            shot(page, "tutor-question")
        _choose(page, facts["key"] if right else facts["wrong"])
        verdict = "Correct" if right else "Incorrect"
        assert page.get_by_role("heading", level=1).inner_text() == f"Question {position + 1}: {verdict}"
        chosen = facts["key"] if right else facts["wrong"]
        assert page.locator("#key").inner_text() == f"Your answer: {chosen}. Correct answer: {facts['key']}."
        assert page.locator("#rationale").inner_text().strip() == facts["rationale_md"]
        if position < 2:
            shot(page, f"tutor-feedback-{verdict.lower()}")
        tally = expected_topics.setdefault(facts["topic"], [0, 0])
        tally[0] += 1
        tally[1] += int(right)
        last = position == len(answer_right) - 1
        assert page.get_by_role("button", name="Finish" if last else "Next question", exact=True).count() == 1
        page.get_by_role("button", name="Finish" if last else "Next question", exact=True).click()
    page.wait_for_url(re.compile(rf"/quiz/{quiz_id}/results\??$"))
    shot(page, "tutor-results")
    assert page.locator("#score").inner_text() == "3 of 5 correct (60%)"
    service = _service_summary(ui_server, user_id, quiz_id)
    assert service["status"] == "finished" and service["correct"] == 3
    assert page.locator("#theta").inner_text() == f"{service['theta']:.2f}"
    assert page.locator("#se").inner_text() == f"{service['se']:.2f}"
    assert _per_topic_table(page) == {topic: tuple(t) for topic, t in expected_topics.items()}
    assert page.locator("ol.review > li").count() == 5


def test_exam_quiz_end_to_end(page, ui_server, sign_in, shot):
    user_id = "exam-student"
    sign_in.dev(page, user_id)
    _start_quiz(page, "DEMO-EXAM", "exam", 4)
    quiz_id = _quiz_id(page)
    answer_right = [True, True, False, True]
    keys = []
    for position, right in enumerate(answer_right):
        facts = _item_facts(ui_server, _served_question_id(page))
        keys.append(facts["key"])
        assert facts["rationale_md"] not in page.content()
        if position == 0:
            shot(page, "exam-question")
        _choose(page, facts["key"] if right else facts["wrong"])
        # Exam mode reveals nothing until the end.
        assert page.get_by_text(re.compile(r"Correct answer: [A-Z]")).count() == 0
        assert page.get_by_text(re.compile(r"^(Correct|Incorrect)$")).count() == 0
        assert page.get_by_text(facts["rationale_md"]).count() == 0
        if position < len(answer_right) - 1:
            assert (
                page.get_by_role("status").inner_text() == f"Your answer to question {position + 1} is saved."
            )
    assert page.get_by_role("heading", level=1).inner_text() == "All questions answered"
    shot(page, "exam-finished")
    page.get_by_role("button", name="Finish", exact=True).click()
    page.wait_for_url(re.compile(rf"/quiz/{quiz_id}/results\??$"))
    shot(page, "exam-results")
    assert page.locator("#score").inner_text() == "3 of 4 correct (75%)"
    service = _service_summary(ui_server, user_id, quiz_id)
    assert page.locator("#theta").inner_text() == f"{service['theta']:.2f}"
    assert page.locator("#se").inner_text() == f"{service['se']:.2f}"
    review = page.locator("ol.review > li").all_inner_texts()
    assert [re.search(r"correct answer (\w)", text).group(1) for text in review] == keys


def test_reload_and_another_device_resume_the_pending_question(page, open_page, ui_server, sign_in):
    user_id = "resuming-student"
    sign_in.dev(page, user_id)
    _start_quiz(page, "DEMO-EXAM", "exam", 3)
    quiz_id = _quiz_id(page)
    _choose(page, _item_facts(ui_server, _served_question_id(page))["key"])
    pending = _served_question_id(page)
    page.reload()
    assert _served_question_id(page) == pending
    page.goto("/")
    page.get_by_role("link", name=re.compile(r"^DEMO-EXAM, exam mode: 1 answered")).click()
    assert page.url.endswith(f"/quiz/{quiz_id}") and _served_question_id(page) == pending
    other_device = open_page()
    sign_in.dev(other_device, user_id)
    other_device.get_by_role("link", name=re.compile(r"^DEMO-EXAM, exam mode: 1 answered")).click()
    assert _served_question_id(other_device) == pending


def test_someone_elses_quiz_is_not_found(page, open_page, ui_server, sign_in, shot):
    sign_in.dev(page, "quiz-owner")
    _start_quiz(page, "DEMO-EXAM", "tutor", 2)
    quiz_id = _quiz_id(page)
    stranger = open_page()
    sign_in.dev(stranger, "quiz-stranger")
    for path in (f"/quiz/{quiz_id}", f"/quiz/{quiz_id}/results", f"/quiz/{quiz_id}/answered/0"):
        response = stranger.goto(path)
        assert response.status == 404
        assert stranger.get_by_role("heading", level=1).inner_text() == "Quiz not found"
        assert stranger.locator("input[name=question_id]").count() == 0
    shot(stranger, "quiz-not-found")


def test_script_in_item_text_renders_inert(page, ui_server, sign_in, shot):
    sign_in.dev(page, "curious-student")
    _start_quiz(page, ui_server.xss_exam, "tutor", 2)
    active = (
        "main script, main img, main iframe, main svg, main [onerror], main [onload], main [onmouseover], "
        "main a[href^='javascript']"
    )

    def assert_inert(expected_text: list[str]):
        assert page.locator(active).count() == 0
        assert page.evaluate("() => window.__qbank_pwned === undefined")
        text = page.get_by_role("main").inner_text()
        for fragment in expected_text:
            assert fragment in text  # shown as text, not run

    for position in range(2):
        facts = _item_facts(ui_server, _served_question_id(page))
        if "<script>" in facts["stem_md"]:
            assert_inert(["<script>window.__qbank_pwned = 'stem'</script>", "onerror="])
            assert page.locator("#stem strong").inner_text() == "2 + 2"  # the markdown is rendered
            page.get_by_text("5").hover()
            shot(page, "xss-question")
        else:
            assert_inert(["<iframe src="])
        _choose(page, facts["key"])
        assert_inert(["<script>" if "<script>" in facts["rationale_md"] else "<svg onload="])
        page.get_by_role("button", name="Finish" if position == 1 else "Next question", exact=True).click()
    assert_inert(["<script>window.__qbank_pwned = 'stem'</script>"])
    shot(page, "xss-results")


def test_student_is_sent_to_sign_in_for_admin_pages(page, sign_in):
    sign_in.dev(page, "nosy-student")
    page.goto("/admin")
    assert "/signin?next=%2Fadmin" in page.url
    assert "This page needs the role admin" in page.get_by_role("status").inner_text()
