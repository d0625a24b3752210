"""Synthetic batches shaped like the real lab data, with its traps, at any scale.

Randomness comes from numpy (one seeded stream per dataset); DuckDB formats the columns and
writes the CSVs (quoting only where needed, like the lab files). Same seed and arguments give
byte-identical files. ``--dirty-rate`` corrupts a fraction of the rental rows and writes
``defects.json``, the ground truth that validation and Spark tests check against.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from carrental.contracts import DATASETS, HOURLY_RATES, RENTAL_TRANSACTIONS

# Sizes of the lab data, i.e. --scale 1.
LAB_LOCATIONS = 300
LAB_USERS = 30_000
LAB_VEHICLES = 109_584
LAB_RENTALS = 20_080
# Dimensions grow with the square root of the scale above 1 (a business with 500x the rentals
# does not have 500x the branches) and linearly below it, so small samples stay small.
DIMENSION_GROWTH = 0.5
# Average CSV bytes per row (measured on generated batches at --scale 1 and 20), for the size
# estimate `carrental generate` shows before writing a large batch.
BYTES_PER_ROW = {"locations": 87, "users": 98, "vehicles": 185, "rental_transactions": 91}
# Peak RSS measured: 276 MB at --scale 1 (34 MB written), 1.22 GB at --scale 100 (415 MB).
BASE_MEMORY = 250e6
MEMORY_PER_OUTPUT_BYTE = 2.5
MAX_DIRTY_RATE = 0.5

EPOCH_2024 = np.datetime64("2024-01-01T00:00:00", "s").astype(np.int64)
RENTAL_DAYS = 152  # 2024-01-01 .. 2024-05-31, as in the lab data
MAX_RENTAL_HOURS = 72
ID_SPACE = 16**10  # 10 hex characters

BRAND_TYPES = {
    "Nissan": "basic",
    "Toyota": "basic",
    "Chevrolet": "basic",
    "Audi": "basic",
    "Mercedes-Benz": "premium",
    "Tesla": "premium",
    "BMW": "premium",
    "Cadillac": "premium",
    "Porsche": "high_end",
    "Ferrari": "high_end",
    "Bentley": "high_end",
    "Lamborghini": "high_end",
}
REGISTRATION_NAMES = [
    "YAQOOB,SAAD",
    "\\HERPA, CHHIRING",
    "NARZIEV,LAZIZJON",
    "CITY,LIVERY,LEASING,QUEENS,INC",
    "SMITH,JOHN",
    "RIGO,LIMO-AUTO,CORP",
]
FIRST_NAMES = [
    "Lisa",
    "Courtney",
    "Andrew",
    "Michael",
    "Jennifer",
    "David",
    "Sarah",
    "James",
    "Maria",
    "Robert",
    "Linda",
    "William",
    "Patricia",
    "Richard",
    "Barbara",
    "Joseph",
    "Susan",
    "Thomas",
    "Jessica",
    "Charles",
    "Karen",
    "Daniel",
    "Nancy",
    "Matthew",
    "Betty",
    "Anthony",
    "Margaret",
    "Mark",
    "Sandra",
    "Donald",
    "Ashley",
    "Steven",
    "Kimberly",
    "Paul",
    "Emily",
    "Joshua",
    "Donna",
    "Kenneth",
    "Michelle",
    "Kevin",
    "Carol",
    "Brian",
    "Amanda",
    "George",
    "Melissa",
    "Timothy",
    "Deborah",
    "Ronald",
    "Stephanie",
    "Jason",
    "Rebecca",
    "Edward",
    "Sharon",
    "Jeffrey",
    "Laura",
    "Ryan",
    "Cynthia",
    "Jacob",
    "Kathleen",
    "Gary",
    "Amy",
    "Nicholas",
]
LAST_NAMES = [
    "Parker",
    "Martin",
    "Mcclain",
    "Smith",
    "Johnson",
    "Williams",
    "Brown",
    "Jones",
    "Garcia",
    "Miller",
    "Davis",
    "Rodriguez",
    "Martinez",
    "Hernandez",
    "Lopez",
    "Gonzales",
    "Wilson",
    "Anderson",
    "Thomas",
    "Taylor",
    "Moore",
    "Jackson",
    "Lee",
    "Perez",
    "Thompson",
    "White",
    "Harris",
    "Sanchez",
    "Clark",
    "Ramirez",
    "Lewis",
    "Robinson",
    "Walker",
    "Young",
    "Allen",
    "King",
    "Wright",
    "Scott",
    "Torres",
    "Nguyen",
    "Hill",
    "Flores",
    "Green",
    "Adams",
    "Nelson",
    "Baker",
    "Hall",
    "Rivera",
    "Campbell",
    "Mitchell",
    "Carter",
    "Roberts",
    "Velazquez",
    "Bean",
    "Gilbert",
    "Simmons",
    "Griffin",
    "Huff",
    "Acosta",
    "Mclean",
    "Rice",
    "Tucker",
    "Moyer",
    "Hubbard",
    "Heath",
    "Patrick",
    "Lewis",
    "Ortiz",
    "Morgan",
    "Cooper",
    "Peterson",
    "Bailey",
    "Reed",
    "Kelly",
    "Howard",
]
CITIES = [
    "Modesto",
    "Fontana",
    "Roseville",
    "Oakland",
    "San Francisco",
    "Chula Vista",
    "Oceanside",
    "Elk Grove",
    "Los Angeles",
    "San Diego",
    "San Jose",
    "Fresno",
    "Sacramento",
    "Long Beach",
    "Bakersfield",
    "Anaheim",
    "Santa Ana",
    "Riverside",
    "Stockton",
    "Irvine",
    "Fremont",
    "San Bernardino",
    "Glendale",
    "Huntington Beach",
    "Santa Clarita",
    "Garden Grove",
    "Ontario",
    "Rancho Cucamonga",
    "Santa Rosa",
    "Corona",
    "Lancaster",
    "Palmdale",
    "Salinas",
    "Hayward",
    "Pomona",
    "Escondido",
    "Sunnyvale",
    "Torrance",
    "Pasadena",
    "Orange",
    "Fullerton",
    "Visalia",
    "Thousand Oaks",
    "Simi Valley",
    "Concord",
    "Roseville",
    "Santa Clara",
    "Vallejo",
    "Berkeley",
]
STREET_SUFFIXES = [
    "Radial",
    "Isle",
    "Locks",
    "Street",
    "Avenue",
    "Road",
    "Lane",
    "Way",
    "Court",
    "Drive",
    "Plaza",
    "Heights",
]
EMAIL_DOMAINS = ["gmail.com", "yahoo.com", "hotmail.com"]
PHONE_FORMATS = [
    "{a}.{b}.{c}x{x}",
    "{a}-{b}-{c}x{x}",
    "+1-{a}-{b}-{c}",
    "001-{a}-{b}-{c}",
    "{a}.{b}.{c}",
    "{a}{b}{c}",
    "({a}){b}-{c}x{x}",
    "({a}){b}-{c}",
]

# Each injected defect breaks exactly one contract rule of rental_transactions.
BAD_TIMESTAMPS = ["2024-13-01 08:00:00", "15/01/2024 08:00:00", "unknown", "2024-02-01 25:00:00"]
DEFECT_RULES = (
    "rental_start_time_format",
    "rental_end_time_format",
    "rental_end_after_start",
    "total_amount_non_negative",
    "user_id_exists",
    "vehicle_id_exists",
    "pickup_location_exists",
    "dropoff_location_exists",
    "rental_id_unique",
    "rental_id_not_null",
    "user_id_not_null",
    "vehicle_id_not_null",
    "pickup_location_not_null",
)


@dataclass(frozen=True)
class Sizes:
    locations: int
    users: int
    vehicles: int
    rentals: int

    @classmethod
    def for_scale(cls, scale: float) -> Sizes:
        check_scale(scale)
        rows = expected_rows(scale)
        return cls(
            locations=max(2, round(rows["locations"])),
            users=max(1, round(rows["users"])),
            vehicles=max(1, round(rows["vehicles"])),
            rentals=max(1, round(rows["rental_transactions"])),
        )


def check_scale(scale: float) -> float:
    if not math.isfinite(scale) or scale <= 0:
        raise ValueError(f"scale must be a finite number > 0, got {scale:g}")
    return scale


def expected_rows(scale: float) -> dict[str, float]:
    """Rows per dataset at `scale`, unrounded (floats: an absurd scale stays representable)."""
    dim = scale if scale < 1 else scale**DIMENSION_GROWTH
    return {
        "locations": LAB_LOCATIONS * dim,
        "users": LAB_USERS * dim,
        "vehicles": LAB_VEHICLES * dim,
        "rental_transactions": LAB_RENTALS * scale,
    }


def estimated_bytes(scale: float) -> float:
    """About how many bytes `generate` writes at `scale` (within a few %: defects.json aside)."""
    return sum(rows * BYTES_PER_ROW[name] for name, rows in expected_rows(scale).items())


def estimated_memory(scale: float) -> float:
    """About the peak memory of `generate` at `scale`: it holds the whole batch in memory."""
    return BASE_MEMORY + MEMORY_PER_OUTPUT_BYTE * estimated_bytes(scale)


def _hex_ids(rng: np.random.Generator, n: int, exclude: np.ndarray | None = None) -> np.ndarray:
    """n distinct 40-bit ids (10 hex chars), with the lab data's traps guaranteed present:
    leading zeros, all-digit ids and ids shaped like 12345e6789 (a float to a careless reader)."""
    ids = np.empty(0, dtype=np.int64)
    while len(ids) < n:
        draw = np.concatenate([ids, rng.integers(0, ID_SPACE, size=n - len(ids) + 16)])
        _, first = np.unique(draw, return_index=True)
        ids = draw[np.sort(first)]
        if exclude is not None:
            ids = ids[~np.isin(ids, exclude)]
    ids = ids[:n]
    traps = min(n // 50, 3)
    if traps:
        slots = rng.choice(n, size=3 * traps, replace=False)
        digits = rng.integers(0, 10, size=(3 * traps, 10))
        digits[:traps, 0] = 0  # all digits with a leading zero
        digits[traps : 2 * traps, 0] = rng.integers(1, 10, size=traps)  # all digits
        digits[2 * traps :, 0] = rng.integers(1, 10, size=traps)
        digits[2 * traps :, 5] = 0xE  # 12345e6789
        trap_ids = (digits << np.arange(36, -1, -4)).sum(axis=1)
        taken = np.isin(trap_ids, ids) | (
            np.isin(trap_ids, exclude) if exclude is not None else False
        )
        ids[slots[~taken]] = trap_ids[~taken]
    return ids


def hex_strings(ids: np.ndarray) -> pa.Array:
    nibbles = ((ids[:, None] >> np.arange(36, -1, -4)) & 0xF).astype(np.uint8)
    chars = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)[nibbles]
    return pa.array(np.ascontiguousarray(chars).view("S10").ravel()).cast(pa.string())


def _pick(rng: np.random.Generator, options: list[str], n: int) -> pa.Array:
    return pa.DictionaryArray.from_arrays(
        pa.array(rng.integers(0, len(options), size=n), pa.int32()), pa.array(options)
    ).cast(pa.string())


def _write_csv(con: duckdb.DuckDBPyConnection, select_sql: str, path: Path, dataset: str) -> None:
    # The query's column list is checked against the contract, so headers cannot drift.
    header = tuple(d[0] for d in con.execute(f"DESCRIBE {select_sql}").fetchall())
    expected = DATASETS[dataset].header
    if header != expected:
        raise AssertionError(f"{dataset}: generated header {header} != contract {expected}")
    con.execute(f"COPY ({select_sql}) TO '{path}' (FORMAT csv, HEADER)")


def _dates(rng: np.random.Generator, start: str, end: str, n: int) -> np.ndarray:
    lo = np.datetime64(start, "D").astype(np.int64)
    hi = np.datetime64(end, "D").astype(np.int64)
    return (rng.integers(lo, hi + 1, size=n) * 86_400).astype("datetime64[s]")


def _locations(rng: np.random.Generator, n: int) -> pa.Table:
    id_range = max(9_000, n * 30)
    ids = rng.choice(id_range, size=n, replace=False) + 1_000
    a, b, c = (rng.integers(0, len(LAST_NAMES), size=n) for _ in range(3))
    shape = rng.integers(0, 4, size=n)
    names = []
    for i in range(n):  # a few thousand rows at most: a loop is fine here
        x, y, z = LAST_NAMES[a[i]], LAST_NAMES[b[i]], LAST_NAMES[c[i]]
        names.append((f"{x}, {y} and {z}", f"{x} LLC", f"{x}-{y}", f"{x} Inc")[shape[i]])
    street = [
        f"{rng.integers(1, 99_999)} {LAST_NAMES[rng.integers(len(LAST_NAMES))]} "
        f"{STREET_SUFFIXES[rng.integers(len(STREET_SUFFIXES))]}"
        + ("", f" Apt. {rng.integers(1, 999)}", f" Suite {rng.integers(1, 999)}")[
            rng.integers(0, 3)
        ]
        for _ in range(n)
    ]
    return pa.table(
        {
            "location_id": pa.array(ids, pa.int32()),
            "location_name": pa.array(names),
            "address": pa.array(street),
            "city": _pick(rng, CITIES, n),
            "state": pa.array(["CA"] * n),
            "zip_code": pa.array(rng.integers(90_001, 96_162, size=n)),
            "latitude": pa.array(rng.uniform(-90, 90, size=n)),
            "longitude": pa.array(rng.uniform(-180, 180, size=n)),
        }
    )


def _users(rng: np.random.Generator, ids: np.ndarray) -> pa.Table:
    n = len(ids)
    phone = rng.integers(0, 1000, size=(n, 3))
    phone_fmt = rng.integers(0, len(PHONE_FORMATS), size=n)
    phones = [
        PHONE_FORMATS[f].format(
            a=f"{p[0]:03d}", b=f"{p[1]:03d}", c=f"{p[2]:03d}{p[0] % 10}", x=p[1]
        )
        for f, p in zip(phone_fmt.tolist(), phone.tolist(), strict=True)
    ]
    letters = np.frombuffer(b"ABCDEFGHIJKLMNOPQRSTUVWXYZ", dtype=np.uint8)
    licence_prefix = letters[rng.integers(0, 26, size=(n, 2))].view("S2").ravel()
    return pa.table(
        {
            "user_id": hex_strings(ids),
            "first_name": _pick(rng, FIRST_NAMES, n),
            "last_name": _pick(rng, LAST_NAMES, n),
            "email_domain": _pick(rng, EMAIL_DOMAINS, n),
            "phone_number": pa.array(phones),
            "licence_prefix": pa.array(licence_prefix).cast(pa.string()),
            "licence_digits": pa.array(rng.integers(0, 1_000_000, size=n)),
            "driver_license_expiry": pa.array(_dates(rng, "2024-06-04", "2034-06-03", n)),
            "creation_date": pa.array(_dates(rng, "2024-01-01", "2024-05-30", n)),
            "is_active": pa.array((rng.random(n) < 0.8).astype(np.int8)),
        }
    )


def _vehicles(rng: np.random.Generator, ids: np.ndarray, brand_idx: np.ndarray) -> pa.Table:
    n = len(ids)
    brands = list(BRAND_TYPES)
    numeric_licence = rng.integers(5_000_000, 6_000_000, size=n)
    v_licence = rng.random(n) < 0.01
    letters = np.frombuffer(b"ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789", dtype=np.uint8)
    permits = letters[rng.integers(0, len(letters), size=(n, 8))].view("S8").ravel()
    return pa.table(
        {
            "active": pa.array((rng.random(n) < 0.9).astype(np.int8)),
            "licence_number": pa.array(numeric_licence),
            "v_licence": pa.array(v_licence),
            "v_licence_number": pa.array(rng.integers(10_000, 100_000, size=n)),
            "registration_name": _pick(rng, REGISTRATION_NAMES, n),
            "expiration_date": pa.array(_dates(rng, "2024-06-04", "2026-05-05", n)),
            "permit_license_number": pa.array(permits).cast(pa.string()),
            "certification_date": pa.array(_dates(rng, "2000-01-01", "2033-03-20", n)),
            "vehicle_year": pa.array(rng.integers(1949, 2026, size=n)),
            "vehicle_id": hex_strings(ids),
            "brand": pa.DictionaryArray.from_arrays(
                pa.array(brand_idx, pa.int32()), pa.array(brands)
            ).cast(pa.string()),
            "vehicle_type": pa.DictionaryArray.from_arrays(
                pa.array(brand_idx, pa.int32()), pa.array([BRAND_TYPES[b] for b in brands])
            ).cast(pa.string()),
        }
    )


@dataclass
class _Rentals:
    rental_id: np.ndarray
    user_idx: np.ndarray
    vehicle_idx: np.ndarray
    start: np.ndarray  # epoch seconds
    hours: np.ndarray
    pickup_idx: np.ndarray
    dropoff_idx: np.ndarray


def _rentals(rng: np.random.Generator, sizes: Sizes) -> _Rentals:
    n = sizes.rentals
    pickup = rng.integers(0, sizes.locations, size=n)
    return _Rentals(
        rental_id=_hex_ids(rng, n),
        user_idx=rng.integers(0, sizes.users, size=n),
        vehicle_idx=rng.integers(0, sizes.vehicles, size=n),
        start=EPOCH_2024 + rng.integers(0, RENTAL_DAYS * 1440, size=n) * 60,
        hours=rng.integers(1, MAX_RENTAL_HOURS + 1, size=n),
        pickup_idx=pickup,
        # never the pickup branch, as in the lab data
        dropoff_idx=(pickup + rng.integers(1, sizes.locations, size=n)) % sizes.locations,
    )


def generate(
    out: Path, *, scale: float = 1.0, seed: int = 42, dirty_rate: float = 0.0
) -> dict[str, int]:
    """Write the four CSVs (and defects.json when dirty_rate > 0) to `out`; return row counts."""
    if not 0 <= dirty_rate <= MAX_DIRTY_RATE:
        raise ValueError(f"dirty_rate must be between 0 and {MAX_DIRTY_RATE}, got {dirty_rate:g}")
    sizes = Sizes.for_scale(scale)
    out.mkdir(parents=True, exist_ok=True)
    streams = [np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(5)]
    loc_rng, user_rng, vehicle_rng, rental_rng, defect_rng = streams

    locations = _locations(loc_rng, sizes.locations)
    user_ids_int = _hex_ids(user_rng, sizes.users)
    users = _users(user_rng, user_ids_int)
    vehicle_ids_int = _hex_ids(vehicle_rng, sizes.vehicles)
    brand_idx = vehicle_rng.integers(0, len(BRAND_TYPES), size=sizes.vehicles)
    vehicles = _vehicles(vehicle_rng, vehicle_ids_int, brand_idx)
    rentals = _rentals(rental_rng, sizes)

    brand_rate = np.array([float(HOURLY_RATES[t]) for t in BRAND_TYPES.values()])
    vehicle_rate = brand_rate[brand_idx]
    location_ids = locations["location_id"].to_numpy()

    rental_table = {
        "rental_id": rentals.rental_id,
        "user_id": user_ids_int[rentals.user_idx],
        "vehicle_id": vehicle_ids_int[rentals.vehicle_idx],
        "start": rentals.start,
        "end": rentals.start + rentals.hours * 3600,
        "pickup_location": location_ids[rentals.pickup_idx],
        "dropoff_location": location_ids[rentals.dropoff_idx],
        "total_amount": rentals.hours * vehicle_rate[rentals.vehicle_idx],
    }
    overrides: dict[str, np.ndarray] = {}
    defects: list[dict] = []
    if dirty_rate > 0:
        defects = _inject_defects(
            defect_rng,
            rental_table,
            overrides,
            dirty_rate,
            known={
                "user_id": user_ids_int,
                "vehicle_id": vehicle_ids_int,
                "location": location_ids,
            },
        )

    con = duckdb.connect()
    con.execute("SET threads TO 2")
    con.execute("SET enable_progress_bar = false")
    con.register("locations_src", locations)
    con.register("users_src", users)
    con.register("vehicles_src", vehicles)
    con.register("rentals_src", _rental_arrow(rental_table, overrides))

    _write_csv(
        con,
        "SELECT location_id, location_name, address, city, state, "
        "CAST(zip_code AS VARCHAR) AS zip_code, "
        "CAST(printf('%.6f', latitude) AS VARCHAR) AS latitude, "
        "CAST(printf('%.6f', longitude) AS VARCHAR) AS longitude FROM locations_src",
        out / "locations.csv",
        "locations",
    )
    _write_csv(
        con,
        "SELECT user_id, first_name, last_name, "
        "lower(first_name || '.' || last_name || '@' || email_domain) AS email, phone_number, "
        "licence_prefix || lpad(CAST(licence_digits AS VARCHAR), 6, '0') AS driver_license_number,"
        " strftime(driver_license_expiry, '%Y-%m-%d') AS driver_license_expiry, "
        "strftime(creation_date, '%Y-%m-%d') AS creation_date, is_active FROM users_src",
        out / "users.csv",
        "users",
    )
    _write_csv(
        con,
        "SELECT active, CASE WHEN v_licence THEN 'V' || CAST(v_licence_number AS VARCHAR) "
        "ELSE CAST(licence_number AS VARCHAR) END AS vehicle_license_number, registration_name, "
        "'FOR HIRE VEHICLE' AS license_type, "
        "strftime(expiration_date, '%d-%m-%Y') AS expiration_date, permit_license_number, "
        "strftime(certification_date, '%Y-%m-%d') AS certification_date, vehicle_year, "
        "'(646)780-0129' AS base_telephone_number, "
        "'1515 THIRD STREET SAN FRANCISCO CA 94158' AS base_address, vehicle_id, "
        "'04-06-2024 13:25:00' AS last_update_timestamp, brand, vehicle_type FROM vehicles_src",
        out / "vehicles.csv",
        "vehicles",
    )
    _write_csv(
        con,
        "SELECT rental_id, user_id, vehicle_id, "
        "coalesce(start_text, strftime(make_timestamp(start * 1000000), '%Y-%m-%d %H:%M:%S'))"
        " AS rental_start_time, "
        "coalesce(end_text, strftime(make_timestamp(\"end\" * 1000000), '%Y-%m-%d %H:%M:%S'))"
        " AS rental_end_time, "
        "pickup_location, dropoff_location, total_amount FROM rentals_src",
        out / "rental_transactions.csv",
        "rental_transactions",
    )
    con.close()

    if dirty_rate > 0:
        ground_truth = {
            "dataset": RENTAL_TRANSACTIONS.name,
            "file": "rental_transactions.csv",
            "row_numbering": "row 1 = the first data row after the header (file line = row + 1)",
            "seed": seed,
            "scale": scale,
            "dirty_rate": dirty_rate,
            "rows": sizes.rentals,
            "defect_count": len(defects),
            "defects": defects,
        }
        (out / "defects.json").write_text(_one_defect_per_line(ground_truth))
    else:
        (out / "defects.json").unlink(missing_ok=True)
    return {
        "locations": sizes.locations,
        "users": sizes.users,
        "vehicles": sizes.vehicles,
        "rental_transactions": sizes.rentals,
        "defects": len(defects),
    }


def _one_defect_per_line(ground_truth: dict) -> str:
    head = json.dumps({k: v for k, v in ground_truth.items() if k != "defects"}, indent=1)
    rows = ",\n".join("  " + json.dumps(d) for d in ground_truth["defects"])
    return head[:-2] + ',\n "defects": [\n' + rows + "\n ]\n}\n"


def _rental_arrow(table: dict[str, np.ndarray], overrides: dict[str, np.ndarray]) -> pa.Table:
    n = len(table["rental_id"])
    cols: dict[str, pa.Array] = {}
    for key in ("rental_id", "user_id", "vehicle_id"):
        arr = hex_strings(table[key])
        if key in overrides:  # emptied keys
            arr = pc.if_else(pa.array(overrides[key]), pa.nulls(n, pa.string()), arr)
        cols[key] = arr
    cols["start"] = pa.array(table["start"])
    cols["end"] = pa.array(table["end"])
    for key in ("start_text", "end_text"):
        cols[key] = pa.array(overrides.get(key, np.full(n, None, dtype=object)), pa.string())
    pickup = pa.array(table["pickup_location"], pa.int64())
    if "pickup_location" in overrides:
        pickup = pc.if_else(pa.array(overrides["pickup_location"]), pa.nulls(n, pa.int64()), pickup)
    cols["pickup_location"] = pickup
    cols["dropoff_location"] = pa.array(table["dropoff_location"], pa.int64())
    cols["total_amount"] = pa.array(table["total_amount"])
    return pa.table(cols)


def _inject_defects(
    rng: np.random.Generator,
    table: dict[str, np.ndarray],
    overrides: dict[str, np.ndarray],
    dirty_rate: float,
    known: dict[str, np.ndarray],
) -> list[dict]:
    n = len(table["rental_id"])
    count = min(round(n * dirty_rate), n - 1)
    # row 0 stays clean so that every duplicate id can copy an earlier clean row
    rows = np.sort(rng.choice(np.arange(1, n), size=count, replace=False))
    rules = rng.integers(0, len(DEFECT_RULES), size=count)
    dirty = np.zeros(n, dtype=bool)
    dirty[rows] = True
    clean_rows = np.flatnonzero(~dirty)
    start_text = np.full(n, None, dtype=object)
    end_text = np.full(n, None, dtype=object)
    emptied = {
        k: np.zeros(n, dtype=bool)
        for k in ("rental_id", "user_id", "vehicle_id", "pickup_location")
    }
    unknown_users = _hex_ids(rng, count, exclude=known["user_id"])
    unknown_vehicles = _hex_ids(rng, count, exclude=known["vehicle_id"])
    free_location = int(known["location"].max()) + 1
    defects = []
    for i, (row, rule_no) in enumerate(zip(rows.tolist(), rules.tolist(), strict=True)):
        rule = DEFECT_RULES[rule_no]
        column = RENTAL_TRANSACTIONS.rule(rule).columns[
            -1 if rule == "rental_end_after_start" else 0
        ]
        if rule == "rental_start_time_format":
            start_text[row] = BAD_TIMESTAMPS[i % len(BAD_TIMESTAMPS)]
        elif rule == "rental_end_time_format":
            end_text[row] = BAD_TIMESTAMPS[i % len(BAD_TIMESTAMPS)]
        elif rule == "rental_end_after_start":
            table["end"][row] = table["start"][row] - (table["end"][row] - table["start"][row])
        elif rule == "total_amount_non_negative":
            table["total_amount"][row] = -table["total_amount"][row]
        elif rule == "user_id_exists":
            table["user_id"][row] = unknown_users[i]
        elif rule == "vehicle_id_exists":
            table["vehicle_id"][row] = unknown_vehicles[i]
        elif rule == "pickup_location_exists":
            table["pickup_location"][row] = free_location + i
        elif rule == "dropoff_location_exists":
            table["dropoff_location"][row] = free_location + i
        elif rule == "rental_id_unique":
            earlier = clean_rows[: np.searchsorted(clean_rows, row)]
            table["rental_id"][row] = table["rental_id"][earlier[rng.integers(len(earlier))]]
        else:  # <key>_not_null
            emptied[column][row] = True
        defects.append({"row": row + 1, "rule": rule, "column": column})
    overrides["start_text"] = start_text
    overrides["end_text"] = end_text
    overrides.update({k: v for k, v in emptied.items() if v.any()})
    return defects
