"""Browser tests of the web UIs: a real uvicorn server on 127.0.0.1 over a fresh SQLite file,
driven by Debian's Chromium through Playwright (``scripts/system-deps.sh`` installs it).

The database holds the demo bank (600 items, exam DEMO-EXAM), two password accounts, a
two-item exam whose text tries to inject script (XSS-CHECK) and a three-item exam of partial
credit (POLY-CHECK: two GRM items scored 0/1/2 and a dichotomous one, calibrated). Each test opens its own browser
context and signs in as its own user, so tests share the server but not their quizzes.
Screenshots of every page go to ``test-output/screenshots/``.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
from sqlalchemy import update

from service.authoring import create_question, publish
from service.calibration import import_calibration, pool_from_csv_bytes
from service.core.security import TokenUser, create_token
from service.db import make_engine, make_session_factory, migrate
from service.demo import load_demo
from service.models import ExposureBundle
from service.schemas import QuestionCreate
from service.users import create_user

ROOT = Path(__file__).resolve().parents[2]
SCREENSHOTS = ROOT / "test-output" / "screenshots"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-background-networking",
    "--disable-gpu",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
TENANT = "00000000-0000-0000-0000-000000000001"
SECRET = "ui-test-secret-" + "y" * 40
STUDENT = ("ada", "ada-password-1")
ADMIN = ("root", "root-password-1")
XSS_EXAM = "XSS-CHECK"
# Each field carries a different payload; any that runs sets window.__qbank_pwned.
XSS_ITEMS = [
    {
        "external_ref": "XSS-1",
        "topic_name": "safety",
        "stem_md": "What is **2 + 2**? <script>window.__qbank_pwned = 'stem'</script>"
        "<img src=x onerror=\"window.__qbank_pwned = 'img'\">",
        "rationale_md": "*Four.* <script>window.__qbank_pwned = 'rationale'</script> "
        "[more](javascript:window.__qbank_pwned='link')",
        "options": [
            {
                "label": "A",
                "text_md": "4 <script>window.__qbank_pwned = 'option'</script>",
                "is_correct": True,
            },
            {
                "label": "B",
                "text_md": "<b onmouseover=\"window.__qbank_pwned='b'\">5</b>",
                "is_correct": False,
            },
        ],
    },
    {
        "external_ref": "XSS-2",
        "topic_name": "safety",
        "stem_md": "Which is larger? <iframe src=\"javascript:parent.__qbank_pwned='iframe'\"></iframe>",
        "rationale_md": "3 > 2 <svg onload=\"window.__qbank_pwned='svg'\"></svg>",
        "options": [
            {"label": "A", "text_md": "2", "is_correct": False},
            {"label": "B", "text_md": "3", "is_correct": True},
        ],
    },
]
POLY_EXAM = "POLY-CHECK"
POLY_ITEMS = [
    {
        "external_ref": f"POLY-{k}",
        "topic_name": "partial-credit",
        "stem_md": f"Simplify expression {k} and show the steps.",
        "rationale_md": f"Worked solution {k}: factor first, then cancel.",
        "options": [
            {"label": "A", "text_md": f"a partly right answer {k}", "score": 1},
            {"label": "B", "text_md": f"the complete answer {k}", "score": 2},
            {"label": "C", "text_md": f"a wrong answer {k}", "score": 0},
        ],
    }
    for k in (1, 2)
] + [
    {
        "external_ref": "POLY-3",
        "topic_name": "partial-credit",
        "stem_md": "Is 7 prime?",
        "rationale_md": "Its only divisors are 1 and 7.",
        "options": [
            {"label": "A", "text_md": "yes", "is_correct": True},
            {"label": "B", "text_md": "no", "is_correct": False},
        ],
    }
]
# item_id, a, b, c, model, b1, b2: what the calibration import stores for POLY-CHECK
POLY_CALIBRATION = (
    "item_id,a,b,c,model,b1,b2\n"
    "POLY-1,1.2,0,0,GRM,-0.8,0.6\n"
    "POLY-2,0.9,0,0,GPCM,-0.3,0.9\n"
    "POLY-3,1.1,0.2,0.1,3PL,,\n"
)


@dataclass
class UiServer:
    """The running service, its database, and what the seed put there."""

    base_url: str
    database_url: str
    session_factory: object
    tenant: str = TENANT
    student: tuple = STUDENT
    admin: tuple = ADMIN
    xss_exam: str = XSS_EXAM
    poly_exam: str = POLY_EXAM

    def token_user(self, user_id: str, roles=("student",)) -> TokenUser:
        return TokenUser(sub=user_id, roles=list(roles), tenant=TENANT)

    def api_headers(self, user_id: str, roles=("admin",)) -> dict:
        return {
            "Authorization": "Bearer "
            + create_token(user_id, list(roles), TENANT, secret=SECRET, ttl_minutes=10)
        }


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _seed(database_url: str, session_factory) -> None:
    migrate(database_url)
    with session_factory() as session:
        load_demo(session, TENANT)
        create_user(session, TENANT, STUDENT[0], STUDENT[1], ["student"], actor="ui-tests")
        create_user(session, TENANT, ADMIN[0], ADMIN[1], ["admin"], actor="ui-tests")
        for item in XSS_ITEMS:
            row = create_question(
                session,
                TENANT,
                "ui-tests",
                QuestionCreate(exam_code=XSS_EXAM, lead_in="Choose one answer.", **item),
            )
            publish(session, TENANT, "ui-tests", row.question_id, XSS_EXAM)
        for item in POLY_ITEMS:
            row = create_question(session, TENANT, "ui-tests", QuestionCreate(exam_code=POLY_EXAM, **item))
            publish(session, TENANT, "ui-tests", row.question_id, POLY_EXAM)
        pool = pool_from_csv_bytes(POLY_CALIBRATION.encode(), "poly.csv")
        import_calibration(session, TENANT, "ui-tests", pool, "poly.csv")


@pytest.fixture(scope="session")
def ui_server(tmp_path_factory):
    """The service (dev mode, so the dev sign-in shows) under uvicorn on a free port."""
    database_url = f"sqlite:///{tmp_path_factory.mktemp('ui') / 'qbank-ui.db'}"
    engine = make_engine(database_url, pool_size=2)
    session_factory = make_session_factory(engine)
    _seed(database_url, session_factory)
    port = _free_port()
    env = {**os.environ, "QBANK_DATABASE_URL": database_url, "QBANK_ENV": "dev", "QBANK_SECRET_KEY": SECRET}
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "--factory",
            "service.main:create_app",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--log-level",
            "warning",
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    base_url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120  # a loaded 2-core machine starts it slowly
        while True:
            try:
                if httpx.get(f"{base_url}/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                pytest.fail(f"uvicorn did not come up on {base_url}:\n{process.stdout.read()}")
            time.sleep(0.1)
        yield UiServer(base_url, database_url, session_factory)
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
        engine.dispose()


@pytest.fixture(scope="session")
def browser():
    if not Path(CHROMIUM).exists():
        pytest.fail(
            f"{CHROMIUM} is missing: run `make system-deps` (scripts/system-deps.sh installs Chromium)"
        )
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


class PageErrors(list):
    """Uncaught script errors and console errors (a CSP violation is one) seen by a page."""


def _open_page(browser, ui_server, **context_options):
    context = browser.new_context(
        base_url=ui_server.base_url, viewport={"width": 1280, "height": 900}, **context_options
    )
    context.set_default_timeout(10_000)
    page = context.new_page()
    errors = PageErrors()
    page.on("pageerror", lambda exc: errors.append(f"pageerror: {exc}"))
    # A refused request (a wrong password's 401) is an answer the page shows, not a script error.
    page.on(
        "console",
        lambda msg: (
            errors.append(f"console: {msg.text}")
            if msg.type == "error" and not msg.text.startswith("Failed to load resource")
            else None
        ),
    )
    return context, page, errors


@pytest.fixture
def page(browser, ui_server):
    """A fresh browser context and page; the test fails on any script or console error."""
    context, page, errors = _open_page(browser, ui_server)
    yield page
    context.close()
    assert not errors, f"the browser reported errors: {errors}"


@pytest.fixture
def open_page(browser, ui_server):
    """Opens further contexts (another device, JavaScript off); closed at the end."""
    contexts = []

    def opener(**context_options):
        context, page, errors = _open_page(browser, ui_server, **context_options)
        contexts.append((context, errors))
        return page

    yield opener
    for context, errors in contexts:
        context.close()
        assert not errors, f"the browser reported errors: {errors}"


@pytest.fixture(scope="session")
def shot():
    """``shot(page, name)`` saves a full-page screenshot as test-output/screenshots/<name>.png."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)

    def save(page, name: str) -> Path:
        path = SCREENSHOTS / f"{name}.png"
        page.screenshot(path=str(path), full_page=True)
        return path

    return save


class SignIn:
    """Sign-in steps as a user does them on /signin."""

    @staticmethod
    def dev(page, user_id: str, role: str = "student", next_path: str = "/") -> None:
        """The one-click dev sign-in (mock login) for ``user_id``."""
        page.goto(f"/signin?next={next_path}")
        page.get_by_label("User id").fill(user_id)
        page.get_by_role("button", name=f"Dev sign-in as {role}", exact=True).click()
        page.wait_for_url(lambda url: urlsplit(url).path == next_path)

    @staticmethod
    def password(page, username: str, password: str) -> None:
        """Fill and submit the password form of the sign-in page that ``page`` shows."""
        page.get_by_label("Username").fill(username)
        page.get_by_label("Password").fill(password)
        page.get_by_role("button", name="Sign in", exact=True).click()


@pytest.fixture(scope="session")
def sign_in() -> SignIn:
    return SignIn()


@pytest.fixture(autouse=True)
def no_bundle_in_force(request):
    """Every UI test starts with no exposure bundle in force: a promoted bundle's stopping rule
    governs every later quiz of its exam, so a bundle left active by one test would change the
    length of another's quizzes. Tests that need one ask for it (``active_bundle``, module-scoped) and keep it."""
    if "ui_server" not in request.fixturenames or "active_bundle" in request.fixturenames:
        return
    server = request.getfixturevalue("ui_server")
    with server.session_factory() as session:
        session.execute(
            update(ExposureBundle).where(ExposureBundle.status == "active").values(status="superseded")
        )
        session.commit()
