"""Sign-in plumbing without a browser: the dev switch, token checks, redirects, CSRF."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from service.core.config import Settings
from service.core.security import create_token
from service.db import migrate
from service.main import create_app
from service.ui.session import COOKIE_NAME, safe_next

SECRET = "ui-session-test-secret-" + "z" * 32
TENANT = "00000000-0000-0000-0000-000000000001"


@pytest.fixture(scope="module")
def database_url(tmp_path_factory):
    url = f"sqlite:///{tmp_path_factory.mktemp('ui-session') / 'qbank.db'}"
    migrate(url)
    return url


def _client(database_url: str, env: str) -> TestClient:
    return TestClient(create_app(Settings(database_url=database_url, env=env, secret_key=SECRET)))


@pytest.mark.parametrize(
    "target, expected",
    [
        ("/quiz/abc?x=1", "/quiz/abc?x=1"),
        ("/admin", "/admin"),
        ("//evil.example/x", "/"),
        ("https://evil.example/", "/"),
        ("/\\evil.example", "/"),
        ("", "/"),
        (None, "/"),
    ],
)
def test_safe_next_keeps_only_paths_on_this_site(target, expected):
    assert safe_next(target) == expected


def test_outside_dev_there_is_no_dev_sign_in(database_url):
    with _client(database_url, "test") as client:
        page = client.get("/signin")
        assert page.status_code == 200 and "Dev sign-in" not in page.text
        refused = client.post("/signin/dev", data={"user_id": "x", "role": "admin"}, follow_redirects=False)
        assert refused.status_code == 404 and COOKIE_NAME not in refused.cookies


def test_session_takes_only_valid_tokens_and_sets_a_strict_httponly_cookie(database_url):
    with _client(database_url, "test") as client:
        forged = create_token(
            "mallory", ["admin"], TENANT, secret="another-secret-" + "q" * 32, ttl_minutes=5
        )
        refused = client.post("/session", json={"access_token": forged})
        assert refused.status_code == 401 and refused.json()["detail"].startswith("access_token: invalid")
        assert (
            client.get("/admin/exposure", follow_redirects=False).headers["location"]
            == "/signin?next=%2Fadmin%2Fexposure"
        )
        token = create_token("alice", ["admin"], TENANT, secret=SECRET, ttl_minutes=5)
        accepted = client.post("/session", json={"access_token": token, "next": "//evil.example"})
        assert accepted.json()["location"] == "/admin"  # an admin-only user lands on the admin UI
        cookie = accepted.headers["set-cookie"]
        assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Max-Age=7200" in cookie
        page = client.get("/admin/exposure")
        assert page.status_code == 200 and "Exposure control" in page.text
        assert "script-src 'self'" in page.headers["content-security-policy"]


def test_forms_without_the_csrf_token_are_refused(database_url):
    with _client(database_url, "dev") as client:
        client.post("/signin/dev", data={"user_id": "bob", "role": "student"})
        started = client.post("/quiz", data={"exam_code": "DEMO-EXAM", "mode": "tutor", "num_questions": "3"})
        assert started.status_code == 403 and "CSRF" in started.json()["detail"]
        signed_out = client.post("/signout", data={"csrf_token": "wrong"})
        assert signed_out.status_code == 403


def test_sign_out_revokes_the_session_token(database_url):
    import re

    with _client(database_url, "dev") as client:
        client.post("/signin/dev", data={"user_id": "bob", "role": "student"})
        token = client.cookies.get(COOKIE_NAME)
        home = client.get("/")
        csrf = re.search(r'name="csrf-token" content="([^"]+)"', home.text).group(1)
        assert client.post("/signout", data={"csrf_token": csrf}, follow_redirects=False).status_code == 303
        # The token itself is refused now, by the API too, not only forgotten by the browser.
        r = client.get("/v1/quizzes/none", headers={"Authorization": f"Bearer {token}"})
        assert r.status_code == 401 and r.json()["detail"] == "token signed out"
