"""``qbank publish`` against a real service: uvicorn serving the app on a free port (SQLite with
the demo bank), a bundle written by ``qbank sh`` for the demo pool, and every error path."""

from __future__ import annotations

import json
import socket
import threading
import time

import httpx
import pytest
import uvicorn
from click.testing import CliRunner
from exposure_support import SECRET, TENANT, service_settings

from qbank.cli.main import cli
from service.core.security import create_token
from service.db import make_engine, make_session_factory, migrate
from service.demo import DEMO_POOL, load_demo
from service.main import create_app


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def service_url(tmp_path_factory):
    """The delivery service on 127.0.0.1 in a background thread, stopped after the module."""
    url = f"sqlite:///{tmp_path_factory.mktemp('publish') / 'qbank.db'}"
    migrate(url)
    engine = make_engine(url)
    with make_session_factory(engine)() as session:
        load_demo(session, TENANT)
    engine.dispose()
    port = _free_port()
    server = uvicorn.Server(
        uvicorn.Config(create_app(service_settings(url)), host="127.0.0.1", port=port, log_level="warning")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "the service did not start"
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=10)


@pytest.fixture(scope="module")
def bundle_dir(tmp_path_factory):
    """``qbank sh`` on the demo pool (small N): the workbench side of the loop."""
    out = tmp_path_factory.mktemp("sh")
    result = CliRunner().invoke(
        cli,
        [
            "sh",
            "--pool",
            str(DEMO_POOL),
            "--r-max",
            "0.25",
            "--length",
            "5",
            "--examinees",
            "3000",
            "--validation-examinees",
            "6000",
            "--out",
            str(out),
        ],
    )
    assert result.exit_code == 0, result.output
    return out


def token(*roles, user="root"):
    return create_token(user, list(roles or ["admin"]), TENANT, secret=SECRET, ttl_minutes=30)


def publish(*args):
    result = CliRunner().invoke(cli, ["publish", *map(str, args)])
    assert "Traceback" not in result.output
    return result


def test_publish_then_promote(service_url, bundle_dir):
    result = publish(bundle_dir, "--url", service_url, "--token", token(), "--promote")
    assert result.exit_code == 0, result.output
    first, second = result.output.splitlines()
    bundle_id = first.split()[2]
    assert first.startswith(
        f"uploaded bundle {bundle_id} (staged) for exam DEMO-EXAM: sympson_hetter, r_max 0.25, 600 items"
    )
    assert (
        second.startswith(f"promoted bundle {bundle_id}: active for exam DEMO-EXAM since ")
        and "(by root)" in second
    )

    headers = {"Authorization": f"Bearer {token()}"}
    detail = httpx.get(f"{service_url}/v1/admin/exposure/bundles/{bundle_id}", headers=headers).json()
    document = json.loads((bundle_dir / "bundle.json").read_text())
    assert detail["status"] == "active" and detail["document"]["bundle_sha256"] == document["bundle_sha256"]
    rows = httpx.get(f"{service_url}/v1/admin/exposure/items?limit=1000", headers=headers).json()
    assert sorted(row["sh_p"] for row in rows) == sorted(item["sh_p"] for item in document["items"])

    result = publish(bundle_dir / "bundle.json", "--url", service_url + "/", "--token", token(), "--promote")
    assert result.exit_code == 0, result.output
    assert result.output.splitlines() == [
        f"already uploaded as bundle {bundle_id} (active) for exam DEMO-EXAM: sympson_hetter, r_max 0.25, 600 items, "
        f"sha256 {document['bundle_sha256'][:12]}",
        f"bundle {bundle_id} is already active",
    ]


def test_publish_errors_are_clear(service_url, bundle_dir, tmp_path):
    result = publish(bundle_dir, "--url", service_url, "--token", token(), "--exam-code", "NO-EXAM")
    assert result.exit_code == 1
    assert (
        "the service refused the bundle: exposure bundle refused, failed check(s) live_calibration: exam_code: "
        "exam 'NO-EXAM' has no published items"
    ) in result.output
    result = publish(bundle_dir, "--url", service_url, "--token", "not-a-token")
    assert (
        result.exit_code == 1
        and "the service refused the token (401): invalid or expired token" in result.output
    )
    result = publish(bundle_dir, "--url", service_url, "--token", token("student", user="sam"))
    assert result.exit_code == 1 and "the service refused the token (403)" in result.output

    tampered = json.loads((bundle_dir / "bundle.json").read_text())
    tampered["r_max"] = 0.5
    (tmp_path / "bundle.json").write_text(json.dumps(tampered))
    result = publish(tmp_path, "--url", service_url, "--token", token())
    assert result.exit_code == 2 and "refused here, not sent" in result.output
    assert "bundle_sha256: does not match the document" in result.output
    (tmp_path / "broken.json").write_text('{"schema": ')
    result = publish(tmp_path / "broken.json", "--url", service_url, "--token", token())
    assert result.exit_code == 2 and "not valid JSON: Expecting value at line 1 column 12" in result.output
    result = publish(tmp_path / "missing", "--url", service_url, "--token", token())
    assert result.exit_code == 2 and "missing does not exist" in result.output
    result = publish(
        bundle_dir, "--url", f"http://127.0.0.1:{_free_port()}", "--token", token(), "--timeout", "5"
    )
    assert result.exit_code == 1 and "cannot reach the service at http://127.0.0.1:" in result.output
