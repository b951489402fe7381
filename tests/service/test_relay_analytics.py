"""``qbank analytics consume``: the snapshot built from the event stream gives the same analyses
as the snapshot exported from the database."""

from __future__ import annotations

import pandas as pd
import pytest
from click.testing import CliRunner

from qbank.analytics import open_snapshot, run_analyses
from qbank.cli.main import cli
from tests.service.relay_support import SHARED_NATS, broker_url, delete_stream, unique_stream


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_stream_snapshot_gives_the_database_snapshots_analyses(api, loaded_bank, take_quiz, db, tmp_path):
    for user, right in (("ann", True), ("bob", False), ("cy", True)):
        r = api.post("/v1/quizzes", user=user, json={"filters": {"num_questions": 5}})
        assert r.status_code == 201, r.text
        key = loaded_bank.key if right else loaded_bank.wrong
        take_quiz(api, r.json()["quiz_id"], lambda item: key[item["question_id"]], user=user)
    r = api.post("/v1/quizzes", user="dee", json={"filters": {"num_questions": 5}})  # left unfinished
    api.get(f"/v1/quizzes/{r.json()['quiz_id']}/next", user="dee")

    runner = CliRunner()
    result = runner.invoke(cli, ["analytics", "export", "--db", db, "--out", str(tmp_path / "db")])
    assert result.exit_code == 0, result.output
    name, prefix = unique_stream()
    try:
        result = runner.invoke(
            cli, ["relay", "--broker", broker_url(SHARED_NATS, name, prefix), "--once", "--database-url", db]
        )
        assert result.exit_code == 0, result.output
        args = ["analytics", "consume", "--broker", SHARED_NATS, "--stream", name]
        result = runner.invoke(
            cli, [*args, "--catalog", str(tmp_path / "db"), "--out", str(tmp_path / "stream")]
        )
        assert result.exit_code == 0, result.output
    finally:
        delete_stream(SHARED_NATS, name)
    assert "facts/responses" in result.output and " 15 rows" in result.output

    from_db = run_analyses(open_snapshot(tmp_path / "db"))
    from_stream = run_analyses(open_snapshot(tmp_path / "stream"))
    assert set(from_db) == set(from_stream)
    for analysis, frame in from_db.items():
        assert len(frame) > 0, analysis
        pd.testing.assert_frame_equal(from_stream[analysis], frame, check_dtype=False, obj=analysis)


def test_consume_errors_name_the_option(tmp_path):
    runner = CliRunner()
    result = runner.invoke(
        cli, ["analytics", "consume", "--broker", "kafka://x:9092", "--catalog", str(tmp_path), "--out", "o"]
    )
    assert result.exit_code == 2 and "--broker" in result.output and "nats://host:port" in result.output
    result = runner.invoke(
        cli,
        [
            "analytics",
            "consume",
            "--broker",
            SHARED_NATS,
            "--stream",
            "QBANK_NO_SUCH_STREAM",
            "--catalog",
            str(tmp_path),
            "--out",
            str(tmp_path / "o"),
        ],
    )
    assert result.exit_code == 1 and "cannot read stream QBANK_NO_SUCH_STREAM" in result.output
