"""Hostile input on SQLite and PostgreSQL (issue 15, items 2 and 4): every reproducer that gave a
500, a hang or swallowed the memory now gets a 4xx naming the field, before any database work."""

from __future__ import annotations

import json

import pytest
from exposure_support import demo_bundle, edited, service_settings
from pydantic import ValidationError

from service.core.config import Settings

ADMIN = {"user": "root", "roles": ["admin"]}
JSON = {"Content-Type": "application/json"}


def raw(api, path, text: str, **kw):
    """POST a body as typed: ``json=`` would refuse NaN and lone surrogates on our side."""
    return api.client.post(path, content=text.encode("utf-8", "surrogatepass"), headers={**JSON, **kw})


def fields(response) -> list:
    assert response.status_code == 422, response.text
    return [".".join(map(str, e["loc"])) for e in response.json()["detail"]]


@pytest.mark.parametrize(
    "body, field",
    [
        ('{"username": "\\ud800", "password": "secret-1234"}', "body.username"),
        ('{"username": "bob", "password": "\\udfff"}', "body.password"),
        ('{"username": NaN, "password": "secret-1234"}', "body.username"),
        ('{"username": "bob", "password": Infinity}', "body.password"),
        ('{"username": "bo\\u0000b", "password": "secret-1234"}', "body.username"),
    ],
)
def test_login_refuses_unstorable_text_with_422(api, body, field):
    r = raw(api, "/v1/auth/login", body)
    assert field in fields(r)
    assert "input" not in r.json()["detail"][0]  # nothing echoed back, a password least of all


def test_mock_login_refuses_infinity_in_roles(dev_api):
    r = raw(dev_api, "/v1/auth/mock-login", '{"user_id": "u", "roles": [Infinity]}')
    assert "body.roles" in fields(r)


@pytest.mark.parametrize("path", ["/v1/admin/exposure/set", "/v1/admin/exposure/override"])
@pytest.mark.parametrize(
    "body, field",
    [
        ('{"question_id": 1, "version": 1, "sh_p": NaN}', "body.sh_p"),
        ('{"question_id": 1, "version": 1, "sh_p": Infinity}', "body.sh_p"),
        ('{"question_id": 99999999999999999999, "version": 1, "sh_p": 0.5}', "body.question_id"),
        ('{"question_id": 1, "version": 9223372036854775807, "sh_p": 0.5}', "body.version"),
    ],
)
def test_exposure_parameters_must_be_finite_and_in_range(api, path, body, field):
    r = api.client.post(path, content=body, headers={**JSON, **api.headers(**ADMIN)})
    assert field in fields(r)


@pytest.mark.parametrize(
    "filters, field",
    [
        ('{"se_target": NaN}', "body.filters.se_target"),
        ('{"b_min": NaN}', "body.filters.b_min"),
        ('{"b_max": -Infinity}', "body.filters.b_max"),
        ('{"exam_code": "A\\u0000B"}', "body.filters.exam_code"),
    ],
)
def test_quiz_filters_must_be_finite(api, filters, field):
    body = '{"filters": ' + filters + "}"
    r = api.client.post("/v1/quizzes", content=body, headers={**JSON, **api.headers()})
    assert field in fields(r)


@pytest.mark.parametrize("time_taken, field", [(2**31, "body.time_taken_ms"), (10**20, "body.time_taken_ms")])
def test_answer_numbers_must_fit_their_columns(api, loaded_bank, time_taken, field):
    quiz = api.post("/v1/quizzes", json={"filters": {"num_questions": 3}}).json()["quiz_id"]
    item = api.get(f"/v1/quizzes/{quiz}/next").json()
    r = api.post(
        f"/v1/quizzes/{quiz}/answers",
        json={"question_id": item["question_id"], "selected": "A", "time_taken_ms": time_taken},
    )
    assert field in fields(r)
    r = api.post(f"/v1/quizzes/{quiz}/answers", json={"question_id": item["question_id"], "selected": "A"})
    assert r.status_code == 200, r.text  # the quiz goes on


def test_path_ids_beyond_int64_are_422(api):
    r = api.get("/v1/author/questions/99999999999999999999", **ADMIN)
    assert "path.question_id" in fields(r)
    assert api.get("/v1/quizzes/" + "q" * 65).status_code == 422


def test_text_fields_have_length_limits(api):
    question = {
        "topic_name": "T",
        "stem_md": "s" * 20_001,
        "rationale_md": "r",
        "options": [
            {"label": "A", "text_md": "a", "is_correct": True},
            {"label": "B", "text_md": "b", "is_correct": False},
        ],
    }
    r = api.post("/v1/author/questions", json=question, **ADMIN)
    assert "body.stem_md" in fields(r)


def test_bundle_numbers_must_be_finite(api, loaded_bank):
    bundle = demo_bundle()
    text = json.dumps(edited(bundle, lambda b: b.update(r_max=0.123456789)))
    for bad in ("NaN", "Infinity", "1e999"):
        r = api.client.post(
            "/v1/admin/exposure/bundles",
            content=text.replace("0.123456789", bad),
            headers={**JSON, **api.headers(**ADMIN)},
        )
        assert r.status_code == 422, r.text
        assert "r_max: must be a finite number" in r.json()["detail"]
    item = bundle["items"][0]
    for key in ("a", "b", "sh_p"):
        text = json.dumps(bundle).replace(
            json.dumps(item)[1:-1], json.dumps({**item, key: 0.987654321})[1:-1]
        )
        r = api.client.post(
            "/v1/admin/exposure/bundles",
            content=text.replace("0.987654321", "NaN"),
            headers={**JSON, **api.headers(**ADMIN)},
        )
        assert r.status_code == 422, r.text
        assert f"items[0].{key}: must be a finite number" in r.json()["detail"]


@pytest.mark.parametrize(
    "row, message",
    [("Q1,1.0,1e308,0.2", "b must be in [-20, 20]"), ("Q1,1e9,0.0,0.2", "a must be in (0, 20]")],
)
def test_calibration_numbers_must_be_sane(api, loaded_bank, row, message):
    csv = f"item_id,a,b,c\n{row}\n".encode()
    r = api.post("/v1/admin/calibrations", files={"file": ("bad.csv", csv, "text/csv")}, **ADMIN)
    assert r.status_code == 422 and message in r.json()["detail"], r.text


def test_bodies_over_the_limit_get_413_before_parsing(db):
    from fastapi.testclient import TestClient

    from service.main import create_app

    app = create_app(service_settings(db, max_body_bytes=64 * 1024))
    with TestClient(app) as client:
        big = b'{"username": "' + b"x" * (1024 * 1024) + b'", "password": "p"}'
        r = client.post("/v1/auth/login", content=big, headers=JSON)
        assert r.status_code == 413 and "larger than 65536 bytes" in r.json()["detail"]

        def chunks():  # no Content-Length: chunked transfer
            for _ in range(64):
                yield b"x" * 4096

        r = client.post("/v1/auth/login", content=chunks(), headers=JSON)
        assert r.status_code == 413
        r = client.post("/v1/auth/login", json={"username": "nobody", "password": "secret-1234"})
        assert r.status_code == 401  # a small body still goes through


def test_api_responses_carry_security_headers(api):
    for r in (
        api.client.get("/health"),
        api.get("/v1/quizzes/nope"),
        api.client.post("/v1/auth/login", json={}),
    ):
        assert r.headers["cache-control"] == "no-store"
        assert r.headers["x-content-type-options"] == "nosniff"
        assert r.headers["x-frame-options"] == "DENY"
        assert "default-src 'none'" in r.headers["content-security-policy"]


def test_every_response_says_the_time_spent_in_the_app(db):
    """``Server-Timing: app;dur=<ms>``: present on answers, refusals and 413s alike, in
    milliseconds, and never more than the client waited for the whole exchange."""
    import time

    from fastapi.testclient import TestClient

    from service.main import create_app

    app = create_app(service_settings(db, max_body_bytes=1024))
    with TestClient(app) as client:
        for method, path, body in (
            ("GET", "/health", None),
            ("POST", "/v1/auth/login", {"username": "nobody", "password": "secret-1234"}),
            ("POST", "/v1/auth/login", {"username": "x" * 4096, "password": "p"}),
        ):
            started = time.perf_counter()
            r = client.request(method, path, json=body)
            waited_ms = (time.perf_counter() - started) * 1000.0
            name, duration = r.headers["server-timing"].split(";dur=")
            assert name == "app" and 0.0 < float(duration) <= waited_ms, (r.status_code, duration)
        assert r.status_code == 413


def test_a_cors_wildcard_with_credentials_is_refused():
    with pytest.raises(ValidationError, match="'\\*' is refused"):
        Settings(env="dev", cors_origins=["*"])
