"""Pydantic request and response schemas (the scaffold's v1 payloads, then more).

Validation that names the field lives here, so a malformed body is a 422 before any route
code runs. Nothing in a schema that goes to a student before the answer carries a key or a
rationale: :class:`NextQuestion` has no such field.
"""

from __future__ import annotations

import math
from datetime import datetime
from typing import Annotated, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

Role = Literal["student", "author", "publisher", "admin"]
DifficultyLabel = Literal["easy", "medium", "hard"]

INT32_MAX = 2**31 - 1
INT64_MAX = 2**63 - 1
MAX_TEXT = 20_000  # characters of any text field without a tighter limit
# Bounded to the database columns, so an out-of-range number is a 422 here, not a driver error.
Id = Annotated[int, Field(ge=1, le=INT64_MAX)]
Count = Annotated[int, Field(ge=0, le=INT32_MAX)]
Version = Annotated[int, Field(ge=1, le=INT32_MAX)]


def refuse_unstorable(value, path: str):
    """Raise ValueError naming ``path`` for what no column can store and JSON cannot carry:
    a non-finite number, an integer beyond int64, a NUL or a lone surrogate in a string."""
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"{path}: must be a finite number, not {value}")
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) > INT64_MAX:
        raise ValueError(f"{path}: integer out of range (at most {INT64_MAX} in magnitude)")
    if isinstance(value, str):
        if "\x00" in value:
            raise ValueError(f"{path}: must not contain NUL characters")
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise ValueError(f"{path}: must be valid Unicode (no lone surrogates)") from None
    elif isinstance(value, dict):
        for key, item in value.items():
            refuse_unstorable(key, f"{path} key")
            refuse_unstorable(item, f"{path}.{key}")
    elif isinstance(value, list | tuple):
        for index, item in enumerate(value):
            refuse_unstorable(item, f"{path}[{index}]")
    return value


class Strict(BaseModel):
    """A request body: finite numbers, storable integers and text, bounded lengths (422 naming the field)."""

    model_config = ConfigDict(allow_inf_nan=False, str_max_length=MAX_TEXT)

    @field_validator("*", mode="before")
    @classmethod
    def _storable(cls, value, info: ValidationInfo):
        if _holds_models(cls.model_fields[info.field_name].annotation):
            return value  # a nested model checks its own fields, naming them
        return refuse_unstorable(value, info.field_name)


def _holds_models(annotation) -> bool:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return True
    return any(_holds_models(arg) for arg in get_args(annotation))


# ------------------------------------------------------------------ errors
class Problem(BaseModel):
    """Every error but a request validation error: what is wrong, naming the field or the id."""

    detail: str


class ValidationIssue(BaseModel):
    loc: list[str | int]
    msg: str
    type: str


class ValidationProblem(BaseModel):
    """A request that does not match its schema (422): one issue per field, the input not echoed."""

    detail: list[ValidationIssue]


# ------------------------------------------------------------------ auth
class MockLogin(Strict):
    user_id: str = Field(min_length=1, max_length=128)
    roles: list[Role] = Field(min_length=1, max_length=4)
    tenant_id: str | None = Field(None, min_length=1, max_length=64)


class Login(Strict):
    username: str = Field(min_length=1, max_length=128)
    password: str = Field(min_length=1, max_length=1024)
    tenant_id: str | None = Field(None, min_length=1, max_length=64)


class Token(BaseModel):
    access_token: str
    token_type: str = "bearer"
    roles: list[str]
    tenant_id: str


class UserCreate(Strict):
    username: str = Field(min_length=1, max_length=128)
    password: str = Field(min_length=1, max_length=1024)  # the policy: service.core.passwords
    roles: list[Role] = Field(min_length=1, max_length=4)


class UserOut(BaseModel):
    id: str
    username: str
    roles: list[str]
    tenant_id: str


# ------------------------------------------------------------------ authoring
class OptionIn(Strict):
    """An option: ``is_correct`` (dichotomous item) or ``score``, its credit 0 .. m-1 (an item scored
    in ordered categories; ``is_correct`` may then be left out: the top score is full credit)."""

    label: str = Field(min_length=1, max_length=1, pattern=r"^[A-Za-z]$")
    text_md: str = Field(min_length=1)
    is_correct: bool | None = None
    score: int | None = Field(None, ge=0, le=25)

    @field_validator("label")
    @classmethod
    def _upper(cls, value: str) -> str:
        return value.upper()


def _scored(options: list[OptionIn]) -> list[OptionIn]:
    """Options of an item scored in ordered categories, checked, with ``is_correct`` set.

    Every option has a score; the distinct scores are ``0 .. m-1`` with none missing (the
    categories of a GRM/GPCM calibration); exactly one option has the top score ``m - 1``
    (full credit, the key); an ``is_correct`` given must say the same. ``m = 2`` is a
    dichotomous item written with scores; ``m >= 3`` a polytomous one.
    """
    unscored = [o.label for o in options if o.score is None]
    if unscored:
        raise ValueError(f"score: once one option has a score every option needs one; missing for {unscored}")
    scores = sorted({o.score for o in options})
    if scores != list(range(len(scores))):
        missing = sorted(set(range(scores[-1] + 1)) - set(scores))
        raise ValueError(
            f"score: the scores must be 0, 1, .., m-1 with every category present; got {scores}, "
            f"missing {missing}"
        )
    if len(scores) < 2:
        raise ValueError("score: an item needs at least 2 score categories (0 and 1); every option scores 0")
    top = [o.label for o in options if o.score == scores[-1]]
    if len(top) != 1:
        raise ValueError(f"score: exactly one option must have the top score {scores[-1]}; got {top}")
    clash = [o.label for o in options if o.is_correct is not None and o.is_correct != (o.score == scores[-1])]
    if clash:
        raise ValueError(
            f"is_correct: must be true for the option with the top score only (full credit); "
            f"contradicts the score of {clash}"
        )
    return [o.model_copy(update={"is_correct": o.score == scores[-1]}) for o in options]


class QuestionContent(Strict):
    """A question's content; options need unique labels and exactly one correct option, or a
    score each (``0 .. m-1``, every category present, one option with the top score)."""

    external_ref: str | None = Field(None, max_length=128)
    topic_name: str = Field(min_length=1, max_length=200)
    stem_md: str = Field(min_length=1)
    lead_in: str = Field("", max_length=2000)
    rationale_md: str = Field(min_length=1)
    difficulty_label: DifficultyLabel | None = "medium"
    bloom_level: int | None = Field(None, ge=1, le=6)
    tags: dict = Field(default_factory=dict)
    options: list[OptionIn] = Field(min_length=2, max_length=26)

    @field_validator("options")
    @classmethod
    def _one_key_unique_labels(cls, options: list[OptionIn]) -> list[OptionIn]:
        labels = [o.label for o in options]
        duplicates = sorted({label for label in labels if labels.count(label) > 1})
        if duplicates:
            raise ValueError(f"option labels must be unique; repeated: {duplicates}")
        if any(o.score is not None for o in options):
            return _scored(options)
        unset = [o.label for o in options if o.is_correct is None]
        if unset:
            raise ValueError(f"every option needs is_correct (or every option a score); missing for {unset}")
        correct = [o.label for o in options if o.is_correct]
        if len(correct) != 1:
            raise ValueError(f"exactly one option must be correct; got {len(correct)} ({correct})")
        return [o.model_copy(update={"score": int(o.is_correct)}) for o in options]


class QuestionCreate(QuestionContent):
    exam_code: str = Field("DEMO-EXAM", min_length=1, max_length=64)


class QuestionSaved(BaseModel):
    question_id: int
    version: int
    topic_id: int | None
    state: str


class PublishOut(BaseModel):
    published: bool
    question_id: int
    version: int
    exam_code: str


class OptionOut(BaseModel):
    label: str
    text_md: str
    is_correct: bool
    score: int


class VersionOut(BaseModel):
    version: int
    state: str
    stem_md: str
    lead_in: str
    rationale_md: str
    difficulty_label: str | None
    topic_name: str | None
    options: list[OptionOut]
    calibration: dict | None


class QuestionOut(BaseModel):
    question_id: int
    external_ref: str | None
    versions: list[VersionOut]
    publications: dict[str, int]


# ------------------------------------------------------------------ quizzes
class QuizFilters(Strict):
    topics: list[Annotated[str, Field(max_length=200)]] | None = Field(None, max_length=500)
    difficulty: list[DifficultyLabel] | None = Field(None, max_length=3)
    b_min: float | None = Field(None, ge=-50, le=50)
    b_max: float | None = Field(None, ge=-50, le=50)
    num_questions: int = Field(40, ge=1, le=120)
    se_target: float | None = Field(None, gt=0, le=2)
    min_questions: int = Field(5, ge=1, le=120)
    mode: Literal["tutor", "exam"] = "tutor"
    exam_code: str | None = Field("DEMO-EXAM", min_length=1, max_length=64)

    @model_validator(mode="after")
    def _range(self):
        if self.b_min is not None and self.b_max is not None and self.b_min > self.b_max:
            raise ValueError(f"b_min ({self.b_min}) must be <= b_max ({self.b_max})")
        return self


class QuizCreate(Strict):
    tenant_id: str | None = Field(None, min_length=8, max_length=64)
    filters: QuizFilters = Field(default_factory=QuizFilters)
    adaptive: bool = True
    blueprint_quota: dict[Annotated[str, Field(max_length=200)], Annotated[int, Field(le=120)]] | None = (
        Field(None, max_length=500)
    )

    @field_validator("blueprint_quota")
    @classmethod
    def _quota_counts(cls, quota):
        if quota is not None:
            bad = sorted(k for k, v in quota.items() if v < 0)
            if bad:
                raise ValueError(f"quota counts must be >= 0; bad topics: {bad}")
        return quota


class QuizCreated(BaseModel):
    quiz_id: str
    question_ids: list[int]
    expires_at: datetime
    mode: Literal["tutor", "exam"]
    adaptive: bool
    selector: str
    max_questions: int


class OptionPublic(BaseModel):
    label: str
    text: str


class QuestionPayload(BaseModel):
    stem_md: str
    lead_in: str
    options: list[OptionPublic]


class NextQuestion(BaseModel):
    model_config = ConfigDict(extra="forbid")

    quiz_id: str
    position: int
    question_id: int
    version: int
    payload: QuestionPayload
    max_questions: int


class AnswerSubmit(Strict):
    question_id: Id
    selected: str = Field(min_length=1, max_length=1)
    time_taken_ms: Count | None = 0
    client_latency_ms: Count | None = 0
    position: Count | None = None

    @field_validator("selected")
    @classmethod
    def _upper(cls, value: str) -> str:
        return value.upper()


class AnswerResult(BaseModel):
    """Tutor mode fills correctness (full credit), key, the credit earned (``score`` of
    ``max_score``) and rationale; exam mode leaves them null."""

    quiz_id: str
    position: int
    question_id: int
    selected: str
    revealed: bool
    correct: bool | None
    correct_option: str | None
    score: int | None = None
    max_score: int | None = None
    explanation: dict | None
    difficulty: float | None
    quiz_finished: bool
    # with ?next=true and the quiz not finished: the item GET .../next would serve now
    next_item: NextQuestion | None = None


class TopicResult(BaseModel):
    topic: str
    answered: int
    correct: int


class QuizItemOut(BaseModel):
    position: int
    question_id: int
    version: int
    topic: str
    selected: str | None
    correct: bool | None = None
    correct_option: str | None = None
    score: int | None = None  # credit earned, of max_score (once revealed)
    max_score: int | None = None
    rationale_md: str | None = None


class QuizRules(BaseModel):
    """The rules a quiz runs: the bundle revision it pinned (none without a bundle in force) and
    the rules without K, which stays in the bundle."""

    bundle_id: str | None
    bundle_sha256: str | None
    k_from_bundle: bool
    selector: dict
    estimator: dict
    stopping: dict
    first_item: dict


class QuizSummary(BaseModel):
    quiz_id: str
    status: Literal["active", "finished", "expired"]
    finish_reason: str | None
    mode: str
    adaptive: bool
    exam_code: str
    selector: str
    rules: QuizRules
    max_questions: int
    answered: int
    correct: int | None
    theta: float | None
    se: float | None
    per_topic: list[TopicResult] | None
    items: list[QuizItemOut]
    expires_at: datetime
    finished_at: datetime | None


# ------------------------------------------------------------------ admin
class ItemRow(BaseModel):
    question_id: int
    version: int
    topic_id: int | None = None
    sh_p: float
    recent_attempts: int | None = 0
    # Exposure administration (see service.exposure.exposure_items).
    sh_p_strata: list[float] | None = None
    bundle_sh_p: float | list[float] | None = None
    pending_sh_p: float | list[float] | None = None
    overridden: bool = False
    quizzes_administered: int = 0
    exposure_rate: float | None = None
    window_quizzes: int = 0


class SetSh(Strict):
    question_id: Id
    version: Version
    sh_p: float = Field(ge=0.0, le=1.0)


class Reestimate(Strict):
    tau: float = Field(0.2, gt=0.0, le=1.0)
    days: int = Field(7, ge=1, le=365)
    floor: float = Field(0.05, ge=0.0, le=1.0)
    ceil: float = Field(1.0, ge=0.0, le=1.0)
    min_sessions: int = Field(1, ge=1, le=INT32_MAX)

    @model_validator(mode="after")
    def _bounds(self):
        if self.floor > self.ceil:
            raise ValueError(f"floor ({self.floor}) must be <= ceil ({self.ceil})")
        return self


class ReestimateOut(BaseModel):
    updated: int
    sessions: int
    items: list[dict]
    revision_id: str | None = None  # the new unvalidated bundle revision holding the new K


class CalibrationImported(BaseModel):
    imported: int
    source: str
    model: str
    skipped: list[str] = Field(default_factory=list, description="poorly determined items left out")
    kept_poorly_determined: list[str] = Field(
        default_factory=list, description="poorly determined items imported"
    )


class FlagSet(Strict):
    enabled: bool = True
    value_json: dict = Field(default_factory=dict)


class CohortSet(Strict):
    user_id: str = Field(min_length=1, max_length=128)
    cohort_key: str = Field(min_length=1, max_length=128)
    cohort_value: str = Field(min_length=1, max_length=128)


class OutboxLagOut(BaseModel):
    """How far ``qbank relay`` is behind: unsent events and the oldest one's age (null: none)."""

    backlog: int
    oldest_unsent_age_s: float | None
    oldest_unsent_at: datetime | None
