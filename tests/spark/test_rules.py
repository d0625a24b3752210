"""Contract-driven parsing and rule flags on tiny hand-built frames (expected values by hand)."""

from __future__ import annotations

import csv
from datetime import date

import pyarrow as pa
import pytest
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from carrental.contracts import (
    DATASETS,
    RENTAL_TRANSACTIONS,
    VEHICLES,
    Column,
    LogicalType,
    RuleKind,
)
from carrental.spark.io import (
    BLOCK_ROW,
    BLOCK_START,
    MALFORMED,
    ROW_NUMBER,
    SOURCE_FILE,
    with_row_numbers,
)
from carrental.spark.rules import (
    REJECTED,
    check_dataset,
    parse,
    referenced_columns,
    typed_value,
    violation,
)
from carrental.spark.transforms import data_quality, rental_rejects
from carrental.validation import validate_path
from carrental.validation.columns import parse as validator_parse

pytestmark = pytest.mark.spark

# Tricky texts per column shape; emptiness is the not_null rule's business, so no "" here.
TEXTS = {
    Column("n", LogicalType.INT, ""): [
        "0", "-5", "+5", "007", "2147483647", "2147483648", "-2147483648", "-2147483649",
        "12345678901", "1.0", "1e3", " 1", "1 ", "abc", "--1",
    ],
    Column("f", LogicalType.FLAG, ""): ["0", "1", "2", "01", "true", " 1", "-0"],
    Column("d", LogicalType.DOUBLE, ""): [
        "1.5", "-1.5", ".5", "5.", "1e3", "1E-3", "-1.2e+10", "1e999", "NaN", "Infinity",
        "abc", "+1.5", " 1.5", "1,5", "0x10",
    ],
    Column("m", LogicalType.MONEY, ""): [
        "450.0", "450", "-10.5", "1.005", "1.00", "0.1", "12345678901", "1234567890.12",
        "+1", "1e3", ".5", "5.", "1,000.00", "450.000",
    ],
    Column("iso", LogicalType.DATE, "", pattern="yyyy-MM-dd"): [
        "2024-02-29", "2023-02-29", "2024-2-1", "2024-13-01", "2024-01-01 ", "24-01-01",
        "2024/01/01", "2024-04-31", "12024-01-01", "+2024-01-01",
    ],
    Column("dmy", LogicalType.DATE, "", pattern="dd-MM-yyyy"): [
        "14-09-2024", "31-04-2024", "1-9-2024", "2024-09-14", "29-02-2023",
    ],
    Column("ts", LogicalType.TIMESTAMP, "", pattern="yyyy-MM-dd HH:mm:ss"): [
        "2024-01-01 00:00:00", "2024-01-01 24:00:00", "2024-01-01 23:59:60",
        "2024-01-01T10:00:00", "2024-01-01 10:00", "2024-03-10 02:30:00", "2024-1-01 10:00:00",
        "2024-01-01 10:00:00.5", "unknown", "15/01/2024 08:00:00",
    ],
}  # fmt: skip
# Hand-checked: the texts of each shape that parse.
VALID = {
    "n": {"0", "-5", "007", "2147483647", "-2147483648"},
    "f": {"0", "1"},
    "d": {"1.5", "-1.5", ".5", "5.", "1e3", "1E-3", "-1.2e+10"},
    "m": {"450.0", "450", "-10.5", "1.00", "0.1", "1234567890.12"},
    "iso": {"2024-02-29"},
    "dmy": {"14-09-2024"},
    "ts": {"2024-01-01 00:00:00", "2024-03-10 02:30:00"},
}


@pytest.mark.parametrize("column", list(TEXTS), ids=lambda c: c.name)
def test_parsing_accepts_what_the_upload_validator_accepts(spark, column):
    """The Spark jobs and the upload validator must call the same texts valid."""
    texts = TEXTS[column]
    target = {
        LogicalType.INT: "int",
        LogicalType.FLAG: "int",
        LogicalType.DOUBLE: "double",
        LogicalType.MONEY: "decimal(12,2)",
        LogicalType.DATE: "date",
        LogicalType.TIMESTAMP: "timestamp_ntz",
    }[column.type]
    frame = spark.createDataFrame([(t,) for t in texts], "text string")
    parsed = frame.select("text", typed_value(F.col("text"), column, target).alias("value"))
    spark_valid = {r["text"] for r in parsed.collect() if r["value"] is not None}
    validator_valid = {
        t for t, ok in zip(texts, validator_parse(pa.array(texts), column).valid, strict=True) if ok
    }
    assert spark_valid == VALID[column.name]
    assert validator_valid == VALID[column.name]


def parsed_rows(spark: SparkSession, ds, rows: list[tuple]) -> DataFrame:
    """These rows of one file as a CSV read gives them, parsed and numbered ('' is an empty
    field, i.e. null)."""
    read = spark.createDataFrame(
        [
            (*[v or None for v in row], None, "file:/batch/rentals.csv", 0, number)
            for number, row in enumerate(rows)
        ],
        ", ".join(
            [f"{c} string" for c in ds.header]
            + [f"{MALFORMED} string", f"{SOURCE_FILE} string", f"{BLOCK_START} long"]
            + [f"{BLOCK_ROW} long"]
        ),
    )
    return with_row_numbers(parse(read, ds))


# The valid dimension rows the rentals below are checked against.
def valid_dimensions(spark: SparkSession) -> dict[str, DataFrame]:
    return {
        "vehicles": spark.createDataFrame(
            [("v1", "basic"), ("v2", "premium")], "vehicle_id string, vehicle_type string"
        ),
        "users": spark.createDataFrame(
            [("u1", date(2024, 1, 1), 1), ("u2", date(2024, 3, 1), 0)],
            "user_id string, creation_date date, is_active int",
        ),
        "locations": spark.createDataFrame([(1,), (2,)], "location_id int"),
    }


T10, T12 = "2024-02-01 10:00:00", "2024-02-01 12:00:00"
# (rental row, the rules it breaks), worked out by hand. v1 is basic (10/h), v2 premium (20/h).
RENTALS = [
    (("r1", "u1", "v1", T10, T12, "1", "2", "20.0"), []),
    # 90 minutes is not a whole number of hours
    (("r2", "u1", "v1", T10, "2024-02-01 11:30:00", "1", "2", "15.00"), ["pricing_matches_rate"]),
    # u2 was created 2024-03-01 and is inactive; 2 h of premium cost 40, not 50
    (
        ("r3", "u2", "v2", T10, T12, "1", "2", "50"),
        ["pricing_matches_rate", "rental_not_before_user_creation", "rental_by_active_user"],
    ),
    (("r4", "u1", "v1", T10, T12, "", "2", "20.0"), ["pickup_location_not_null"]),
    (
        ("r5", "u1", "v1", "2024-02-30 10:00:00", T12, "1", "2", "20.0"),
        ["rental_start_time_format"],
    ),
    # rejected, so its wrong price is not counted as a warning
    (("r6", "u2", "v1", T12, T12, "1", "2", "0"), ["rental_end_after_start"]),
    (("r7", "u1", "v1", T10, T12, "1", "2", "-20.0"), ["total_amount_non_negative"]),
    (("r8", "u1", "v1", T10, T12, "1", "2", "1.005"), ["total_amount_format"]),
    (
        ("r1", "u9", "v1", T10, T12, "1", "x", "20.0"),
        ["dropoff_location_format", "rental_id_unique", "user_id_exists"],
    ),
    (
        ("r10", "u1", "v9", T10, T12, "3", "2", "20.0"),
        ["vehicle_id_exists", "pickup_location_exists"],
    ),
    (
        ("", "", "", "", "", "", "", ""),
        [f"{c}_not_null" for c in RENTAL_TRANSACTIONS.header],
    ),
    (("r12", "u1", "v1", T10, "2024-02-01 13:00:00", "1", "2", "30"), []),
]


GOOD_VEHICLE = {
    "active": "1",
    "vehicle_license_number": "5151329",
    "registration_name": "SMITH,JOHN",
    "license_type": "FOR HIRE VEHICLE",
    "expiration_date": "14-09-2024",
    "permit_license_number": "AVGLLXXC",
    "certification_date": "2018-02-23",
    "vehicle_year": "2017",
    "base_telephone_number": "(646)780-0129",
    "base_address": "1515 THIRD STREET",
    "vehicle_id": "v1",
    "last_update_timestamp": "04-06-2024 13:25:00",
    "brand": "Audi",
    "vehicle_type": "basic",
}


def vehicle(**changes: str) -> tuple:
    return tuple({**GOOD_VEHICLE, **changes}[c] for c in VEHICLES.header)


# (vehicle row, the rules it breaks), worked out by hand: the kinds no rental rule has (allowed)
# and format breaks of the types rentals do not have (flag, date, other patterns).
VEHICLE_ROWS = [
    (vehicle(), []),
    (vehicle(vehicle_id="v2", vehicle_type="luxury"), ["vehicle_type_known"]),
    (vehicle(vehicle_id="v3", vehicle_type=""), ["vehicle_type_not_null"]),
    (
        vehicle(vehicle_id="v4", active="2", expiration_date="2024-09-14"),
        ["active_format", "expiration_date_format"],
    ),
    (vehicle(), ["vehicle_id_unique"]),
    (
        vehicle(vehicle_id="v5", vehicle_year="20x7", last_update_timestamp="04-06-2024 25:00:00"),
        ["vehicle_year_format", "last_update_timestamp_format"],
    ),
]


@pytest.mark.parametrize(
    ("ds", "cases"),
    [(RENTAL_TRANSACTIONS, RENTALS), (VEHICLES, VEHICLE_ROWS)],
    ids=["rental_transactions", "vehicles"],
)
def test_the_upload_validator_and_spark_flag_the_same_rows(spark, tmp_path, ds, cases):
    """Both engines check the single-dataset rules: on the same rows, each rule flags the rows
    worked out by hand, in both."""
    path = tmp_path / f"{ds.name}.csv"
    with path.open("w", newline="") as out:
        csv.writer(out).writerows([ds.header, *[row for row, _ in cases]])
    verdict = validate_path(path, dataset=ds.name, reject_threshold=1.0)
    rules = [r for r in ds.rules if r.single_dataset]
    by_hand = {
        r.name: [n for n, (_, broken) in enumerate(cases, 1) if r.name in broken] for r in rules
    }
    # fewer breaks than examples kept: every flagged row is among the examples
    assert verdict.rule_counts == {name: len(rows) for name, rows in by_hand.items()}
    assert {
        name: sorted(n for n, _ in examples) for name, examples in verdict.rule_examples.items()
    } == by_hand
    checked = check_dataset(
        parsed_rows(spark, ds, [row for row, _ in cases]),
        ds,
        keep=(),
        valid=valid_dimensions(spark),
    ).collect()
    assert {
        r.name: sorted(row[ROW_NUMBER] for row in checked if row[violation(r)]) for r in rules
    } == by_hand


def test_every_rule_kind_has_a_hand_worked_case():
    broken = [
        ds.rule(name).kind
        for ds, cases in ((RENTAL_TRANSACTIONS, RENTALS), (VEHICLES, VEHICLE_ROWS))
        for _, names in cases
        for name in names
    ]
    assert set(broken) == set(RuleKind)


@pytest.fixture(scope="module")
def checked_rentals(spark) -> DataFrame:
    return check_dataset(
        parsed_rows(spark, RENTAL_TRANSACTIONS, [row for row, _ in RENTALS]),
        RENTAL_TRANSACTIONS,
        keep={"vehicle_type"},
        keep_raw=True,
        valid=valid_dimensions(spark),
    ).cache()


def test_every_rule_is_flagged_on_the_rows_that_break_it(checked_rentals):
    found = checked_rentals.orderBy(ROW_NUMBER).collect()
    assert [[r.name for r in RENTAL_TRANSACTIONS.rules if row[violation(r)]] for row in found] == [
        sorted(broken, key=[r.name for r in RENTAL_TRANSACTIONS.rules].index)
        for _, broken in RENTALS
    ]
    warn_only = {"pricing_matches_rate", "rental_not_before_user_creation", "rental_by_active_user"}
    assert [row[REJECTED] for row in found] == [
        not set(broken) <= warn_only for _, broken in RENTALS
    ]
    assert [row["vehicle_type"] for row in found][:3] == ["basic", "basic", "premium"]


def test_rejects_keep_the_text_and_name_every_broken_rule(checked_rentals):
    rejects = rental_rejects(checked_rentals).orderBy("row_number").collect()
    assert [(r["row_number"], r["rental_id"], r["reject_reason"]) for r in rejects] == [
        (4, "r4", "pickup_location_not_null"),
        (5, "r5", "rental_start_time_format"),
        (6, "r6", "rental_end_after_start"),
        (7, "r7", "total_amount_non_negative"),
        (8, "r8", "total_amount_format"),
        (9, "r1", "dropoff_location_format;rental_id_unique;user_id_exists"),
        (10, "r10", "vehicle_id_exists;pickup_location_exists"),
        (11, None, ";".join(f"{c}_not_null" for c in RENTAL_TRANSACTIONS.header)),
    ]
    assert rejects[1]["rental_start_time"] == "2024-02-30 10:00:00"
    assert rejects[4]["total_amount"] == "1.005"
    assert {r["source_file"] for r in rejects} == {"file:/batch/rentals.csv"}


def test_rules_that_read_other_datasets_name_what_they_need():
    assert referenced_columns(DATASETS.values()) == {
        "users": {"user_id", "creation_date", "is_active"},
        "vehicles": {"vehicle_id", "vehicle_type"},
        "locations": {"location_id"},
    }


def test_data_quality_counts_every_rule_of_the_dataset(spark):
    locations = DATASETS["locations"]
    place = "Branch,1 Main St,Modesto,CA,94540"
    rows = [
        f"1,{place},1.5,2.5",
        f"1,{place},1.5,2.5",  # location_id_unique
        f"x,{place},1.5,2.5",  # location_id_format
        f",{place},1.5,2.5",  # location_id_not_null
        f"2,{place},north,2.5",  # latitude_format (a warning: the row is kept)
        f"y,{place},north,south",  # rejected, so its warnings do not count
    ]
    checked = check_dataset(
        parsed_rows(spark, locations, [tuple(r.split(",")) for r in rows]), locations, keep=()
    )
    assert [tuple(r) for r in data_quality({"locations": checked}).collect()] == [
        ("locations", "location_id_not_null", "reject", 1),
        ("locations", "location_id_format", "reject", 2),
        ("locations", "latitude_format", "warn", 1),
        ("locations", "longitude_format", "warn", 0),
        ("locations", "location_id_unique", "reject", 1),
    ]
    assert sorted(r["location_id"] for r in checked.filter(~F.col(REJECTED)).collect()) == [1, 2]
