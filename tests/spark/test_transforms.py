"""The KPI transforms on five hand-built valid rentals; every expected number is worked out by
hand in the comments (averages and hours rounded half up to 6 decimals)."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal

import pytest
from pyspark.sql import DataFrame

from carrental.spark import transforms

pytestmark = pytest.mark.spark

D = Decimal


@pytest.fixture(scope="module")
def rentals(spark) -> DataFrame:
    """The shape of transforms.valid_rentals."""
    return spark.createDataFrame(
        [
            # user, vehicle, start, pickup, amount, type, seconds
            ("u1", "v1", datetime(2024, 1, 1, 8), 10, D("10.00"), "basic", 3600),  # A: 1 h
            ("u1", "v2", datetime(2024, 1, 1, 20), 10, D("10.01"), "basic", 1200),  # B: 20 min
            ("u2", "v1", datetime(2024, 1, 2, 9), 20, D("10.01"), "basic", 5400),  # C: 1.5 h
            ("u3", "v3", datetime(2024, 1, 2, 10), 10, D("100.00"), "premium", 18000),  # D: 5 h
            ("u4", "v3", datetime(2024, 1, 3, 0), 20, D("100.00"), "premium", 7200),  # E: 2 h
        ],
        "user_id string, vehicle_id string, rental_start_time timestamp_ntz, "
        "pickup_location int, total_amount decimal(12,2), vehicle_type string, "
        "rental_seconds long",
    )


def aggregates_of(rentals: DataFrame) -> DataFrame:
    """The aggregates a job computes from one batch's valid rentals: every table reads them."""
    return transforms.merge_aggregates(transforms.rental_aggregates(rentals))


@pytest.fixture(scope="module")
def aggregates(rentals) -> DataFrame:
    return aggregates_of(rentals)


def rows(frame: DataFrame) -> list[tuple]:
    return sorted(tuple(r) for r in frame.collect())


def test_location_performance(spark, aggregates):
    locations = spark.createDataFrame(
        [
            (10, "Bean, LLC", "Fontana", "CA"),
            (20, "Hill Inc", "Oakland", "CA"),
            (30, "Idle", "X", "CA"),
        ],
        "location_id int, location_name string, city string, state string",
    )
    assert rows(transforms.location_performance_of(aggregates, locations)) == [
        # A, B, D: 120.01 / 3 = 40.003333…; 22800 s = 6.333333… h, / 3 = 2.111111… h
        (
            10,
            "Bean, LLC",
            "Fontana",
            "CA",
            3,
            D("120.01"),
            D("40.003333"),
            D("10.00"),
            D("100.00"),
            3,
            2,
            D("6.333333"),
            D("2.111111"),
        ),
        # C, E: 110.01 / 2 = 55.005; 12600 s = 3.5 h
        (
            20,
            "Hill Inc",
            "Oakland",
            "CA",
            2,
            D("110.01"),
            D("55.005"),
            D("10.01"),
            D("100.00"),
            2,
            2,
            D("3.5"),
            D("1.75"),
        ),
    ]


def test_vehicle_type_performance(aggregates):
    assert rows(transforms.vehicle_type_performance_of(aggregates)) == [
        # A, B, C: 30.02 / 3 = 10.006666… -> 10.006667; 10200 s = 2.833333… h; / 3 = 0.944444… h
        (
            "basic",
            3,
            D("30.02"),
            D("10.006667"),
            D("10.00"),
            D("10.01"),
            2,
            D("2.833333"),
            D("0.944444"),
        ),
        ("premium", 2, D("200.00"), D("100"), D("100.00"), D("100.00"), 1, D("7"), D("3.5")),
    ]


def test_location_vehicle_type_performance(aggregates):
    assert rows(transforms.location_vehicle_type_performance_of(aggregates)) == [
        (10, "basic", 2, D("20.01"), D("0.666667")),  # (3600 + 1200) / 2 s = 2/3 h
        (10, "premium", 1, D("100.00"), D("5")),
        (20, "basic", 1, D("10.01"), D("1.5")),
        (20, "premium", 1, D("100.00"), D("2")),
    ]


def test_user_metrics_rank_spenders_with_ties_broken_by_user_id(spark, aggregates):
    users = spark.createDataFrame(
        [
            ("u1", "Lisa", "Parker", "l@x"),
            ("u2", "Andrew", "Mcclain", "a@x"),
            ("u3", "Maria", "Garcia", "m@x"),
            ("u4", "James", "Smith", "j@x"),
            ("u5", "No", "Rentals", "n@x"),
        ],
        "user_id string, first_name string, last_name string, email string",
    )
    a, b = datetime(2024, 1, 1, 8), datetime(2024, 1, 1, 20)
    c, d, e = datetime(2024, 1, 2, 9), datetime(2024, 1, 2, 10), datetime(2024, 1, 3, 0)
    assert rows(transforms.user_metrics_of(aggregates, users)) == [
        # u1: 20.01, 2 rentals; 4800 s = 1.333333… h; u3 and u4 tie at 100.00: u3 ranks first
        (
            "u1",
            "Lisa",
            "Parker",
            "l@x",
            2,
            D("20.01"),
            D("10.005"),
            D("10.00"),
            D("10.01"),
            D("1.333333"),
            D("0.666667"),
            a,
            b,
            3,
        ),
        (
            "u2",
            "Andrew",
            "Mcclain",
            "a@x",
            1,
            D("10.01"),
            D("10.01"),
            D("10.01"),
            D("10.01"),
            D("1.5"),
            D("1.5"),
            c,
            c,
            4,
        ),
        (
            "u3",
            "Maria",
            "Garcia",
            "m@x",
            1,
            D("100"),
            D("100"),
            D("100"),
            D("100"),
            D("5"),
            D("5"),
            d,
            d,
            1,
        ),
        (
            "u4",
            "James",
            "Smith",
            "j@x",
            1,
            D("100"),
            D("100"),
            D("100"),
            D("100"),
            D("2"),
            D("2"),
            e,
            e,
            2,
        ),
    ]


def test_daily_metrics(aggregates):
    assert rows(transforms.daily_metrics_of(aggregates)) == [
        (date(2024, 1, 1), 2, D("20.01"), D("10.005"), D("10.00"), D("10.01"), 1, 2),
        (date(2024, 1, 2), 2, D("110.01"), D("55.005"), D("10.01"), D("100.00"), 2, 2),
        (date(2024, 1, 3), 1, D("100.00"), D("100"), D("100.00"), D("100.00"), 1, 1),
    ]


def test_business_summary(aggregates):
    # 230.02 / 5 = 46.004; 35400 s / (5 x 3600) = 1.966666… h
    assert rows(transforms.business_summary_of(aggregates)) == [
        (D("230.02"), 5, 4, 3, D("46.004"), D("1.966667"), date(2024, 1, 1), date(2024, 1, 3))
    ]


def test_business_summary_of_no_valid_rentals_is_one_row_of_zeros(rentals):
    assert rows(transforms.business_summary_of(aggregates_of(rentals.limit(0)))) == [
        (D("0.00"), 0, 0, 0, None, None, None, None)
    ]
