"""Create the qbank dashboard (``dashboard.json`` next to this file) in a Metabase instance.

Usage::

    python analytics/metabase/import_dashboard.py --url http://metabase:3000 --database-id 2 \\
        --api-key mb_xxx                # or --username admin@example.com --password ...

(also ``MB_URL``, ``MB_DATABASE_ID``, ``MB_API_KEY``, ``MB_USERNAME``, ``MB_PASSWORD``).

The database id is Metabase's id of the connection to the qbank service database (Admin >
Databases); that database must hold the analytics views (migration ``0002_analytics``) and
Metabase must have synced them, since the date and exam filters are field filters on view
columns. Steps, all through Metabase's REST API:

1. authenticate: header ``x-api-key``, or ``POST /api/session`` and header ``X-Metabase-Session``;
2. ``GET /api/database/:id`` (a wrong id stops here, before anything is created), then
   ``GET /api/database/:id/metadata`` to find the field ids of the filtered columns;
3. ``POST /api/card`` per card: a native query whose template tags ``{{date}}`` and ``{{exam}}``
   are field filters (``type: dimension``) on those fields;
4. ``POST /api/dashboard`` with the date and exam parameters;
5. ``PUT /api/dashboard/:id`` with ``dashcards``: each card's position and its parameter mappings
   (target ``["dimension", ["template-tag", name]]``), new dashcards having negative ids.

Exit status 0 on success, 1 when Metabase refuses a step (the message names the step, the
HTTP status and Metabase's message), 2 when it cannot be reached or the arguments are wrong.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import uuid
from pathlib import Path

import httpx

DEFINITION = Path(__file__).resolve().parent / "dashboard.json"
SCHEMA = "qbank.metabase-dashboard/1"
TAG = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")
# template-tag ids derive from card key and tag name, so every import gives the same ids
TAG_NAMESPACE = uuid.UUID("6f1c3a52-7d0e-4c1b-9a55-2b8f4f0d9a10")


class MetabaseError(Exception):
    """A step of the import failed; ``exit_code`` 1 for a refusal, 2 for an unreachable server or
    bad arguments; ``status`` is the HTTP status of a refusal."""

    def __init__(self, message: str, exit_code: int = 1, status: int | None = None):
        super().__init__(message)
        self.exit_code = exit_code
        self.status = status


# ------------------------------------------------------------------ the definition
def load_definition(path=DEFINITION) -> dict:
    """Read and check a dashboard definition: unique card keys, each query's ``{{tags}}``
    exactly the card's filters, each filter a dashboard parameter."""
    try:
        definition = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise MetabaseError(f"{path}: cannot read the dashboard definition: {exc}", 2) from None
    if definition.get("schema") != SCHEMA:
        raise MetabaseError(f"{path}: schema is {definition.get('schema')!r}, expected {SCHEMA!r}", 2)
    slugs = {p["slug"] for p in definition.get("parameters", [])}
    keys = [card.get("key") for card in definition.get("cards", [])]
    problems = (
        [f"duplicate card keys {sorted({k for k in keys if keys.count(k) > 1})}"]
        if len(set(keys)) < len(keys)
        else []
    )
    for card in definition.get("cards", []):
        tags, filters = set(TAG.findall(card.get("query", ""))), set(card.get("filters", {}))
        if tags != filters:
            problems.append(
                f"card {card.get('key')}: query tags {sorted(tags)} but filters {sorted(filters)}"
            )
        if filters - slugs:
            problems.append(
                f"card {card.get('key')}: filters {sorted(filters - slugs)} are not dashboard parameters"
            )
        missing = [k for k in ("key", "name", "display", "layout") if k not in card]
        if missing:
            problems.append(f"card {card.get('key')}: missing {missing}")
    if problems:
        raise MetabaseError(f"{path}: " + "; ".join(problems), 2)
    return definition


# ------------------------------------------------------------------ HTTP
class Metabase:
    """A thin client: every non-2xx answer becomes a MetabaseError naming the step."""

    def __init__(
        self,
        url: str,
        *,
        api_key: str | None = None,
        username: str | None = None,
        password: str | None = None,
        timeout: float = 30.0,
    ):
        self.url = url.rstrip("/")
        self.http = httpx.Client(base_url=self.url, timeout=timeout, headers={"Accept": "application/json"})
        if api_key:
            self.http.headers["x-api-key"] = api_key
        elif username and password:
            session = self.request(
                "POST", "/api/session", "log in", json={"username": username, "password": password}
            )
            self.http.headers["X-Metabase-Session"] = session["id"]
        else:
            raise MetabaseError(
                "give an API key (--api-key / MB_API_KEY) or a username and password "
                "(--username, --password / MB_USERNAME, MB_PASSWORD)",
                2,
            )

    def close(self) -> None:
        self.http.close()

    def request(self, method: str, path: str, step: str, **kwargs):
        try:
            response = self.http.request(method, path, **kwargs)
        except httpx.TransportError as exc:
            raise MetabaseError(
                f"cannot reach Metabase at {self.url} ({step}: {type(exc).__name__}: {exc})", 2
            ) from None
        if response.status_code >= 400:
            detail = response.text.strip().replace("\n", " ")[:300] or response.reason_phrase
            if response.status_code == 401:
                raise MetabaseError(
                    f"Metabase refused the credentials ({step}: {method} {path} answered 401: {detail})",
                    status=401,
                )
            raise MetabaseError(
                f"{step}: {method} {path} answered {response.status_code}: {detail}",
                status=response.status_code,
            )
        try:
            return response.json()
        except ValueError:
            raise MetabaseError(
                f"{step}: {method} {path} answered {response.status_code} with no JSON: "
                f"{response.text[:200]!r}"
            ) from None


# ------------------------------------------------------------------ the import
def _field_ids(metabase: Metabase, database_id: int, definition: dict) -> dict[tuple[str, str], int]:
    """Metabase field id of every (table, column) that a card filters on."""
    try:
        database = metabase.request("GET", f"/api/database/{database_id}", "check the database")
    except MetabaseError as exc:
        if exc.status == 404:
            raise MetabaseError(
                f"Metabase has no database with id {database_id} (GET /api/database/{database_id} "
                "answered 404); the id is in the URL of Admin > Databases > your qbank database"
            ) from None
        raise
    metadata = metabase.request("GET", f"/api/database/{database_id}/metadata", "read the database metadata")
    fields = {
        (table["name"], field["name"]): field["id"]
        for table in metadata.get("tables", [])
        for field in table.get("fields", [])
    }
    tables = {table["name"] for table in metadata.get("tables", [])}
    wanted = {
        (f["table"], f["column"]) for card in definition["cards"] for f in card.get("filters", {}).values()
    }
    absent_tables = sorted({t for t, _ in wanted if t not in tables})
    if absent_tables:
        raise MetabaseError(
            f"Metabase database {database_id} ({database.get('name')!r}) has no table {absent_tables}: "
            "run the qbank migrations on that database, then Admin > Databases > "
            "Sync database schema now"
        )
    absent_fields = sorted(f"{t}.{c}" for t, c in wanted if (t, c) not in fields)
    if absent_fields:
        raise MetabaseError(
            f"Metabase database {database_id} has no field {absent_fields}: re-sync its schema"
        )
    return {key: fields[key] for key in wanted}


def card_payload(card: dict, definition: dict, database_id: int, field_ids: dict, collection_id=None) -> dict:
    """The body of ``POST /api/card`` for one card of the definition."""
    parameters = {p["slug"]: p for p in definition["parameters"]}
    tags = {}
    for name, column in card.get("filters", {}).items():
        parameter = parameters[name]
        tags[name] = {
            "id": str(uuid.uuid5(TAG_NAMESPACE, f"{card['key']}/{name}")),
            "name": name,
            "display-name": parameter["name"],
            "type": "dimension",
            "dimension": ["field", field_ids[(column["table"], column["column"])], None],
            "widget-type": parameter["type"],
            "required": False,
        }
    return {
        "name": card["name"],
        "description": card.get("description"),
        "display": card["display"],
        "visualization_settings": card.get("visualization_settings", {}),
        "collection_id": collection_id,
        "dataset_query": {
            "type": "native",
            "database": database_id,
            "native": {"query": card["query"], "template-tags": tags},
        },
    }


def dashcards_payload(definition: dict, card_ids: dict[str, int]) -> dict:
    """The body of ``PUT /api/dashboard/:id``: every card placed and wired to the parameters."""
    parameters = {p["slug"]: p for p in definition["parameters"]}
    dashcards = []
    for position, card in enumerate(definition["cards"]):
        card_id = card_ids[card["key"]]
        dashcards.append(
            {
                "id": -(position + 1),
                "card_id": card_id,
                **{k: card["layout"][k] for k in ("row", "col", "size_x", "size_y")},
                "parameter_mappings": [
                    {
                        "parameter_id": parameters[name]["id"],
                        "card_id": card_id,
                        "target": ["dimension", ["template-tag", name]],
                    }
                    for name in card.get("filters", {})
                ],
                "visualization_settings": {},
                "series": [],
            }
        )
    return {"dashcards": dashcards}


def import_dashboard(metabase: Metabase, definition: dict, database_id: int, collection_id=None) -> dict:
    """Create the cards, the dashboard and its dashcards; returns ``{"dashboard_id", "card_ids", "url"}``."""
    field_ids = _field_ids(metabase, database_id, definition)
    card_ids: dict[str, int] = {}
    dashboard = None
    try:
        for card in definition["cards"]:
            created = metabase.request(
                "POST",
                "/api/card",
                f"create card {card['key']!r}",
                json=card_payload(card, definition, database_id, field_ids, collection_id),
            )
            card_ids[card["key"]] = created["id"]
        dashboard = metabase.request(
            "POST",
            "/api/dashboard",
            "create the dashboard",
            json={
                "name": definition["name"],
                "description": definition.get("description"),
                "parameters": definition["parameters"],
                "collection_id": collection_id,
            },
        )
        metabase.request(
            "PUT",
            f"/api/dashboard/{dashboard['id']}",
            "place the cards on the dashboard",
            json=dashcards_payload(definition, card_ids),
        )
    except MetabaseError as exc:
        # say what is already there, so a retry does not leave duplicates unnoticed
        made = [f"cards {sorted(card_ids.values())}"] if card_ids else []
        made += [f"dashboard {dashboard['id']}"] if dashboard else []
        if made:
            exc.args = (f"{exc.args[0]} (already created: {', '.join(made)})",)
        raise
    return {
        "dashboard_id": dashboard["id"],
        "card_ids": card_ids,
        "url": f"{metabase.url}/dashboard/{dashboard['id']}",
    }


def main(argv=None) -> int:
    env = os.environ
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", default=env.get("MB_URL"), help="Metabase base URL ($MB_URL)")
    parser.add_argument(
        "--database-id",
        type=int,
        default=env.get("MB_DATABASE_ID"),
        help="Metabase id of the qbank database ($MB_DATABASE_ID)",
    )
    parser.add_argument("--api-key", default=env.get("MB_API_KEY"), help="API key ($MB_API_KEY)")
    parser.add_argument("--username", default=env.get("MB_USERNAME"), help="login e-mail ($MB_USERNAME)")
    parser.add_argument("--password", default=env.get("MB_PASSWORD"), help="password ($MB_PASSWORD)")
    parser.add_argument(
        "--collection-id", type=int, help="collection for the cards and dashboard (default: root)"
    )
    parser.add_argument("--definition", default=str(DEFINITION), help="dashboard definition JSON")
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds per request")
    args = parser.parse_args(argv)
    if not args.url or args.database_id is None:
        parser.error("--url and --database-id are required (or MB_URL and MB_DATABASE_ID)")
    metabase = None
    try:
        definition = load_definition(args.definition)
        metabase = Metabase(
            args.url,
            api_key=args.api_key,
            username=args.username,
            password=args.password,
            timeout=args.timeout,
        )
        result = import_dashboard(metabase, definition, int(args.database_id), args.collection_id)
    except MetabaseError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    finally:
        if metabase is not None:
            metabase.close()
    print(f"created {len(result['card_ids'])} cards and dashboard {result['dashboard_id']}: {result['url']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
