"""What `carrental run` and `carrental ingest` show on the terminal: live stage lines while a run
goes on, the run's summary at the end, one line per ingested file.

Values from the data are printed as plain text (carrental.local.output.safe_text), never read as
markup or emoji codes, control characters shown escaped.
"""

from __future__ import annotations

import contextlib
import shlex
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from rich.console import Console
from rich.table import Table
from rich.text import Text

from carrental.local.interrupts import INTERRUPTS
from carrental.local.output import safe_text
from carrental.local.runner import RunResult, Stages
from carrental.local.store import Ingested
from carrental.report_html import REPORT_PAGE


def plain(value: object) -> Text:
    return safe_text("" if value is None else value)


class Progress(Stages):
    """Stage lines with elapsed time; a live spinner while a stage runs (on a terminal)."""

    def __init__(self, console: Console):
        self.console = console

    @contextlib.contextmanager
    def stage(self, name: str) -> Iterator[Callable[[str], None]]:
        started = time.perf_counter()
        with self.console.status(Text(f"{name}…", style="bold"), spinner="dots") as status:

            def detail(text: str) -> None:
                elapsed = time.perf_counter() - started
                status.update(Text(f"{name}: {text} ({elapsed:.0f} s)", style="bold"))

            try:
                yield detail
            except BaseException as exc:
                if isinstance(exc, KeyboardInterrupt) or INTERRUPTS.seen:
                    raise  # the command's last line names the interrupted stage
                elapsed = time.perf_counter() - started
                self.console.print(
                    Text("✗ ", style="red") + plain(f"{name} failed after {elapsed:.1f} s")
                )
                raise
        elapsed = time.perf_counter() - started
        self.console.print(Text("✓ ", style="green") + plain(f"{name} ({elapsed:.1f} s)"))

    def note(self, text: str) -> None:
        self.console.print(Text("! ", style="yellow") + plain(text), soft_wrap=True)


def print_ingested(ingested: Ingested, console: Console) -> None:
    """One line for an accepted file; a rejected one's verdict and where its evidence went.
    Long lines are left to the terminal to wrap (a path stays one piece when copied)."""
    verdict = ingested.verdict
    if verdict.accepted:
        console.print(
            plain(
                f"{verdict.source}: accepted as {ingested.accepted.key} ({ingested.change}, "
                f"{verdict.rows:,} rows)"
            ),
            soft_wrap=True,
        )
        return
    console.print(safe_text(verdict.render(), keep="\n"), soft_wrap=True)
    if ingested.quarantined:
        copy, report = ingested.quarantined
        where = f"  quarantined to {copy} (error report {report})"
    else:
        where = f"  not quarantined: {ingested.not_quarantined}"
    console.print(plain(where), soft_wrap=True)


def print_summary(result: RunResult, console: Console) -> None:
    headline = Table(title=f"Run {result.run_id}", show_header=False, title_justify="left")
    summary = result.reports["summary.csv"][["metric", "value"]]
    for metric, value in summary.itertuples(index=False, name=None):
        headline.add_row(plain(metric.replace("_", " ")), plain(value or "—"))
    console.print(headline)
    spenders = Table(title="Top 5 spenders", title_justify="left")
    for column in ("rank", "name", "user_id", "rentals", "spent"):
        spenders.add_column(column)
    top = result.reports["top_users.csv"].head(5)  # ordered by spend_rank
    for row in top.itertuples(index=False):
        spenders.add_row(
            plain(row.spend_rank),
            plain(f"{row.first_name} {row.last_name}"),
            plain(row.user_id),
            plain(row.rental_count),
            plain(row.total_spent),
        )
    console.print(spenders)
    quality = Table(title="Data quality (rules with violations)", title_justify="left")
    for column in ("dataset", "rule", "severity", "violations"):
        quality.add_column(column)
    rules = result.reports["data_quality.csv"]
    broken = rules[rules["violations"] != "0"]
    for row in broken.itertuples(index=False, name=None):
        quality.add_row(*map(plain, row))
    if broken.empty:
        quality.add_row("all", "every rule", "", "0")
    console.print(quality)
    inputs = result.reports["inputs.csv"]
    console.print(
        plain(
            f"inputs: {len(inputs)} files, "
            f"{(inputs['status'] == 'held_back').sum()} held back (see inputs.csv)"
        )
    )
    # soft_wrap: a long path or command stays one line, so that it pastes as printed
    console.print(plain(f"report: {(result.report_dir / REPORT_PAGE).resolve()}"), soft_wrap=True)
    console.print(plain(f"query the tables: {query_command(result.lake)}"), soft_wrap=True)
    console.print(plain(f"done in {sum(result.timings.values()):.1f} s"))


def print_timings(result: RunResult, console: Console) -> None:
    """--verbose: where the run's time went, step by step, and where Spark's own log is."""
    for step, seconds in {**result.timings, **result.job_timings}.items():
        console.print(plain(f"  {step:<32} {seconds:7.1f} s"))
    console.print(plain(f"  Spark's log: {result.log_file}"))


def command_name() -> str:
    """How this process was started, so that a printed command works when pasted: the path
    typed (`.venv/bin/carrental`), else `python -m carrental.cli`."""
    program = Path(sys.argv[0])
    if program.name == "carrental":
        return shlex.quote(str(program))
    return f"{shlex.quote(sys.executable)} -m carrental.cli"


def query_command(lake: Path) -> str:
    sql = "SELECT * FROM location_performance ORDER BY total_revenue DESC LIMIT 5"
    return f"{command_name()} query --lake {shlex.quote(str(lake))} {shlex.quote(sql)}"


def run_json(result: RunResult) -> dict:
    """--json: the run's result for scripts."""
    return {
        "run_id": result.run_id,
        "status": "published",
        "lake": str(result.lake.resolve()),
        "tables": result.tables,
        "held_back": [h["source_file"] for h in result.held_back],
        "report": str((result.report_dir / REPORT_PAGE).resolve()),
        "report_dir": str(result.report_dir.resolve()),
        "seconds": round(sum(result.timings.values()), 1),
    }
