"""report.html: self-contained, faithful to the CSVs beside it, and readable in a real browser.

The browser tests open the page in headless Chromium (tests/local/chromium.py), check that it
fetched nothing and raised nothing, capture it to a PNG, and read back what it shows: every
headline number against summary.csv, every chart's data against the CSV it comes from.
"""

from __future__ import annotations

import hashlib
import json
import re
from datetime import date, timedelta
from decimal import Decimal
from html.parser import HTMLParser
from pathlib import Path

import pandas as pd
import pytest

from carrental.local import catalog
from carrental.local.runner import write_report
from carrental.report import REPORTS
from carrental.report_html import ASSETS, CHART_JS, REPORT_PAGE, render_report
from tests.local.conftest import NO_VALID_RENTAL_ROWS, TABLE_ROWS, write_run
from tests.local.report_page import (
    CHARTS,
    PAINTED_PIXELS,
    assert_page_shows_summary,
    open_report,
    read_csv,
)

RUN_ID = "run-a"


def report_of(lake_root: Path, tables: dict[str, str] = TABLE_ROWS) -> Path:
    """The report folder `carrental run` writes for a hand-made run (CSVs and report.html)."""
    write_run(lake_root, RUN_ID, tables)
    con = catalog.open_catalog(lake_root)
    try:
        write_report(con, RUN_ID, lake_root / "reports" / RUN_ID)
    finally:
        con.close()
    return lake_root / "reports" / RUN_ID


def frames_of(report_dir: Path) -> dict[str, pd.DataFrame]:
    return {
        name: pd.read_csv(report_dir / name, dtype=str, keep_default_na=False) for name in REPORTS
    }


class _References(HTMLParser):
    """Every tag and every attribute that could make a browser fetch something."""

    def __init__(self):
        super().__init__()
        self.tags: list[str] = []
        self.urls: list[str] = []
        self.policy: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        attributes = dict(attrs)
        for name in ("src", "href", "action", "srcset", "poster", "data"):
            if attributes.get(name) is not None:
                self.urls.append(attributes[name])
        if attributes.get("http-equiv") == "Content-Security-Policy":
            self.policy.append(attributes["content"])


def test_vendored_chart_js_is_the_recorded_release():
    code = (ASSETS / CHART_JS.file).read_bytes()
    assert hashlib.sha256(code).hexdigest() == CHART_JS.sha256
    assert code.startswith(f"/*!\n * Chart.js v{CHART_JS.version}\n".encode())
    licence = (ASSETS / CHART_JS.licence_file).read_text(encoding="utf-8")
    assert licence.startswith(f"The {CHART_JS.licence} License")


def test_the_page_refers_to_nothing_outside_itself(tmp_path: Path):
    page = (report_of(tmp_path) / REPORT_PAGE).read_text(encoding="utf-8")
    references = _References()
    references.feed(page)
    assert not {"link", "img", "iframe", "object", "embed"} & set(references.tags)
    assert all(url.startswith("#") for url in references.urls), references.urls
    # no fetch allowed at all; only the page's own inline scripts and style may run
    (policy,) = references.policy
    assert policy.startswith("default-src 'none'; script-src 'sha256-")
    assert "sourceMappingURL" not in page


def test_the_page_is_the_same_from_the_frames_and_from_the_csvs(tmp_path: Path):
    report_dir = report_of(tmp_path)
    written = (report_dir / REPORT_PAGE).read_text(encoding="utf-8")
    assert render_report(frames_of(report_dir), RUN_ID) == written


def test_the_inputs_are_listed_with_what_the_run_found(tmp_path: Path):
    frames = frames_of(report_of(tmp_path))
    page = render_report(frames, RUN_ID)
    # the two input files of the hand-made run (tests/local/conftest.py)
    assert "<td class=mono>raw/rental_transactions/day1.csv</td>" in page
    assert '<td class="num">6</td><td class="num">1</td><td>used</td>' in page
    assert "held back" not in page
    held = frames["inputs.csv"].copy()
    held.loc[1, ["status", "reason"]] = ["held_back", "held back: 6 of 6 rows"]
    page = render_report({**frames, "inputs.csv": held}, RUN_ID)
    assert "1 rental file(s) were held back" in page
    assert "<td>held_back</td><td>held back: 6 of 6 rows</td>" in page


def test_every_summary_metric_needs_a_place_on_the_page(tmp_path: Path):
    frames = frames_of(report_of(tmp_path))
    extra = pd.DataFrame([{"metric": "new_kpi", "value": "1", "value_type": "integer"}])
    frames["summary.csv"] = pd.concat([frames["summary.csv"], extra], ignore_index=True)
    with pytest.raises(KeyError, match="new_kpi"):
        render_report(frames, RUN_ID)
    del frames["data_quality.csv"]
    with pytest.raises(KeyError, match=r"data_quality\.csv"):
        render_report(frames, RUN_ID)


def test_daily_series_fills_days_without_rentals_and_averages_seven_days(tmp_path: Path):
    frames = frames_of(report_of(tmp_path))
    # ten days of which three had no valid rental
    days = [date(2024, 3, 1) + timedelta(days=i) for i in range(10)]
    revenue = {d: Decimal(100 * (i + 1)) for i, d in enumerate(days) if i not in (2, 5, 6)}
    frames["daily_revenue.csv"] = pd.DataFrame(
        {
            "rental_date": [d.isoformat() for d in revenue],
            "rental_count": ["1"] * len(revenue),
            "total_revenue": [f"{v}.00" for v in revenue.values()],
            "avg_rental_amount": [f"{v}.00" for v in revenue.values()],
            "unique_users": ["1"] * len(revenue),
            "unique_vehicles": ["1"] * len(revenue),
        }
    )
    page = render_report(frames, RUN_ID)
    data = json.loads(re.search(r'id="report-data">(.*?)</script>', page)[1])["daily"]
    full = pd.Series([float(revenue.get(d, 0)) for d in days])
    assert data["dates"] == [d.isoformat() for d in days]
    assert data["revenue"] == full.tolist()
    assert data["average"][:6] == [None] * 6
    assert data["average"][6:] == full.rolling(7).mean().round(2).tolist()[6:]
    assert "3 days without a valid rental" in page


@pytest.fixture
def report_dir(tmp_path: Path) -> Path:
    return report_of(tmp_path)


def test_the_page_shows_summary_csv_and_charts_the_report_csvs(chromium, report_dir, tmp_path):
    loaded = open_report(chromium, report_dir / REPORT_PAGE, tmp_path / "report.png")
    assert_page_shows_summary(loaded, report_dir / "summary.csv")

    charts = loaded.evaluate(CHARTS)
    locations = read_csv(report_dir / "top_locations.csv")
    assert charts["chart-locations"] == {
        "labels": [f"{r['location_name']} ({r['city']})" for r in locations],
        "datasets": [[float(r["total_revenue"]) for r in locations]],
    }
    types = read_csv(report_dir / "vehicle_types.csv")
    assert charts["chart-mix-revenue"]["labels"] == [r["vehicle_type"] for r in types]
    assert charts["chart-mix-revenue"]["datasets"] == [[float(r["total_revenue"]) for r in types]]
    assert charts["chart-mix-rentals"]["datasets"] == [[int(r["rental_count"]) for r in types]]
    daily = read_csv(report_dir / "daily_revenue.csv")
    assert charts["chart-daily"]["labels"] == [r["rental_date"] for r in daily]  # no gap here
    assert charts["chart-daily"]["datasets"][1] == [float(r["total_revenue"]) for r in daily]
    painted = loaded.evaluate(PAINTED_PIXELS)
    assert sorted(painted) == sorted(charts) and all(painted.values()), painted

    # the tables: top spenders, rules with violations, rejected rentals
    spenders = loaded.evaluate(
        "[...document.querySelectorAll('#spenders tbody tr')].map(r => r.cells[2].textContent)"
    )
    assert spenders == [r["user_id"] for r in read_csv(report_dir / "top_users.csv")]
    broken = loaded.evaluate(
        "[...document.querySelectorAll('#quality table')[0].tBodies[0].rows]"
        ".map(r => [r.cells[1].textContent, r.cells[3].textContent])"
    )
    assert broken == [["rental_by_active_user", "2"], ["rental_start_time_format", "1"]]
    rejects = loaded.evaluate(
        "[...document.querySelectorAll('table.rejects tbody tr')]"
        ".map(r => [r.cells[0].textContent, r.cells[1].textContent, r.cells[2].textContent])"
    )
    assert rejects == [["7", "rental_start_time_format", "r1"]]


def test_a_run_without_valid_rentals_has_a_page_with_nothing_to_chart(chromium, tmp_path):
    report_dir = report_of(tmp_path, NO_VALID_RENTAL_ROWS)
    loaded = open_report(chromium, report_dir / REPORT_PAGE, tmp_path / "empty.png")
    assert_page_shows_summary(loaded, report_dir / "summary.csv")
    assert loaded.evaluate(CHARTS) == {}
    assert loaded.evaluate("document.querySelectorAll('.empty').length") == 4
    assert loaded.evaluate("document.querySelectorAll('table.rejects tbody tr').length") == 2


def test_names_in_the_data_cannot_add_markup_or_scripts(chromium, tmp_path):
    hostile = "</script><script>window.injected = 1</script><img src=x onerror=window.injected=2>"
    tables = dict(TABLE_ROWS)
    tables["location_performance"] = TABLE_ROWS["location_performance"].replace(
        "'Bean LLC'", "'" + hostile + "'"
    )
    report_dir = report_of(tmp_path, tables)
    loaded = open_report(chromium, report_dir / REPORT_PAGE, tmp_path / "hostile.png")
    assert loaded.evaluate("window.injected === undefined")
    assert loaded.evaluate("document.querySelectorAll('img').length") == 0
    labels = loaded.evaluate(CHARTS)["chart-locations"]["labels"]
    assert f"{hostile} (Fontana)" in labels


def test_rentals_that_earned_nothing_have_no_revenue_share(tmp_path: Path):
    frames = frames_of(report_of(tmp_path))
    types = frames["vehicle_types.csv"]
    frames["vehicle_types.csv"] = types.assign(total_revenue="0.00", avg_rental_amount="0.00")
    page = render_report(frames, RUN_ID)
    assert '<td class="num">0.00<span class="share">—</span></td>' in page
    assert '<td class="num">3<span class="share">60.0 %</span></td>' in page  # 3 of 5 rentals
