"""``/docs`` and ``/redoc`` work with no internet: their assets come from the app, not a CDN."""

from __future__ import annotations

import re


def test_docs_pages_load_their_assets_from_the_app(api):
    for page in ("/docs", "/redoc"):
        html = api.client.get(page).text
        assets = re.findall(r'(?:src|href)="([^"]+\.(?:js|css|png))"', html)
        assert assets, html
        for asset in assets:
            assert asset.startswith("/docs-static/"), asset  # no https://cdn...
            r = api.client.get(asset)
            assert r.status_code == 200 and len(r.content) > 1000
            assert "no-store" not in r.headers.get("cache-control", "")
        assert "cdn" not in html.lower()
    schema = api.client.get("/openapi.json").json()
    assert {"401", "422", "503"} <= set(schema["paths"]["/v1/quizzes/{quiz_id}/next"]["get"]["responses"])
