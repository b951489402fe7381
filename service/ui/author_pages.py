"""The author UI: write a question with scored options, see its versions, publish it.

Options are scored: each earns a credit ``0 .. m-1``; a single option worth 1 among options
worth 0 is the classic one-correct-answer item, more score categories give partial credit
(graded response or partial credit items, issue 18). The form builds the API's own request
schema (:class:`service.schemas.QuestionCreate`), so its validation (every category present,
one option with the top score, ...) and the error naming the field are the API's; saving and
publishing call :mod:`service.authoring`, as ``/v1/author`` does.
"""

from __future__ import annotations

from urllib.parse import quote

from fastapi import APIRouter, Request, status
from fastapi.responses import RedirectResponse
from pydantic import ValidationError

from service import authoring
from service.api.deps import SessionDep
from service.errors import ServiceError
from service.schemas import QuestionCreate
from service.ui.rendering import message_page, page
from service.ui.session import CSRF_FIELD, AuthorPage, check_csrf

router = APIRouter(include_in_schema=False)

OPTION_LABELS = "ABCDEF"
FIELD_NAMES = {
    "external_ref": "Reference",
    "topic_name": "Topic",
    "stem_md": "Stem",
    "lead_in": "Lead-in",
    "rationale_md": "Explanation",
    "difficulty_label": "Difficulty",
    "exam_code": "Exam",
    "options": "Options",
}


def _errors(exc: ValidationError) -> list[str]:
    """'Field: message' lines; an option's own field reads 'Option B score'."""
    lines = []
    for error in exc.errors():
        loc = list(error["loc"])
        if len(loc) >= 3 and loc[0] == "options" and isinstance(loc[1], int):
            field = f"Option {OPTION_LABELS[loc[1]] if loc[1] < len(OPTION_LABELS) else loc[1]} {loc[2]}"
        else:
            field = FIELD_NAMES.get(str(loc[0]), str(loc[0])) if loc else "form"
        lines.append(f"{field}: {error['msg'].removeprefix('Value error, ')}")
    return lines


def _blank_form() -> dict:
    return {
        "external_ref": "",
        "topic_name": "",
        "stem_md": "",
        "lead_in": "",
        "rationale_md": "",
        "difficulty_label": "medium",
        "options": [{"label": k, "text_md": "", "score": ""} for k in OPTION_LABELS],
    }


def _new_page(request, current, session, form, errors=(), status_code=200):
    return page(
        request,
        "author_new.html",
        current=current,
        session=session,
        form=form,
        errors=list(errors),
        status_code=status_code,
    )


@router.get("/author")
def author_home(current: AuthorPage):
    return RedirectResponse("/author/questions/new", status_code=status.HTTP_303_SEE_OTHER)


@router.get("/author/questions/new")
def new_question(request: Request, current: AuthorPage, session: SessionDep):
    return _new_page(request, current, session, _blank_form())


@router.post("/author/questions")
async def create_question(request: Request, current: AuthorPage, session: SessionDep):
    data = await request.form()
    check_csrf(current, data.get(CSRF_FIELD))
    form = _blank_form()
    for key in ("external_ref", "topic_name", "stem_md", "lead_in", "rationale_md", "difficulty_label"):
        form[key] = str(data.get(key, ""))
    form["options"] = [
        {"label": k, "text_md": str(data.get(f"option_{k}", "")), "score": str(data.get(f"score_{k}", ""))}
        for k in OPTION_LABELS
    ]
    # Rows left empty are no option; a row with text needs a whole-number score.
    options, errors = [], []
    for row in form["options"]:
        if not row["text_md"].strip() and not row["score"].strip():
            continue
        try:
            score = int(row["score"])
        except ValueError:
            errors.append(
                f"Option {row['label']} score: must be a whole number 0, 1, 2, ... (got {row['score']!r})"
            )
            continue
        options.append({"label": row["label"], "text_md": row["text_md"], "score": score})
    if errors:
        return _new_page(request, current, session, form, errors, 422)
    try:
        body = QuestionCreate(
            external_ref=form["external_ref"].strip() or None,
            topic_name=form["topic_name"],
            stem_md=form["stem_md"],
            lead_in=form["lead_in"],
            rationale_md=form["rationale_md"],
            difficulty_label=form["difficulty_label"] or None,
            options=options,
        )
    except ValidationError as exc:
        return _new_page(request, current, session, form, _errors(exc), 422)
    try:
        row = authoring.create_question(session, current.user.tenant, current.user.sub, body)
    except ServiceError as exc:
        return _new_page(request, current, session, form, [exc.detail], exc.status_code)
    return RedirectResponse(
        f"/author/questions/{row.question_id}?saved=1", status_code=status.HTTP_303_SEE_OTHER
    )


@router.get("/author/questions/{question_id}")
def question_page(
    question_id: int, request: Request, current: AuthorPage, session: SessionDep, saved: int | None = None
):
    """Every version with its options and their scores, the live calibration (GRM/GPCM
    thresholds too) and where it is published."""
    try:
        detail = authoring.question_detail(session, current.user.tenant, question_id)
    except ServiceError as exc:
        return message_page(request, current, session, "Question not found", exc.detail, exc.status_code)
    return page(
        request,
        "author_question.html",
        current=current,
        session=session,
        question=detail,
        saved=saved,
        may_publish=current.user.has_any("publisher", "admin"),
    )


@router.post("/author/questions/{question_id}/publish")
async def publish_question(question_id: int, request: Request, current: AuthorPage, session: SessionDep):
    data = await request.form()
    check_csrf(current, data.get(CSRF_FIELD))
    if not current.user.has_any("publisher", "admin"):
        return message_page(
            request, current, session, "Not allowed", "publishing needs the publisher role", 403
        )
    exam_code = str(data.get("exam_code", "")).strip() or "DEMO-EXAM"
    try:
        authoring.publish(session, current.user.tenant, current.user.sub, question_id, exam_code[:64])
    except ServiceError as exc:
        return message_page(request, current, session, "Not published", exc.detail, exc.status_code)
    return RedirectResponse(
        f"/author/questions/{question_id}?saved=2#{quote(exam_code)}", status_code=status.HTTP_303_SEE_OTHER
    )
