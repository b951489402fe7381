"""Tokens, passwords, roles and tenants."""

from __future__ import annotations

import jwt
import pytest
from pydantic import ValidationError

from service.core.config import DEFAULT_SECRET, Settings
from service.core.security import hash_password, verify_password
from service.models import User
from service.users import create_user


def test_settings_refuse_the_default_or_a_short_secret_outside_dev():
    with pytest.raises(ValidationError, match="QBANK_SECRET_KEY is 'changethis"):
        Settings(env="production", secret_key=DEFAULT_SECRET)
    with pytest.raises(ValidationError, match="at least 32 bytes"):
        Settings(env="test", secret_key="short-secret")
    assert Settings(env="dev", secret_key=DEFAULT_SECRET).mock_login_enabled
    assert not Settings(env="production", secret_key="s" * 40).mock_login_enabled


def test_argon2_hashes_verify_only_the_password():
    stored = hash_password("correct horse")
    assert stored.startswith("$argon2id$") and "correct horse" not in stored
    assert verify_password(stored, "correct horse") and not verify_password(stored, "correct hors")
    assert not verify_password("not-a-hash", "correct horse")


def test_password_login_gives_a_token_with_roles_and_tenant(api, session_factory, tenant, other_tenant):
    with session_factory() as session:
        user = create_user(session, tenant, "bob", "password-123", ["author", "student"])
        create_user(session, other_tenant, "bob", "password-456", ["student"])
        stored = session.get(User, user.id).password_hash
    assert stored.startswith("$argon2id$")
    r = api.client.post(
        "/v1/auth/login", json={"username": "bob", "password": "password-123", "tenant_id": tenant}
    )
    assert r.status_code == 200
    claims = jwt.decode(r.json()["access_token"], options={"verify_signature": False})
    assert (claims["sub"], claims["roles"], claims["tenant"]) == (user.id, ["author", "student"], tenant)
    headers = {"Authorization": f"Bearer {r.json()['access_token']}"}
    assert (
        api.client.post("/v1/quizzes", headers=headers, json={}).status_code == 404
    )  # no exam yet, but allowed
    r = api.client.post(
        "/v1/auth/login", json={"username": "bob", "password": "password-456", "tenant_id": tenant}
    )
    assert r.status_code == 401
    r = api.client.post(
        "/v1/auth/login", json={"username": "bob", "password": "password-456", "tenant_id": other_tenant}
    )
    assert r.status_code == 200 and r.json()["tenant_id"] == other_tenant
    assert api.client.post("/v1/auth/login", json={"username": "eve", "password": "x"}).status_code == 401
    with session_factory() as session, pytest.raises(Exception, match="already exists"):
        create_user(session, tenant, "bob", "password-789", ["student"])


def test_mock_login_exists_only_in_dev(api, dev_api):
    body = {"user_id": "tester", "roles": ["admin"]}
    r = api.client.post("/v1/auth/mock-login", json=body)
    assert r.status_code == 404 and "QBANK_ENV=dev" in r.json()["detail"]
    assert dev_api.client.post("/v1/auth/mock-login", json=body).status_code == 200
    r = dev_api.client.post("/v1/auth/mock-login", json={"user_id": "tester", "roles": ["root"]})
    assert r.status_code == 422


def test_every_route_checks_the_token_and_the_role(api):
    r = api.client.get("/v1/admin/exposure/items")
    assert r.status_code == 401
    r = api.client.get("/v1/admin/exposure/items", headers={"Authorization": "Bearer not.a.token"})
    assert r.status_code == 401 and "invalid or expired token" in r.json()["detail"]
    forged = jwt.encode(
        {"sub": "x", "roles": ["admin"], "tenant": "t", "exp": 4102444800}, "w" * 40, algorithm="HS256"
    )
    assert (
        api.client.get("/v1/admin/exposure/items", headers={"Authorization": f"Bearer {forged}"}).status_code
        == 401
    )
    expired = jwt.encode(
        {"sub": "x", "roles": ["admin"], "tenant": "t", "exp": 1},
        "test-secret-" + "x" * 40,
        algorithm="HS256",
    )
    assert (
        api.client.get("/v1/admin/exposure/items", headers={"Authorization": f"Bearer {expired}"}).status_code
        == 401
    )
    question = {
        "topic_name": "t",
        "stem_md": "s",
        "rationale_md": "r",
        "options": [
            {"label": "A", "text_md": "a", "is_correct": True},
            {"label": "B", "text_md": "b", "is_correct": False},
        ],
    }
    checks = [
        ("post", "/v1/author/questions", ["student", "publisher"], {"json": question}),
        ("post", "/v1/author/publish/1", ["student", "author"], {}),
        ("get", "/v1/author/questions/1", ["student"], {}),
        ("post", "/v1/quizzes", ["author", "publisher"], {"json": {}}),
        ("get", "/v1/quizzes/x/next", ["author"], {}),
        ("get", "/v1/admin/exposure/items", ["student", "author", "publisher"], {}),
        (
            "post",
            "/v1/admin/exposure/set",
            ["publisher"],
            {"json": {"question_id": 1, "version": 1, "sh_p": 0.5}},
        ),
        ("post", "/v1/admin/exposure/reestimate", ["author"], {"json": {}}),
        (
            "put",
            "/v1/admin/cohorts",
            ["student"],
            {"json": {"user_id": "u", "cohort_key": "k", "cohort_value": "v"}},
        ),
    ]
    for method, path, roles, kwargs in checks:
        r = getattr(api, method)(path, roles=roles, **kwargs)
        assert r.status_code == 403, (method, path, r.text)
        assert "needs one of the roles" in r.json()["detail"]
