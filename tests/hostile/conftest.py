"""The hostile-input suite: the local tools attacked as a hostile tester would (issue 12).

Every case runs through the real CLI: `carrental.cli.main` in this process where only the
exit code and the text matter, a subprocess (`run_cli`) where the real standard streams do
(pipes that close, terminals, encodings, signals). Lakes are hand-made Parquet tables published
by the catalog module: no Spark.
"""

from __future__ import annotations

import os
import pty
import subprocess
import sys
from pathlib import Path

import pytest

from carrental.local.store import LocalLake
from tests.local.conftest import TABLE_ROWS, write_run

REPO_ROOT = Path(__file__).resolve().parents[2]

# Names a hostile user could have: Rich markup, an emoji code, an ANSI colour sequence, a
# carriage return that overwrites the line, a right-to-left override, non-ASCII letters.
HOSTILE_USERS = """
    SELECT * FROM (VALUES
      ('0000000001', '[bold]Ryan', 'Smith [/] Sons', 'postgres:x:101 :thumbs_up:', 1::BIGINT,
       10.00::DECIMAL(22,2), 10.00::DECIMAL(16,6), 10.00::DECIMAL(12,2), 10.00::DECIMAL(12,2),
       1.0::DOUBLE, 1.0::DOUBLE, TIMESTAMP '2024-01-01 10:00:00',
       TIMESTAMP '2024-01-01 10:00:00', 1),
      ('0000000002', 'Gëorge', chr(27) || '[31mred' || chr(13) || 'over', chr(8238) || 'evil',
       2::BIGINT, 20.00::DECIMAL(22,2), 10.00::DECIMAL(16,6), 10.00::DECIMAL(12,2),
       10.00::DECIMAL(12,2), 2.0::DOUBLE, 1.0::DOUBLE, TIMESTAMP '2024-01-02 10:00:00',
       TIMESTAMP '2024-01-02 10:00:00', 2))
    AS t(user_id, first_name, last_name, email, rental_count, total_spent, avg_rental_amount,
         min_rental_amount, max_rental_amount, total_rental_hours, avg_rental_hours,
         first_rental_start, last_rental_start, spend_rank)"""


def publish_run(lake_root: Path, run_id: str = "r1", tables: dict[str, str] = TABLE_ROWS) -> None:
    write_run(lake_root, run_id, tables)
    LocalLake(lake_root).publish(run_id)


@pytest.fixture(scope="session")
def hostile_lake(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A published lake whose user_metrics holds the hostile names (read-only for the tests)."""
    root = tmp_path_factory.mktemp("hostile_lake")
    publish_run(root, tables={**TABLE_ROWS, "user_metrics": HOSTILE_USERS})
    return root


@pytest.fixture(scope="session")
def big_lake(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A lake whose daily_metrics has 100,000 rows (a result larger than any fetch batch)."""
    root = tmp_path_factory.mktemp("big_lake")
    many_days = """
        SELECT DATE '2000-01-01' + i::INTEGER AS rental_date, (i % 9)::BIGINT AS rental_count,
          (i % 1000)::DECIMAL(22,2) AS total_revenue, 1.0::DECIMAL(16,6) AS avg_rental_amount,
          1.0::DECIMAL(12,2) AS min_rental_amount, 1.0::DECIMAL(12,2) AS max_rental_amount,
          1::BIGINT AS unique_users, 1::BIGINT AS unique_vehicles
        FROM range(100000) t(i)"""
    publish_run(root, tables={**TABLE_ROWS, "daily_metrics": many_days})
    return root


def run_cli(
    *args: str,
    env: dict[str, str] | None = None,
    stdout=subprocess.PIPE,
    timeout: float = 120,
) -> subprocess.CompletedProcess:
    """`carrental ARGS` in a fresh interpreter: real file descriptors, real exit codes."""
    environment = _environment(env)
    return subprocess.run(
        [sys.executable, "-m", "carrental.cli", *args],
        stdout=stdout,
        stderr=subprocess.PIPE,
        env=environment,
        cwd=REPO_ROOT,
        timeout=timeout,
    )


def _environment(extra: dict[str, str] | None) -> dict[str, str]:
    """This environment minus what forces Rich's hand (colours, terminal detection)."""
    forcing = ("NO_COLOR", "FORCE_COLOR", "TTY_COMPATIBLE", "TTY_INTERACTIVE")
    environment = {k: v for k, v in os.environ.items() if k not in forcing}
    return {**environment, "COLUMNS": "80", **(extra or {})}


def run_on_terminal(*args: str, env: dict[str, str] | None = None) -> tuple[int, bytes]:
    """`carrental ARGS` with stdout on a pseudo-terminal (as in an 80-column xterm): its exit
    code and every byte it wrote there."""
    primary, secondary = pty.openpty()
    try:
        process = subprocess.Popen(
            [sys.executable, "-m", "carrental.cli", *args],
            stdout=secondary,
            stderr=subprocess.PIPE,
            env=_environment(env),
            cwd=REPO_ROOT,
        )
        os.close(secondary)
        chunks = []
        while True:
            try:
                chunk = os.read(primary, 65536)
            except OSError:  # EIO: the terminal's other side closed
                break
            if not chunk:
                break
            chunks.append(chunk)
        code = process.wait(timeout=120)
        process.stderr.close()
    finally:
        os.close(primary)
    return code, b"".join(chunks)


def file_states(*roots: Path) -> dict[Path, tuple[int, int]]:
    """Every file under `roots` with its size and modification time (to prove nothing moved)."""
    states = {}
    for root in roots:
        for path in root.rglob("*"):
            if path.is_file():
                stat = path.stat()
                states[path] = (stat.st_size, stat.st_mtime_ns)
    return states
