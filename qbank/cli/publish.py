"""``qbank publish``: send a validated exposure bundle to the delivery service over its HTTP API,
and optionally promote it.

The bundle is checked here first with :func:`qbank.exposure.read_bundle` (schema, convergence,
validation, checksums); the service then checks it again against its live calibration and
stores it staged. Errors from either side are printed as they are, naming the failed check.

Exit status: 0 when the bundle was stored (and promoted with ``--promote``); 1 when the
service refused it, refused the token or could not be reached; 2 for a bundle that fails the
local check or bad options.
"""

from __future__ import annotations

from pathlib import Path

import click

from qbank.exposure import BundleError, read_bundle


def _detail(response) -> str:
    try:
        detail = response.json().get("detail", response.text)
    except ValueError:
        detail = response.text
    if isinstance(detail, list):  # FastAPI's request validation errors
        detail = "; ".join(f"{'.'.join(str(p) for p in e.get('loc', []))}: {e.get('msg')}" for e in detail)
    return str(detail).strip() or f"HTTP {response.status_code}"


def _fail(response, what: str):
    if response.status_code in (401, 403):
        raise click.ClickException(
            f"the service refused the token ({response.status_code}): {_detail(response)}"
        )
    if response.status_code == 422:
        raise click.ClickException(f"the service refused the {what}: {_detail(response)}")
    raise click.ClickException(f"{what} failed with HTTP {response.status_code}: {_detail(response)}")


def _bundle_path(path: str) -> Path:
    bundle_path = Path(path)
    if bundle_path.is_dir():
        bundle_path = bundle_path / "bundle.json"
    if not bundle_path.is_file():
        raise click.BadParameter(
            f"{bundle_path} does not exist (qbank sh --out DIR writes DIR/bundle.json)", param_hint="BUNDLE"
        )
    return bundle_path


@click.command()
@click.argument("bundle", metavar="BUNDLE")
@click.option(
    "--url",
    required=True,
    envvar="QBANK_URL",
    help="Base URL of the service, e.g. http://127.0.0.1:8000 (or $QBANK_URL).",
)
@click.option(
    "--token", required=True, envvar="QBANK_TOKEN", help="An admin's bearer token (or $QBANK_TOKEN)."
)
@click.option("--exam-code", default=None, help="Exam the bundle is for [default: the service's exam].")
@click.option(
    "--with-calibration",
    is_flag=True,
    help="The bundle's item parameters become the live calibration when it is promoted.",
)
@click.option(
    "--promote", is_flag=True, help="Promote it at once (atomic; the previous bundle is superseded)."
)
@click.option(
    "--timeout", type=click.FloatRange(min=1), default=120.0, show_default=True, help="Seconds per request."
)
def publish(bundle, url, token, exam_code, with_calibration, promote, timeout):
    """Upload BUNDLE (a bundle.json from qbank sh, or its folder) to the service at --url."""
    import httpx

    path = _bundle_path(bundle)
    try:
        document = read_bundle(path)
    except BundleError as exc:
        raise click.BadParameter(
            "\n  ".join([f"{path}: refused here, not sent", *exc.problems]), param_hint="BUNDLE"
        ) from None
    params = {"with_calibration": "true" if with_calibration else "false"}
    if exam_code:
        params["exam_code"] = exam_code
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    base = url.rstrip("/")
    try:
        with httpx.Client(base_url=base, headers=headers, timeout=timeout) as client:
            response = client.post("/v1/admin/exposure/bundles", params=params, content=path.read_bytes())
            if response.status_code not in (200, 201):
                _fail(response, "bundle")
            stored = response.json()
            what = "uploaded" if response.status_code == 201 else "already uploaded as"
            click.echo(
                f"{what} bundle {stored['id']} ({stored['status']}) for exam {stored['exam_code']}: "
                f"{stored['selector']}, r_max {stored['r_max']}, {stored['n_items']} items, "
                f"sha256 {document['bundle_sha256'][:12]}"
            )
            if promote:
                if stored["status"] == "active":
                    click.echo(f"bundle {stored['id']} is already active")
                    return
                response = client.post(f"/v1/admin/exposure/bundles/{stored['id']}/promote")
                if response.status_code != 200:
                    _fail(response, "promotion")
                promoted = response.json()
                click.echo(
                    f"promoted bundle {promoted['id']}: active for exam {promoted['exam_code']} since "
                    f"{promoted['promoted_at']} (by {promoted['promoted_by']})"
                )
    except httpx.HTTPError as exc:
        raise click.ClickException(f"cannot reach the service at {base}: {exc}") from None
