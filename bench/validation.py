"""Feature validation: 60 expectations over 10,000,000 rows x 20 columns, in one pass, against DuckDB by hand.

Workload ``validation.check``: ``keel.validation.validate(LocalEngine(), Files(parquet), 60 expectations)`` —
not null (20 columns), ranges (16 numbers), domains (4 texts), patterns (4 texts), lengths (4 texts), a row
count, freshness, and 10 more ranges — against the ceiling: one hand-written DuckDB query over the same Parquet
computing the same counts (``count_if`` of each failing condition, and ``min`` of the sequence number where it
holds). **Target: Keel <= 1.5x.** Great Expectations, for comparison, runs one query per expectation.

Data (generated once into ``bench/.data/validation-…``, seeded): 16 float columns (normal, 1% nulls, a few planted
out-of-range values), 4 text columns of a few categories (a few planted unknown ones), an event time and the
sequence column, as 10 Parquet files. ``--quick``: 500,000 rows. Checks: every expectation's failing count and
first row equal to the ceiling's, and the planted anomalies found.
"""

from __future__ import annotations

import os
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common as common

SEED = 20241207
FULL = {"rows": 10_000_000, "files": 10}
QUICK = {"rows": 500_000, "files": 2}
NUMBERS = [f"x{i:02d}" for i in range(16)]
TEXTS = [f"s{i}" for i in range(4)]
CATEGORIES = ["alpha", "beta", "gamma", "delta"]
NOW = datetime(2024, 6, 1, tzinfo=UTC)
TARGET = 1.5


def data_dir(sizes: dict[str, int]) -> Path:
    return common.DATA_DIR / f"validation-r{sizes['rows']}-f{sizes['files']}-s{SEED}"


def ensure_data(sizes: dict[str, int]) -> list[str]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    folder = data_dir(sizes)
    done = folder / "done"
    paths = [str(folder / f"part-{i:03d}.parquet") for i in range(sizes["files"])]
    if done.exists():
        return paths
    folder.mkdir(parents=True, exist_ok=True)
    common.log(f"generating {sizes['rows']:,} rows in {folder} ...")
    rng = np.random.default_rng(SEED)
    per = sizes["rows"] // sizes["files"]
    start = np.datetime64("2024-05-01T00:00:00", "us")
    for i, path in enumerate(paths):
        columns: dict[str, Any] = {}
        for name in NUMBERS:
            values = rng.standard_normal(per) * 10
            values[rng.random(per) < 0.0001] = 1e6  # planted out-of-range values
            columns[name] = pa.array(values, mask=rng.random(per) < 0.01)
        for name in TEXTS:
            picked = rng.choice(np.array(CATEGORIES, dtype=object), size=per)
            picked[rng.random(per) < 0.0001] = "omega"  # planted unknown category
            columns[name] = pa.array(picked, pa.string())
        offsets = rng.integers(0, 31 * 86_400_000_000, size=per)
        columns["event_time"] = pa.array(start + offsets).cast(pa.timestamp("us", tz="UTC"))
        columns["__keel_seq"] = pa.array(np.arange(i * per, (i + 1) * per, dtype=np.int64))
        pq.write_table(pa.table(columns), path, row_group_size=250_000)
    done.touch()
    return paths


def expectations() -> list[Any]:
    from keel.validation import Fresh, InRange, LengthBetween, MatchesPattern, NotNull, OneOf, RowCount

    out: list[Any] = [NotNull(name, max_rate=0.02) for name in [*NUMBERS, *TEXTS]]  # 20
    out += [InRange(name, min=-100, max=100) for name in NUMBERS]  # 16
    out += [OneOf(name, CATEGORIES) for name in TEXTS]  # 4
    out += [MatchesPattern(name, "[a-z]+") for name in TEXTS]  # 4
    out += [LengthBetween(name, min=4, max=5) for name in TEXTS]  # 4
    out += [RowCount(min=1), Fresh(max_age=timedelta(days=30))]  # 2
    out += [InRange(name, min=-1_000, severity="warning") for name in NUMBERS[:10]]  # 10
    assert len(out) == 60
    return out


def ceiling_sql(paths: list[str], conditions: dict[str, str]) -> str:
    """The hand-written query: one count_if and one min per condition, over the same files."""
    files = "[" + ", ".join(f"'{p}'" for p in paths) + "]"
    parts = ["count(*)"]
    for sql in conditions.values():
        parts += [f"count_if({sql})", f'min(CASE WHEN {sql} THEN "__keel_seq" END)']
    return f"SELECT {', '.join(parts)} FROM read_parquet({files})"


def hand_conditions() -> dict[str, str]:
    """What a person writes for the same 60 checks (NaN does not occur in this data; nulls are nulls)."""
    out: dict[str, str] = {}
    for name in [*NUMBERS, *TEXTS]:
        out[f"null {name}"] = f"{name} IS NULL"
    for name in NUMBERS:
        out[f"range {name}"] = f"({name} < -100 OR {name} > 100)"
    for name in TEXTS:
        out[f"domain {name}"] = f"({name} IS NOT NULL AND {name} NOT IN ('alpha', 'beta', 'gamma', 'delta'))"
    for name in TEXTS:
        out[f"pattern {name}"] = f"({name} IS NOT NULL AND NOT regexp_full_match({name}, '[a-z]+'))"
    for name in TEXTS:
        out[f"length {name}"] = f"(length({name}) < 4 OR length({name}) > 5)"
    out["fresh"] = f"event_time >= '{(NOW - timedelta(days=30)).isoformat()}'::TIMESTAMPTZ"
    for name in NUMBERS[:10]:
        out[f"low {name}"] = f"({name} < -1000)"
    return out


def main(argv: list[str] | None = None) -> int:
    import duckdb

    from keel.engines import Files, LocalEngine
    from keel.validation import validate

    args = common.parse_args(common.parser(__doc__.splitlines()[0], runs=5), argv)
    for key in [k for k in os.environ if k.startswith("KEEL_")]:
        del os.environ[key]
    sizes = QUICK if args.quick else FULL
    paths = ensure_data(sizes)
    engine = LocalEngine()
    declared = expectations()
    sql = ceiling_sql(paths, hand_conditions())

    def keel_side() -> Any:
        return validate(engine, Files(tuple(paths)), declared, timestamp="event_time", now=NOW)

    def ceiling() -> Any:
        con = duckdb.connect()
        try:
            return con.execute(sql).fetchone()
        finally:
            con.close()

    timings = common.interleaved({"keel": keel_side, "ceiling": ceiling}, runs=args.runs, warmup=args.warmup)
    report, row = keel_side(), ceiling()
    # The ceiling's counts in the order of the expectations (row count and freshness excepted).
    hand = list(hand_conditions())
    found = {name: (int(row[1 + 2 * i]), row[2 + 2 * i]) for i, name in enumerate(hand)}
    expected = [found[f"null {n}"] for n in [*NUMBERS, *TEXTS]] + [found[f"range {n}"] for n in NUMBERS]
    expected += [found[f"domain {n}"] for n in TEXTS] + [found[f"pattern {n}"] for n in TEXTS]
    expected += [found[f"length {n}"] for n in TEXTS]
    got = [(r.failed, r.first) for r in report.results if r.expectation.kind not in ("row_count", "fresh")]
    expected += [found[f"low {n}"] for n in NUMBERS[:10]]
    checks = {
        "rows": report.rows,
        "counts_and_first_rows_equal_the_ceiling": got == expected,
        "planted_ranges_found": all(
            r.failed > 0
            for r in report.results
            if r.expectation.kind == "in_range" and r.expectation.severity == "error"
        ),
        "planted_categories_found": all(r.failed > 0 for r in report.results if r.expectation.kind == "one_of"),
        "fresh": any(r.passed for r in report.results if r.expectation.kind == "fresh") == (found["fresh"][0] > 0),
    }
    params = {
        "rows": report.rows,
        "columns": len(NUMBERS) + len(TEXTS) + 2,
        "expectations": len(declared),
        "files": sizes["files"],
        "quick": args.quick,
        "seed": SEED,
    }
    common.emit(
        common.result(
            "validation.check",
            params=params,
            keel=timings["keel"],
            baseline_name="one hand-written DuckDB aggregate (count_if and min per condition) over the same Parquet",
            baseline=timings["ceiling"],
            ratio_max=TARGET,
            checks=checks,
        ),
        args,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
