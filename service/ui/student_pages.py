"""The student UI: choose an exam, take a quiz one question at a time, see the results.

Every step is a call to the quiz functions behind ``/v1/quizzes`` (``service.quizzes``), so
selection, scoring, what is revealed when, and the resume rule are the API's. Pages follow
post/redirect/get: a reload never re-submits, and reloading a question page asks the
service for the pending item again, which is the same item until it is answered.
"""

from __future__ import annotations

import time
from urllib.parse import quote

from fastapi import APIRouter, Form, Request, status
from fastapi.responses import RedirectResponse, Response
from pydantic import ValidationError

from service import quizzes
from service.api.deps import SessionDep, SettingsDep
from service.errors import Conflict, ServiceError
from service.pools import item_contents
from service.schemas import AnswerSubmit, QuizCreate, QuizFilters
from service.ui import queries
from service.ui.rendering import message_page, page
from service.ui.session import CSRF_FIELD, StudentPage, check_csrf

router = APIRouter(include_in_schema=False)

MODES = {"tutor": "Tutor mode", "exam": "Exam mode"}
DEFAULT_LENGTH = 10
MAX_QUESTIONS = next(
    m.le for m in QuizFilters.model_fields["num_questions"].metadata if getattr(m, "le", None)
)


def _see_other(url: str) -> RedirectResponse:
    return RedirectResponse(url, status_code=status.HTTP_303_SEE_OTHER)


def _field_errors(exc: ValidationError) -> list[str]:
    """Pydantic errors as 'field: message' lines, with the form's names for the fields."""
    names = {
        "num_questions": "Number of questions",
        "mode": "Mode",
        "exam_code": "Exam",
        "selected": "Answer",
    }
    lines = []
    for error in exc.errors():
        field = next(
            (names.get(str(p), str(p)) for p in reversed(error["loc"]) if not isinstance(p, int)), "form"
        )
        lines.append(f"{field}: {error['msg'].removeprefix('Value error, ')}")
    return lines


def _home(request: Request, current, session, settings, *, errors=(), form=None, status_code=200):
    tenant, user_id = current.user.tenant, current.user.sub
    exams = queries.exam_codes(session, tenant)
    open_quizzes = queries.open_quizzes(session, tenant, user_id)
    form = form or {
        "exam_code": settings.exam_code if settings.exam_code in exams else (exams[0] if exams else ""),
        "mode": "tutor",
        "num_questions": str(DEFAULT_LENGTH),
    }
    return page(
        request,
        "home.html",
        current=current,
        session=session,
        exams=exams,
        open_quizzes=open_quizzes,
        modes=MODES,
        form=form,
        errors=list(errors),
        status_code=status_code,
        max_questions=MAX_QUESTIONS,
    )


def _error_page(request, current, session, exc: ServiceError):
    titles = {404: "Quiz not found", 410: "Quiz expired", 409: "Not possible now"}
    return message_page(
        request,
        current,
        session,
        titles.get(exc.status_code, "Something is wrong"),
        exc.detail,
        exc.status_code,
    )


@router.get("/")
def home(request: Request, current: StudentPage, session: SessionDep, settings: SettingsDep):
    return _home(request, current, session, settings)


@router.post("/quiz")
def start(
    request: Request,
    current: StudentPage,
    session: SessionDep,
    settings: SettingsDep,
    exam_code: str = Form(""),
    mode: str = Form(""),
    num_questions: str = Form(""),
    csrf_token: str = Form("", alias=CSRF_FIELD),
):
    check_csrf(current, csrf_token)
    form = {"exam_code": exam_code, "mode": mode, "num_questions": num_questions}
    try:
        body = QuizCreate(
            filters=QuizFilters(
                exam_code=exam_code or None, mode=mode or None, num_questions=num_questions or None
            )
        )
    except ValidationError as exc:
        return _home(
            request, current, session, settings, errors=_field_errors(exc), form=form, status_code=422
        )
    try:
        quiz, _ = quizzes.start_quiz(session, settings, current.user, body)
    except ServiceError as exc:
        return _home(
            request, current, session, settings, errors=[exc.detail], form=form, status_code=exc.status_code
        )
    return _see_other(f"/quiz/{quote(quiz.id)}")


@router.get("/quiz/{quiz_id}")
def question(
    quiz_id: str,
    request: Request,
    current: StudentPage,
    session: SessionDep,
    saved: int | None = None,
    error: str | None = None,
):
    """The pending question (served now if none is pending); finished quizzes go to their results."""
    try:
        progress = quizzes.summary(session, current.user, quiz_id)
        if progress["status"] == "finished":
            return _see_other(f"/quiz/{quote(quiz_id)}/results")
        item = quizzes.next_item(session, current.user, quiz_id)
    except Conflict:  # finished between the two calls (pool exhausted)
        return _see_other(f"/quiz/{quote(quiz_id)}/results")
    except ServiceError as exc:
        return _error_page(request, current, session, exc)
    messages = {
        "choose": "Choose one of the options, then submit your answer.",
        "stale": "That question was already answered; here is the current one.",
    }
    return page(
        request,
        "question.html",
        current=current,
        session=session,
        quiz=progress,
        item=item,
        mode_label=MODES[progress["mode"]],
        saved=saved,
        error=messages.get(error or ""),
        served_ms=int(time.time() * 1000),
    )


@router.post("/quiz/{quiz_id}/answer")
def answer(
    quiz_id: str,
    request: Request,
    current: StudentPage,
    session: SessionDep,
    question_id: int = Form(...),
    position: int = Form(...),
    selected: str = Form(""),
    served_ms: int = Form(0),
    csrf_token: str = Form("", alias=CSRF_FIELD),
):
    check_csrf(current, csrf_token)
    here = f"/quiz/{quote(quiz_id)}"
    if not selected:
        return _see_other(f"{here}?error=choose")
    elapsed_ms = max(0, int(time.time() * 1000) - served_ms) if served_ms > 0 else None
    try:
        body = AnswerSubmit(
            question_id=question_id, selected=selected, position=position, time_taken_ms=elapsed_ms
        )
    except ValidationError as exc:
        return message_page(
            request, current, session, "Answer not accepted", "; ".join(_field_errors(exc)), 422
        )
    try:
        result = quizzes.submit_answer(session, current.user, quiz_id, body)
    except Conflict:
        # Finished meanwhile, or this position was answered differently (a second tab, a
        # double click): show where the quiz stands now rather than an error.
        try:
            finished = quizzes.summary(session, current.user, quiz_id)["status"] == "finished"
        except ServiceError as exc:
            return _error_page(request, current, session, exc)
        return _see_other(f"{here}/results" if finished else f"{here}?error=stale")
    except ServiceError as exc:
        return _error_page(request, current, session, exc)
    if result["revealed"] or result["quiz_finished"]:
        return _see_other(f"{here}/answered/{result['position']}")
    return _see_other(f"{here}?saved={result['position'] + 1}")


def _contents_by_position(session, quiz_id: str) -> dict:
    versions = queries.quiz_item_versions(session, quiz_id)
    contents = item_contents(session, versions.values())
    return {position: contents[vid] for position, vid in versions.items()}


@router.get("/quiz/{quiz_id}/answered/{position}")
def answered(quiz_id: str, position: int, request: Request, current: StudentPage, session: SessionDep):
    """Tutor mode: correct or not, the key and the rationale. Exam mode: only after the last answer."""
    try:
        progress = quizzes.summary(session, current.user, quiz_id)
    except ServiceError as exc:
        return _error_page(request, current, session, exc)
    here = f"/quiz/{quote(quiz_id)}"
    row = next((r for r in progress["items"] if r["position"] == position), None)
    if row is None or row["selected"] is None:
        return _see_other(here)
    finished = progress["status"] == "finished"
    if progress["mode"] != "tutor" and not finished:
        return _see_other(here)
    content = _contents_by_position(session, quiz_id)[position]
    return page(
        request,
        "answered.html",
        current=current,
        session=session,
        quiz=progress,
        row=row,
        content=content,
        mode_label=MODES[progress["mode"]],
        finished=finished,
    )


@router.get("/quiz/{quiz_id}/results")
def results(quiz_id: str, request: Request, current: StudentPage, session: SessionDep):
    try:
        summary = quizzes.summary(session, current.user, quiz_id)
    except ServiceError as exc:
        return _error_page(request, current, session, exc)
    if summary["status"] != "finished":
        if summary["status"] == "expired":
            return message_page(
                request,
                current,
                session,
                "Quiz expired",
                f"Quiz {quiz_id} expired before it was finished; start a new one.",
                410,
            )
        return _see_other(f"/quiz/{quote(quiz_id)}")
    contents = _contents_by_position(session, quiz_id)
    answered_items = [
        (row, contents[row["position"]]) for row in summary["items"] if row["selected"] is not None
    ]
    # Points only mean more than the count correct when some item gives partial credit.
    points = None
    if any((row.get("max_score") or 1) > 1 for row, _ in answered_items):
        points = {
            "earned": sum(row["score"] for row, _ in answered_items),
            "possible": sum(row["max_score"] for row, _ in answered_items),
        }
    return page(
        request,
        "results.html",
        current=current,
        session=session,
        quiz=summary,
        answered=answered_items,
        points=points,
        mode_label=MODES[summary["mode"]],
    )


@router.get("/favicon.ico")
def favicon() -> Response:
    return Response(status_code=status.HTTP_204_NO_CONTENT)
