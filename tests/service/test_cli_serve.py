"""``qbank serve``, ``load-demo``, ``create-user``, ``import-calibration`` end to end (SQLite)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import sqlalchemy as sa
from click.testing import CliRunner

from qbank.calibration import calibrate
from qbank.cli.main import cli
from qbank.irt import probability
from qbank.pool import load_pool, save_pool

ROOT = Path(__file__).resolve().parents[2]


def test_load_demo_create_user_and_import_calibration(tmp_path):
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    runner = CliRunner()
    r = runner.invoke(cli, ["load-demo", "--database-url", url])
    assert r.exit_code == 0 and "600 new question(s)" in r.output
    r = runner.invoke(cli, ["load-demo", "--database-url", url])
    assert r.exit_code == 0 and "0 new question(s)" in r.output
    r = runner.invoke(
        cli,
        ["create-user", "zoe", "--role", "admin", "--role", "author", "--database-url", url],
        input="long-password\nlong-password\n",
    )
    assert r.exit_code == 0 and "created user zoe (admin, author)" in r.output
    r = runner.invoke(
        cli, ["create-user", "zoe", "--role", "student", "--password", "long-password", "--database-url", url]
    )
    assert r.exit_code == 1 and "username 'zoe' already exists" in r.output
    r = runner.invoke(
        cli, ["create-user", "yan", "--role", "student", "--password", "short", "--database-url", url]
    )
    assert r.exit_code == 1 and "at least 10 characters" in r.output
    r = runner.invoke(
        cli, ["import-calibration", str(ROOT / "data" / "demo_pool.csv"), "--database-url", url]
    )
    assert r.exit_code == 0 and "imported 600 calibration(s) (3PL)" in r.output
    bad = tmp_path / "bad.csv"
    bad.write_text("item_id,a,b,c\nDEMO-0001,0,0,0.2\n")
    r = runner.invoke(cli, ["import-calibration", str(bad), "--database-url", url])
    assert r.exit_code == 2 and "a must be in (0, 20]; bad items: ['DEMO-0001']" in r.output
    r = runner.invoke(cli, ["load-demo", "--database-url", "mysql://nobody@localhost/x"])
    assert r.exit_code == 1 and "unsupported database 'mysql'" in r.output


def test_import_calibration_checks_the_pools_report(tmp_path):
    """The report beside a calibrated pool records respondents and stops poorly determined items."""
    url = f"sqlite:///{tmp_path / 'cal.db'}"
    runner = CliRunner()
    assert runner.invoke(cli, ["load-demo", "--database-url", url]).exit_code == 0
    demo = load_pool(ROOT / "data" / "demo_pool.csv").subset(np.arange(12))
    rng = np.random.default_rng(5)
    theta = rng.normal(size=800)
    y = (rng.random((800, 12)) < probability(theta, demo.a, demo.b, demo.c, demo.D)).astype(float)
    responses = pd.DataFrame(y, columns=demo.item_id)
    # A limit between the two largest standard errors flags exactly one item.
    se_b = calibrate(responses, "3PL").items["se_b"].sort_values()
    worst = se_b.index[-1]
    report = calibrate(responses, "3PL", se_b_limit=float(se_b.iloc[-2:].mean()))
    assert report.items["poorly_determined"].sum() == 1 and report.items.loc[worst, "poorly_determined"]
    pool_path = report.save(tmp_path / "cal.csv")["pool"]

    def imported(*extra):
        return runner.invoke(cli, ["import-calibration", str(pool_path), "--database-url", url, *extra])

    r = imported()
    assert r.exit_code == 2 and "1 item(s) are poorly determined in cal.report.json" in r.output
    assert worst in r.output and "pass --poorly-determined skip to import the others" in r.output
    r = imported("--poorly-determined", "skip")
    assert r.exit_code == 0 and "imported 11 calibration(s)" in r.output
    assert f"skipped 1 poorly determined item(s): ['{worst}']" in r.output
    with sa.create_engine(url).connect() as db:
        rows = db.execute(
            sa.text(
                "SELECT q.external_ref, c.n_respondents FROM item_calibration c JOIN questions q "
                "ON q.id = c.question_id WHERE c.source = 'cal.csv' AND c.is_current"
            )
        ).all()
    assert len(rows) == 11 and worst not in {ref for ref, _ in rows} and {n for _, n in rows} == {800}
    r = imported("--poorly-determined", "keep")
    assert (
        r.exit_code == 0 and "imported 12 calibration(s)" in r.output and "warning: importing 1" in r.output
    )

    other = demo.to_frame()
    other.loc[0, "b"] += 0.5
    other_path = tmp_path / "other.csv"
    other.to_csv(other_path, index=False)
    r = runner.invoke(
        cli,
        [
            "import-calibration",
            str(other_path),
            "--report",
            str(tmp_path / "cal.report.json"),
            "--database-url",
            url,
        ],
    )
    assert r.exit_code == 2 and "has other parameters than other.csv for 12 item(s)" in r.output
    r = runner.invoke(
        cli,
        [
            "import-calibration",
            str(other_path),
            "--report",
            str(tmp_path / "none.json"),
            "--database-url",
            url,
        ],
    )
    assert r.exit_code == 2 and "no such calibration report" in r.output
    save_pool(demo, tmp_path / "plain.csv")
    r = runner.invoke(cli, ["import-calibration", str(tmp_path / "plain.csv"), "--database-url", url])
    assert r.exit_code == 0 and "note: no plain.report.json beside plain.csv" in r.output


def test_serve_refuses_the_default_secret_outside_dev(tmp_path, monkeypatch):
    monkeypatch.delenv("QBANK_SECRET_KEY", raising=False)
    monkeypatch.setenv("QBANK_ENV", "production")
    r = CliRunner().invoke(cli, ["serve", "--database-url", f"sqlite:///{tmp_path / 's.db'}"])
    assert r.exit_code == 1 and "QBANK_SECRET_KEY is 'changethis" in r.output


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_serve_migrates_loads_the_demo_and_answers(tmp_path):
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("QBANK_")}
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "qbank.cli.main",
            "serve",
            "--dev",
            "--with-demo",
            "--port",
            str(port),
            "--database-url",
            f"sqlite:///{tmp_path / 'served.db'}",
        ],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            assert server.poll() is None, server.stdout.read()
            try:
                health = httpx.get(f"{base}/health", timeout=1).json()
                if health == {"status": "ok", "database": "sqlite", "outbox": health.get("outbox")}:
                    assert health["outbox"]["backlog"] >= 0  # the relay's lag (docs/relay.md)
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "the server did not answer /health within 60 s"
            time.sleep(0.2)
        token = httpx.post(f"{base}/v1/auth/mock-login", json={"user_id": "s", "roles": ["student"]}).json()
        headers = {"Authorization": f"Bearer {token['access_token']}"}
        quiz = httpx.post(
            f"{base}/v1/quizzes", headers=headers, json={"filters": {"num_questions": 2}}
        ).json()
        item = httpx.get(f"{base}/v1/quizzes/{quiz['quiz_id']}/next", headers=headers).json()
        assert item["question_id"] >= 1 and len(item["payload"]["options"]) == 4
    finally:
        server.terminate()
        output = server.communicate(timeout=30)[0]
    assert "600 new question(s) loaded" in output and f"{base}/docs" in output
