"""An independent computation of the output tables from the raw CSVs of a batch: the three
dimension files of a folder and one or more rental files (a history, in order).

Row rules in plain Python (csv, re, datetime, Decimal), aggregates in DuckDB, averages and hours
with Python's Decimal rounded half up. It shares no code with `carrental`: rule names, columns
and formats are spelled out here on purpose, so that a drift in the contracts or in the Spark
jobs shows up as a difference. Used by the whole-job tests, the local end-to-end tests and by
benchmarks/lab_check.py.

The history's rules, as docs/tables.md states them: a rental id repeated in a later file (or
row) breaks rental_id_unique; a rental file with more than REJECT_THRESHOLD of its rows
breaking a reject rule is held back (left out), and the rest is checked again without it.
"""

from __future__ import annotations

import csv
import math
import re
from collections import Counter
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import ROUND_HALF_UP, Decimal, localcontext
from pathlib import Path

import duckdb
import pyarrow as pa

RATES = {"basic": Decimal(10), "premium": Decimal(20), "high_end": Decimal(50)}
REJECT_THRESHOLD = 0.05
SIX_PLACES = Decimal("0.000001")


def _strict_datetime(text: str, pattern: str, regex: str) -> datetime | None:
    if not re.fullmatch(regex, text):
        return None
    try:
        return datetime.strptime(text, pattern)
    except ValueError:
        return None


def parse_timestamp(text: str) -> datetime | None:  # yyyy-MM-dd HH:mm:ss
    return _strict_datetime(text, "%Y-%m-%d %H:%M:%S", r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}")


def parse_iso_date(text: str) -> date | None:  # yyyy-MM-dd
    found = _strict_datetime(text, "%Y-%m-%d", r"\d{4}-\d{2}-\d{2}")
    return found.date() if found else None


def parse_dmy_date(text: str) -> date | None:  # dd-MM-yyyy
    found = _strict_datetime(text, "%d-%m-%Y", r"\d{2}-\d{2}-\d{4}")
    return found.date() if found else None


def parse_dmy_timestamp(text: str) -> datetime | None:  # dd-MM-yyyy HH:mm:ss
    return _strict_datetime(text, "%d-%m-%Y %H:%M:%S", r"\d{2}-\d{2}-\d{4} \d{2}:\d{2}:\d{2}")


def parse_int(text: str) -> int | None:
    if not re.fullmatch(r"-?\d{1,10}", text):
        return None
    value = int(text)
    return value if -(2**31) <= value < 2**31 else None


def parse_double(text: str) -> float | None:
    if not re.fullmatch(r"-?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?", text):
        return None
    value = float(text)
    return value if math.isfinite(value) else None


def parse_money(text: str) -> Decimal | None:
    return Decimal(text) if re.fullmatch(r"-?\d{1,10}(\.\d{1,2})?", text) else None


def parse_flag(text: str) -> int | None:
    return int(text) if text in ("0", "1") else None


def read_rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8-sig") as f:
        return list(csv.DictReader(f))


@dataclass
class Checked:
    """Valid rows by key, and violations by rule (every rule of the dataset, zeros included)."""

    valid: dict = field(default_factory=dict)
    violations: Counter = field(default_factory=Counter)
    rejected: int = 0  # rows breaking a reject rule


# Dimension rules: (key, key parser, required columns, rejecting formats, warning formats).
DIMENSIONS = {
    "vehicles": (
        "vehicle_id",
        str,
        ["vehicle_id", "vehicle_type"],
        {},
        {
            "active": parse_flag,
            "expiration_date": parse_dmy_date,
            "certification_date": parse_iso_date,
            "vehicle_year": parse_int,
            "last_update_timestamp": parse_dmy_timestamp,
        },
    ),
    "locations": (
        "location_id",
        parse_int,
        ["location_id"],
        {"location_id": parse_int},
        {"latitude": parse_double, "longitude": parse_double},
    ),
    "users": (
        "user_id",
        str,
        ["user_id"],
        {},
        {
            "driver_license_expiry": parse_iso_date,
            "creation_date": parse_iso_date,
            "is_active": parse_flag,
        },
    ),
}


def check_dimension(name: str, rows: list[dict[str, str]]) -> Checked:
    key_column, key_parser, required, reject_formats, warn_formats = DIMENSIONS[name]
    result = Checked()
    rules = [f"{c}_not_null" for c in required] + [f"{c}_format" for c in reject_formats]
    rules += [f"{c}_format" for c in warn_formats] + [f"{key_column}_unique"]
    if name == "vehicles":
        rules.append("vehicle_type_known")
    result.violations.update({rule: 0 for rule in rules})
    seen = set()
    for row in rows:
        broken = [f"{c}_not_null" for c in required if row[c] == ""]
        broken += [
            f"{c}_format"
            for c, parser in reject_formats.items()
            if row[c] and parser(row[c]) is None
        ]
        key = key_parser(row[key_column]) if row[key_column] else None
        if key is not None:
            if key in seen:
                broken.append(f"{key_column}_unique")
            seen.add(key)
        if name == "vehicles" and row["vehicle_type"] and row["vehicle_type"] not in RATES:
            broken.append("vehicle_type_known")
        result.violations.update(broken)
        result.rejected += bool(broken)
        if not broken:
            result.violations.update(
                f"{c}_format"
                for c, parser in warn_formats.items()
                if row[c] and parser(row[c]) is None
            )
            result.valid[key] = row
    return result


RENTAL_COLUMNS = [
    "rental_id",
    "user_id",
    "vehicle_id",
    "rental_start_time",
    "rental_end_time",
    "pickup_location",
    "dropoff_location",
    "total_amount",
]
# Contract order: per column not_null then format, the key's unique rule, then the extra rules.
RENTAL_REJECT_RULES = [
    "rental_id_not_null",
    "user_id_not_null",
    "vehicle_id_not_null",
    "rental_start_time_not_null",
    "rental_start_time_format",
    "rental_end_time_not_null",
    "rental_end_time_format",
    "pickup_location_not_null",
    "pickup_location_format",
    "dropoff_location_not_null",
    "dropoff_location_format",
    "total_amount_not_null",
    "total_amount_format",
    "rental_id_unique",
    "rental_end_after_start",
    "total_amount_non_negative",
    "user_id_exists",
    "vehicle_id_exists",
    "pickup_location_exists",
    "dropoff_location_exists",
]
RENTAL_WARN_RULES = [
    "pricing_matches_rate",
    "rental_not_before_user_creation",
    "rental_by_active_user",
]


@dataclass
class ValidRental:
    rental_id: str
    user_id: str
    vehicle_id: str
    start: datetime
    pickup: int
    amount: Decimal
    vehicle_type: str
    seconds: int


def check_rentals(
    files: list[tuple[str, list[dict[str, str]]]],
    vehicles: Checked,
    locations: Checked,
    users: Checked,
) -> tuple[list[ValidRental], list[tuple], Counter, dict[str, tuple[int, int]]]:
    """Valid rentals of (file name, rows) in history order; rejects as (raw fields..., reason,
    file name, row number); violations by rule; (rows, rejected rows) per file."""
    violations = Counter({rule: 0 for rule in RENTAL_REJECT_RULES + RENTAL_WARN_RULES})
    valid, rejects, seen, per_file = [], [], set(), {}
    parsers = {
        "rental_start_time": parse_timestamp,
        "rental_end_time": parse_timestamp,
        "pickup_location": parse_int,
        "dropoff_location": parse_int,
        "total_amount": parse_money,
    }
    for file_name, rows in files:
        rejected = 0
        for number, row in enumerate(rows, start=1):
            broken = set()
            value = {}
            for column in RENTAL_COLUMNS:
                if row[column] == "":
                    broken.add(f"{column}_not_null")
                elif column in parsers:
                    value[column] = parsers[column](row[column])
                    if value[column] is None:
                        broken.add(f"{column}_format")
            if row["rental_id"]:
                if row["rental_id"] in seen:
                    broken.add("rental_id_unique")
                seen.add(row["rental_id"])
            start, end = value.get("rental_start_time"), value.get("rental_end_time")
            if start and end and end <= start:
                broken.add("rental_end_after_start")
            amount = value.get("total_amount")
            if amount is not None and amount < 0:
                broken.add("total_amount_non_negative")
            if row["user_id"] and row["user_id"] not in users.valid:
                broken.add("user_id_exists")
            if row["vehicle_id"] and row["vehicle_id"] not in vehicles.valid:
                broken.add("vehicle_id_exists")
            for column in ("pickup_location", "dropoff_location"):
                if value.get(column) is not None and value[column] not in locations.valid:
                    broken.add(f"{column}_exists")
            violations.update(broken)
            if broken:
                rejected += 1
                reason = ";".join(rule for rule in RENTAL_REJECT_RULES if rule in broken)
                rejects.append(
                    (*[row[c] or None for c in RENTAL_COLUMNS], reason, file_name, number)
                )
                continue
            user = users.valid[row["user_id"]]
            vehicle_type = vehicles.valid[row["vehicle_id"]]["vehicle_type"]
            seconds = int((end - start).total_seconds())
            if seconds % 3600 or amount != (seconds // 3600) * RATES[vehicle_type]:
                violations["pricing_matches_rate"] += 1
            created = parse_iso_date(user["creation_date"])
            if created is not None and start.date() < created:
                violations["rental_not_before_user_creation"] += 1
            if user["is_active"] != "1":
                violations["rental_by_active_user"] += 1
            valid.append(
                ValidRental(
                    row["rental_id"],
                    row["user_id"],
                    row["vehicle_id"],
                    start,
                    value["pickup_location"],
                    amount,
                    vehicle_type,
                    seconds,
                )
            )
        per_file[file_name] = (len(rows), rejected)
    return valid, rejects, violations, per_file


def average(total: Decimal, count: int) -> Decimal:
    with localcontext() as exact:
        exact.prec = 60
        return (total / count).quantize(SIX_PLACES, rounding=ROUND_HALF_UP)


def hours(seconds: int, count: int = 1) -> Decimal:
    return average(Decimal(seconds) / 3600, count)


def canonical(rows: list[tuple]) -> list[tuple]:
    """A stable order for comparing tables (equal decimals of different scale sort alike)."""

    def key(row: tuple) -> list[tuple[bool, str]]:
        return [(v is None, str(v.normalize()) if isinstance(v, Decimal) else str(v)) for v in row]

    return sorted(rows, key=key)


def reference_tables(
    folder: Path, rental_files: list[Path] | None = None, threshold: float = REJECT_THRESHOLD
) -> dict[str, list[tuple]]:
    """Every output table of the dimension files of `folder` and the rental history
    `rental_files` (default: the folder's rental_transactions.csv), as rows in the documented
    column order; rental_rejects rows carry the file's name, not its path; run_inputs is given
    as (dataset, file name, rows, rejected rows, status) per file. A rental file with more than
    `threshold` of its rows rejected is held back."""
    dim_rows = {name: read_rows(folder / f"{name}.csv") for name in DIMENSIONS}
    dims = {name: check_dimension(name, rows) for name, rows in dim_rows.items()}
    history = [(f.name, read_rows(f)) for f in rental_files or [folder / "rental_transactions.csv"]]
    *_, first_counts = check_rentals(history, dims["vehicles"], dims["locations"], dims["users"])
    held = {
        name
        for name, (rows, rejected) in first_counts.items()
        if rows and rejected / rows > threshold
    }
    used = [(name, rows) for name, rows in history if name not in held]
    valid, rejects, rental_violations, per_file = check_rentals(
        used, dims["vehicles"], dims["locations"], dims["users"]
    )
    con = duckdb.connect()
    con.register(
        "valid",
        pa.table(
            {
                "rental_id": [r.rental_id for r in valid],
                "user_id": [r.user_id for r in valid],
                "vehicle_id": [r.vehicle_id for r in valid],
                "start_time": pa.array([r.start for r in valid], pa.timestamp("us")),
                "pickup": pa.array([r.pickup for r in valid], pa.int32()),
                "amount": pa.array([r.amount for r in valid], pa.decimal128(12, 2)),
                "vehicle_type": [r.vehicle_type for r in valid],
                "seconds": pa.array([r.seconds for r in valid], pa.int64()),
            }
        ),
    )
    locations = dims["locations"].valid
    con.register(
        "locations",
        pa.table(
            {
                "location_id": pa.array(list(locations), pa.int32()),
                "location_name": [loc["location_name"] or None for loc in locations.values()],
                "city": [loc["city"] or None for loc in locations.values()],
                "state": [loc["state"] or None for loc in locations.values()],
            }
        ),
    )
    users = dims["users"].valid
    con.register(
        "users",
        pa.table(
            {
                "user_id": list(users),
                "first_name": [u["first_name"] or None for u in users.values()],
                "last_name": [u["last_name"] or None for u in users.values()],
                "email": [u["email"] or None for u in users.values()],
            }
        ),
    )
    stats = "count(*), sum(amount), min(amount), max(amount)"

    def rows(sql: str) -> list[tuple]:
        return con.execute(sql).fetchall()

    tables: dict[str, list[tuple]] = {}
    tables["location_performance"] = [
        (
            lid,
            name,
            city,
            state,
            n,
            total,
            average(total, n),
            low,
            high,
            vehicles,
            people,
            hours(seconds),
            hours(seconds, n),
        )
        for lid, name, city, state, n, total, low, high, vehicles, people, seconds in rows(
            f"SELECT pickup, location_name, city, state, {stats}, count(DISTINCT vehicle_id), "
            "count(DISTINCT user_id), sum(seconds) FROM valid "
            "JOIN locations ON location_id = pickup GROUP BY ALL"
        )
    ]
    tables["vehicle_type_performance"] = [
        (kind, n, total, average(total, n), low, high, vehicles, hours(seconds), hours(seconds, n))
        for kind, n, total, low, high, vehicles, seconds in rows(
            f"SELECT vehicle_type, {stats}, count(DISTINCT vehicle_id), sum(seconds) "
            "FROM valid GROUP BY ALL"
        )
    ]
    tables["location_vehicle_type_performance"] = [
        (lid, kind, n, total, hours(seconds, n))
        for lid, kind, n, total, seconds in rows(
            "SELECT pickup, vehicle_type, count(*), sum(amount), sum(seconds) FROM valid "
            "GROUP BY ALL"
        )
    ]
    per_user = rows(
        f"SELECT user_id, first_name, last_name, email, {stats}, sum(seconds), "
        "min(start_time), max(start_time) FROM valid JOIN users USING (user_id) GROUP BY ALL"
    )
    per_user.sort(key=lambda r: (-r[5], r[0]))  # total spent, highest first; then user_id
    tables["user_metrics"] = [
        (
            uid,
            first,
            last,
            email,
            n,
            total,
            average(total, n),
            low,
            high,
            hours(seconds),
            hours(seconds, n),
            first_start,
            last_start,
            rank,
        )
        for rank, (
            uid,
            first,
            last,
            email,
            n,
            total,
            low,
            high,
            seconds,
            first_start,
            last_start,
        ) in enumerate(per_user, start=1)
    ]
    tables["daily_metrics"] = [
        (day, n, total, average(total, n), low, high, people, vehicles)
        for day, n, total, low, high, people, vehicles in rows(
            f"SELECT CAST(start_time AS DATE), {stats}, count(DISTINCT user_id), "
            "count(DISTINCT vehicle_id) FROM valid GROUP BY ALL"
        )
    ]
    n, total, people, vehicles, seconds, first_day, last_day = rows(
        "SELECT count(*), coalesce(sum(amount), 0), count(DISTINCT user_id), "
        "count(DISTINCT vehicle_id), sum(seconds), min(CAST(start_time AS DATE)), "
        "max(CAST(start_time AS DATE)) FROM valid"
    )[0]
    tables["business_summary"] = [
        (
            total,
            n,
            people,
            vehicles,
            average(total, n) if n else None,
            hours(seconds, n) if n else None,
            first_day,
            last_day,
        )
    ]
    tables["rental_rejects"] = rejects
    tables["run_inputs"] = [
        (name, f"{name}.csv", len(rows), dims[name].rejected, "used")
        for name, rows in dim_rows.items()
    ] + [
        (
            "rental_transactions",
            file_name,
            *(first_counts[file_name] if file_name in held else per_file[file_name]),
            "held_back" if file_name in held else "used",
        )
        for file_name, _ in history
    ]
    tables["data_quality"] = [
        (name, rule, "warn" if rule in _warn_rules(name) else "reject", count)
        for name, checked in [*dims.items(), ("rental_transactions", None)]
        for rule, count in (checked.violations if checked else rental_violations).items()
    ]
    con.close()
    return tables


def _warn_rules(dataset: str) -> set[str]:
    if dataset == "rental_transactions":
        return set(RENTAL_WARN_RULES)
    return {f"{column}_format" for column in DIMENSIONS[dataset][4]}
