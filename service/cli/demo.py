"""``qbank demo``: the main job on the embedded defaults (what `make demo` runs).

Without ``--serve``: the simulation study ``simulations/demo.toml``. With ``--serve``, the whole
loop on the demo pool: the study, iterative Sympson-Hetter validated on fresh simulees
(``bundle.json``), the demo bank loaded into an embedded SQLite database, the bundle uploaded,
checked against the live calibration and promoted, the ``selector_strategy`` flag set to
Sympson-Hetter, and the service started with its URLs printed.
"""

from __future__ import annotations

import json
from pathlib import Path

import click

from qbank.study import load_study, run_study

REPO = Path(__file__).resolve().parents[2]
DEMO_STUDY = REPO / "simulations" / "demo.toml"
DEMO_POOL = REPO / "data" / "demo_pool.csv"


def _promote_demo_bundle(url: str, bundle_path: Path) -> dict:
    """Upload and promote the demo bundle and switch quizzes to Sympson-Hetter; returns the promotion."""
    from service.cli.serve import _session, _tenant
    from service.exposure import SELECTOR_FLAG, promote_bundle, set_flag, upload_bundle

    tenant = _tenant(None)
    document = json.loads(bundle_path.read_text())
    with _session(url) as session:
        stored, _ = upload_bundle(session, tenant, "demo", document, "DEMO-EXAM", source="qbank demo")
        promoted = promote_bundle(session, tenant, "demo", stored["id"])
        set_flag(session, tenant, "demo", SELECTOR_FLAG, True, {"value": "sympson_hetter"})
    return promoted


@click.command()
@click.option(
    "--examinees", type=click.IntRange(min=1), default=None, help="Override the study's number of simulees."
)
@click.option("--out", "out_path", type=click.Path(file_okay=False), default="runs/demo", show_default=True)
@click.option(
    "--serve/--no-serve",
    default=False,
    show_default=True,
    help="Also calibrate Sympson-Hetter, promote the bundle into an embedded database and start the service.",
)
@click.option("--port", type=click.IntRange(1, 65535), default=8000, show_default=True)
@click.pass_context
def demo(ctx, examinees, out_path, serve, port):
    """Simulation study on the demo pool (simulations/demo.toml); with --serve, the whole loop."""
    config = load_study(DEMO_STUDY)
    if examinees is not None:
        config = type(config)(**{**config.__dict__, "examinees": examinees})
    out = Path(out_path)
    out.mkdir(parents=True, exist_ok=True)
    click.echo(f"1. study {DEMO_STUDY.relative_to(REPO)}: {config.examinees} simulees on {config.pool.name}")
    table, _ = run_study(config, out, progress=True)
    click.echo(table.to_string(float_format=lambda x: f"{x:.4g}"))
    click.echo(f"   report and plots: {(out / 'report.md').resolve()}")
    if not serve:
        return

    from qbank.cli.sh import sh as sh_command
    from service.cli.serve import serve as serve_command

    sh_out = out / "sympson_hetter"
    click.echo("2. iterative Sympson-Hetter on the demo pool (r = 0.25, L = 30), validated on fresh simulees")
    ctx.invoke(
        sh_command,
        pool_path=str(DEMO_POOL),
        r_max=0.25,
        length=30,
        examinees=config.examinees,
        validation_examinees=50_000,
        out_path=str(sh_out),
    )
    database = (out / "qbank.db").resolve()
    url = f"sqlite:///{database}"
    click.echo(f"3. demo bank into {database}; bundle promoted; quizzes use Sympson-Hetter")
    from service.cli.serve import _load_demo, _tenant

    _load_demo(url, _tenant(None))
    promoted = _promote_demo_bundle(url, sh_out / "bundle.json")
    click.echo(f"   active bundle: {promoted.get('id', promoted)}")
    base = f"http://127.0.0.1:{port}"
    click.echo(
        f"4. service: students {base}/   admins {base}/admin   API docs {base}/docs   (Ctrl-C stops it)"
    )
    ctx.invoke(serve_command, port=port, database_url=url, dev=True)
