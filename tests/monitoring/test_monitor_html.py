"""The HTML report: self-contained, shows what drifted with numbers and charts, escapes every text."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest

from keel.monitoring import build_profile, check_quality, detect_drift, performance_over_time, render_html

EVIL = "<script>alert(1)</script>"


@pytest.fixture(scope="module")
def report() -> dict:  # type: ignore[type-arg]
    rng = np.random.default_rng(0)
    n = 20_000
    reference = pd.DataFrame(
        {
            "spend": rng.lognormal(3, 0.5, n),
            "age": rng.uniform(18, 80, n),
            EVIL: rng.normal(0, 1, n),
            "plan": pd.Series(rng.choice(["free", "pro", "team"], n, p=[0.6, 0.3, 0.1])),
        }
    )
    current = pd.DataFrame(
        {
            "spend": rng.lognormal(3, 0.5, 5000),
            "age": rng.uniform(18, 80, 5000),
            EVIL: rng.normal(0.6, 1, 5000),
            "plan": pd.Series(rng.choice(["free", "pro", "team", "<b>vip</b>"], 5000, p=[0.3, 0.3, 0.2, 0.2])),
        }
    )
    profile = build_profile(reference, predictions=rng.beta(2, 5, n))
    drift = detect_drift(profile, current, predictions=rng.beta(2, 5, 5000))
    quality = check_quality(profile, current)
    y = rng.integers(0, 2, 3000)
    p = np.clip(y * 0.3 + rng.random(3000) * 0.7, 0, 1)
    ts = pd.Timestamp("2024-03-07", tz="UTC") + pd.to_timedelta(rng.integers(0, 28 * 86400, 3000), unit="s")
    windows = performance_over_time(
        y, (p > 0.5).astype(int), timestamps=ts, task="classification", classes=[0, 1], proba=np.c_[1 - p, p]
    )
    return {
        "model": "churn & co",
        "version": 3,
        "created_at": "2024-04-04T10:00:00+00:00",
        "window": {"start": "2024-03-07T00:00:00+00:00", "end": "2024-04-04T00:00:00+00:00"},
        "reference": {"rows": n, "source": "training run 12"},
        "current": {"rows": 5000, "source": "prediction log"},
        "drift": drift.to_dict(),
        "quality": quality.to_dict(),
        "performance": [w.to_dict() for w in windows],
        "validation_metrics": {"accuracy": 0.74, "roc_auc": 0.83},
        "verdict": {
            "drift": drift.dataset_drifted,
            "quality": quality.failed,
            "decay": False,
            "crossed": True,
            "reasons": [f"{len(drift.drifted_features)} features drifted: {', '.join(drift.drifted_features)}"],
        },
    }


def test_report_shows_drifted_features_with_numbers_and_charts(report: dict) -> None:  # type: ignore[type-arg]
    page = render_html(report)
    assert page.startswith("<!DOCTYPE html>") and page.rstrip().endswith("</html>")
    assert "churn &amp; co v3" in page
    drifted = report["drift"]["drifted_features"]
    assert set(drifted) == {EVIL, "plan"}
    table = page[page.index("<h2>Drift</h2>") : page.index("<h2>Data quality</h2>")]
    rows = re.findall(r"<tr class=\"(drifted|)\"><td>(.*?)</td>", table)
    assert [cls for cls, _ in rows[:2]] == ["drifted", "drifted"]  # drifted first
    plan = next(f for f in report["drift"]["features"] if f["name"] == "plan")
    assert f"{plan['statistic']:.4g}" in table
    assert page.count("<svg") >= 2 + len(report["performance"][0]["metrics"])  # 2 drifted + one per metric
    assert "Action needed" in page
    assert "Column &#x27;plan&#x27;" in page  # the quality issue on the new category
    assert "validation 0.83" in page and "<polygon" in page  # the validation line and the interval band


def test_every_text_is_escaped(report: dict) -> None:  # type: ignore[type-arg]
    page = render_html(report)
    assert "<script>" not in page and "<b>vip</b>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "&lt;b&gt;vip&lt;/b&gt;" in page


def test_page_is_self_contained(report: dict) -> None:  # type: ignore[type-arg]
    page = render_html(report)
    assert not re.search(r"(src|href)=\"https?://", page)
    assert "<link" not in page and "<script" not in page


def test_partial_report_renders() -> None:
    page = render_html({"model": "m", "version": 1, "verdict": {"crossed": False}, "performance": None})
    assert "No monitoring threshold crossed" in page
    assert "performance not measured" in page
