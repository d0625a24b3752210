"""Report shaping: the local (DuckDB) and cloud (Athena/awswrangler) paths write the same bytes."""

from datetime import date, datetime
from decimal import Decimal

import pandas as pd
import pytest

from carrental.report import shape_report


def test_engines_types_give_identical_csv():
    from_duckdb = pd.DataFrame(
        {
            "rental_date": [date(2024, 1, 1)],
            "rental_count": [3],
            "total_revenue": [1250.5],
            "avg_rental_hours": [13.3333333],
            "first_rental_start": [datetime(2024, 1, 1, 8, 5)],
        }
    )
    from_athena = pd.DataFrame(
        {
            "rental_date": ["2024-01-01"],
            "rental_count": [Decimal(3)],
            "total_revenue": [Decimal("1250.50")],
            "avg_rental_hours": [Decimal("13.333333")],
            "first_rental_start": ["2024-01-01 08:05:00"],
        }
    )
    local = shape_report("daily_revenue.csv", from_duckdb).to_csv(index=False)
    cloud = shape_report("daily_revenue.csv", from_athena).to_csv(index=False)
    assert local == cloud
    assert local.splitlines()[1] == "2024-01-01,3,1250.50,13.33,2024-01-01 08:05:00"


def test_money_rounds_half_up_and_nulls_are_empty():
    frame = pd.DataFrame({"total_spent": [Decimal("0.125"), None], "user_id": ["0012345678", None]})
    shaped = shape_report("top_users.csv", frame)
    assert shaped.to_dict("list") == {"total_spent": ["0.13", ""], "user_id": ["0012345678", ""]}


def test_unknown_report_is_an_error():
    with pytest.raises(KeyError, match=r"known: summary\.csv"):
        shape_report("nope.csv", pd.DataFrame())
