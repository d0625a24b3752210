import csv
from decimal import Decimal

import pytest

from carrental.contracts import (
    DATASETS,
    HOURLY_RATES,
    LogicalType,
    Severity,
    dataset,
    spark_schema,
    strptime_format,
    to_markdown,
)

# The headers of the real lab files, copied verbatim: the contract must match them exactly.
LAB_HEADERS = {
    "vehicles": "active,vehicle_license_number,registration_name,license_type,expiration_date,"
    "permit_license_number,certification_date,vehicle_year,base_telephone_number,base_address,"
    "vehicle_id,last_update_timestamp,brand,vehicle_type",
    "locations": "location_id,location_name,address,city,state,zip_code,latitude,longitude",
    "users": "user_id,first_name,last_name,email,phone_number,driver_license_number,"
    "driver_license_expiry,creation_date,is_active",
    "rental_transactions": "rental_id,user_id,vehicle_id,rental_start_time,rental_end_time,"
    "pickup_location,dropoff_location,total_amount",
}


@pytest.mark.parametrize("name", sorted(LAB_HEADERS))
def test_contract_header_is_the_lab_header(name):
    assert ",".join(DATASETS[name].header) == LAB_HEADERS[name]


@pytest.mark.parametrize("name", sorted(LAB_HEADERS))
def test_generated_header_is_the_lab_header(clean_batch, name):
    with open(clean_batch / f"{name}.csv", newline="") as f:
        assert next(csv.reader(f)) == LAB_HEADERS[name].split(",")


def test_primary_keys_and_id_columns_are_strings():
    for name, key in {
        "vehicles": "vehicle_id",
        "users": "user_id",
        "rental_transactions": "rental_id",
    }.items():
        ds = dataset(name)
        assert ds.primary_key == key
        assert ds.column(key).type is LogicalType.STRING
    rentals = dataset("rental_transactions")
    assert rentals.column("user_id").type is LogicalType.STRING
    assert rentals.column("vehicle_id").type is LogicalType.STRING
    assert dataset("vehicles").column("vehicle_license_number").type is LogicalType.STRING
    assert dataset("locations").column("zip_code").type is LogicalType.STRING
    assert rentals.column("total_amount").type is LogicalType.MONEY


def test_vehicles_use_two_date_formats():
    vehicles = dataset("vehicles")
    assert vehicles.column("expiration_date").pattern == "dd-MM-yyyy"
    assert vehicles.column("certification_date").pattern == "yyyy-MM-dd"
    assert vehicles.column("last_update_timestamp").pattern == "dd-MM-yyyy HH:mm:ss"
    assert vehicles.column("expiration_date").strptime == "%d-%m-%Y"
    assert strptime_format("yyyy-MM-dd HH:mm:ss") == "%Y-%m-%d %H:%M:%S"


def test_row_rules_and_severities():
    rentals = dataset("rental_transactions")
    expected = {
        "rental_id_not_null": ("not_null", Severity.REJECT),
        "rental_end_after_start": ("after", Severity.REJECT),
        "total_amount_non_negative": ("min_value", Severity.REJECT),
        "rental_id_unique": ("unique", Severity.REJECT),
        "user_id_exists": ("exists", Severity.REJECT),
        "vehicle_id_exists": ("exists", Severity.REJECT),
        "pickup_location_exists": ("exists", Severity.REJECT),
        "dropoff_location_exists": ("exists", Severity.REJECT),
        "rental_start_time_format": ("format", Severity.REJECT),
        "pricing_matches_rate": ("pricing", Severity.WARN),
        "rental_not_before_user_creation": ("not_before", Severity.WARN),
        "rental_by_active_user": ("referenced_flag", Severity.WARN),
    }
    for name, (kind, severity) in expected.items():
        rule = rentals.rule(name)
        assert (rule.kind, rule.severity) == (kind, severity), name
    known = dataset("vehicles").rule("vehicle_type_known")
    assert known.severity is Severity.REJECT
    assert set(known.values) == {"basic", "premium", "high_end"}
    assert rentals.rule("total_amount_non_negative").minimum == Decimal(0)
    assert HOURLY_RATES == {"basic": 10, "premium": 20, "high_end": 50}


def test_rule_names_are_unique_and_reference_real_columns():
    for ds in DATASETS.values():
        names = [r.name for r in ds.rules]
        assert len(names) == len(set(names)), ds.name
        for rule in ds.rules:
            for column in rule.columns:
                ds.column(column)
            if rule.references:
                ref_ds, ref_col = rule.references
                DATASETS[ref_ds].column(ref_col)


def test_unknown_dataset_names_the_known_ones():
    with pytest.raises(KeyError, match="known: vehicles, locations, users, rental_transactions"):
        dataset("cars")


def test_spark_schema_is_derived_from_the_contract():
    from pyspark.sql import types as st

    schema = spark_schema(dataset("rental_transactions"))
    assert schema.fieldNames() == list(dataset("rental_transactions").header)
    types = {f.name: f.dataType for f in schema.fields}
    assert types["rental_id"] == st.StringType()
    assert types["total_amount"] == st.DecimalType(12, 2)
    assert types["rental_start_time"] == st.TimestampNTZType()
    assert types["pickup_location"] == st.IntegerType()
    raw = spark_schema(dataset("vehicles"), raw=True)
    assert {f.dataType for f in raw.fields} == {st.StringType()}


def test_markdown_documents_every_column_and_rule():
    doc = to_markdown()
    for ds in DATASETS.values():
        assert f"## `{ds.name}`" in doc
        for column in ds.columns:
            assert f"`{column.name}`" in doc
        for rule in ds.rules:
            assert f"`{rule.name}`" in doc
