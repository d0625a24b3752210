"""report.html: one run's report as a single self-contained page, charts included.

Built from the shaped report frames of carrental.report (the text the CSVs hold), by both
`carrental run` and the Report Lambda, so both paths write the same page for the same CSVs.
`render_report` is a pure function: frames in, HTML out (no clock, no I/O beyond reading this
package's own assets). The page inlines its style, its chart script and Chart.js (vendored
unmodified from npm into report_assets/, version and checksum below), and carries a
Content-Security-Policy that allows no fetch at all: it opens offline, from a folder, a mail
attachment or a download from S3, and a name in the data cannot make it load anything.

Every summary.csv value is shown once, in an element with `data-metric` (the metric) and
`data-value` (the value exactly as in summary.csv): the tests read them back from a browser.
Standard library and pandas only (what the Report Lambda's layers hold).
"""

from __future__ import annotations

import base64
import hashlib
import html
import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal
from importlib import resources
from pathlib import PurePosixPath

import pandas as pd

from carrental import __version__
from carrental.contracts import DATASETS
from carrental.report import CENT, REPORTS, TWO_DECIMALS

REPORT_PAGE = "report.html"


# Rejected rentals listed on the page (rejected_rentals.csv may hold more).
REJECTS_SHOWN = 100
# Days of the moving average drawn over the daily revenue.
AVERAGE_DAYS = 7
# Number of --series-N colours in report.css (vehicle types take them in name order).
SERIES_COLOURS = 6

ASSETS = resources.files("carrental") / "report_assets"


@dataclass(frozen=True)
class VendoredAsset:
    """A third-party file kept byte for byte as published; a test checks the checksum."""

    file: str
    version: str
    sha256: str
    licence: str
    licence_file: str

    def text(self) -> str:
        return (ASSETS / self.file).read_text(encoding="utf-8")


# dist/chart.umd.min.js of the npm package chart.js (report_assets/README.md: how to update)
CHART_JS = VendoredAsset(
    file="chart.umd.min.js",
    version="4.6.1",
    sha256="87364cc2b2a76a6684929e7d6b80b18a897794db38400caff1fcf1791c6925d2",
    licence="MIT",
    licence_file="chart.js.LICENSE.md",
)

# summary.csv metric -> the label of its headline card
HEADLINE = {
    "total_revenue": "Total revenue",
    "rental_count": "Rentals",
    "unique_customers": "Customers",
    "unique_vehicles_rented": "Vehicles rented",
    "avg_rental_amount": "Average rental",
    "avg_rental_hours": "Average duration (hours)",
    "rejected_rentals": "Rejected rentals",
}

# Columns of the report tables that hold counts (shown with thousands separators).
COUNT_COLUMNS = {"rental_count", "unique_users", "unique_vehicles"}
# The top spenders' numbers after rank, name, user id and email, each shown as `_cell` shows it.
SPENDER_NUMBERS = ("rental_count", "total_spent", "avg_rental_amount", "total_rental_hours")

EMPTY = "—"


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


def _number(text: str, value_type: str) -> str:
    """summary.csv / report text -> what the page shows (thousands separators, same digits)."""
    if text == "":
        return EMPTY
    if value_type == "decimal":
        return f"{Decimal(text):,}"
    if value_type == "integer":
        return f"{int(text):,}"
    return text


def _share(part: Decimal | int, whole: Decimal | int) -> str:
    return f"{100 * part / whole:.1f} %" if whole else EMPTY


def _count(value: object) -> str:
    """A row count from the inputs frame: an int, a numeric text or nothing."""
    return EMPTY if value in ("", None) else f"{int(Decimal(str(value))):,}"


def _cell(column: str, text: str) -> str:
    if column in TWO_DECIMALS:
        return f'<td class="num">{_e(_number(text, "decimal"))}</td>'
    if column in COUNT_COLUMNS:
        return f'<td class="num">{_e(_number(text, "integer"))}</td>'
    return f"<td>{_e(text) if text != '' else EMPTY}</td>"


def _th(column: str, label: str) -> str:
    numeric = column in TWO_DECIMALS or column in COUNT_COLUMNS
    return f"<th{' class=num' if numeric else ''}>{_e(label)}</th>"


def _table(frame: pd.DataFrame, columns: Mapping[str, str]) -> str:
    """A plain table of `columns` (column -> header label) of a shaped frame."""
    head = "".join(_th(column, label) for column, label in columns.items())
    body = "".join(
        "<tr>" + "".join(_cell(column, row[column]) for column in columns) + "</tr>"
        for row in frame.to_dict("records")
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _floats(frame: pd.DataFrame, column: str) -> list[float | None]:
    return [float(v) if v != "" else None for v in frame[column]]


class _Summary:
    """summary.csv as metric -> (value, value_type); every lookup must name a real metric."""

    def __init__(self, frame: pd.DataFrame):
        self.rows = {
            row["metric"]: (row["value"], row["value_type"]) for row in frame.to_dict("records")
        }
        self.shown: set[str] = set()

    def value(self, metric: str) -> str:
        if metric not in self.rows:
            raise KeyError(f"summary.csv has no metric {metric!r}")
        return self.rows[metric][0]

    def element(self, metric: str, tag: str = "span", css: str = "", plain: bool = False) -> str:
        """The metric's value as the page shows it, tagged with the value summary.csv holds.
        `plain`: an identifier, shown without thousands separators."""
        value = self.value(metric)
        self.shown.add(metric)
        shown = (value or EMPTY) if plain else _number(value, self.rows[metric][1])
        css_class = f' class="{css}"' if css else ""
        return (
            f'<{tag}{css_class} data-metric="{_e(metric)}" data-value="{_e(value)}">'
            f"{_e(shown)}</{tag}>"
        )


def _masthead(run_id: str, summary: _Summary) -> str:
    first, last = summary.value("first_rental_date"), summary.value("last_rental_date")
    if first and last:
        days = (date.fromisoformat(last) - date.fromisoformat(first)).days + 1
        span = f" · {days:,} day{'s' if days != 1 else ''}"
    else:
        span = ""
    nav = "".join(
        f'<a href="#{anchor}">{label}</a>'
        for anchor, label in (
            ("locations", "Locations"),
            ("vehicle-types", "Vehicle types"),
            ("daily", "Daily revenue"),
            ("spenders", "Top spenders"),
            ("quality", "Data quality"),
            ("inputs", "Inputs"),
        )
    )
    return (
        '<header class="masthead"><div><h1>Car-rental report</h1>'
        f'<div class="run">Run <code>{_e(run_id)}</code> · rentals from '
        f"{summary.element('first_rental_date')} to {summary.element('last_rental_date')}"
        f"{span}</div></div>"
        f'<nav class="sections">{nav}</nav></header>'
    )


def _headline(summary: _Summary) -> str:
    notes = {
        "total_revenue": "valid rentals only",
        "avg_rental_amount": "revenue per rental",
        "rejected_rentals": "kept out of every figure",
    }
    cards = []
    for metric, label in HEADLINE.items():
        alert = metric == "rejected_rentals" and summary.value(metric) not in ("", "0")
        note = f'<div class="note">{_e(notes[metric])}</div>' if metric in notes else ""
        cards.append(
            f'<div class="kpi{" alert" if alert else ""}"><div class="label">{_e(label)}</div>'
            f"{summary.element(metric, 'div', 'value')}{note}</div>"
        )
    valid, rejected = summary.value("rental_count"), summary.value("rejected_rentals")
    # every rental row read is either valid or rejected
    valid_share = _share(int(valid), int(valid) + int(rejected)) if valid and rejected else EMPTY
    valid_card = (
        '<div class="kpi"><div class="label">Valid rentals</div>'
        f'<div class="value">{valid_share}</div>'
        '<div class="note">of the rental rows read</div></div>'
    )
    return f'<div class="kpis">{"".join(cards)}{valid_card}</div>'


def _highlights(summary: _Summary) -> str:
    def card(label: str, name: str, detail: str, figure: str, unit: str) -> str:
        return (
            f'<div class="highlight"><div class="label">{label}</div>'
            f'<div class="name">{name}</div><div class="detail">{detail}</div>'
            f'<div class="figure">{figure} <span class="unit">{unit}</span></div></div>'
        )

    location = card(
        "Top location by revenue",
        summary.element("top_location_name"),
        f"{summary.element('top_location_city')} · location "
        f"{summary.element('top_location_id', plain=True)}",
        summary.element("top_location_revenue"),
        "revenue",
    )
    vehicle_type = card(
        "Most rented vehicle type",
        summary.element("most_rented_vehicle_type"),
        "by number of valid rentals",
        summary.element("most_rented_vehicle_type_rentals"),
        "rentals",
    )
    spender = card(
        "Top spender",
        summary.element("top_spender_name"),
        f'user <span class="mono">{summary.element("top_spender_user_id", plain=True)}</span>',
        summary.element("top_spender_total_spent"),
        "spent",
    )
    return (
        f'<section class="card"><div class="highlights">{location}{vehicle_type}{spender}</div>'
        "</section>"
    )


def _no_valid_rentals(what: str = "chart") -> str:
    return f'<div class="empty">No valid rentals in this run: nothing to {what}.</div>'


def _numbers(frame: pd.DataFrame, table: str) -> str:
    """A chart's numbers, folded away under it (nothing when there are none)."""
    return f"<details><summary>The numbers</summary>{table}</details>" if len(frame) else ""


def _locations(frame: pd.DataFrame) -> tuple[str, dict]:
    chart = (
        '<div class="chart locations"><canvas id="chart-locations" role="img" '
        'aria-label="Revenue by pickup location"></canvas></div>'
        if len(frame)
        else _no_valid_rentals()
    )
    table = _table(
        frame,
        {
            "location_id": "id",
            "location_name": "location",
            "city": "city",
            "state": "state",
            "rental_count": "rentals",
            "total_revenue": "revenue",
            "avg_rental_amount": "avg rental",
            "unique_vehicles": "vehicles",
            "unique_users": "customers",
            "avg_rental_hours": "avg hours",
        },
    )
    body = (
        '<section class="card" id="locations">'
        f"<h2>Revenue by pickup location{f' (top {len(frame)})' if len(frame) else ''}</h2>"
        '<p class="lead">Valid rentals by the location they were picked up at.</p>'
        f"{chart}{_numbers(frame, table)}</section>"
    )
    data = {
        "labels": [
            f"{n} ({c})" for n, c in zip(frame["location_name"], frame["city"], strict=True)
        ],
        "revenue": _floats(frame, "total_revenue"),
        "rentals": _floats(frame, "rental_count"),
    }
    return body, data


def _vehicle_types(frame: pd.DataFrame) -> tuple[str, dict]:
    names = sorted(frame["vehicle_type"])
    colours = [names.index(t) % SERIES_COLOURS for t in frame["vehicle_type"]]
    revenue = [Decimal(v) for v in frame["total_revenue"]]
    rentals = [int(v) for v in frame["rental_count"]]
    total_revenue, total_rentals = sum(revenue), sum(rentals)
    rows = []
    for row, colour, money, count in zip(
        frame.to_dict("records"), colours, revenue, rentals, strict=True
    ):
        rows.append(
            f'<tr><td><span class="swatch s{colour}"></span>{_e(row["vehicle_type"])}</td>'
            f'<td class="num">{count:,}'
            f'<span class="share">{_share(count, total_rentals)}</span></td>'
            f'<td class="num">{money:,}'
            f'<span class="share">{_share(money, total_revenue)}</span></td>'
            + _cell("avg_rental_amount", row["avg_rental_amount"])
            + _cell("avg_rental_hours", row["avg_rental_hours"])
            + "</tr>"
        )
    table = (
        "<table><thead><tr><th>type</th><th class=num>rentals · share</th>"
        "<th class=num>revenue · share</th><th class=num>avg rental</th>"
        f"<th class=num>avg hours</th></tr></thead><tbody>{''.join(rows)}</tbody></table>"
    )
    if len(frame):
        content = (
            '<div class="mix-grid">'
            '<div><h3>Revenue</h3><div class="chart mix"><canvas id="chart-mix-revenue" '
            'role="img" aria-label="Revenue by vehicle type"></canvas></div></div>'
            '<div><h3>Rentals</h3><div class="chart mix"><canvas id="chart-mix-rentals" '
            'role="img" aria-label="Rentals by vehicle type"></canvas></div></div>'
            f"<div>{table}</div></div>"
        )
    else:
        content = _no_valid_rentals()
    body = (
        '<section class="card" id="vehicle-types"><h2>Vehicle-type mix</h2>'
        '<p class="lead">Share of revenue and of rentals by the rented vehicle\'s type.</p>'
        f"{content}</section>"
    )
    data = {
        "labels": list(frame["vehicle_type"]),
        "revenue": _floats(frame, "total_revenue"),
        "rentals": _floats(frame, "rental_count"),
        "colours": colours,
    }
    return body, data


def _daily(frame: pd.DataFrame) -> tuple[str, dict]:
    """daily_revenue.csv has the dates with a valid rental; the days between had none: 0."""
    by_date = {row["rental_date"]: row for row in frame.to_dict("records")}
    dates: list[str] = []
    if by_date:
        day, last = date.fromisoformat(min(by_date)), date.fromisoformat(max(by_date))
        while day <= last:
            dates.append(day.isoformat())
            day += timedelta(days=1)
    revenue = [Decimal(by_date[d]["total_revenue"]) if d in by_date else Decimal(0) for d in dates]
    rentals = [int(by_date[d]["rental_count"]) if d in by_date else 0 for d in dates]
    # trailing 7-day mean, from the 7th day on: the trend under the day-to-day noise
    week = [
        float((sum(revenue[i - AVERAGE_DAYS + 1 : i + 1]) / AVERAGE_DAYS).quantize(CENT))
        if i >= AVERAGE_DAYS - 1
        else None
        for i in range(len(dates))
    ]
    if dates:
        # the first of the best days (daily_revenue.csv is in date order)
        best = max(frame.to_dict("records"), key=lambda r: Decimal(r["total_revenue"]))
        quiet = len(dates) - len(by_date)
        lead = (
            f"Revenue per rental start date over {len(dates):,} days, with its "
            f"{AVERAGE_DAYS}-day average. Best day: {_e(best['rental_date'])} with "
            f"{_e(_number(best['total_revenue'], 'decimal'))} from "
            f"{_e(_number(best['rental_count'], 'integer'))} rentals."
            + (
                f" {quiet:,} day{'s' if quiet != 1 else ''} without a valid rental."
                if quiet
                else ""
            )
        )
        chart = (
            '<div class="chart daily"><canvas id="chart-daily" role="img" '
            'aria-label="Daily revenue and rentals"></canvas></div>'
        )
    else:
        lead, chart = "Revenue per rental start date.", _no_valid_rentals()
    table = _table(
        frame,
        {
            "rental_date": "date",
            "rental_count": "rentals",
            "total_revenue": "revenue",
            "avg_rental_amount": "avg rental",
            "unique_users": "customers",
            "unique_vehicles": "vehicles",
        },
    )
    numbers = _numbers(frame, f'<div class="scroll">{table}</div>')
    body = (
        f'<section class="card" id="daily"><h2>Daily revenue</h2><p class="lead">{lead}</p>'
        f"{chart}{numbers}</section>"
    )
    return body, {
        "dates": dates,
        "revenue": [float(v) for v in revenue],
        "rentals": rentals,
        "average": week,
        "averageDays": AVERAGE_DAYS,
    }


def _spenders(frame: pd.DataFrame) -> str:
    rows = "".join(
        f'<tr><td class="num">{_e(r["spend_rank"])}</td>'
        f"<td>{_e(r['first_name'])} {_e(r['last_name'])}</td>"
        f'<td class="mono">{_e(r["user_id"])}</td><td>{_e(r["email"])}</td>'
        + "".join(_cell(c, r[c]) for c in SPENDER_NUMBERS)
        + "</tr>"
        for r in frame.to_dict("records")
    )
    content = (
        "<table><thead><tr><th class=num>rank</th><th>name</th><th>user id</th><th>email</th>"
        "<th class=num>rentals</th><th class=num>spent</th><th class=num>avg rental</th>"
        f"<th class=num>hours</th></tr></thead><tbody>{rows}</tbody></table>"
        if len(frame)
        else _no_valid_rentals("list")
    )
    return (
        f'<section class="card" id="spenders"><h2>Top spenders</h2>'
        '<p class="lead">Customers by the total of their valid rentals.</p>'
        f"{content}</section>"
    )


def _rule_description(dataset: str, rule: str) -> str:
    contract = DATASETS.get(dataset)
    return next((r.description for r in contract.rules if r.name == rule), "") if contract else ""


def _severity(severity: str) -> str:
    css = severity if severity in ("reject", "warn") else "other"
    return f'<span class="badge {css}">{_e(severity)}</span>'


def _quality(quality: pd.DataFrame, rejects: pd.DataFrame, summary: _Summary) -> str:
    broken = quality[quality["violations"].map(lambda v: v not in ("", "0"))]
    broken = broken.assign(count=broken["violations"].map(int)).sort_values(
        ["count", "dataset", "rule"], ascending=[False, True, True]
    )
    if len(broken):
        rows = "".join(
            f"<tr><td>{_e(r['dataset'])}</td><td class=mono>{_e(r['rule'])}</td>"
            f"<td>{_severity(r['severity'])}</td>"
            f'<td class="num">{r["count"]:,}</td>'
            f'<td class="muted">{_e(_rule_description(r["dataset"], r["rule"]))}</td></tr>'
            for r in broken.to_dict("records")
        )
        rules = (
            "<table><thead><tr><th>dataset</th><th>rule</th><th>severity</th>"
            "<th class=num>violations</th><th>the rule</th></tr></thead>"
            f"<tbody>{rows}</tbody></table>"
        )
    else:
        rules = '<p><span class="badge ok">clean</span> No rule has a violation.</p>'
    lead = (
        f"{len(broken):,} of {len(quality):,} contract rules have violations. A row that breaks a "
        "<em>reject</em> rule is kept out of every figure (rentals below); a <em>warn</em> rule "
        "only counts: the row is used."
    )

    listing = _rejected_rentals(rejects, summary.value("rejected_rentals"))
    return (
        f'<section class="card" id="quality"><h2>Data quality</h2><p class="lead">{lead}</p>'
        f"<h3>Rules with violations</h3>{rules}<h3>Rejected rentals</h3>{listing}</section>"
    )


# rejected_rentals.csv columns shown as read, after the file, row and broken rules
REJECT_FIELDS = {
    "rental_id": "rental_id",
    "user_id": "user_id",
    "vehicle_id": "vehicle_id",
    "rental_start_time": "start",
    "rental_end_time": "end",
    "pickup_location": "pickup",
    "dropoff_location": "dropoff",
    "total_amount": "amount",
}


def _rejected_rentals(rejects: pd.DataFrame, total: str) -> str:
    shown = rejects.head(REJECTS_SHOWN)
    if not len(shown):
        return '<p><span class="badge ok">none</span> No rental was rejected.</p>'
    files = sorted(set(shown["source_file"]))
    one_file = len(files) == 1
    rows = []
    for r in shown.to_dict("records"):
        where = _e(r["row_number"])
        if not one_file:
            where = f"{_e(PurePosixPath(r['source_file']).name)}:{where}"
        reasons = "".join(
            f'<span class="badge reject" '
            f'title="{_e(_rule_description("rental_transactions", reason))}">{_e(reason)}</span>'
            for reason in r["reject_reason"].split(";")
        )
        fields = "".join(_cell(column, r[column]) for column in REJECT_FIELDS)
        rows.append(
            f'<tr><td class="mono" title="{_e(r["source_file"])}">{where}</td>'
            f'<td class="reasons">{reasons}</td>{fields}</tr>'
        )
    extent = (
        f"The first {len(shown):,} of {_number(total, 'integer')}, in file and row order; the "
        "<code>rental_rejects</code> table holds every one."
        if total and len(shown) < int(total)
        else "Every rejected rental of the run, in file and row order."
    )
    source = f" All from <code>{_e(files[0])}</code>." if one_file else ""
    head = "".join(f"<th>{_e(label)}</th>" for label in REJECT_FIELDS.values())
    return (
        f'<p class="muted">{extent}{source} Row 1 is the first line after the header; the '
        "fields are shown as read.</p>"
        '<div class="scroll"><table class="rejects"><thead><tr>'
        f"<th>{'row' if one_file else 'file:row'}</th><th>broken rules</th>{head}</tr></thead>"
        f"<tbody>{''.join(rows)}</tbody></table></div>"
    )


def _inputs(inputs: pd.DataFrame) -> str:
    """inputs.csv: the run's manifest, with what the run found in each file."""
    rows = "".join(
        f"<tr><td>{_e(r['dataset'])}</td><td class=mono>{_e(r['source_file'])}</td>"
        f'<td class="num">{_e(_count(r["rows"]))}</td>'
        f'<td class="num">{_e(_count(r["rejected_rows"]))}</td>'
        f"<td>{_e(r['status'])}</td><td>{_e(r['reason'])}</td></tr>"
        for r in inputs.fillna("").to_dict("records")
    )
    content = (
        "<table><thead><tr><th>dataset</th><th>file</th><th class=num>rows</th>"
        "<th class=num>rejected at run time</th><th>status</th><th>reason</th></tr></thead>"
        f"<tbody>{rows}</tbody></table>"
    )
    held_back = (inputs["status"] == "held_back").sum()
    lead = "The files this run read: the current snapshots, then the rental history."
    if held_back:
        lead += f" {held_back} rental file(s) were held back and quarantined (reason beside each)."
    return (
        '<section class="card" id="inputs"><h2>Inputs</h2>'
        f'<p class="lead">{_e(lead)}</p>{content}</section>'
    )


def _script_json(data: object) -> str:
    # "<" escaped: no text in the data can close the script element
    return json.dumps(data, ensure_ascii=False, separators=(",", ":")).replace("<", "\\u003c")


def _csp_hash(script: str) -> str:
    digest = hashlib.sha256(script.encode("utf-8")).digest()
    return f"'sha256-{base64.b64encode(digest).decode()}'"


def _chart_js() -> str:
    # The trailing source-map comment would point a browser's developer tools at a file that
    # is not there; the code itself is kept as published.
    return CHART_JS.text().rsplit("\n//# sourceMappingURL=", 1)[0]


def render_report(reports: Mapping[str, pd.DataFrame], run_id: str) -> str:
    """The report page of one run.

    `reports`: the shaped frames of carrental.report, keyed by CSV name (every name of
    REPORTS, inputs.csv, the run's manifest, included).
    """
    missing = [name for name in REPORTS if name not in reports]
    if missing:
        raise KeyError(f"report frames missing: {', '.join(missing)}")
    summary = _Summary(reports["summary.csv"])
    locations, locations_data = _locations(reports["top_locations.csv"])
    vehicle_types, vehicle_types_data = _vehicle_types(reports["vehicle_types.csv"])
    daily, daily_data = _daily(reports["daily_revenue.csv"])
    body = "".join(
        [
            _masthead(run_id, summary),
            _headline(summary),
            _highlights(summary),
            locations,
            vehicle_types,
            daily,
            _spenders(reports["top_users.csv"]),
            _quality(reports["data_quality.csv"], reports["rejected_rentals.csv"], summary),
            _inputs(reports["inputs.csv"]),
        ]
    )
    unshown = sorted(set(summary.rows) - summary.shown)
    if unshown:
        raise KeyError(f"summary.csv metric(s) with no place on the page: {', '.join(unshown)}")
    chart_data = {
        "locations": locations_data,
        "vehicleTypes": vehicle_types_data,
        "daily": daily_data,
    }
    style = (ASSETS / "report.css").read_text(encoding="utf-8")
    scripts = [_chart_js(), (ASSETS / "report.js").read_text(encoding="utf-8")]
    policy = (
        "default-src 'none'; "
        f"script-src {' '.join(_csp_hash(s) for s in scripts)}; "
        f"style-src {_csp_hash(style)}; "
        "base-uri 'none'; form-action 'none'"
    )
    footer = (
        f"<footer>carrental {_e(__version__)} · from the CSV reports of this run "
        f"({', '.join(_e(name) for name in REPORTS)}) · charts by Chart.js {CHART_JS.version} "
        f"({CHART_JS.licence} licence), embedded: this page loads nothing from the network."
        "</footer>"
    )
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        f'<meta http-equiv="Content-Security-Policy" content="{_e(policy)}">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f'<meta name="generator" content="carrental {_e(__version__)}">'
        f"<title>Car-rental report · run {_e(run_id)}</title>"
        f"<style>{style}</style></head>"
        f'<body><div class="page">{body}{footer}</div>'
        f'<script type="application/json" id="report-data">{_script_json(chart_data)}</script>'
        + "".join(f"<script>{script}</script>" for script in scripts)
        + "</body></html>\n"
    )
