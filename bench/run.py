"""Run every benchmark (``bench/*.py``) and collect their JSON lines into ``bench/results/latest.jsonl``.

Usage: ``python bench/run.py [--bench NAME]... [--results FILE] [--strict] [flags for the benchmarks...]``

Flags this script does not know (``--quick``, ``--runs 9``, ``--only historical`` ...) are passed to every
benchmark. The results file is rewritten from scratch; each result line is also printed on stdout as it
arrives, and a summary goes to stderr at the end. The exit code is 1 when a benchmark failed (or, with
``--strict``, missed its target or a check).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common as common

NOT_BENCHMARKS = {"run.py"}
#: Benchmarks run only when named with ``--bench``: a soak holds its load for minutes, the crash script kills
#: operations a hundred times (15-25 minutes).
ON_ITS_OWN = {"soak.py", "crash.py"}


def benchmarks() -> list[Path]:
    """Every benchmark script: ``bench/*.py`` except helpers (``_*.py``) and this runner."""
    return sorted(
        p for p in common.BENCH_DIR.glob("*.py") if not p.name.startswith("_") and p.name not in NOT_BENCHMARKS
    )


def run_one(script: Path, flags: list[str], results: Path) -> tuple[int, list[dict[str, Any]]]:
    """Run one benchmark; forward its result lines to stdout and ``results``; return (exit code, lines)."""
    lines: list[dict[str, Any]] = []
    proc = subprocess.Popen(
        [sys.executable, str(script), *flags], stdout=subprocess.PIPE, text=True, cwd=common.REPO_DIR
    )
    assert proc.stdout is not None
    for raw in proc.stdout:
        text = raw.strip()
        try:
            line = json.loads(text)
        except json.JSONDecodeError:
            line = None
        if not isinstance(line, dict) or "bench" not in line:
            if text:
                print(f"[{script.stem}] {text}", file=sys.stderr, flush=True)
            continue
        lines.append(line)
        print(text, flush=True)
        with results.open("a") as f:
            f.write(text + "\n")
    return proc.wait(), lines


def summary(rows: list[dict[str, Any]]) -> str:
    out = [f"{'benchmark':32s} {'keel s':>9s} {'baseline s':>11s} {'ratio':>7s} {'target':>6s}  result"]
    for r in rows:
        target = r.get("target", {}).get("ratio_max")
        floor = r.get("target", {}).get("ratio_min")
        if target is None and floor is not None:
            target = f">={floor}"  # a throughput ratio: Keel's rate over the baseline's must reach it
        meets = r.get("meets_target")
        verdict = "ok" if meets else "MISSED" if meets is False else "-"
        failed = [k for k, v in r.get("checks", {}).items() if v is False]
        if failed:
            verdict += f" (failed checks: {', '.join(failed)})"
        out.append(
            f"{r['bench']:32s} {r['keel']['median_s']:9.3f} {r['baseline']['median_s']:11.3f} "
            f"{r['ratio']:7.3f} {target if target is not None else '-':>6}  {verdict}"
        )
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0], allow_abbrev=False)
    p.add_argument("--bench", action="append", default=[], metavar="NAME", help="only this benchmark (repeatable)")
    p.add_argument("--results", type=Path, default=common.LATEST, help="where to write the JSON lines")
    p.add_argument("--strict", action="store_true", help="exit 1 when a target or a check is missed")
    args, flags = p.parse_known_args(argv)
    flags = [f for f in flags if f != "--append"]  # this script writes the results file itself
    scripts = benchmarks()
    if not args.bench:
        scripts = [s for s in scripts if s.name not in ON_ITS_OWN]
    else:
        wanted = {b.removesuffix(".py") for b in args.bench}
        unknown = wanted - {s.stem for s in scripts}
        if unknown:
            p.error(f"unknown benchmark(s) {sorted(unknown)}; known: {', '.join(s.stem for s in scripts)}")
        scripts = [s for s in scripts if s.stem in wanted]
    args.results.parent.mkdir(parents=True, exist_ok=True)
    args.results.write_text("")
    failed: list[str] = []
    rows: list[dict[str, Any]] = []
    for script in scripts:
        common.log(f"running {script.name} {' '.join(flags)}")
        started = time.perf_counter()
        code, lines = run_one(script, flags, args.results)
        rows += lines
        common.log(f"{script.name}: exit code {code}, {len(lines)} result(s) in {time.perf_counter() - started:.0f}s")
        if code != 0 or not lines:
            failed.append(script.name)
    print(summary(rows), file=sys.stderr)
    print(f"results: {args.results}", file=sys.stderr)
    if failed:
        print(f"FAILED: {', '.join(failed)}", file=sys.stderr)
        return 1
    missed = [
        r["bench"]
        for r in rows
        if r.get("meets_target") is False or any(v is False for v in r.get("checks", {}).values())
    ]
    if args.strict and missed:
        print(f"MISSED (--strict): {', '.join(missed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
