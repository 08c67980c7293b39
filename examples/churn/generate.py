"""Generate the churn example's data: customer profiles, daily activity aggregates and monthly churn labels.

The simulation is seeded and vectorised over customers × days, so 1,000 customers over a year take about a
second. Customers differ in plan, region, engagement, conversion and basket size; engagement drifts month to
month, and customers whose activity fades, who file support tickets or who stopped ordering are the ones who
churn. Every monthly label is drawn from a logistic function of the features *as they were at that time*, so a
model trained on a point-in-time-correct training set can learn it.

Run ``python generate.py --help``; from Python, call :func:`generate`. Importing this module does no work.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable
from dataclasses import dataclass, fields
from datetime import date, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

__all__ = ["PLANS", "REGIONS", "churn_logit", "generate"]

#: Plans in upgrade order; "enterprise" exists only after ``drift_after``.
PLANS = ("basic", "standard", "premium", "enterprise")
REGIONS = ("north_america", "europe", "latin_america", "asia_pacific")

_PLAN_P = np.array([0.50, 0.35, 0.15, 0.0])
_PLAN_P_DRIFT = np.array([0.40, 0.30, 0.15, 0.15])
_REGION_P = np.array([0.40, 0.30, 0.15, 0.15])
_REGION_P_DRIFT = np.array([0.20, 0.20, 0.15, 0.45])

_SESSIONS_PER_DAY = np.array([0.55, 0.85, 1.25, 1.9])  # by plan
_BASKET = np.array([32.0, 48.0, 85.0, 240.0])  # by plan, in the shop's currency
_REGION_BASKET = np.array([1.15, 1.05, 0.75, 0.9])
_PLAN_CHURN = np.array([0.35, 0.0, -0.45, -0.9])
_REGION_CHURN = np.array([0.0, -0.1, 0.2, 0.05])

#: Days simulated before ``start`` so that the first rows already have full 30-day windows.
_BURN_IN = 60
#: Customers are simulated in chunks of this size with their own random streams: memory stays bounded and the
#: result does not depend on how many chunks there are.
_CHUNK = 5_000
#: Share of customers already there at ``start``; the rest sign up during the window, about as many as leave.
_EXISTING = 0.4
#: Months of churn the customers already there at ``start`` have lived through (see ``_warm_up``).
_WARM_UP_MONTHS = 36
#: Engagement wanders month to month as an AR(1) process.
_WANDER_AR = 0.75
_WANDER_SD = 0.35
_WANDER_STATIONARY_SD = _WANDER_SD / float(np.sqrt(1 - _WANDER_AR**2))
_WEEKEND_FACTOR, _WEEKDAY_FACTOR = 1.3, 0.95
_MEAN_WEEKDAY_FACTOR = (2 * _WEEKEND_FACTOR + 5 * _WEEKDAY_FACTOR) / 7
#: After ``drift_after``, orders per session, spend per order and support tickets are multiplied by these.
_DRIFT_CONVERSION = 0.75
_DRIFT_SPEND = 0.5
_DRIFT_TICKETS = 1.8
#: After ``drift_after``, each support ticket adds this much more to the churn log-odds (a rival's offer makes
#: unhappy customers leave sooner): the relationship itself changes, not only the inputs.
_DRIFT_TICKET_LOGIT = 0.5


@dataclass(frozen=True)
class _Calendar:
    """Day ``k`` of the simulation is ``first + k`` days; rows are written for ``k >= _BURN_IN``."""

    first: pd.Timestamp
    n_days: int
    month: np.ndarray  # month index per day (burn-in days count as month 0)
    n_months: int
    weekday_factor: np.ndarray
    season: np.ndarray
    drift_k: int  # first drifted day (n_days when there is no drift)
    snapshots: np.ndarray  # day indices of the monthly label snapshots


def _utc(value: str | date | datetime | pd.Timestamp, what: str) -> pd.Timestamp:
    try:
        ts = pd.Timestamp(value)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"{what} must be an ISO date such as 2025-01-01, got {value!r}") from exc
    if pd.isna(ts):
        raise ValueError(f"{what} must be an ISO date such as 2025-01-01, got {value!r}")
    return ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")


def _calendar(
    start: str | date | datetime, days: int, drift_after: str | date | datetime | None
) -> _Calendar:
    start_ts = _utc(start, "start").normalize()
    first = start_ts - pd.Timedelta(days=_BURN_IN)
    n_days = _BURN_IN + days
    dates = pd.date_range(first, periods=n_days, freq="D")
    month = (dates.year - start_ts.year) * 12 + (dates.month - start_ts.month)
    month = np.clip(np.asarray(month), 0, None)
    weekday_factor = np.where(dates.day_of_week >= 5, _WEEKEND_FACTOR, _WEEKDAY_FACTOR)
    # Shoppers spend more in the weeks before the end-of-year holidays.
    season = np.where((dates.month == 12) | ((dates.month == 11) & (dates.day >= 20)), 1.25, 1.0)
    if drift_after is None:
        drift_k = n_days
    else:
        drift_ts = _utc(drift_after, "drift_after")
        drift_k = int(np.clip(np.ceil((drift_ts - first) / pd.Timedelta(days=1)), 0, n_days))
    end = dates[-1] + pd.Timedelta(days=1)
    month_starts = pd.date_range(start_ts, end - pd.Timedelta(days=30), freq="MS")
    snapshots = np.asarray(((month_starts - first) / pd.Timedelta(days=1)).astype(int))
    return _Calendar(
        first=first,
        n_days=n_days,
        month=month,
        n_months=int(month.max()) + 1,
        weekday_factor=np.asarray(weekday_factor, dtype=np.float64),
        season=np.asarray(season, dtype=np.float64),
        drift_k=drift_k,
        snapshots=snapshots,
    )


def churn_logit(
    *,
    spend_30d: np.ndarray,
    sessions_7d: np.ndarray,
    support_tickets_30d: np.ndarray,
    days_since_last_order: np.ndarray,
    plan: np.ndarray,
    region: np.ndarray,
    tenure_days: np.ndarray,
) -> np.ndarray:
    """The log-odds that a customer churns within 30 days, given the features visible at that time.

    Args:
        spend_30d: spend over the previous 30 days.
        sessions_7d: sessions over the previous 7 days.
        support_tickets_30d: support tickets over the previous 30 days.
        days_since_last_order: days since the last order (NaN when the customer never ordered).
        plan: plan codes (indices into :data:`PLANS`).
        region: region codes (indices into :data:`REGIONS`).
        tenure_days: tenure as recorded on the customer's latest profile row.

    Returns:
        The log-odds, one per customer.
    """
    never_ordered = np.isnan(days_since_last_order)
    since = np.where(never_ordered, 0.0, np.minimum(days_since_last_order, 90.0))
    logit = (
        -0.4
        - 0.2 * np.log1p(spend_30d)
        - 0.09 * np.minimum(sessions_7d, 20)
        + 0.4 * support_tickets_30d
        + 0.02 * since
        + 0.8 * never_ordered
        + _PLAN_CHURN[plan]
        + _REGION_CHURN[region]
        - 0.18 * np.log1p(tenure_days / 30.0)
    )
    return np.asarray(logit, dtype=np.float64)


def _pick(u: np.ndarray, p: np.ndarray) -> np.ndarray:
    """Inverse-CDF choice: the same uniforms give the same picks wherever ``p`` is unchanged."""
    cdf = np.cumsum(p)
    return np.minimum(np.searchsorted(cdf / cdf[-1], u, side="right"), len(p) - 1)


def _rolling(daily: np.ndarray, window: int) -> np.ndarray:
    """Sum over the ``window`` days *before* each day (a day's row never sees that day's own events)."""
    csum = np.zeros((daily.shape[0], daily.shape[1] + 1), dtype=np.float64)
    np.cumsum(daily, axis=1, out=csum[:, 1:])
    idx = np.arange(daily.shape[1])
    return csum[:, idx] - csum[:, np.maximum(idx - window, 0)]


def _daily(draw: Callable[..., np.ndarray], *params: np.ndarray) -> np.ndarray:
    """Draw a (customers, days) matrix day by day: every customer's day 0, then day 1, and so on.

    Poisson and binomial draws consume a rate-dependent amount of randomness; drawing in time order means
    rates changed after ``drift_after`` cannot shift any draw before it, so drift leaves the past untouched.
    """
    return np.asarray(draw(*(np.ascontiguousarray(p.T) for p in params))).T


@dataclass(frozen=True)
class _Traits:
    """What makes customers differ, fixed for each customer's lifetime (one entry per customer)."""

    plan: np.ndarray  # plan code at signup
    region: np.ndarray
    level: np.ndarray  # lasting engagement, log scale
    conversion: np.ndarray  # orders per session
    basket_taste: np.ndarray  # multiplier of the plan's typical basket
    ticket_proneness: np.ndarray
    # What no feature shows (a competitor's offer, a move abroad), so churn is not perfectly predictable.
    unseen: np.ndarray

    def where(self, mask: np.ndarray, other: _Traits) -> _Traits:
        """These traits where ``mask`` holds, ``other``'s elsewhere."""
        return _Traits(
            **{f.name: np.where(mask, getattr(self, f.name), getattr(other, f.name)) for f in fields(self)}
        )


def _draw_traits(r: np.random.Generator, n: int, drifted: np.ndarray) -> _Traits:
    """Traits of ``n`` new customers; ``drifted`` marks those signing up after ``drift_after``."""
    u_region, u_plan = r.random(n), r.random(n)
    region = np.where(drifted, _pick(u_region, _REGION_P_DRIFT), _pick(u_region, _REGION_P))
    plan = np.where(drifted, _pick(u_plan, _PLAN_P_DRIFT), _pick(u_plan, _PLAN_P))
    return _Traits(
        plan=plan,
        region=region,
        level=r.normal(0.0, 0.45, n),
        conversion=r.beta(2.0, 14.0, n),
        basket_taste=r.lognormal(0.0, 0.35, n) * _REGION_BASKET[region],
        ticket_proneness=r.lognormal(0.0, 0.5, n),
        unseen=r.normal(0.0, 0.8, n),
    )


def _ticket_rate(proneness: np.ndarray, engagement: np.ndarray, plan: np.ndarray) -> np.ndarray:
    """Support tickets per day: customers who drift away, and basic-plan ones, ask for help more often."""
    return 0.011 * proneness * np.exp(-0.7 * engagement) * np.where(plan == 0, 1.2, 1.0)


def _expected_logit(t: _Traits, wander: np.ndarray, tenure_days: np.ndarray) -> np.ndarray:
    """The churn log-odds at the features a customer's traits give on average (a cheap warm-up stand-in)."""
    sessions_per_day = _SESSIONS_PER_DAY[t.plan] * np.exp(t.level + wander) * _MEAN_WEEKDAY_FACTOR
    orders_per_day = sessions_per_day * t.conversion
    visible = churn_logit(
        spend_30d=30.0 * orders_per_day * _BASKET[t.plan] * t.basket_taste,
        sessions_7d=7.0 * sessions_per_day,
        support_tickets_30d=30.0 * _ticket_rate(t.ticket_proneness, t.level + wander, t.plan),
        days_since_last_order=np.minimum(1.0 / np.maximum(orders_per_day, 1e-3), 90.0),
        plan=t.plan,
        region=t.region,
        tenure_days=tenure_days,
    )
    return np.asarray(visible + t.unseen, dtype=np.float64)


def _warm_up(r: np.random.Generator, n: int) -> tuple[_Traits, np.ndarray, np.ndarray]:
    """The customers already there at ``start``: their traits, tenure in days, and engagement wander.

    A real customer base is shaped by who stayed, so instead of drawing it fresh (which would make every
    statistic trend upwards through the year as the fragile customers leave) each slot lives through
    ``_WARM_UP_MONTHS`` months of churn, a new customer taking it over whenever its occupant leaves.
    """
    nobody_drifted = np.zeros(n, dtype=bool)
    traits = _draw_traits(r, n, nobody_drifted)
    tenure = r.gamma(1.6, 280.0, n)
    wander = r.normal(0.0, _WANDER_STATIONARY_SD, n)
    for _ in range(_WARM_UP_MONTHS):
        wander = _WANDER_AR * wander + r.normal(0.0, _WANDER_SD, n)
        tenure = tenure + 30.4
        left = r.random(n) < 1.0 / (1.0 + np.exp(-_expected_logit(traits, wander, tenure)))
        newcomers = _draw_traits(r, n, nobody_drifted)
        newcomer_wander = r.normal(0.0, _WANDER_STATIONARY_SD, n)
        newcomer_tenure = r.uniform(0.0, 30.4, n)
        traits = newcomers.where(left, traits)
        wander = np.where(left, newcomer_wander, wander)
        tenure = np.where(left, newcomer_tenure, tenure)
    return traits, np.round(tenure).astype(np.int64) + 1, wander


def _simulate(ids: np.ndarray, seed: int, chunk: int, cal: _Calendar) -> dict[str, pd.DataFrame]:
    """Simulate one chunk of customers; returns its profile, activity and label rows."""
    n, n_days = len(ids), cal.n_days

    # One independent stream per quantity, so that drift (which changes some draws after a date) leaves every
    # row before that date exactly as it is without drift.
    def stream(k: int) -> np.random.Generator:
        return np.random.default_rng([seed, chunk, k])

    k_idx = np.arange(n_days)
    drifted = k_idx >= cal.drift_k

    # Who they are and when they arrived.
    r = stream(0)
    existing = r.random(n) < _EXISTING
    new_day = r.integers(_BURN_IN, n_days, n)
    signup_seconds = r.integers(6 * 3600, 23 * 3600, n)
    warm, tenure0, warm_wander = _warm_up(stream(8), n)
    signup_k = np.where(existing, _BURN_IN - 1 - tenure0, new_day)
    newcomers = _draw_traits(stream(1), n, ~existing & (signup_k >= cal.drift_k))
    traits = warm.where(existing, newcomers)
    region, plan0 = traits.region, traits.plan

    # Engagement: the lasting level plus a monthly AR(1) wander.
    r = stream(9)
    shocks = r.normal(0.0, _WANDER_SD, (n, cal.n_months))
    wander = np.empty_like(shocks)
    wander[:, 0] = np.where(
        existing, _WANDER_AR * warm_wander + shocks[:, 0], shocks[:, 0] / _WANDER_SD * _WANDER_STATIONARY_SD
    )
    for m in range(1, cal.n_months):
        wander[:, m] = _WANDER_AR * wander[:, m - 1] + shocks[:, m]
    engagement = traits.level[:, None] + wander[:, cal.month]  # (n, days)

    # At most one plan change in the window; engaged customers upgrade, fading ones downgrade.
    r = stream(2)
    changes = r.random(n) < 0.22
    change_k = np.maximum(r.integers(_BURN_IN, n_days, n), signup_k + 1)
    change_seconds = r.integers(0, 24 * 3600, n)
    u_enterprise = r.random(n)
    eng_at_change = engagement[np.arange(n), np.minimum(change_k, n_days - 1)]
    step = np.where(eng_at_change > 0, 1, -1)
    plan1 = np.where(plan0 == 3, np.where(step > 0, 3, 2), np.clip(plan0 + step, 0, 2))
    to_enterprise = (step > 0) & (plan0 >= 1) & (change_k >= cal.drift_k) & (u_enterprise < 0.5)
    plan1 = np.where(to_enterprise, 3, plan1)
    changes &= (plan1 != plan0) & (change_k < n_days)
    plan_day = np.where(
        changes[:, None] & (k_idx[None, :] >= change_k[:, None]), plan1[:, None], plan0[:, None]
    )

    alive = k_idx[None, :] >= signup_k[:, None]

    # Daily events.
    # Each quantity has its own stream and is drawn day by day (see _daily); rates are zero before signup.
    activity_level = np.where(alive, np.exp(engagement) * cal.weekday_factor, 0.0)
    sessions = _daily(stream(3).poisson, _SESSIONS_PER_DAY[plan_day] * activity_level)
    conversion = traits.conversion[:, None] * np.where(drifted, _DRIFT_CONVERSION, 1.0)
    orders = _daily(stream(4).binomial, sessions, conversion)
    price_noise = stream(5).lognormal(-0.02, 0.2, (n, n_days))
    spend_factor = np.where(drifted, _DRIFT_SPEND, 1.0) * cal.season
    spend = orders * _BASKET[plan_day] * traits.basket_taste[:, None] * price_noise * spend_factor
    ticket_rate = _ticket_rate(traits.ticket_proneness[:, None], engagement, plan_day)
    ticket_rate = ticket_rate * np.where(drifted, _DRIFT_TICKETS, 1.0)
    tickets = _daily(stream(6).poisson, np.where(alive, ticket_rate, 0.0))

    # Rolling aggregates as of 00:00 of each day.
    spend_30d = np.round(_rolling(spend, 30), 2)
    orders_30d = _rolling(orders, 30).astype(np.int64)
    sessions_7d = _rolling(sessions, 7).astype(np.int64)
    tickets_30d = _rolling(tickets, 30).astype(np.int64)
    last = np.maximum.accumulate(np.where(orders > 0, k_idx[None, :], -1), axis=1)
    last_before = np.concatenate([np.full((n, 1), -1), last[:, :-1]], axis=1)
    days_since = np.where(last_before >= 0, k_idx[None, :] - last_before, np.nan)
    avg_basket = np.round(
        np.divide(spend_30d, orders_30d, out=np.zeros_like(spend_30d), where=orders_30d > 0), 2
    )

    # Monthly snapshots: each active customer churns within 30 days with the logistic probability.
    r = stream(7)
    churn_k = np.full(n, n_days, dtype=np.int64)  # last day with an activity row
    label_parts: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
    rows = np.arange(n)
    for s in cal.snapshots:
        u, delay = r.random(n), r.integers(1, 31, n)
        active = (signup_k < s) & (churn_k == n_days)
        visible_change = changes & (change_k < s)
        plan_seen = np.where(visible_change, plan1, plan0)
        tenure_seen = np.where(visible_change, change_k - signup_k, np.where(existing, tenure0, 0)).astype(
            np.float64
        )
        logit = churn_logit(
            spend_30d=spend_30d[rows, s],
            sessions_7d=sessions_7d[rows, s],
            support_tickets_30d=tickets_30d[rows, s],
            days_since_last_order=days_since[rows, s],
            plan=plan_seen,
            region=region,
            tenure_days=tenure_seen,
        )
        if s > cal.drift_k:  # labels drawn on the drift date itself still follow the old rule
            logit = logit + _DRIFT_TICKET_LOGIT * tickets_30d[rows, s]
        churned = active & (u < 1.0 / (1.0 + np.exp(-(logit + traits.unseen))))
        churn_k = np.where(churned, s + delay, churn_k)
        label_parts.append((rows[active], np.full(int(active.sum()), s), churned[active].astype(np.int64)))

    # Rows: activity from the day after signup until churn, within the window.
    emit = (
        (k_idx[None, :] >= _BURN_IN)
        & (k_idx[None, :] > signup_k[:, None])
        & (k_idx[None, :] <= churn_k[:, None])
    )
    ci, di = np.nonzero(emit)
    activity = pd.DataFrame(
        {
            "customer_id": ids[ci],
            "event_time": _times(cal, di),
            "spend_30d": spend_30d[ci, di],
            "orders_30d": orders_30d[ci, di],
            "sessions_7d": sessions_7d[ci, di],
            "support_tickets_30d": tickets_30d[ci, di],
            "days_since_last_order": days_since[ci, di],
            "avg_basket": avg_basket[ci, di],
        }
    )

    label_c = np.concatenate([p[0] for p in label_parts]) if label_parts else np.empty(0, np.int64)
    label_s = np.concatenate([p[1] for p in label_parts]) if label_parts else np.empty(0, np.int64)
    label_y = np.concatenate([p[2] for p in label_parts]) if label_parts else np.empty(0, np.int64)
    labels = pd.DataFrame(
        {"customer_id": ids[label_c], "event_timestamp": _times(cal, label_s), "churned": label_y}
    )

    # Profiles: one row when the customer first appears (the initial export for existing customers, signup
    # for new ones) and one per plan change before churn.
    first_k = np.where(existing, _BURN_IN - 1, signup_k)
    first_s = np.where(existing, 0, signup_seconds)
    kept_change = changes & (change_k <= churn_k)
    profiles = pd.DataFrame(
        {
            "customer_id": np.concatenate([ids, ids[kept_change]]),
            "plan": np.asarray(PLANS, dtype=object)[np.concatenate([plan0, plan1[kept_change]])],
            "region": np.asarray(REGIONS, dtype=object)[np.concatenate([region, region[kept_change]])],
            "tenure_days": np.concatenate(
                [np.where(existing, tenure0, 0), (change_k - signup_k)[kept_change]]
            ).astype(np.int64),
            "event_time": _times(
                cal,
                np.concatenate([first_k, change_k[kept_change]]),
                np.concatenate([first_s, change_seconds[kept_change]]),
            ),
        }
    )
    return {"customers": profiles, "activity": activity, "labels": labels}


def _times(cal: _Calendar, day: np.ndarray, seconds: np.ndarray | None = None) -> pd.DatetimeIndex:
    """UTC microsecond timestamps for day indices (plus seconds into the day)."""
    offset = pd.to_timedelta(day, unit="D")
    if seconds is not None:
        offset = offset + pd.to_timedelta(seconds, unit="s")
    return (cal.first + offset).as_unit("us")


def _write(df: pd.DataFrame, path: Path) -> None:
    # Written under a temporary name and renamed: a crash never leaves a truncated file for ingest to read.
    tmp = path.with_name(f".{path.name}.tmp")
    df.to_parquet(tmp, index=False)
    os.replace(tmp, path)


def generate(
    out_dir: Path | str,
    *,
    customers: int = 1000,
    seed: int = 7,
    start: str | date | datetime = "2025-01-01",
    days: int = 365,
    drift_after: str | date | datetime | None = None,
) -> dict[str, int]:
    """Write ``customers.parquet``, ``activity.parquet`` and ``labels.parquet`` under ``out_dir``.

    Args:
        out_dir: the folder to write to (created when missing); the example project reads ``data/``.
        customers: how many distinct customers to simulate (about 40% already there at ``start``).
        seed: the random seed; the same arguments always give byte-identical data.
        start: the first day of activity rows (UTC).
        days: how many days of activity rows to write (at least 31, so that one monthly label fits).
        drift_after: an ISO date after which the world changes: spend per order falls (spend_30d by roughly
            0.4 standard deviations), support tickets rise by 80%, new customers come mostly from asia_pacific
            and a new plan, ``enterprise``, appears; and each support ticket now weighs more on churn (concept
            drift: a model trained before the date under-rates unhappy customers). Every row before that date
            is identical to a run without drift.

    Returns:
        The number of rows written per file name.

    Raises:
        ValueError: an argument is out of range or a date cannot be parsed.
    """
    if isinstance(customers, bool) or not isinstance(customers, int) or customers < 1:
        raise ValueError(f"customers must be a positive integer, got {customers!r}")
    if isinstance(days, bool) or not isinstance(days, int) or days < 31:
        raise ValueError(f"days must be an integer of at least 31, got {days!r}")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    cal = _calendar(start, days, drift_after)
    all_ids = np.arange(1, customers + 1, dtype=np.int64) + 100_000
    parts: dict[str, list[pd.DataFrame]] = {"customers": [], "activity": [], "labels": []}
    for chunk, lo in enumerate(range(0, customers, _CHUNK)):
        for name, frame in _simulate(all_ids[lo : lo + _CHUNK], seed, chunk, cal).items():
            parts[name].append(frame)
    sort_keys = {
        "customers": ["event_time", "customer_id"],
        "activity": ["event_time", "customer_id"],
        "labels": ["event_timestamp", "customer_id"],
    }
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    counts: dict[str, int] = {}
    for name, frames in parts.items():
        df = pd.concat(frames, ignore_index=True).sort_values(
            sort_keys[name], kind="stable", ignore_index=True
        )
        _write(df, out / f"{name}.parquet")
        counts[f"{name}.parquet"] = len(df)
    return counts


def _main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Generate the churn example's data (Parquet files).")
    parser.add_argument(
        "out_dir", nargs="?", default=str(Path(__file__).parent / "data"), help="output folder"
    )
    parser.add_argument("--customers", type=int, default=1000, help="distinct customers (default 1000)")
    parser.add_argument("--seed", type=int, default=7, help="random seed (default 7)")
    parser.add_argument("--start", default="2025-01-01", help="first day, ISO date (default 2025-01-01)")
    parser.add_argument("--days", type=int, default=365, help="days of activity (default 365)")
    parser.add_argument("--drift-after", default=None, help="ISO date after which distributions shift")
    args: Any = parser.parse_args(argv)
    try:
        counts = generate(
            Path(args.out_dir),
            customers=args.customers,
            seed=args.seed,
            start=args.start,
            days=args.days,
            drift_after=args.drift_after,
        )
    except ValueError as exc:
        parser.error(str(exc))
    for name, rows in counts.items():
        print(f"{Path(args.out_dir) / name}: {rows:,} rows")
    return 0


if __name__ == "__main__":
    raise SystemExit(_main())
