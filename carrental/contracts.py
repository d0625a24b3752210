"""Dataset contracts: the one source of truth for the four input CSVs.

Everything else is derived from these objects: the upload validator, the Spark schemas, the
generator's headers and the contract documentation (``carrental contracts``). Change a rule
here and every consumer follows.

This module must stay importable on AWS Lambda and EMR Serverless: standard library only at
module level (pyspark is imported inside the one function that needs it).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from enum import StrEnum


class Severity(StrEnum):
    REJECT = "reject"  # the row is kept out of the metrics and written to rental_rejects
    WARN = "warn"  # the row is used; the violation is counted in data_quality


class LogicalType(StrEnum):
    STRING = "string"
    INT = "int"
    FLAG = "flag"  # 0/1 stored as an integer
    DOUBLE = "double"
    MONEY = "money"  # exact decimal, never float
    DATE = "date"
    TIMESTAMP = "timestamp"


MONEY_PRECISION = 12
MONEY_SCALE = 2

# The well-formed text of each numeric type. Both engines apply these (the upload validator
# with Arrow's RE2, the Spark jobs with Java's regex: only syntax both read the same). An INT
# text that matches must also fit in INT_RANGE (32 bits); DATE and TIMESTAMP texts match their
# column's `pattern` instead.
TEXT_PATTERNS: dict[LogicalType, str] = {
    LogicalType.INT: r"^-?[0-9]{1,10}$",
    LogicalType.FLAG: r"^[01]$",
    LogicalType.DOUBLE: r"^-?([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][+-]?[0-9]+)?$",
    LogicalType.MONEY: (
        rf"^-?[0-9]{{1,{MONEY_PRECISION - MONEY_SCALE}}}(\.[0-9]{{1,{MONEY_SCALE}}})?$"
    ),
}
INT_RANGE = (-(2**31), 2**31 - 1)
# A file whose share of rows breaking a reject rule exceeds this is kept out whole: rejected by
# the upload validator, or held back from a run when foreign keys are checked at run time.
DEFAULT_REJECT_THRESHOLD = 0.05

# Pricing of the lab data: total_amount = whole hours x hourly rate of the vehicle_type.
HOURLY_RATES: dict[str, Decimal] = {
    "basic": Decimal(10),
    "premium": Decimal(20),
    "high_end": Decimal(50),
}

# Java/Spark datetime pattern letters -> Python strptime/Arrow directives.
_PATTERN_TO_STRPTIME = (
    ("yyyy", "%Y"),
    ("MM", "%m"),
    ("dd", "%d"),
    ("HH", "%H"),
    ("mm", "%M"),
    ("ss", "%S"),
)


def strptime_format(pattern: str) -> str:
    """Translate a Spark datetime pattern (``dd-MM-yyyy``) to strptime (``%d-%m-%Y``)."""
    out = pattern
    for java, c in _PATTERN_TO_STRPTIME:
        out = out.replace(java, c)
    return out


@dataclass(frozen=True)
class Column:
    name: str
    type: LogicalType
    description: str
    pattern: str | None = None  # Spark datetime pattern for DATE / TIMESTAMP columns
    required: bool = False  # an empty value breaks the `<name>_not_null` rule
    # Severity of a value that does not parse as `type`/`pattern` (rule `<name>_format`).
    format_severity: Severity = Severity.WARN

    @property
    def strptime(self) -> str | None:
        return strptime_format(self.pattern) if self.pattern else None


class RuleKind(StrEnum):
    """How a rule is checked: both engines (the upload validator, the Spark jobs) dispatch on
    it, and KIND_MEANINGS says what a row must satisfy."""

    NOT_NULL = "not_null"
    FORMAT = "format"
    ALLOWED = "allowed"
    MIN_VALUE = "min_value"
    AFTER = "after"
    UNIQUE = "unique"
    EXISTS = "exists"
    PRICING = "pricing"
    NOT_BEFORE = "not_before"
    REFERENCED_FLAG = "referenced_flag"


# `columns`, `references` and `via` below are the Rule's fields.
KIND_MEANINGS: dict[RuleKind, str] = {
    RuleKind.NOT_NULL: "the column is not empty",
    RuleKind.FORMAT: "the value is well formed for the column's type (TEXT_PATTERNS) or pattern",
    RuleKind.ALLOWED: "the value is one of `values`",
    RuleKind.MIN_VALUE: "the value (a number) is at least `minimum`",
    RuleKind.AFTER: "the second column is strictly later than the first (same row)",
    RuleKind.UNIQUE: "the key does not repeat an earlier row's (the first occurrence is kept)",
    RuleKind.EXISTS: "the value is a key of `references` (dataset, key column): a foreign key",
    RuleKind.PRICING: (
        "the amount (first column) equals the whole hours from the second column to the third "
        "x HOURLY_RATES of the class `references` names, read through the foreign key `via`"
    ),
    RuleKind.NOT_BEFORE: (
        "the first column's date is on or after the date `references` names, read through the "
        "foreign key `via`"
    ),
    RuleKind.REFERENCED_FLAG: (
        "the flag `references` names is 1, read through the foreign key `via`"
    ),
}
# Kinds that read one row of one dataset (unique: and the rows before it). Both engines check
# them; the other kinds need another dataset, and only the Spark jobs check those.
SINGLE_DATASET_KINDS = frozenset(
    {
        RuleKind.NOT_NULL,
        RuleKind.FORMAT,
        RuleKind.ALLOWED,
        RuleKind.MIN_VALUE,
        RuleKind.AFTER,
        RuleKind.UNIQUE,
    }
)
CROSS_DATASET_KINDS = frozenset(RuleKind) - SINGLE_DATASET_KINDS
# Cross-dataset kinds that read an attribute of the referenced row through a foreign key.
THROUGH_FOREIGN_KEY_KINDS = CROSS_DATASET_KINDS - {RuleKind.EXISTS}


@dataclass(frozen=True)
class Rule:
    """A row rule of one dataset; `kind` says how it is checked (KIND_MEANINGS).

    `references` is (dataset, column) of another dataset: the key an `exists` rule looks up,
    or the attribute the rules of THROUGH_FOREIGN_KEY_KINDS read from the row that their
    foreign key `via` (a column of this dataset with an `exists` rule) points to. `columns` are
    the columns of this dataset the rule reads, in the order KIND_MEANINGS gives them.
    """

    name: str
    kind: RuleKind
    columns: tuple[str, ...]
    severity: Severity
    description: str
    values: tuple[str, ...] = ()
    minimum: Decimal | None = None
    references: tuple[str, str] | None = None
    via: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "kind", RuleKind(self.kind))
        if (self.references is None) == (self.kind in CROSS_DATASET_KINDS):
            raise ValueError(f"rule {self.name}: only a cross-dataset rule has references")
        if (self.via is None) == (self.kind in THROUGH_FOREIGN_KEY_KINDS):
            raise ValueError(f"rule {self.name}: {self.kind} rules, and only they, need `via`")

    @property
    def single_dataset(self) -> bool:
        return self.kind in SINGLE_DATASET_KINDS


@dataclass(frozen=True)
class Dataset:
    name: str
    description: str
    columns: tuple[Column, ...]
    primary_key: str
    extra_rules: tuple[Rule, ...] = ()
    rules: tuple[Rule, ...] = field(init=False)

    def __post_init__(self) -> None:
        derived: list[Rule] = []
        for col in self.columns:
            if col.required:
                derived.append(
                    Rule(
                        f"{col.name}_not_null",
                        RuleKind.NOT_NULL,
                        (col.name,),
                        Severity.REJECT,
                        f"{col.name} must not be empty",
                    )
                )
            if col.type is not LogicalType.STRING:
                shape = f" in the format {col.pattern}" if col.pattern else ""
                derived.append(
                    Rule(
                        f"{col.name}_format",
                        RuleKind.FORMAT,
                        (col.name,),
                        col.format_severity,
                        f"{col.name} must be a valid {col.type}{shape}",
                    )
                )
        derived.append(
            Rule(
                f"{self.primary_key}_unique",
                RuleKind.UNIQUE,
                (self.primary_key,),
                Severity.REJECT,
                f"{self.primary_key} must not repeat an earlier row's "
                "(the first occurrence is kept)",
            )
        )
        object.__setattr__(self, "rules", tuple(derived) + self.extra_rules)

    @property
    def header(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns)

    def column(self, name: str) -> Column:
        for col in self.columns:
            if col.name == name:
                return col
        raise KeyError(f"{self.name} has no column {name!r}")

    def rule(self, name: str) -> Rule:
        for rule in self.rules:
            if rule.name == name:
                return rule
        raise KeyError(f"{self.name} has no rule {name!r}")


S, T = LogicalType, Severity

VEHICLES = Dataset(
    name="vehicles",
    description="The fleet: one row per vehicle, with its type (which sets the hourly rate).",
    primary_key="vehicle_id",
    columns=(
        Column("active", S.FLAG, "1 if the vehicle is in service, else 0"),
        Column(
            "vehicle_license_number",
            S.STRING,
            "licence number: mostly digits, some like V99905 (a string, never a number)",
        ),
        Column("registration_name", S.STRING, "registered owner; quoted, contains commas"),
        Column("license_type", S.STRING, "licence class, e.g. FOR HIRE VEHICLE"),
        Column("expiration_date", S.DATE, "licence expiry", pattern="dd-MM-yyyy"),
        Column("permit_license_number", S.STRING, "permit number"),
        Column("certification_date", S.DATE, "certification date", pattern="yyyy-MM-dd"),
        Column("vehicle_year", S.INT, "model year"),
        Column("base_telephone_number", S.STRING, "base telephone number"),
        Column("base_address", S.STRING, "base address"),
        Column(
            "vehicle_id",
            S.STRING,
            "10-character hex id (leading zeros, some all digits: a string)",
            required=True,
        ),
        Column(
            "last_update_timestamp",
            S.TIMESTAMP,
            "last update of the record",
            pattern="dd-MM-yyyy HH:mm:ss",
        ),
        Column("brand", S.STRING, "make, e.g. Toyota"),
        Column(
            "vehicle_type",
            S.STRING,
            "pricing class: basic, premium or high_end",
            required=True,
        ),
    ),
    extra_rules=(
        Rule(
            "vehicle_type_known",
            RuleKind.ALLOWED,
            ("vehicle_type",),
            T.REJECT,
            "vehicle_type must be one of basic, premium, high_end",
            values=tuple(HOURLY_RATES),
        ),
    ),
)

LOCATIONS = Dataset(
    name="locations",
    description="Rental branches: one row per location.",
    primary_key="location_id",
    columns=(
        Column(
            "location_id",
            S.INT,
            "location id",
            required=True,
            format_severity=T.REJECT,
        ),
        Column("location_name", S.STRING, "branch name; quoted, may contain commas"),
        Column("address", S.STRING, "street address"),
        Column("city", S.STRING, "city"),
        Column("state", S.STRING, "state code"),
        Column("zip_code", S.STRING, "ZIP code (a string: keeps leading zeros)"),
        Column("latitude", S.DOUBLE, "latitude"),
        Column("longitude", S.DOUBLE, "longitude"),
    ),
)

USERS = Dataset(
    name="users",
    description="Customers: one row per user account.",
    primary_key="user_id",
    columns=(
        Column("user_id", S.STRING, "10-character hex id (a string)", required=True),
        Column("first_name", S.STRING, "first name"),
        Column("last_name", S.STRING, "last name"),
        Column("email", S.STRING, "e-mail address"),
        Column("phone_number", S.STRING, "phone number, free format"),
        Column("driver_license_number", S.STRING, "driver licence number"),
        Column("driver_license_expiry", S.DATE, "driver licence expiry", pattern="yyyy-MM-dd"),
        Column("creation_date", S.DATE, "account creation date", pattern="yyyy-MM-dd"),
        Column("is_active", S.FLAG, "1 if the account is active, else 0"),
    ),
)

RENTAL_TRANSACTIONS = Dataset(
    name="rental_transactions",
    description="Rentals: one row per rental, the fact table of every metric.",
    primary_key="rental_id",
    columns=(
        Column("rental_id", S.STRING, "10-character hex id (a string)", required=True),
        Column("user_id", S.STRING, "renting user (-> users.user_id)", required=True),
        Column("vehicle_id", S.STRING, "rented vehicle (-> vehicles.vehicle_id)", required=True),
        Column(
            "rental_start_time",
            S.TIMESTAMP,
            "pick-up time, wall clock",
            pattern="yyyy-MM-dd HH:mm:ss",
            required=True,
            format_severity=T.REJECT,
        ),
        Column(
            "rental_end_time",
            S.TIMESTAMP,
            "return time, wall clock",
            pattern="yyyy-MM-dd HH:mm:ss",
            required=True,
            format_severity=T.REJECT,
        ),
        Column(
            "pickup_location",
            S.INT,
            "pick-up branch (-> locations.location_id)",
            required=True,
            format_severity=T.REJECT,
        ),
        Column(
            "dropoff_location",
            S.INT,
            "return branch (-> locations.location_id)",
            required=True,
            format_severity=T.REJECT,
        ),
        Column(
            "total_amount",
            S.MONEY,
            "amount charged",
            required=True,
            format_severity=T.REJECT,
        ),
    ),
    extra_rules=(
        Rule(
            "rental_end_after_start",
            RuleKind.AFTER,
            ("rental_start_time", "rental_end_time"),
            T.REJECT,
            "rental_end_time must be later than rental_start_time",
        ),
        Rule(
            "total_amount_non_negative",
            RuleKind.MIN_VALUE,
            ("total_amount",),
            T.REJECT,
            "total_amount must be >= 0",
            minimum=Decimal(0),
        ),
        Rule(
            "user_id_exists",
            RuleKind.EXISTS,
            ("user_id",),
            T.REJECT,
            "user_id must be a user in users.csv",
            references=("users", "user_id"),
        ),
        Rule(
            "vehicle_id_exists",
            RuleKind.EXISTS,
            ("vehicle_id",),
            T.REJECT,
            "vehicle_id must be a vehicle in vehicles.csv",
            references=("vehicles", "vehicle_id"),
        ),
        Rule(
            "pickup_location_exists",
            RuleKind.EXISTS,
            ("pickup_location",),
            T.REJECT,
            "pickup_location must be a location in locations.csv",
            references=("locations", "location_id"),
        ),
        Rule(
            "dropoff_location_exists",
            RuleKind.EXISTS,
            ("dropoff_location",),
            T.REJECT,
            "dropoff_location must be a location in locations.csv",
            references=("locations", "location_id"),
        ),
        Rule(
            "pricing_matches_rate",
            RuleKind.PRICING,
            ("total_amount", "rental_start_time", "rental_end_time", "vehicle_id"),
            T.WARN,
            "total_amount should equal hours x the vehicle_type's hourly rate "
            "(basic 10, premium 20, high_end 50)",
            references=("vehicles", "vehicle_type"),
            via="vehicle_id",
        ),
        Rule(
            "rental_not_before_user_creation",
            RuleKind.NOT_BEFORE,
            ("rental_start_time", "user_id"),
            T.WARN,
            "a rental should not start before the user's creation_date",
            references=("users", "creation_date"),
            via="user_id",
        ),
        Rule(
            "rental_by_active_user",
            RuleKind.REFERENCED_FLAG,
            ("user_id",),
            T.WARN,
            "the renting user should be active (is_active = 1)",
            references=("users", "is_active"),
            via="user_id",
        ),
    ),
)

DATASETS: dict[str, Dataset] = {
    d.name: d for d in (VEHICLES, LOCATIONS, USERS, RENTAL_TRANSACTIONS)
}

del S, T


def dataset(name: str) -> Dataset:
    try:
        return DATASETS[name]
    except KeyError:
        known = ", ".join(DATASETS)
        raise KeyError(f"unknown dataset {name!r} (known: {known})") from None


def spark_schema(ds: Dataset, *, raw: bool = False):
    """The Spark StructType of a dataset, in contract column order.

    ``raw=True`` gives every column as a string: jobs read raw text so that a bad value can be
    reported verbatim (rental_rejects) instead of turning silently into null.
    """
    from pyspark.sql import types as st

    typed = {
        LogicalType.STRING: st.StringType(),
        LogicalType.INT: st.IntegerType(),
        LogicalType.FLAG: st.IntegerType(),
        LogicalType.DOUBLE: st.DoubleType(),
        LogicalType.MONEY: st.DecimalType(MONEY_PRECISION, MONEY_SCALE),
        LogicalType.DATE: st.DateType(),
        LogicalType.TIMESTAMP: st.TimestampNTZType(),
    }
    return st.StructType(
        [
            st.StructField(c.name, st.StringType() if raw else typed[c.type], nullable=True)
            for c in ds.columns
        ]
    )


def to_markdown() -> str:
    """Contract documentation, generated from the objects above."""
    lines = [
        "# Input dataset contracts",
        "",
        "Generated by `carrental contracts`; do not edit.",
        "",
    ]
    for ds in DATASETS.values():
        lines += [
            f"## `{ds.name}`",
            "",
            ds.description,
            "",
            f"Primary key: `{ds.primary_key}`.",
            "",
        ]
        lines += [
            "| # | column | type | format | required | description |",
            "| --- | --- | --- | --- | --- | --- |",
        ]
        for i, c in enumerate(ds.columns, 1):
            lines.append(
                f"| {i} | `{c.name}` | {c.type} | {c.pattern or ''} | "
                f"{'yes' if c.required else ''} | {c.description} |"
            )
        lines += [
            "",
            "| rule | kind | severity | checked by | description |",
            "| --- | --- | --- | --- | --- |",
        ]
        for r in ds.rules:
            where = (
                "upload validator + Spark" if r.single_dataset else "Spark (needs other datasets)"
            )
            kind = f"`{r.kind}`"
            if r.references:
                kind += f" {'.'.join(r.references)}" + (f" via `{r.via}`" if r.via else "")
            lines.append(f"| `{r.name}` | {kind} | {r.severity} | {where} | {r.description} |")
        lines.append("")
    rates = ", ".join(f"{k} {v}" for k, v in HOURLY_RATES.items())
    lines += [f"Hourly rates: {rates}.", ""]
    lines += [
        "## Rule kinds",
        "",
        "| kind | checked by | a row passes when |",
        "| --- | --- | --- |",
    ]
    for kind, meaning in KIND_MEANINGS.items():
        where = "upload validator + Spark" if kind in SINGLE_DATASET_KINDS else "Spark"
        lines.append(f"| `{kind}` | {where} | {meaning} |")
    lines += [
        "",
        "Well-formed numbers (regular expressions): "
        + "; ".join(f"{t} `{p}`" for t, p in TEXT_PATTERNS.items())
        + ". Dates and timestamps match their column's format exactly.",
        "",
    ]
    return "\n".join(lines)
