"""``qbank analytics export`` / ``report`` / ``targets`` end to end: Parquet snapshot, DuckDB
analyses equal to the database views, plots, and the error messages."""

from __future__ import annotations

import json
import sqlite3

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from alembic.script import ScriptDirectory
from analytics_dataset import TENANT_A, load_dataset
from click.testing import CliRunner
from sqlalchemy import select

from qbank.analytics import FACT_SCHEMAS, open_snapshot, selector_outcomes, topic_mastery
from qbank.cli.main import cli
from service.analytics_models import blueprint_coverage
from service.db import alembic_config, make_engine, migrate

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _invoke(*args):
    return CliRunner().invoke(cli, ["analytics", *map(str, args)], catch_exceptions=False)


@pytest.fixture(scope="module")
def snapshot(analytics_db, tmp_path_factory):
    out = tmp_path_factory.mktemp("snapshot")
    result = _invoke("export", "--db", analytics_db, "--out", out)
    assert result.exit_code == 0, result.output
    return out


def test_export_writes_facts_views_and_manifest(snapshot, analytics_db):
    manifest = json.loads((snapshot / "manifest.json").read_text())
    assert manifest["schema"] == "qbank.analytics-snapshot/2"
    assert (
        manifest["alembic_revision"]
        == ScriptDirectory.from_config(alembic_config(analytics_db)).get_current_head()
    )
    assert manifest["backend"] == analytics_db.split(":")[0].split("+")[0]
    assert manifest["rows"] == {
        "facts/topics": 4,
        "facts/questions": 10,
        "facts/question_versions": 11,
        "facts/publications": 11,
        "facts/blueprint_targets": 4,
        "facts/quiz_sessions": 7,
        "facts/quiz_items": 12,
        "facts/responses": 11,
        "views/topic_mastery": 8,
        "views/blueprint_coverage": 10,
        "views/item_exposure_daily": 10,
        "views/selector_outcomes": 5,
    }
    for name, schema in FACT_SCHEMAS.items():
        assert pq.read_schema(snapshot / "facts" / f"{name}.parquet").equals(schema), name
    sessions = pq.read_table(snapshot / "facts" / "quiz_sessions.parquet").to_pandas().set_index("quiz_id")
    assert sessions.loc["qc", ["selector_rule", "assignment"]].tolist() == ["sympson_hetter", "cohort"]
    # 00:29 at UTC+1 is stored and exported as 23:29 UTC the day before
    items = pq.read_table(snapshot / "facts" / "quiz_items.parquet").to_pandas()
    served = items[(items["quiz_id"] == "qc") & (items["position"] == 0)]["served_at"].iloc[0]
    assert str(served) == "2026-11-20 23:29:00+00:00"


def test_duckdb_analyses_give_the_hand_computed_numbers(snapshot):
    con = open_snapshot(snapshot)
    outcomes = selector_outcomes(con).set_index(["tenant_id", "selector_rule", "assignment"])
    row = outcomes.loc[(TENANT_A, "max_info", "cohort")]
    assert (row["quizzes"], row["mean_items_served"], row["max_exposure_rate"]) == (2, 2.5, 1.0)
    assert row["test_overlap"] == pytest.approx(0.4)
    assert row["mean_score"] == pytest.approx(5 / 6)
    mastery = topic_mastery(con)
    bob = mastery[mastery["user_id"] == "bob"]
    assert [str(d) for d in bob["day"]] == ["2026-11-20", "2026-11-20"]
    alice = mastery[
        (mastery["tenant_id"] == TENANT_A) & (mastery["user_id"] == "alice") & (mastery["topic_id"] == 1)
    ]
    assert alice["cumulative_accuracy"].tolist() == pytest.approx([0.5, 2 / 3])
    assert alice["cumulative_credit"].tolist() == pytest.approx([0.5, 2 / 3])  # 0/1 items: the accuracy
    assert alice["latest_theta"].tolist() == [-0.1, 0.8]
    # partial credit: 2 of 3, 1 of 1 and 0 of 2 points; one answer of three with full credit
    erin = mastery[mastery["user_id"] == "erin"].iloc[0]
    assert (erin["correct"], erin["points"], erin["max_points"]) == (1, 3, 6)
    assert (erin["accuracy"], erin["credit"]) == (pytest.approx(1 / 3), 0.5)
    assert outcomes.loc[("tenant-p", "max_info", "cohort"), ["mean_score", "mean_credit"]].tolist() == [
        pytest.approx(1 / 3),
        0.5,
    ]
    assert row["mean_credit"] == pytest.approx(5 / 6)
    versions = con.execute("SELECT question_version_id, max_score FROM question_versions").fetchall()
    assert dict(versions) == {11: 1, 21: 1, 31: 1, 32: 1, 41: 1, 51: 1, 61: 1, 71: 1, 81: 3, 91: 1, 101: 2}


def test_report_writes_tables_plots_and_matches_the_views(snapshot, tmp_path):
    result = _invoke("report", "--in", snapshot, "--out", tmp_path)
    assert result.exit_code == 0, result.output
    assert "warning" not in result.output
    for name in ("mastery_heatmap", "coverage", "exposure_over_time"):
        data = (tmp_path / f"{name}.png").read_bytes()
        assert data.startswith(PNG_SIGNATURE) and len(data) > 5000, name
    for name, rows in (
        ("topic_mastery", 8),
        ("blueprint_coverage", 10),
        ("item_exposure_daily", 10),
        ("selector_outcomes", 5),
    ):
        assert len((tmp_path / f"{name}.csv").read_text().strip().splitlines()) == rows + 1, name
    report = (tmp_path / "report.md").read_text()
    for name in ("topic_mastery", "blueprint_coverage", "item_exposure_daily", "selector_outcomes"):
        assert f"- {name}: match" in report
    assert "3 cells short of target, 5 items missing." in report
    header = (tmp_path / "topic_mastery.csv").read_text().splitlines()[0].split(",")
    assert {"accuracy", "credit", "points", "max_points", "cumulative_credit"} <= set(header)
    assert "| erin | Ratios | 2026-11-22 | 3 | 0.3333 | 0.5 |" in report  # accuracy, then credit


def test_report_filters_by_exam_and_refuses_an_unknown_one(snapshot, tmp_path):
    result = _invoke("report", "--in", snapshot, "--out", tmp_path / "b", "--exam", "EXAM-B")
    assert result.exit_code == 0, result.output
    assert "blueprint_coverage              1 rows" in result.output
    result = _invoke("report", "--in", snapshot, "--out", tmp_path / "x", "--exam", "EXAM-Z")
    assert result.exit_code == 1
    assert "--exam: 'EXAM-Z' is not in the snapshot (present: ['EXAM-A', 'EXAM-B'])" in result.output


def test_export_of_one_tenant(analytics_db, tmp_path):
    result = _invoke("export", "--db", analytics_db, "--out", tmp_path, "--tenant", "tenant-b")
    assert result.exit_code == 0, result.output
    rows = json.loads((tmp_path / "manifest.json").read_text())["rows"]
    assert rows == {
        "facts/topics": 1,
        "facts/questions": 1,
        "facts/question_versions": 1,
        "facts/publications": 1,
        "facts/blueprint_targets": 0,
        "facts/quiz_sessions": 1,
        "facts/quiz_items": 1,
        "facts/responses": 1,
        "views/topic_mastery": 1,
        "views/blueprint_coverage": 1,
        "views/item_exposure_daily": 1,
        "views/selector_outcomes": 1,
    }
    result = _invoke("export", "--db", analytics_db, "--out", tmp_path, "--tenant", "tenant-c")
    assert result.exit_code == 1
    assert (
        "--tenant: no rows for tenant 'tenant-c' (tenants present: ['tenant-a', 'tenant-b', 'tenant-p'])"
        in result.output
    )
    # the folder now holds a failed export: without its manifest, report refuses it
    assert not (tmp_path / "manifest.json").exists()


def test_export_without_views_removes_stale_view_files(analytics_db, tmp_path):
    assert _invoke("export", "--db", analytics_db, "--out", tmp_path).exit_code == 0
    assert (tmp_path / "views" / "topic_mastery.parquet").is_file()
    assert _invoke("export", "--db", analytics_db, "--out", tmp_path, "--no-views").exit_code == 0
    assert not list((tmp_path / "views").glob("*.parquet"))
    result = _invoke("report", "--in", tmp_path, "--out", tmp_path / "report")
    assert result.exit_code == 0
    assert "- topic_mastery: no view snapshot" in (tmp_path / "report" / "report.md").read_text()


def test_empty_database_gives_an_empty_report(tmp_path):
    url = f"sqlite:///{tmp_path / 'empty.db'}"
    migrate(url)
    assert _invoke("export", "--db", url, "--out", tmp_path / "snap").exit_code == 0
    result = _invoke("report", "--in", tmp_path / "snap", "--out", tmp_path / "rep")
    assert result.exit_code == 0, result.output
    assert (tmp_path / "rep" / "mastery_heatmap.png").read_bytes().startswith(PNG_SIGNATURE)
    assert "- selector_outcomes: match" in (tmp_path / "rep" / "report.md").read_text()


def test_export_errors_name_the_problem(tmp_path):
    result = _invoke("export", "--db", f"sqlite:///{tmp_path / 'absent.db'}", "--out", tmp_path / "a")
    assert result.exit_code == 1 and "no such SQLite file" in result.output
    assert not (tmp_path / "absent.db").exists()
    sqlite3.connect(tmp_path / "bare.db").execute("CREATE TABLE t (x INTEGER)").connection.close()
    result = _invoke("export", "--db", f"sqlite:///{tmp_path / 'bare.db'}", "--out", tmp_path / "b")
    assert (
        result.exit_code == 1
        and "has no analytics views" in result.output
        and "migrate it first" in result.output
    )
    result = _invoke("export", "--db", "postgresql://postgres@127.0.0.1:1/none", "--out", tmp_path / "c")
    assert result.exit_code == 1
    assert "cannot export postgresql://postgres@127.0.0.1:1/none: OperationalError" in result.output
    result = _invoke("export", "--db", "not a url", "--out", tmp_path / "d")
    assert result.exit_code == 2 and "--db" in result.output


def test_report_refuses_a_broken_snapshot(snapshot, tmp_path):
    result = _invoke("report", "--in", tmp_path, "--out", tmp_path / "r")
    assert result.exit_code == 2 and "is not an analytics snapshot: manifest.json is missing" in result.output
    broken = tmp_path / "broken"
    (broken / "facts").mkdir(parents=True)
    (broken / "manifest.json").write_text((snapshot / "manifest.json").read_text())
    for name in FACT_SCHEMAS:
        if name != "responses":
            (broken / "facts" / f"{name}.parquet").write_bytes(
                (snapshot / "facts" / f"{name}.parquet").read_bytes()
            )
    result = _invoke("report", "--in", broken, "--out", tmp_path / "r")
    assert (
        result.exit_code == 2
        and "incomplete snapshot" in result.output
        and "responses.parquet" in result.output
    )
    table = pq.read_table(snapshot / "facts" / "responses.parquet")
    pq.write_table(
        table.set_column(
            table.schema.get_field_index("is_correct"), "is_correct", pa.array(["yes"] * table.num_rows)
        ),
        broken / "facts" / "responses.parquet",
    )
    result = _invoke("report", "--in", broken, "--out", tmp_path / "r")
    assert result.exit_code == 2 and "missing or mistyped columns ['is_correct (bool)']" in result.output


def test_targets_replace_an_exams_blueprint(tmp_path):
    url = f"sqlite:///{tmp_path / 'q.db'}"
    migrate(url)
    load_dataset(url)
    bad = tmp_path / "bad.csv"
    bad.write_text(
        "exam_code,topic,difficulty_label,target_items\nEXAM-A,Fractions,easy,2\nEXAM-A,Algebra,easy,1\n"
        "EXAM-A,Decimals,hard,-1\n"
    )
    result = _invoke("targets", bad, "--db", url, "--tenant", TENANT_A)
    assert result.exit_code == 2 and "target_items must be an integer >= 0; bad rows [3]" in result.output
    bad.write_text(
        "exam_code,topic,difficulty_label,target_items\nEXAM-A,Fractions,easy,2\nEXAM-A,Algebra,easy,1\n"
    )
    result = _invoke("targets", bad, "--db", url, "--tenant", TENANT_A)
    assert result.exit_code == 2 and "unknown topic in rows [2]" in result.output
    bad.write_text(
        "exam_code,topic,difficulty_label,target_items\nEXAM-A,Fractions,,2\nEXAM-A,Fractions,easy,1\n"
        "EXAM-A,Fractions,easy,3\n"
    )
    result = _invoke("targets", bad, "--db", url, "--tenant", TENANT_A)
    assert result.exit_code == 2 and "empty values in rows [1]" in result.output
    bad.write_text(
        "exam_code,topic,difficulty_label,target_items\nEXAM-A,Fractions,easy,1\nEXAM-A,1,easy,3\n"
    )
    result = _invoke("targets", bad, "--db", url, "--tenant", TENANT_A)
    assert result.exit_code == 2 and "the same exam, topic and difficulty in rows [1, 2]" in result.output
    good = tmp_path / "good.csv"
    good.write_text(
        "exam_code,topic,difficulty_label,target_items\nEXAM-A,Fractions,easy,1\nEXAM-A,2,hard,4\n"
    )
    result = _invoke("targets", good, "--db", url, "--tenant", TENANT_A)
    assert result.exit_code == 0, result.output
    engine = make_engine(url, pool_size=1)
    with engine.connect() as conn:
        rows = {
            (r.topic_id, r.difficulty_label): (r.target_items, r.status)
            for r in conn.execute(
                select(blueprint_coverage).where(
                    blueprint_coverage.c.tenant_id == TENANT_A, blueprint_coverage.c.exam_code == "EXAM-A"
                )
            )
        }
    engine.dispose()
    # the old targets of EXAM-A are gone: Fractions/medium is untargeted, Decimals/medium has no row
    assert rows == {
        (1, "easy"): (1, "met"),
        (1, "medium"): (None, "untargeted"),
        (2, "hard"): (4, "short"),
        (2, "easy"): (None, "untargeted"),
        (2, "unlabelled"): (None, "untargeted"),
    }
