"""The `carrental` command line.

Exit codes: 0 success, 1 failure (a rejected file, a SQL error, a failed stage), 2 usage error,
130 interrupted (Ctrl-C), 141 output closed early (`carrental ... | head`), as a shell reports a
command ended by SIGPIPE. None of them ends with a traceback for a user's mistake.
"""

from __future__ import annotations

import argparse
import math
import os
import shutil
import sys
import time
from pathlib import Path

from carrental import __version__
from carrental.contracts import DEFAULT_REJECT_THRESHOLD
from carrental.local.interrupts import INTERRUPTS, Interrupted

EXIT_INTERRUPTED = 130
EXIT_BROKEN_PIPE = 141
# `generate` asks for --yes above this estimated output size.
CONFIRM_ABOVE_BYTES = 2e9
MAX_SCALE = 1e12


class UsageError(ValueError):
    """A bad argument found after parsing (exit 2)."""


def _generate(args: argparse.Namespace) -> int:
    import duckdb

    from carrental.generate import generate

    _check_generate_size(args)
    started = time.perf_counter()
    try:
        counts = generate(args.out, scale=args.scale, seed=args.seed, dirty_rate=args.dirty_rate)
    except (OSError, duckdb.IOException) as exc:
        _error("generate", f"cannot write into {args.out}: {_first_line(exc)}")
        return 1
    except MemoryError:
        _error("generate", f"ran out of memory at --scale {args.scale:g}: use a smaller scale")
        return 1
    elapsed = time.perf_counter() - started
    rows = ", ".join(f"{name} {count:,}" for name, count in counts.items() if name != "defects")
    print(f"wrote {args.out}/: {rows} rows in {elapsed:.1f} s")
    if counts["defects"]:
        print(f"injected {counts['defects']:,} defects, listed in {args.out / 'defects.json'}")
    return 0


def _check_generate_size(args: argparse.Namespace) -> None:
    """Refuse a batch this machine cannot hold or store; above CONFIRM_ABOVE_BYTES, ask for
    --yes. The size is an estimate: generate holds the whole batch in memory, then writes it."""
    from carrental.generate import estimated_bytes, estimated_memory, expected_rows

    size, memory = estimated_bytes(args.scale), estimated_memory(args.scale)
    rentals = expected_rows(args.scale)["rental_transactions"]
    what = f"--scale {args.scale:g} would write about {_bytes(size)} ({rentals:,.0f} rentals)"
    existing = next((p for p in [args.out, *args.out.parents] if p.exists()), Path("."))
    free = shutil.disk_usage(existing).free
    if size > free:
        raise UsageError(f"{what}, but {existing} has {_bytes(free)} free")
    ram = _physical_memory()
    if ram is not None and memory > ram:
        raise UsageError(
            f"{what} and needs about {_bytes(memory)} of memory (the batch is built in memory); "
            f"this machine has {_bytes(ram)}"
        )
    if size > CONFIRM_ABOVE_BYTES and not args.yes:
        raise UsageError(
            f"{what} and needs about {_bytes(memory)} of memory; pass --yes to go ahead "
            f"(asked above {_bytes(CONFIRM_ABOVE_BYTES)})"
        )


def _physical_memory() -> int | None:
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, ValueError, OSError):  # not a POSIX system that reports it
        return None


def _bytes(n: float) -> str:
    if n < 1000:
        return f"{n:,.0f} bytes"
    for unit in ("KB", "MB", "GB", "TB"):
        n /= 1000
        if n < 1000:
            return f"{n:,.1f} {unit}"
    return f"{n / 1000:,.1f} PB"


def _contracts(args: argparse.Namespace) -> int:
    from carrental.contracts import to_markdown

    print(to_markdown(), end="")
    return 0


def _tables(args: argparse.Namespace) -> int:
    from carrental.tables import to_markdown

    print(to_markdown(), end="")
    return 0


def _check_files(paths: list[Path]) -> None:
    for path in paths:
        if not path.exists():
            raise UsageError(f"{path}: no such file")
        if not path.is_file():
            kind = "a folder" if path.is_dir() else "not a regular file"
            raise UsageError(f"{path} is {kind}: pass CSV files")


def _run(args: argparse.Namespace) -> int:
    from carrental.local.console import Progress, print_summary, print_timings, run_json
    from carrental.local.output import console as output_console
    from carrental.local.output import safe_text, to_json
    from carrental.local.runner import StageError, Stages, run_pipeline
    from carrental.local.store import LakeError

    console = output_console(stderr=True)
    stages = Stages() if args.quiet or args.json else Progress(console)
    try:
        result = run_pipeline(args.lake, args.input, args.run_id, stages, args.reject_threshold)
    except StageError as exc:
        if exc.details:
            console.print(safe_text(exc.details, keep="\n"), soft_wrap=True)
        _error("run", exc.summary())
        return 1
    except LakeError as exc:
        _error("run", str(exc))
        return 1
    with INTERRUPTS.reported_as(f"interrupted after publishing run {result.run_id}"):
        if args.json:
            _utf8_stdout()
            print(to_json(run_json(result), indent=1))
        elif not args.quiet:
            print_summary(result, output_console())
            if args.verbose:
                print_timings(result, output_console())
    return 0


def _ingest(args: argparse.Namespace) -> int:
    from carrental.lake import infer_dataset
    from carrental.local.console import print_ingested
    from carrental.local.output import console as output_console
    from carrental.local.runner import ingest_files
    from carrental.local.store import LakeError, LocalLake

    if args.dataset is not None:
        infer_dataset("", args.dataset)  # an unknown --dataset is a usage error (exit 2)
    _check_files(args.files)
    console = output_console()
    try:
        ingested = ingest_files(
            LocalLake(args.lake),
            [(path, args.dataset) for path in args.files],
            args.reject_threshold,
            lambda i: print_ingested(i, console),
        )
    except LakeError as exc:
        _error("ingest", str(exc))
        return 1
    return 0 if all(i.verdict.accepted for i in ingested) else 1


def _query(args: argparse.Namespace) -> int:
    from carrental.local.catalog import CatalogError, open_catalog, readable_folders
    from carrental.local.output import describe_query_error, write_result
    from carrental.local.query import QueryError, run

    try:
        con = open_catalog(args.lake)
    except CatalogError as exc:
        _error("query", str(exc))
        return 1
    INTERRUPTS.also_call(con.interrupt)
    try:
        result = run(con, readable_folders(args.lake), args.sql)
        if args.format != "table":
            _utf8_stdout()
        write_result(result, args.format, max_rows=args.max_rows)
    except QueryError as exc:
        _error("query", describe_query_error(exc))
        return 1
    finally:
        con.close()
    return 0


def _runs(args: argparse.Namespace) -> int:
    from rich import box
    from rich.table import Table

    from carrental.local.output import console as output_console
    from carrental.local.output import safe_text, to_json
    from carrental.local.runs import UnknownRun, compare, list_runs
    from carrental.local.store import LakeError, LocalLake
    from carrental.publishing import RecordError

    try:
        lake = LocalLake(args.lake)
        if args.compare:
            rows = compare(lake, *args.compare)
        else:
            runs = list_runs(lake)
    except (LakeError, RecordError, UnknownRun) as exc:
        _error("runs", str(exc))
        return 1
    if args.json:
        _utf8_stdout()
        if args.compare:
            keys = ("metric", args.compare[0], args.compare[1], "difference")
            print(to_json([dict(zip(keys, row, strict=True)) for row in rows], indent=1))
        else:
            print(to_json([run.to_dict() for run in runs], indent=1))
        return 0
    console = output_console()
    if args.compare:
        table = Table(box=box.SIMPLE_HEAD)
        table.add_column("metric", no_wrap=True)
        for run_id in args.compare:
            table.add_column(run_id, justify="right")
        table.add_column("difference", justify="right")
        for row in rows:
            table.add_row(*map(safe_text, row))
    elif not runs:
        print(f"no runs yet in {args.lake}: carrental run --lake {args.lake}")
        return 0
    else:
        table = Table(box=box.SIMPLE_HEAD)
        table.add_column("run", no_wrap=True)
        table.add_column("started (UTC)", no_wrap=True)
        table.add_column("status", min_width=len("interrupted"))
        table.add_column("files", justify="right")
        table.add_column("held back", justify="right")
        table.add_column("revenue", justify="right", no_wrap=True)
        for run in runs:
            status = f"{run.state}: {run.failed_stage}" if run.failed_stage else run.state
            row = (
                run.run_id,
                run.started_at[:16].replace("T", " "),
                status,
                run.inputs,
                run.held_back or "",
                run.total_revenue,
            )
            table.add_row(*map(safe_text, row))
    console.print(table)
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
    from carrental.deploy import TEMPLATE_PATH, DeployError, sync_template_sql

    try:
        drifted = sync_template_sql(TEMPLATE_PATH, check=args.check)
    except DeployError as exc:
        print(f"carrental sync-template-sql: {exc}", file=sys.stderr)
        return 1
    if args.check and drifted:
        print(
            f"{TEMPLATE_PATH.name}: the SQL blocks differ from carrental/sql/; run "
            "`carrental sync-template-sql` (or `make sync-template-sql`)",
            file=sys.stderr,
        )
        return 1
    print(f"{TEMPLATE_PATH.name}: {'updated from' if drifted else 'in line with'} carrental/sql/")
    return 0


def _validate(args: argparse.Namespace) -> int:
    from carrental.lake import infer_dataset
    from carrental.local.output import print_plain, to_json
    from carrental.validation import validate_path

    if args.dataset is not None:
        infer_dataset("", args.dataset)  # an unknown --dataset is a usage error (exit 2)
    _check_files(args.files)
    verdicts = []
    for path in args.files:
        try:
            verdicts.append(
                validate_path(path, dataset=args.dataset, reject_threshold=args.reject_threshold)
            )
        except OSError as exc:
            raise UsageError(f"cannot read {path}: {exc.strerror or exc}") from None
    INTERRUPTS.check()  # a verdict computed across a Ctrl-C is not one
    if args.json:
        _utf8_stdout()
        print(to_json([v.to_dict() for v in verdicts], indent=2))
    else:
        print_plain("\n".join(v.render() for v in verdicts))
    return 0 if all(v.accepted for v in verdicts) else 1


def _number(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number, got {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a finite number, got {text}")
    return value


def _fraction(text: str) -> float:
    value = _number(text)
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1, got {text}")
    return value


def _scale(text: str) -> float:
    value = _number(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
    if value > MAX_SCALE:  # beyond it even the size estimate stops being a number
        raise argparse.ArgumentTypeError(f"must be at most {MAX_SCALE:g}, got {text}")
    return value


def _dirty_rate(text: str) -> float:
    from carrental.generate import MAX_DIRTY_RATE

    value = _number(text)
    if not 0 <= value <= MAX_DIRTY_RATE:
        raise argparse.ArgumentTypeError(f"must be between 0 and {MAX_DIRTY_RATE}, got {text}")
    return value


def _whole_number(minimum: int):
    """An argument type: a whole number of at least `minimum`."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be a whole number, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be >= {minimum}, got {text}")
        return value

    return parse


def _out_folder(text: str) -> Path:
    path = Path(text)
    if path.exists() and not path.is_dir():
        raise argparse.ArgumentTypeError(f"{text} exists and is not a folder")
    return path


def _add_lake_option(command: argparse.ArgumentParser) -> None:
    command.add_argument("--lake", type=Path, default=Path(".lake"), help="lake folder (.lake/)")


def _add_file_arguments(command: argparse.ArgumentParser) -> None:
    """The CSV files of `ingest` and `validate`, and the dataset they are read as."""
    command.add_argument("files", nargs="+", type=Path, metavar="FILE", help="CSV file(s)")
    command.add_argument(
        "--dataset",
        help="dataset of every FILE (default: the folder after raw/, else the parent folder, "
        "else the file name)",
    )


_REJECTS_A_FILE = "reject a file when more than this fraction of rows break a reject rule"


def _add_reject_threshold(command: argparse.ArgumentParser, what_it_does: str) -> None:
    command.add_argument(
        "--reject-threshold",
        type=_fraction,
        default=DEFAULT_REJECT_THRESHOLD,
        help=f"{what_it_does} ({DEFAULT_REJECT_THRESHOLD})",
    )


def build_parser() -> argparse.ArgumentParser:
    from carrental.local.output import DEFAULT_MAX_ROWS, FORMATS

    parser = argparse.ArgumentParser(
        prog="carrental", description="Car-rental analytics pipeline, locally or on AWS."
    )
    parser.add_argument("--version", action="version", version=f"carrental {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    gen = commands.add_parser(
        "generate", help="write a synthetic batch of the four CSVs, shaped like the lab data"
    )
    gen.add_argument("--out", type=_out_folder, required=True, help="output folder")
    gen.add_argument(
        "--scale",
        type=_scale,
        default=1.0,
        help="1 = the lab's sizes (~20k rentals); rentals grow linearly, dimensions sub-linearly",
    )
    gen.add_argument(
        "--seed", type=_whole_number(0), default=42, help="same seed => byte-identical files"
    )
    gen.add_argument(
        "--dirty-rate",
        type=_dirty_rate,
        default=0.0,
        help="fraction of rental rows to corrupt (at most 0.5); the defects are listed in "
        "defects.json",
    )
    gen.add_argument(
        "--yes",
        action="store_true",
        help=f"write a batch larger than {_bytes(CONFIRM_ABOVE_BYTES)} without asking",
    )
    gen.set_defaults(handler=_generate)

    docs = commands.add_parser("contracts", help="print the dataset contracts as Markdown")
    docs.set_defaults(handler=_contracts)

    tables_doc = commands.add_parser(
        "tables", help="print the output tables (docs/tables.md) as Markdown"
    )
    tables_doc.set_defaults(handler=_tables)

    ingest = commands.add_parser(
        "ingest",
        help="validate CSV files and add them to the lake's inputs (rejected ones: quarantine)",
    )
    _add_file_arguments(ingest)
    _add_lake_option(ingest)
    _add_reject_threshold(ingest, _REJECTS_A_FILE)
    ingest.set_defaults(handler=_ingest)

    run = commands.add_parser(
        "run",
        help="run the pipeline locally on the lake's inputs: Spark jobs, catalog, report, publish",
    )
    run.add_argument(
        "--input", type=Path, help="a folder with the four CSVs to ingest first (<dataset>.csv)"
    )
    _add_lake_option(run)
    run.add_argument("--run-id", help="run id (default: the UTC start time)")
    _add_reject_threshold(
        run,
        "hold back a rentals file when more than this fraction of its rows break a reject rule "
        "at run time, foreign keys included",
    )
    shown = run.add_mutually_exclusive_group()
    shown.add_argument(
        "--json",
        action="store_true",
        help="print the result as JSON on stdout (run id, status, tables and rows, report)",
    )
    shown.add_argument("--quiet", action="store_true", help="print nothing but errors")
    shown.add_argument(
        "--verbose", action="store_true", help="also print each step's time and Spark's log"
    )
    run.epilog = (
        "exit codes: 0 published, 1 failed (nothing published), 2 usage error, 130 interrupted"
    )
    run.set_defaults(handler=_run)

    runs = commands.add_parser(
        "runs", help="list the runs of a lake, or compare two runs' headline KPIs"
    )
    _add_lake_option(runs)
    runs.add_argument(
        "--compare",
        nargs=2,
        metavar=("A", "B"),
        help="each headline KPI of runs A and B, and B - A",
    )
    runs.add_argument("--json", action="store_true", help="print JSON instead of a table")
    runs.set_defaults(handler=_runs)

    query = commands.add_parser(
        "query", help="run Athena (Trino) SQL against the local catalog of the latest run"
    )
    query.add_argument("sql", help='e.g. "SELECT * FROM location_performance LIMIT 5"')
    _add_lake_option(query)
    query.add_argument(
        "--format",
        choices=FORMATS,
        default="table",
        help="table (fits the terminal; wide rows shown one field per line), csv, json "
        "(UTF-8, one object per row) or markdown",
    )
    query.add_argument(
        "--max-rows",
        type=_whole_number(1),
        default=DEFAULT_MAX_ROWS,
        help=f"rows the table view shows ({DEFAULT_MAX_ROWS}); it says how many it left out",
    )
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
        "sync-template-sql",
        help="copy carrental/sql/ and the current views into template.yaml",
    )
    sync_sql.add_argument(
        "--check", action="store_true", help="change nothing; exit 1 if the template is stale"
    )
    sync_sql.set_defaults(handler=_sync_template_sql)

    validate = commands.add_parser(
        "validate",
        help="check CSV files against their dataset contracts (what the upload Lambda runs)",
    )
    _add_file_arguments(validate)
    validate.add_argument(
        "--json", action="store_true", help="print the verdicts as JSON (as in .errors.json)"
    )
    _add_reject_threshold(validate, _REJECTS_A_FILE)
    validate.set_defaults(handler=_validate)
    return parser


def _error(command: str, message: str) -> None:
    from carrental.local.output import print_plain

    print_plain(f"carrental {command}: {message}", file=sys.stderr)


def _first_line(exc: BaseException) -> str:
    return next((line for line in str(exc).splitlines() if line.strip()), type(exc).__name__)


def _utf8_stdout() -> None:
    """JSON, CSV and Markdown are UTF-8 whatever the locale (RFC 8259 requires it of JSON)."""
    reconfigure = getattr(sys.stdout, "reconfigure", None)
    if reconfigure is not None:
        reconfigure(encoding="utf-8")


def _tolerant_streams() -> None:
    """A character the terminal's encoding lacks (or a non-UTF-8 file name) prints as an escape
    instead of raising UnicodeEncodeError."""
    for stream in (sys.stdout, sys.stderr):
        reconfigure = getattr(stream, "reconfigure", None)
        if reconfigure is not None:
            reconfigure(errors="backslashreplace")


def _silence_stdout() -> None:
    """After EPIPE: point stdout at /dev/null so that the interpreter's final flush of the
    buffered rest cannot fail again (https://docs.python.org/3/library/signal.html#note-on-sigpipe)."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):  # stdout is not a file descriptor (tests)
        pass


def main(argv: list[str] | None = None) -> int:
    _tolerant_streams()
    parser = build_parser()
    args = parser.parse_args(argv)
    with INTERRUPTS:
        try:
            code = args.handler(args)
            INTERRUPTS.check()
            return code
        except KeyboardInterrupt as exc:
            _error(args.command, str(exc) if isinstance(exc, Interrupted) else "interrupted")
            return EXIT_INTERRUPTED
        except BrokenPipeError:
            _silence_stdout()
            return EXIT_BROKEN_PIPE
        except Exception as exc:
            if INTERRUPTS.seen:
                _error(args.command, "interrupted")
                return EXIT_INTERRUPTED
            if isinstance(exc, ValueError):
                _error(args.command, f"error: {exc}")
                return 2
            raise


if __name__ == "__main__":
    sys.exit(main())
