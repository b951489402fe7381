"""analytics/metabase: the dashboard definition's SQL runs on both databases with the filters
as Metabase substitutes them, and import_dashboard.py makes exactly the expected requests to
a stand-in Metabase (a real HTTP server on 127.0.0.1 implementing the endpoints it uses),
with clear failures for bad credentials, a wrong database id, unsynced views and an
unreachable server."""

from __future__ import annotations

import importlib.util
import json
import re
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from sqlalchemy import text

from service.analytics_models import ANALYTICS_VIEWS
from service.db import make_engine

FOLDER = Path(__file__).resolve().parents[2] / "analytics" / "metabase"
SCRIPT = FOLDER / "import_dashboard.py"
API_KEY = "mb_test_key"
USER, PASSWORD, SESSION = "admin@example.com", "s3cret", "0b5e7c1e-session"
DATABASE_ID, DASHBOARD_ID, FIRST_CARD_ID = 3, 7, 101


def _module():
    spec = importlib.util.spec_from_file_location("qbank_metabase_import", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


importer = _module()


def field_id(table: str, column: str) -> int:
    """The stand-in's field ids: 1000 + 100 x view position + column position."""
    names = list(ANALYTICS_VIEWS)
    return 1000 + 100 * names.index(table) + [c.name for c in ANALYTICS_VIEWS[table].columns].index(column)


class FakeMetabase:
    """Metabase's endpoints used by the import, with its authentication and error answers;
    records every request (method, path, auth headers, JSON body)."""

    def __init__(self, synced: bool = True, fail_card: str | None = None):
        self.requests: list[dict] = []
        self.synced, self.fail_card = synced, fail_card
        self.cards: dict[int, dict] = {}
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _answer(self, status, body):
                data = (body if isinstance(body, str) else json.dumps(body)).encode()
                self.send_response(status)
                self.send_header(
                    "Content-Type", "application/json" if not isinstance(body, str) else "text/plain"
                )
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _handle(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length)) if length else None
                fake.requests.append(
                    {
                        "method": self.command,
                        "path": self.path,
                        "body": body,
                        "x-api-key": self.headers.get("x-api-key"),
                        "session": self.headers.get("X-Metabase-Session"),
                    }
                )
                self._answer(*fake.route(self.command, self.path, body, self.headers))

            do_GET = do_POST = do_PUT = _handle

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()

    def _metadata(self) -> dict:
        tables = (
            [
                {
                    "id": 50 + i,
                    "name": name,
                    "schema": "public",
                    "fields": [{"id": field_id(name, c.name), "name": c.name} for c in view.columns],
                }
                for i, (name, view) in enumerate(ANALYTICS_VIEWS.items())
            ]
            if self.synced
            else []
        )
        return {"id": DATABASE_ID, "name": "qbank", "tables": tables}

    def route(self, method, path, body, headers):
        if (method, path) == ("POST", "/api/session"):
            if body == {"username": USER, "password": PASSWORD}:
                return 200, {"id": SESSION}
            return 401, {"errors": {"password": "did not match stored password"}}
        if headers.get("x-api-key") != API_KEY and headers.get("X-Metabase-Session") != SESSION:
            return 401, "Unauthenticated"
        if (method, path) == ("GET", f"/api/database/{DATABASE_ID}"):
            return 200, {"id": DATABASE_ID, "name": "qbank", "engine": "postgres"}
        if (method, path) == ("GET", f"/api/database/{DATABASE_ID}/metadata"):
            return 200, self._metadata()
        if (method, path) == ("POST", "/api/card"):
            if body["name"] == self.fail_card:
                return 400, {"message": "Invalid Field Filter: Field 1234 belongs to Database 2, not 3"}
            card_id = FIRST_CARD_ID + len(self.cards)
            self.cards[card_id] = body
            return 200, {"id": card_id, **body}
        if (method, path) == ("POST", "/api/dashboard"):
            return 200, {"id": DASHBOARD_ID, **body}
        if (method, path) == ("PUT", f"/api/dashboard/{DASHBOARD_ID}"):
            unknown = [d["card_id"] for d in body["dashcards"] if d["card_id"] not in self.cards]
            return (
                (400, {"message": f"cards {unknown} do not exist"})
                if unknown
                else (200, {"id": DASHBOARD_ID})
            )
        return 404, "Not found."


@pytest.fixture
def metabase():
    server = FakeMetabase()
    yield server
    server.close()


def _run(metabase_url, *extra):
    return importer.main(["--url", metabase_url, "--database-id", str(DATABASE_ID), *extra])


def test_import_with_an_api_key_makes_exactly_these_requests(metabase, capsys):
    assert _run(metabase.url, "--api-key", API_KEY, "--collection-id", "5") == 0
    assert (
        capsys.readouterr().out.strip()
        == f"created 5 cards and dashboard {DASHBOARD_ID}: {metabase.url}/dashboard/{DASHBOARD_ID}"
    )
    assert [(r["method"], r["path"]) for r in metabase.requests] == [
        ("GET", "/api/database/3"),
        ("GET", "/api/database/3/metadata"),
        *[("POST", "/api/card")] * 5,
        ("POST", "/api/dashboard"),
        ("PUT", "/api/dashboard/7"),
    ]
    assert all(r["x-api-key"] == API_KEY and r["session"] is None for r in metabase.requests)
    definition = json.loads((FOLDER / "dashboard.json").read_text())
    first = metabase.requests[2]["body"]
    assert first == {
        "name": "Accuracy by day",
        "description": "Share of answers with full credit (accuracy) and share of the points (credit: "
        "partial credit on items scored in ordered categories), per UTC day.",
        "display": "line",
        "visualization_settings": {"graph.dimensions": ["day"], "graph.metrics": ["accuracy", "credit"]},
        "collection_id": 5,
        "dataset_query": {
            "type": "native",
            "database": 3,
            "native": {
                "query": definition["cards"][0]["query"],
                "template-tags": {
                    "date": {
                        "id": first["dataset_query"]["native"]["template-tags"]["date"]["id"],
                        "name": "date",
                        "display-name": "Date",
                        "type": "dimension",
                        "dimension": ["field", field_id("analytics_topic_mastery", "day"), None],
                        "widget-type": "date/all-options",
                        "required": False,
                    },
                    "exam": {
                        "id": first["dataset_query"]["native"]["template-tags"]["exam"]["id"],
                        "name": "exam",
                        "display-name": "Exam",
                        "type": "dimension",
                        "dimension": ["field", field_id("analytics_topic_mastery", "exam_code"), None],
                        "widget-type": "string/=",
                        "required": False,
                    },
                },
            },
        },
    }
    gaps = metabase.requests[5]["body"]["dataset_query"]["native"]["template-tags"]
    assert list(gaps) == ["exam"]
    assert gaps["exam"]["dimension"] == ["field", field_id("analytics_blueprint_coverage", "exam_code"), None]
    assert metabase.requests[7]["body"] == {
        "name": "qbank analytics",
        "description": definition["description"],
        "parameters": definition["parameters"],
        "collection_id": 5,
    }
    dashcards = metabase.requests[8]["body"]["dashcards"]
    assert [d["id"] for d in dashcards] == [-1, -2, -3, -4, -5]
    assert [d["card_id"] for d in dashcards] == [101, 102, 103, 104, 105]
    assert dashcards[0] == {
        "id": -1,
        "card_id": 101,
        "row": 0,
        "col": 0,
        "size_x": 12,
        "size_y": 6,
        "parameter_mappings": [
            {"parameter_id": "qbank_date", "card_id": 101, "target": ["dimension", ["template-tag", "date"]]},
            {"parameter_id": "qbank_exam", "card_id": 101, "target": ["dimension", ["template-tag", "exam"]]},
        ],
        "visualization_settings": {},
        "series": [],
    }
    # the blueprint card has no date: only the exam parameter is wired to it
    assert dashcards[3]["parameter_mappings"] == [
        {"parameter_id": "qbank_exam", "card_id": 104, "target": ["dimension", ["template-tag", "exam"]]}
    ]


def test_import_with_a_session_logs_in_first(metabase):
    assert _run(metabase.url, "--username", USER, "--password", PASSWORD) == 0
    login = metabase.requests[0]
    assert (login["method"], login["path"], login["body"]) == (
        "POST",
        "/api/session",
        {"username": USER, "password": PASSWORD},
    )
    assert len(metabase.requests) == 10
    assert all(r["session"] == SESSION and r["x-api-key"] is None for r in metabase.requests[1:])
    # a template tag keeps its id from one import to the next
    tags = [
        r["body"]["dataset_query"]["native"]["template-tags"]["date"]["id"] for r in metabase.requests[3:4]
    ]
    assert tags == [str(importer.uuid.uuid5(importer.TAG_NAMESPACE, "accuracy_by_day/date"))]


def test_wrong_password_or_key_stops_with_a_clear_message(metabase, capsys):
    assert _run(metabase.url, "--username", USER, "--password", "wrong") == 1
    assert (
        "Metabase refused the credentials (log in: POST /api/session answered 401" in capsys.readouterr().err
    )
    assert len(metabase.requests) == 1
    assert _run(metabase.url, "--api-key", "nope") == 1
    assert (
        "refused the credentials (check the database: GET /api/database/3 answered 401: Unauthenticated)"
        in capsys.readouterr().err
    )


def test_wrong_database_id_creates_nothing(metabase, capsys):
    assert importer.main(["--url", metabase.url, "--database-id", "9", "--api-key", API_KEY]) == 1
    assert "Metabase has no database with id 9 (GET /api/database/9 answered 404)" in capsys.readouterr().err
    assert [(r["method"], r["path"]) for r in metabase.requests] == [("GET", "/api/database/9")]


def test_unsynced_views_create_nothing(capsys):
    server = FakeMetabase(synced=False)
    try:
        assert _run(server.url, "--api-key", API_KEY) == 1
        assert [r["method"] for r in server.requests] == ["GET", "GET"]
    finally:
        server.close()
    error = capsys.readouterr().err
    assert "Metabase database 3 ('qbank') has no table ['analytics_blueprint_coverage', " in error
    assert "Sync database schema now" in error


def test_a_refused_card_names_the_card_and_what_was_created(capsys):
    server = FakeMetabase(fail_card="Item exposure by day")
    try:
        assert _run(server.url, "--api-key", API_KEY) == 1
        assert [r["method"] for r in server.requests] == ["GET", "GET", "POST", "POST", "POST"]
    finally:
        server.close()
    assert (
        'create card \'exposure_by_day\': POST /api/card answered 400: {"message": "Invalid Field Filter: '
        'Field 1234 belongs to Database 2, not 3"} (already created: cards [101, 102])'
    ) in capsys.readouterr().err


def test_unreachable_server_exits_2_from_the_command_line():
    closed = FakeMetabase()
    closed.close()
    result = subprocess.run(
        [sys.executable, str(SCRIPT), "--url", closed.url, "--database-id", "3"],
        capture_output=True,
        text=True,
        timeout=60,
        env={"MB_API_KEY": API_KEY, "PATH": "/usr/bin:/bin"},
    )
    assert result.returncode == 2
    assert result.stderr.startswith(
        f"error: cannot reach Metabase at {closed.url} (check the database: ConnectError"
    )


def test_a_definition_whose_tags_and_filters_disagree_is_refused(tmp_path):
    definition = json.loads((FOLDER / "dashboard.json").read_text())
    definition["cards"][0]["query"] = definition["cards"][0]["query"].replace("[[AND {{exam}}]]", "")
    definition["cards"][1]["filters"]["tenant"] = {"table": "analytics_topic_mastery", "column": "tenant_id"}
    path = tmp_path / "d.json"
    path.write_text(json.dumps(definition))
    with pytest.raises(importer.MetabaseError) as error:
        importer.load_definition(path)
    assert error.value.exit_code == 2
    assert "card accuracy_by_day: query tags ['date'] but filters ['date', 'exam']" in str(error.value)
    assert "card accuracy_by_topic: filters ['tenant'] are not dashboard parameters" in str(error.value)


def _as_metabase_would(card: dict, values: dict) -> str:
    """The card's SQL with each field filter replaced the way Metabase does (table-qualified
    column = value) or, without a value, its optional ``[[...]]`` clause dropped."""

    def substitute(match):
        name = re.search(r"\{\{(\w+)\}\}", match.group(1)).group(1)
        if name not in values:
            return ""
        column = card["filters"][name]
        return match.group(1).replace(
            f"{{{{{name}}}}}", f"{column['table']}.{column['column']} = '{values[name]}'"
        )

    return re.sub(r"\[\[(.*?)\]\]", substitute, card["query"])


def test_every_card_query_runs_with_and_without_filters(analytics_db):
    cards = {c["key"]: c for c in importer.load_definition()["cards"]}
    engine = make_engine(analytics_db, pool_size=1)
    try:
        with engine.connect() as conn:
            for card in cards.values():
                conn.execute(text(_as_metabase_would(card, {})))
            filtered = _as_metabase_would(cards["accuracy_by_day"], {"date": "2026-11-20", "exam": "EXAM-A"})
            # both tenants, the 20th: 3 of 6 answers right
            rows = conn.execute(text(filtered)).all()
            assert [(str(r.day)[:10], r.attempts, r.accuracy, r.credit) for r in rows] == [
                ("2026-11-20", 6, 0.5, 0.5)
            ]
            # the 22nd: partial credit, 1 of 3 answers right but 3 of 6 points
            filtered = _as_metabase_would(cards["accuracy_by_topic"], {"date": "2026-11-22"})
            rows = conn.execute(text(filtered)).all()
            assert [(r.topic, r.attempts, r.credit) for r in rows] == [("Ratios", 3, 0.5)]
            assert float(rows[0].accuracy) == pytest.approx(1 / 3)
            gaps = conn.execute(text(_as_metabase_would(cards["blueprint_gaps"], {"exam": "EXAM-A"}))).all()
            assert [(r.topic_name, r.difficulty_label, r.gap_items) for r in gaps] == [
                ("Decimals", "hard", 2),
                ("Decimals", "medium", 2),
                ("Fractions", "easy", 1),
            ]
    finally:
        engine.dispose()
