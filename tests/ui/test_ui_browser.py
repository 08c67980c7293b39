"""The UI in a real browser (Debian's Chromium, driven by Playwright): every page loads with no console error and
no request leaving the machine, the runs table sorts, filters and pages, compare and diff show the right values,
promote works with the token and is refused without it, and HTML names show as text.

Skipped with the reason when Chromium or Playwright is missing, except under ``KEEL_REQUIRE_SERVICES=1``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import pytest
from _ui_fixtures import TOKEN, XSS_DESCRIPTION, XSS_MODEL, XSS_VIEW, Seeded, sweep_id

#: Per action: a page that does not settle in this long is a failure, not a hang.
TIMEOUT_MS = 5_000


@pytest.fixture
def page(browser: Any, ui_server: str) -> Iterator[Any]:
    """A fresh page that records console errors, page errors and any request to another host."""
    context = browser.new_context(base_url=ui_server)
    tab = context.new_page()
    tab.set_default_timeout(TIMEOUT_MS)
    tab.problems = []
    tab.on("console", lambda m: tab.problems.append(f"console {m.type}: {m.text}") if m.type == "error" else None)
    tab.on("pageerror", lambda e: tab.problems.append(f"page error: {e}"))
    host = urlsplit(ui_server).netloc

    def request(r: Any) -> None:
        if urlsplit(r.url).netloc not in (host, ""):
            tab.problems.append(f"request off the machine: {r.url}")

    tab.on("request", request)
    try:
        yield tab
    finally:
        context.close()


def loaded(page: Any, url: str) -> Any:
    """Open ``url`` and wait for the script to replace the loading line."""
    page.goto(url)
    page.wait_for_selector("main#app:not(:has(.loading))")
    assert page.locator("main .error").count() == 0, page.locator("main .error").all_inner_texts()
    return page


PAGES = [
    ("/", "Feature views"),
    ("/views", "activity"),
    ("/views/activity", "spend"),
    ("/runs", sweep_id(29)[:12]),
    (f"/runs/{sweep_id(3)}", "trial-03"),
    (f"/compare?runs={sweep_id(1)},{sweep_id(2)}", "roc_auc"),
    ("/models", "churn"),
    ("/models/churn", "Alias history"),
    ("/monitoring/churn", "Drift over time"),
]


#: The README's screenshots: ``KEEL_UI_SCREENSHOTS=docs/ui pytest tests/ui/test_ui_browser.py`` writes them.
SCREENSHOTS = {
    "/": "overview",
    "/views/activity": "view",
    "/runs": "runs",
    "/models/churn": "model",
    "/monitoring/churn": "monitoring",
}


@pytest.mark.parametrize(("url", "expected"), PAGES)
def test_every_page_loads_without_console_errors(page: Any, url: str, expected: str) -> None:
    loaded(page, url)
    assert expected in page.inner_text("main")
    assert page.problems == []
    folder = os.environ.get("KEEL_UI_SCREENSHOTS")
    if folder and url in SCREENSHOTS:
        page.set_viewport_size({"width": 1280, "height": 800})
        if url.startswith("/views/"):  # the histograms and lineage, below the tables
            page.locator("#histograms").scroll_into_view_if_needed()
        page.screenshot(path=str(Path(folder) / f"{SCREENSHOTS[url]}.png"), full_page=False)


def first_column(page: Any, column: int) -> list[str]:
    return [t.strip() for t in page.locator(f"#runs-table tbody tr td:nth-child({column})").all_inner_texts()]


def test_the_runs_table_sorts_filters_and_pages(page: Any) -> None:
    loaded(page, "/runs?spec=sweep&page_size=5")
    assert page.inner_text(".page-info") == "page 1 of 6 · 30 runs"
    # sort by the metric: the header link is a bookmarkable URL
    page.click("a[data-sort='metric.roc_auc']")
    page.wait_for_url("**sort=metric.roc_auc**")
    page.wait_for_selector("#runs-table")
    runs = [row.get_attribute("data-run") for row in page.locator("#runs-table tbody tr").all()]
    assert runs == [sweep_id(i) for i in (29, 28, 27, 26, 25)]
    page.click("a[data-sort='metric.roc_auc']")  # again: ascending
    page.wait_for_url("**order=asc**")
    page.wait_for_selector("#runs-table")
    runs = [row.get_attribute("data-run") for row in page.locator("#runs-table tbody tr").all()]
    assert runs == [sweep_id(i) for i in range(5)]
    page.click("a[rel='next']")
    page.wait_for_url("**page=2**")
    page.wait_for_selector("#runs-table")
    runs = [row.get_attribute("data-run") for row in page.locator("#runs-table tbody tr").all()]
    assert runs == [sweep_id(i) for i in range(5, 10)]
    # filter by status and search the params
    page.select_option("select[name=status]", "failed")
    page.click("#run-filter button[type=submit]")
    page.wait_for_url("**status=failed**")
    page.wait_for_selector("#runs-table")
    assert set(first_column(page, 4)) == {"failed"}
    page.fill("input[name=q]", "trial-19")
    page.click("#run-filter button[type=submit]")
    page.wait_for_url("**q=trial-19**")
    page.wait_for_selector("#runs-table")
    assert [row.get_attribute("data-run") for row in page.locator("#runs-table tbody tr").all()] == [sweep_id(19)]
    # conditions on metrics and parameters (run i has roc_auc 0.5 + i/100 and C = i)
    page.fill("input[name=q]", "")
    page.select_option("select[name=status]", "")
    page.fill("input[name=where]", "metric.roc_auc>=0.7; param.estimator.C<25")
    page.click("#run-filter button[type=submit]")
    page.wait_for_url("**where=**")
    page.wait_for_selector("#runs-table")
    shown = {row.get_attribute("data-run") for row in page.locator("#runs-table tbody tr").all()}
    assert shown == {sweep_id(i) for i in range(20, 25)}
    assert page.problems == []


def test_compare_from_the_runs_table_shows_the_right_values(page: Any) -> None:
    loaded(page, "/runs?spec=sweep&sort=metric.roc_auc&order=asc&page_size=5")
    page.check(f"input.pick[value='{sweep_id(1)}']")
    page.check(f"input.pick[value='{sweep_id(3)}']")
    page.click("#compare-selected")
    page.wait_for_url("**/compare?runs=**")
    page.wait_for_selector("#compare-metrics")
    cells = page.locator("#compare-metrics tr[data-metric='roc_auc'] td").all_inner_texts()
    assert cells == ["roc_auc", "0.51", "0.53"]
    note = page.locator("#compare-params tr[data-param='note']")
    assert note.locator("td").all_inner_texts() == ["note", "trial-01", "trial-03"]
    assert note.get_attribute("class") == "differs"
    assert page.locator("svg.chart text[data-value='0.53']").count() == 1  # the metric's bar chart
    assert page.problems == []


def test_the_diff_form_shows_the_changed_parameter(page: Any) -> None:
    loaded(page, "/models/churn")
    page.select_option("#diff-form select[name=a]", "1")
    page.select_option("#diff-form select[name=b]", "2")
    page.click("#diff-form button")
    page.wait_for_url("**a=1&b=2**")
    page.wait_for_selector("#diff")
    text = page.inner_text("#diff")
    assert "v1 → v2" in text
    assert "estimator.C\t1\t0.001" in text
    assert page.problems == []


def promote_in_page(page: Any, token: str, version: str, alias: str) -> str:
    page.fill("#alias", alias)
    page.select_option("#version", version)
    page.fill("#token", token)
    page.once("dialog", lambda d: d.accept())
    page.click("#promote")
    page.wait_for_selector("#action-result p")
    return str(page.inner_text("#action-result"))


def test_promote_works_with_the_token_and_is_refused_without(page: Any, seeded: Seeded) -> None:
    seeded.project.models.promote("churn", 1, alias="browser")
    loaded(page, "/models/churn")
    refused = promote_in_page(page, "not-the-token", "2", "browser")
    assert "Refused (401)" in refused
    assert seeded.project.catalog.alias("churn", "browser") == 1
    page.problems.clear()  # the browser logs the refused request's 401 as a console error, as it should

    moved = promote_in_page(page, TOKEN, "2", "browser")
    assert "browser: v1 → v2" in moved
    assert seeded.project.catalog.alias("churn", "browser") == 2
    assert page.locator("#aliases tr[data-alias='browser'] td").all_inner_texts() == ["browser", "2"]
    history = page.inner_text("#alias-history")
    assert "keel ui promote" in history

    page.once("dialog", lambda d: d.dismiss())  # a cancelled confirmation changes nothing
    page.select_option("#version", "1")
    page.click("#promote")
    page.wait_for_timeout(200)
    assert seeded.project.catalog.alias("churn", "browser") == 2
    assert page.problems == []


def test_a_view_page_draws_histograms_and_links_its_lineage(page: Any, seeded: Seeded) -> None:
    loaded(page, "/views/activity")
    statistics = seeded.project.catalog.feature_versions("activity")[-1].statistics
    numeric = sorted(n for n, s in statistics.items() if "quantiles" in s)
    categorical = sorted(n for n, s in statistics.items() if s.get("top"))
    histograms = page.locator("#histograms svg.histogram")
    assert sorted(histograms.evaluate_all("nodes => nodes.map(n => n.dataset.column)")) == numeric
    first = page.locator(f"#histograms svg.histogram[data-column='{numeric[0]}'] rect[data-share]")
    shares = [float(x) for x in first.evaluate_all("nodes => nodes.map(n => n.dataset.share)")]
    assert shares == [0.01, 0.04, 0.2, 0.25, 0.25, 0.2, 0.04, 0.01]  # the bins between the stored quantiles
    assert page.locator("#histograms svg:not(.histogram)").count() == len(categorical)  # top values as bars
    lineage = page.locator("#lineage tbody tr")
    assert lineage.count() == len(seeded.project.catalog.view_lineage("activity"))
    page.locator("#lineage a.tag", has_text=f"{XSS_MODEL}:1").click()  # lineage leads to the model's page
    page.wait_for_selector("main#app:not(:has(.loading))")
    assert XSS_MODEL in page.inner_text("h1")
    assert page.problems == []


def test_the_monitoring_page_charts_drift_and_quality_per_feature(page: Any) -> None:
    loaded(page, "/monitoring/churn")
    assert page.locator("#drift-charts svg").count() == 2  # spend and orders
    quality = page.locator("#quality-charts svg[data-column='spend']")
    assert quality.count() == 1
    assert quality.locator("circle").count() == 3 * 2  # three reports: missing and out-of-range shares
    assert page.problems == []


def test_html_names_render_as_text(page: Any) -> None:
    dialogs: list[str] = []

    def dialog(d: Any) -> None:
        dialogs.append(d.message)
        d.dismiss()

    page.on("dialog", dialog)
    loaded(page, "/models")
    assert page.locator("main a", has_text=XSS_MODEL).count() == 1  # the name is a link's text, not markup
    loaded(page, "/models/" + quote(XSS_MODEL, safe=""))
    assert XSS_MODEL in page.inner_text("h1")
    assert XSS_DESCRIPTION in page.inner_text("#versions")
    loaded(page, "/views/" + quote(XSS_VIEW, safe=""))
    assert XSS_VIEW in page.inner_text("h1")
    assert "<b>bold</b>" in page.inner_text("main")
    assert page.locator("main script, main img, main b").count() == 0  # nothing the names held became an element
    assert dialogs == []
    assert page.problems == []
