"""Run every ``benchmarks/bench_*.py`` in turn (``make bench``); exit non-zero if any of them fails.

Each benchmark runs as its own process with this interpreter, from the repository root, so one
crash neither hides the others' figures nor goes unnoticed: the exit status is 1 when any
benchmark exited non-zero (or was killed), and the failures are listed at the end.
Extra arguments are passed to every benchmark; ``--only NAME`` runs the benchmarks whose file
name contains NAME.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent


def discover(only: str | None = None) -> list[Path]:
    """The benchmark scripts, sorted by name."""
    scripts = sorted(BENCH_DIR.glob("bench_*.py"))
    if only:
        scripts = [s for s in scripts if only in s.name]
    return scripts


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", help="run only benchmarks whose file name contains this")
    args, passthrough = parser.parse_known_args(argv)

    scripts = discover(args.only)
    if not scripts:
        print(
            f"no benchmarks found in {BENCH_DIR}" + (f" matching {args.only!r}" if args.only else ""),
            file=sys.stderr,
        )
        return 1
    failures = []
    for script in scripts:
        print(f"\n=== {script.name} ===", flush=True)
        start = time.perf_counter()
        code = subprocess.run([sys.executable, str(script), *passthrough], cwd=BENCH_DIR.parent).returncode
        elapsed = time.perf_counter() - start
        status = "ok" if code == 0 else f"FAILED (exit {code})"
        print(f"=== {script.name}: {status} in {elapsed:.0f} s ===", flush=True)
        if code != 0:
            failures.append(f"{script.name} (exit {code})")
    if failures:
        print(
            f"\n{len(failures)} of {len(scripts)} benchmark(s) failed: {', '.join(failures)}", file=sys.stderr
        )
        return 1
    print(f"\nall {len(scripts)} benchmark(s) ran")
    return 0


if __name__ == "__main__":
    sys.exit(main())
