"""What the stack's functions do to the data lake bucket (carrental.lake's layout): keep the
evidence of a file that is kept out (quarantine), store a staged file, remove a run's folders,
read and write the publish record.

The bucket is versioned: a delete leaves the data as a noncurrent version until the bucket's
lifecycle rule expires it (template.yaml, DataLakeBucket).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

from botocore.exceptions import ClientError

from carrental import lake
from carrental.publishing import PublishedRun, parse_record, render_record

# SNS subjects must be ASCII, at most 100 characters; the message carries the details.
# https://docs.aws.amazon.com/sns/latest/api/API_Publish.html
SUBJECT_LIMIT = 100
MESSAGE_LIMIT = 200_000  # Publish accepts 256 KB
# DeleteObjects removes at most 1,000 keys per request:
# https://docs.aws.amazon.com/AmazonS3/latest/API/API_DeleteObjects.html
DELETE_BATCH = 1000
# A GET or HEAD of an object that is not there (S3's error codes, 404):
# https://docs.aws.amazon.com/AmazonS3/latest/API/ErrorResponses.html
NOT_THERE = frozenset({"NoSuchKey", "NoSuchVersion", "404", "NotFound"})


def is_not_there(exc: ClientError) -> bool:
    return exc.response["Error"]["Code"] in NOT_THERE


def exists(s3, bucket: str, key: str) -> bool:
    try:
        s3.head_object(Bucket=bucket, Key=key)
        return True
    except ClientError as exc:
        if not is_not_there(exc):
            raise
        return False


def alert(sns, topic_arn: str, subject: str, lines: Iterable[str]) -> None:
    sns.publish(
        TopicArn=topic_arn,
        Subject=subject.encode("ascii", "replace").decode()[:SUBJECT_LIMIT],
        Message="\n".join(lines)[:MESSAGE_LIMIT],
    )


def keep_evidence(
    s3,
    bucket: str,
    *,
    key: str,
    version_id: str | None,
    dataset: str,
    stamp: str,
    report: dict,
) -> tuple[str, str] | None:
    """Copy the object version `key`@`version_id` to quarantine/ with its error report beside
    it, under `stamp` (lake.quarantine_keys). None if this evidence is there already (the same
    upload or run quarantined it before: nothing is overwritten). The copy is left out when the
    version is gone; the report says so."""
    copy_key, report_key = lake.quarantine_keys(dataset, key.rsplit("/", 1)[-1], stamp)
    if exists(s3, bucket, report_key):
        return None
    source = {"Bucket": bucket, "Key": key, **({"VersionId": version_id} if version_id else {})}
    try:
        # s3.copy switches to a multipart copy for large objects
        s3.copy(source, bucket, copy_key)
        copied = copy_key
    except ClientError as exc:
        if not is_not_there(exc):
            raise
        copied = None
    s3.put_object(
        Bucket=bucket,
        Key=report_key,
        Body=json.dumps(
            {**report, "quarantined_copy": copied}, indent=2, ensure_ascii=False
        ).encode(),
        ContentType="application/json",
    )
    return copy_key, report_key


def put_staged(s3, bucket: str, key: str, path: Path) -> bool:
    """Store a staged file unless that content is staged already (the key is its hash);
    True if it was stored now."""
    if exists(s3, bucket, key):
        return False
    s3.upload_file(str(path), bucket, key)
    return True


def run_prefixes(run_id: str) -> list[str]:
    """Every folder a run writes: one per table, and its report."""
    return [lake.table_run_path(lake.PROCESSED, table, run_id) + "/" for table in lake.TABLES] + [
        lake.join(lake.REPORTS, lake.check_run_id(run_id)) + "/"
    ]


def _keys(s3, bucket: str, prefix: str) -> Iterable[str]:
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        yield from (o["Key"] for o in page.get("Contents", []))


def delete_runs(s3, bucket: str, run_ids: Iterable[str]) -> int:
    """Delete every folder of these runs; returns the number of objects deleted."""
    keys = [
        k
        for run_id in run_ids
        for prefix in run_prefixes(run_id)
        for k in _keys(s3, bucket, prefix)
    ]
    for start in range(0, len(keys), DELETE_BATCH):
        batch = keys[start : start + DELETE_BATCH]
        answer = s3.delete_objects(
            Bucket=bucket, Delete={"Objects": [{"Key": k} for k in batch], "Quiet": True}
        )
        if answer.get("Errors"):
            first = answer["Errors"][0]
            raise RuntimeError(
                f"S3 did not delete {len(answer['Errors'])} object(s), e.g. {first['Key']}: "
                f"{first['Code']} {first.get('Message', '')}"
            )
    return len(keys)


def runs_with_folders(s3, bucket: str) -> set[str]:
    """The run ids that have a table folder or a report in the bucket."""
    found = set()
    listings = [(lake.join(lake.PROCESSED, t) + "/", "run_id=") for t in lake.TABLES]
    listings.append((lake.REPORTS + "/", ""))
    for prefix, marker in listings:
        paginator = s3.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=bucket, Prefix=prefix, Delimiter="/"):
            for common in page.get("CommonPrefixes", []):
                folder = common["Prefix"].removeprefix(prefix).rstrip("/")
                if folder.startswith(marker):
                    found.add(folder.removeprefix(marker))
    return found


def read_record(s3, bucket: str) -> list[PublishedRun]:
    """The publish record; empty before the first publish."""
    try:
        body = s3.get_object(Bucket=bucket, Key=lake.PUBLISHED_RECORD)["Body"].read()
    except ClientError as exc:
        if not is_not_there(exc):
            raise
        return []
    return parse_record(body.decode("utf-8"), f"s3://{bucket}/{lake.PUBLISHED_RECORD}")


def write_record(s3, bucket: str, runs: list[PublishedRun]) -> None:
    """Publish: one PutObject of the whole record. S3 replaces an object atomically ("Amazon S3
    never adds partial objects"): a reader sees the old record or the new one:
    https://docs.aws.amazon.com/AmazonS3/latest/API/API_PutObject.html"""
    s3.put_object(
        Bucket=bucket,
        Key=lake.PUBLISHED_RECORD,
        Body=render_record(runs).encode("utf-8"),
        ContentType="application/x-ndjson",
    )
