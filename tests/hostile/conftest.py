"""The hostile-input suite: the local tools attacked as a hostile tester would (issue 12).

Every case runs through the real CLI: `carrental.cli.main` in this process where only the
exit code and the text matter, a subprocess (`run_cli`, `start_cli`) where the real standard
streams do (pipes that close, terminals, encodings, signals). Published runs are hand-made
Parquet tables (`publish_run`); `carrental run` runs real Spark on a tiny batch.

A full disk is a small tmpfs filled up (`small_disk`, `fill_disk`): mounting one needs root,
and those tests skip without it. A read-only lake is a read-only bind mount for root (who
writes through permissions), the folders' permissions otherwise.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import pty
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from carrental.contracts import DATASETS
from carrental.local.store import LocalLake
from tests.conftest import generated_batch
from tests.local.conftest import TABLE_ROWS, values, write_run

REPO_ROOT = Path(__file__).resolve().parents[2]

# Names a hostile user could have: Rich markup, an emoji code, an ANSI colour sequence, a
# carriage return that overwrites the line, a right-to-left override, non-ASCII letters (values
# only: write_run gives them the table's types).
HOSTILE_USERS = values(
    "user_metrics",
    """('0000000001', '[bold]Ryan', 'Smith [/] Sons', 'postgres:x:101 :thumbs_up:', 1, 10.00,
        10.00, 10.00, 10.00, 1.0, 1.0, TIMESTAMP '2024-01-01 10:00:00',
        TIMESTAMP '2024-01-01 10:00:00', 1),
       ('0000000002', 'Gëorge', chr(27) || '[31mred' || chr(13) || 'over', chr(8238) || 'evil',
        2, 20.00, 10.00, 10.00, 10.00, 2.0, 1.0, TIMESTAMP '2024-01-02 10:00:00',
        TIMESTAMP '2024-01-02 10:00:00', 2)""",
)


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
        SELECT DATE '2000-01-01' + i::INTEGER AS rental_date, i % 9 AS rental_count,
          i % 1000 AS total_revenue, 1.0 AS avg_rental_amount, 1.0 AS min_rental_amount,
          1.0 AS max_rental_amount, 1 AS unique_users, 1 AS unique_vehicles
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


def start_cli(arguments: list[str], env: dict[str, str] | None = None) -> subprocess.Popen:
    """`carrental ARGS` in a process group of its own, as a shell starts a foreground job."""
    return subprocess.Popen(
        [sys.executable, "-m", "carrental.cli", *arguments],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=_environment(env),
        cwd=REPO_ROOT,
        start_new_session=True,
    )


def press_ctrl_c(process: subprocess.Popen) -> None:
    """What a terminal does on Ctrl-C: SIGINT to every process of the foreground group (the
    JVM that PySpark starts included)."""
    os.killpg(process.pid, signal.SIGINT)


def wait_until(
    condition: Callable[[], bool],
    what: str,
    process: subprocess.Popen | None = None,
    timeout: float = 180,
) -> None:
    """Until `condition()` holds; an AssertionError if `process` ends first."""
    deadline = time.monotonic() + timeout
    while not condition():
        if process is not None and process.poll() is not None:
            raise AssertionError(f"ended before {what}: {process.stderr.read()!r}")
        if time.monotonic() > deadline:
            raise AssertionError(f"never {what}")
        time.sleep(0.02)


def has_open(process: subprocess.Popen, name: str) -> bool:
    """Whether the process has a file called `name` open (Linux /proc)."""
    try:
        folder = f"/proc/{process.pid}/fd"
        return any(os.readlink(f"{folder}/{fd}").endswith(name) for fd in os.listdir(folder))
    except (FileNotFoundError, ProcessLookupError):
        return False


def finish(process: subprocess.Popen, timeout: float = 120) -> tuple[int, str, str]:
    """Exit code, stdout and stderr once the process has ended."""
    try:
        out, err = process.communicate(timeout=timeout)
    finally:
        process.kill()
    return process.returncode, out.decode(), err.decode()


def interrupted(
    arguments: list[str], opened: str, settle: float = 0.3, env: dict[str, str] | None = None
) -> tuple[int, str]:
    """Ctrl-C `settle` seconds after `carrental ARGS` opened a file called `opened`: the exit
    code and stderr."""
    process = start_cli(arguments, env)
    wait_until(lambda: has_open(process, opened), f"opening {opened}", process, timeout=60)
    time.sleep(settle)
    press_ctrl_c(process)
    code, _, err = finish(process, timeout=60)
    return code, err


def group_ended(group: int) -> bool:
    """No process of the process group is left (a JVM outlives its Python parent a moment)."""
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError):
            # pid (comm) state ppid pgrp ...: comm may hold spaces, it ends at the last ')'
            if int(stat.read_text().rsplit(")", 1)[1].split()[2]) == group:
                return False
    return True


def spark_env(tmp_path: Path) -> dict[str, str]:
    """A subprocess's Spark: its temporary folders under tmp_path (to be checked), a JVM that
    starts quickly."""
    local = tmp_path / "spark-local"
    local.mkdir(exist_ok=True)
    return {
        "SPARK_LOCAL_DIRS": str(local),
        "TMPDIR": str(local),
        "PYSPARK_SUBMIT_ARGS": "--driver-java-options -XX:TieredStopAtLevel=1 pyspark-shell",
    }


@pytest.fixture(scope="session")
def tiny_batch(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The four CSVs at a hundredth of the lab's sizes (~200 rentals): Spark runs in seconds."""
    return generated_batch(tmp_path_factory, "tiny_batch", scale=0.01, seed=4)


def ready_lake(root: Path, batch: Path) -> Path:
    """A lake with a published run r1 (hand-made tables) and the batch's four files as its
    inputs: ready for `carrental run`."""
    publish_run(root)
    store = LocalLake(root)
    for name in DATASETS:
        assert store.ingest(batch / f"{name}.csv", dataset=name).verdict.accepted
    return root


def published_ids(root: Path) -> list[str]:
    """The publish record's run ids, read without the code under test."""
    record = root / "published" / "runs.jsonl"
    if not record.exists():
        return []
    return [json.loads(line)["run_id"] for line in record.read_text().splitlines() if line]


def current_run(root: Path) -> str | None:
    record = root / "published" / "runs.jsonl"
    runs = [json.loads(line) for line in record.read_text().splitlines() if line]
    return next((run["run_id"] for run in runs if run["is_current"]), None)


def leftovers(root: Path) -> list[str]:
    """What a failed or interrupted command must not leave in a lake: partial files, report
    staging folders, tables and reports of runs that are not published."""
    published = set(published_ids(root))
    found = [p for p in root.rglob("*") if p.name.endswith(".partial")]
    found += [p for p in root.glob("reports/*") if p.name not in published]
    found += [
        p for p in root.glob("processed/*/run_id=*") if p.name.split("=", 1)[1] not in published
    ]
    return sorted(str(p.relative_to(root)) for p in found)


def run_status(root: Path, run_id: str) -> dict:
    return json.loads((root / "runs" / run_id / "status.json").read_text())


@contextlib.contextmanager
def small_disk(folder: Path, size: str = "32m") -> Iterator[Path]:
    """`folder` as a tmpfs of `size`: a disk that fills up. Skips where mounting is not allowed."""
    folder.mkdir(parents=True, exist_ok=True)
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)],
        capture_output=True,
        text=True,
    )
    if mounted.returncode:
        pytest.skip(f"a full disk is a small tmpfs, which needs root: {mounted.stderr.strip()}")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "--lazy", str(folder)], check=True)


def fill_disk(folder: Path, leave: int = 0) -> None:
    """Write a filler file until the disk holding `folder` has at most `leave` bytes free."""
    with open(folder / "filler", "ab", buffering=0) as filler:
        while (free := shutil.disk_usage(folder).free) > leave:
            try:
                filler.write(bytes(min(free - leave, 1 << 20)))
            except OSError as exc:
                if exc.errno != errno.ENOSPC:
                    raise
                return


@contextlib.contextmanager
def read_only(folder: Path) -> Iterator[None]:
    """`folder` read-only: a read-only bind mount for root (who writes whatever the
    permissions), the folders' permissions for anyone else."""
    if os.geteuid() == 0:
        bound = subprocess.run(["mount", "--bind", folder, folder], capture_output=True, text=True)
        if bound.returncode:
            pytest.skip(f"cannot bind-mount {folder}: {bound.stderr.strip()}")
        try:
            subprocess.run(["mount", "-o", "remount,bind,ro", folder, folder], check=True)
            yield
        finally:
            subprocess.run(["umount", folder], check=True)
        return
    folders = [folder, *(p for p in folder.rglob("*") if p.is_dir())]
    for path in folders:
        path.chmod(0o555)
    try:
        yield
    finally:
        for path in folders:
            path.chmod(0o755)
