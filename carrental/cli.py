"""The `carrental` command line."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from carrental import __version__


def _generate(args: argparse.Namespace) -> int:
    from carrental.generate import generate

    started = time.perf_counter()
    counts = generate(args.out, scale=args.scale, seed=args.seed, dirty_rate=args.dirty_rate)
    elapsed = time.perf_counter() - started
    rows = ", ".join(f"{name} {count:,}" for name, count in counts.items() if name != "defects")
    print(f"wrote {args.out}/: {rows} rows in {elapsed:.1f} s")
    if counts["defects"]:
        print(f"injected {counts['defects']:,} defects, listed in {args.out / 'defects.json'}")
    return 0


def _contracts(args: argparse.Namespace) -> int:
    from carrental.contracts import to_markdown

    print(to_markdown(), end="")
    return 0


def _run(args: argparse.Namespace) -> int:
    from rich.console import Console

    from carrental.local.runner import StageError, print_summary, run_pipeline

    console = Console(stderr=True)
    try:
        result = run_pipeline(args.input, args.lake, args.run_id, console)
    except StageError as exc:
        console.print(f"[red bold]carrental run: stage '{exc.stage}' failed[/]", highlight=False)
        console.print(str(exc), highlight=False, markup=False)
        if exc.log:
            console.print(f"log: {exc.log}", highlight=False)
        console.print("the previous published run, its tables and report are unchanged")
        return 1
    print_summary(result, Console())
    return 0


def _query(args: argparse.Namespace) -> int:
    from carrental.local.catalog import CatalogError, open_catalog, run_query
    from carrental.local.output import print_rows

    try:
        con = open_catalog(args.lake)
        try:
            columns, rows = run_query(con, args.sql)
        finally:
            con.close()
    except CatalogError as exc:
        print(f"carrental query: {exc}", file=sys.stderr)
        return 1
    print_rows(columns, rows, args.format)
    return 0


def _deploy_jobs(args: argparse.Namespace) -> int:
    from carrental.deploy import (
        DeployError,
        StackTarget,
        artifacts_bucket,
        check_stack_name,
        samconfig_target,
        stage_jobs,
        upload_jobs,
    )

    if args.out is not None:  # offline: no AWS library is even imported
        try:
            staged = stage_jobs(args.out)
        except (DeployError, OSError) as exc:
            print(f"carrental deploy-jobs: {exc}", file=sys.stderr)
            return 1
        print("\n".join(f"wrote {path}" for path, _ in staged))
        return 0

    import boto3
    from boto3.exceptions import Boto3Error
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        if args.check_only:
            target = samconfig_target(args.config_env)
            if args.stack_name:
                check_stack_name(args.stack_name)
            print(f"stack name {args.stack_name or target.stack_name!r} fits every derived name")
            return 0
        if args.stack_name or args.bucket:
            target = StackTarget(args.stack_name, args.region)
        else:
            target = samconfig_target(args.config_env)
        session = boto3.Session(region_name=args.region or target.region)
        bucket = args.bucket or artifacts_bucket(
            target.stack_name, session.client("cloudformation")
        )
        uploaded = upload_jobs(bucket, session.client("s3"))
    except (DeployError, Boto3Error, BotoCoreError, ClientError) as exc:
        print(f"carrental deploy-jobs: {exc}", file=sys.stderr)
        return 1
    print("\n".join(f"uploaded {uri}" for uri in uploaded))
    return 0


def _sync_template_sql(args: argparse.Namespace) -> int:
    from carrental.deploy import TEMPLATE_PATH, sync_template_sql

    drifted = sync_template_sql(TEMPLATE_PATH, check=args.check)
    if args.check and drifted:
        print(
            f"{TEMPLATE_PATH.name}: the SQL blocks differ from sql/; run "
            "`carrental sync-template-sql` (or `make sync-template-sql`)",
            file=sys.stderr,
        )
        return 1
    print(f"{TEMPLATE_PATH.name}: {'updated from' if drifted else 'in line with'} sql/")
    return 0


def _validate(args: argparse.Namespace) -> int:
    import json

    from carrental.validation import DEFAULT_REJECT_THRESHOLD, infer_dataset, validate_path

    if args.dataset is not None:
        infer_dataset("", args.dataset)  # an unknown --dataset is a usage error (exit 2)
    missing = [str(path) for path in args.files if not path.is_file()]
    if missing:
        raise ValueError(f"not a file: {', '.join(missing)}")
    threshold = DEFAULT_REJECT_THRESHOLD if args.reject_threshold is None else args.reject_threshold
    verdicts = [
        validate_path(path, dataset=args.dataset, reject_threshold=threshold) for path in args.files
    ]
    if args.json:
        print(json.dumps([v.to_dict() for v in verdicts], indent=2, ensure_ascii=False))
    else:
        print("\n".join(v.render() for v in verdicts))
    return 0 if all(v.accepted for v in verdicts) else 1


def _fraction(text: str) -> float:
    value = float(text)
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1, got {text}")
    return value


def _non_negative_float(text: str) -> float:
    value = float(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {text}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="carrental", description="Car-rental analytics pipeline, locally or on AWS."
    )
    parser.add_argument("--version", action="version", version=f"carrental {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    gen = commands.add_parser(
        "generate", help="write a synthetic batch of the four CSVs, shaped like the lab data"
    )
    gen.add_argument("--out", type=Path, required=True, help="output folder")
    gen.add_argument(
        "--scale",
        type=_non_negative_float,
        default=1.0,
        help="1 = the lab's sizes (~20k rentals); rentals grow linearly, dimensions sub-linearly",
    )
    gen.add_argument("--seed", type=int, default=42, help="same seed => byte-identical files")
    gen.add_argument(
        "--dirty-rate",
        type=_non_negative_float,
        default=0.0,
        help="fraction of rental rows to corrupt; the defects are listed in defects.json",
    )
    gen.set_defaults(handler=_generate)

    docs = commands.add_parser("contracts", help="print the dataset contracts as Markdown")
    docs.set_defaults(handler=_contracts)

    run = commands.add_parser(
        "run", help="run the whole pipeline locally: validate, Spark, catalog, summary, report"
    )
    run.add_argument("--input", type=Path, required=True, help="folder with the four CSVs")
    run.add_argument("--lake", type=Path, default=Path(".lake"), help="lake folder (.lake/)")
    run.add_argument("--run-id", help="run id (default: the UTC start time)")
    run.set_defaults(handler=_run)

    query = commands.add_parser(
        "query", help="run Athena (Trino) SQL against the local catalog of the latest run"
    )
    query.add_argument("sql", help='e.g. "SELECT * FROM location_performance LIMIT 5"')
    query.add_argument("--lake", type=Path, default=Path(".lake"), help="lake folder (.lake/)")
    query.add_argument("--format", choices=["table", "csv", "json"], default="table")
    query.set_defaults(handler=_query)

    deploy_jobs = commands.add_parser(
        "deploy-jobs",
        help="upload the Spark entry points and the carrental archive to the stack's artifacts bucket",
    )
    deploy_jobs.add_argument(
        "--config-env", default="dev", help="samconfig.toml environment naming the stack (dev)"
    )
    deploy_jobs.add_argument("--stack-name", help="stack to read (default: from samconfig.toml)")
    deploy_jobs.add_argument("--region", help="AWS region (default: from samconfig.toml)")
    deploy_jobs.add_argument("--bucket", help="artifacts bucket; skips the stack lookup")
    deploy_jobs.add_argument(
        "--out",
        type=Path,
        metavar="DIR",
        help="write the files a deploy uploads to DIR/jobs/ instead; no AWS call",
    )
    deploy_jobs.add_argument(
        "--check-only",
        action="store_true",
        help="only check that the stack name fits every resource name derived from it",
    )
    deploy_jobs.set_defaults(handler=_deploy_jobs)

    sync_sql = commands.add_parser(
        "sync-template-sql", help="copy sql/ into template.yaml (named queries, summary query)"
    )
    sync_sql.add_argument(
        "--check", action="store_true", help="change nothing; exit 1 if the template is stale"
    )
    sync_sql.set_defaults(handler=_sync_template_sql)

    validate = commands.add_parser(
        "validate",
        help="check CSV files against their dataset contracts (what the upload Lambda runs)",
    )
    validate.add_argument("files", nargs="+", type=Path, metavar="FILE", help="CSV file(s)")
    validate.add_argument(
        "--dataset",
        help="dataset of every FILE (default: the folder after raw/, else the parent folder, "
        "else the file name)",
    )
    validate.add_argument(
        "--json", action="store_true", help="print the verdicts as JSON (as in .errors.json)"
    )
    validate.add_argument(
        "--reject-threshold",
        type=_fraction,
        help="reject a file when more than this fraction of rows break a reject rule (0.05)",
    )
    validate.set_defaults(handler=_validate)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.handler(args)
    except ValueError as exc:
        print(f"carrental {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
