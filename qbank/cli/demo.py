"""``qbank demo``: the main job on the embedded defaults (what `make demo` runs)."""

from __future__ import annotations

from pathlib import Path

import click

from qbank.study import load_study, run_study

REPO = Path(__file__).resolve().parents[2]
DEMO_STUDY = REPO / "simulations" / "demo.toml"


@click.command()
@click.option("--examinees", type=click.IntRange(min=1), default=None, help="Override the study's number of simulees.")
@click.option("--out", "out_path", type=click.Path(file_okay=False), default="runs/demo", show_default=True)
def demo(examinees, out_path):
    """Simulation study on the demo pool (simulations/demo.toml): selection rules compared."""
    config = load_study(DEMO_STUDY)
    if examinees is not None:
        config = type(config)(**{**config.__dict__, "examinees": examinees})
    out = Path(out_path)
    out.mkdir(parents=True, exist_ok=True)
    click.echo(f"study {DEMO_STUDY.relative_to(REPO)}: {config.examinees} simulees on {config.pool.name}")
    table, _ = run_study(config, out, progress=True)
    click.echo(table.to_string(float_format=lambda x: f"{x:.4g}"))
    click.echo(f"report and plots: {(out / 'report.md').resolve()}")
