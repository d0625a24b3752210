"""What every function of the stack sets up alike: its AWS clients and its clock.

Each handler module keeps `clock` and `aws_clients` as module attributes, so that tests move
the clock and create the clients after moto is in place.
"""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime
from typing import TypeVar

import boto3

Clients = TypeVar("Clients")


def utc_now() -> datetime:
    return datetime.now(UTC)


def boto3_clients(of: type[Clients]) -> Clients:
    """The dataclass `of` with a boto3 client in each field that has no default, the field
    named after the client's service (s3, sqs, dynamodb, ...)."""
    return of(
        **{
            f.name: boto3.client(f.name)
            for f in dataclasses.fields(of)
            if f.default is dataclasses.MISSING
        }
    )
