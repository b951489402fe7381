"""``qbank demo``: the main job on the embedded defaults (what `make demo` runs)."""

from __future__ import annotations

from pathlib import Path

import click

from qbank import plots
from qbank.pool import load_pool
from qbank.selection import Selector
from qbank.simulation import simulate
from qbank.stopping import FixedLength

DEMO_POOL = Path(__file__).resolve().parents[2] / "data" / "demo_pool.csv"


@click.command()
@click.option("--examinees", type=click.IntRange(min=1), default=20_000, show_default=True)
@click.option("--length", type=click.IntRange(min=1), default=30, show_default=True)
@click.option("--seed", type=int, default=2026, show_default=True)
@click.option("--out", "out_path", type=click.Path(file_okay=False), default="runs/demo", show_default=True)
def demo(examinees, length, seed, out_path):
    """Simulation study on the demo pool: maximum information vs randomesque vs a-stratified."""
    pool = load_pool(DEMO_POOL)
    out = Path(out_path)
    click.echo(f"demo pool: {DEMO_POOL} ({pool.n_items} items); {examinees} simulees, length {length}, seed {seed}")
    results = {}
    for rule in ("max_info", "randomesque", "a_stratified"):
        result = simulate(pool, n_examinees=examinees, stopping=FixedLength(length), selector=Selector(rule),
                          rng=seed, exposure_target=0.25, progress=True)
        result.to_dir(out / rule)
        results[rule] = result
        s = result.summary
        click.echo(f"{rule:>13}: RMSE {s['rmse']:.3f}  bias {s['bias']:+.3f}  max exposure {s['max_exposure']:.3f}  "
                   f"never used {s['items_never_used']:>3}  overlap {s['overlap_rate']:.3f}  ({s['wall_seconds']:.2f} s)")
    exposure_png = plots.exposure_sorted({k: r.exposure_rate for k, r in results.items()},
                                         out / "exposure_sorted.png", target=0.25)
    conditional_png = plots.conditional_accuracy({k: r.conditional for k, r in results.items()}, out / "conditional.png")
    click.echo(f"report folders: {', '.join(str(out / k) for k in results)}")
    click.echo(f"plots: {exposure_png}, {conditional_png}")
