"""The local lake: a folder with the layout of carrental.lake, and the bookkeeping that the AWS
stack keeps in DynamoDB and S3 (docs/architecture.md, "The local lake").

    <lake>/inputs.json          the accepted inputs (carrental.inputs.Inputs): snapshots, history
    <lake>/.inputs.lock         serialises changes to inputs.json (ingest, a run's gate)
    <lake>/.run.lock            one run per lake at a time; holds the running run's id and pid
    <lake>/runs/<id>/           manifest.json, status.json (the run's progress), spark.log

Locks are `flock` locks: the kernel releases them when their process ends, however it ends,
so a killed run never leaves a lake locked. Every file is written beside its target and
renamed over it (os.replace), so a reader sees the old version or the new one, never half;
a Ctrl-C waits until a record and the files it names are all in place
(carrental.local.interrupts). A write that fails (a full disk, a read-only folder) leaves
nothing behind and raises an OSError naming the file (`os_error_message` says it in one line).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from carrental import checked, lake
from carrental.contracts import DATASETS
from carrental.inputs import InputFile, Inputs, Manifest
from carrental.local.interrupts import INTERRUPTS
from carrental.publishing import (
    PublishedRun,
    RecordError,
    parse_record,
    render_record,
    with_published,
)
from carrental.staging import PARTIAL_SUFFIX, StagedWriter, partial_name, partial_owner
from carrental.validation import (
    DEFAULT_REJECT_THRESHOLD,
    FileVerdict,
    validate_stream,
)

INPUTS_FILE = "inputs.json"
STATUS_FILE = "status.json"
SPARK_LOG = "spark.log"
KEEP_PUBLISHED_RUNS = 3  # older runs' tables and reports are deleted after a publish


class LakeError(RuntimeError):
    """Something about the lake folder stops the command; the message says what to do."""


class LakeBusy(LakeError):
    """Another run holds the lake."""


class UnreadableInput(ValueError):
    """A file to ingest cannot be read; the message names it and says why."""


def utc_now() -> datetime:
    return datetime.now(UTC)


def write_atomically(path: Path, data: bytes) -> None:
    """Write `data` beside `path`, then rename it over `path`. An OSError names `path`."""
    partial = path.with_name(partial_name(os.getpid()))
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(partial, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(partial, path)
    except OSError as exc:
        partial.unlink(missing_ok=True)
        exc.filename = str(path)
        raise
    except BaseException:
        partial.unlink(missing_ok=True)
        raise


def free_space(path: Path) -> int | None:
    """Free bytes on the disk that holds `path` (or its nearest existing folder)."""
    for folder in [path, *path.parents]:
        with contextlib.suppress(OSError):
            return shutil.disk_usage(folder).free
    return None


_ADVICE = {
    errno.ENOSPC: "free some space on that disk and try again",
    errno.EDQUOT: "free some space (your disk quota is used up) and try again",
    errno.EROFS: "remount it writable or pass another --lake",
    errno.EACCES: "make the lake writable for you (chmod/chown) or pass another --lake",
    errno.EPERM: "make the lake writable for you (chmod/chown) or pass another --lake",
    errno.ENOTDIR: "a file stands where a folder is needed: move it away or pass another --lake",
    errno.EEXIST: "a file stands where a folder is needed: move it away or pass another --lake",
    errno.EISDIR: "a folder stands where a file is needed: move it away",
}


def os_error_message(exc: OSError, path: Path | str | None = None, verb: str = "write") -> str:
    """One line for a failed read or write: the path (`exc.filename`, else `path`), what went
    wrong, and what to do."""
    where = exc.filename or path
    reason = _reason(exc)
    if exc.errno == errno.ENOSPC and where is not None:
        free = free_space(Path(where))
        if free is not None:
            reason += f", {_size(free)} free"
    advice = _ADVICE.get(exc.errno)
    what = f"cannot {verb} {where}: {reason}" if where is not None else reason
    return what + (f"; {advice}" if advice else "")


def _size(n: float) -> str:
    for unit in ("bytes", "KB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:,.0f} {unit}" if unit == "bytes" else f"{n:,.1f} {unit}"
        n /= 1000
    raise AssertionError  # the loop returns at GB


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@dataclass(frozen=True)
class Ingested:
    """What ingesting one file did."""

    verdict: FileVerdict
    change: str | None = None  # added | replaced | unchanged, for an accepted file
    accepted: InputFile | None = None
    quarantined: tuple[Path, Path] | None = None  # (copy, error report) of a rejected file
    not_quarantined: str | None = None  # why a rejected file could not be quarantined


class _Sink:
    """The staged writer as validation's sink, remembering a failure of its own (a full disk)
    apart from one reading the source."""

    def __init__(self, writer: StagedWriter) -> None:
        self.writer = writer
        self.failure: OSError | None = None

    def write(self, *args) -> None:
        try:
            self.writer.write(*args)
        except OSError as exc:
            self.failure = exc
            raise


class LocalLake:
    def __init__(self, root: Path) -> None:
        if root.exists() and not root.is_dir():
            raise LakeError(f"the lake {root} is a file, not a folder: pass another --lake")
        existing = next((p for p in root.parents if p.exists()), None)
        if existing is not None and not existing.is_dir():
            raise LakeError(
                f"the lake {root} cannot be made: {existing} is a file: pass another --lake"
            )
        self.root = root

    # ------------------------------------------------------------------ paths

    def path(self, key: str) -> Path:
        """A lake key (carrental.lake) as a path under the lake folder."""
        return self.root / key

    def run_folder(self, run_id: str) -> Path:
        return Path(lake.run_prefix(str(self.root), run_id))

    def report_folder(self, run_id: str) -> Path:
        return Path(lake.report_prefix(str(self.root), run_id))

    @property
    def processed(self) -> Path:
        return Path(lake.processed_prefix(str(self.root)))

    # ------------------------------------------------------------------ accepted inputs

    def inputs(self) -> Inputs:
        path = self.root / INPUTS_FILE
        try:
            return Inputs.from_dict(json.loads(path.read_text(encoding="utf-8")))
        except FileNotFoundError:
            return Inputs()
        except (ValueError, KeyError, TypeError, AttributeError, OSError) as exc:
            raise LakeError(
                f"{path} is not a readable inputs record ({_reason(exc)}): restore it, or move "
                "it away and ingest the inputs again"
            ) from None

    @contextlib.contextmanager
    def _inputs_lock(self) -> Iterator[None]:
        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.root / ".inputs.lock", "a+") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            yield

    def _save_inputs(self, inputs: Inputs) -> None:
        text = json.dumps(inputs.to_dict(), indent=1, ensure_ascii=False) + "\n"
        write_atomically(self.root / INPUTS_FILE, text.encode())

    @contextlib.contextmanager
    def changing_inputs(self) -> Iterator[Inputs]:
        """The inputs, for a change saved when the block ends (one writer at a time)."""
        with self._inputs_lock():
            inputs = self.inputs()
            yield inputs
            self._save_inputs(inputs)

    def ingest(
        self,
        source: Path,
        *,
        dataset: str | None = None,
        reject_threshold: float = DEFAULT_REJECT_THRESHOLD,
    ) -> Ingested:
        """Validate `source` and, if accepted, stage it and add it to the lake's inputs under
        the key raw/<dataset>/<file name> (a file of the same name replaces the earlier one).
        A rejected file is quarantined with its error report; nothing else changes.

        Raises UnreadableInput when `source` cannot be read, LakeError when the lake cannot be
        written (nothing of the file is left in the lake then). A rejected file whose
        quarantine fails still gets its verdict, with `not_quarantined` saying why."""
        name = lake.infer_dataset(str(source), dataset)
        staged_folder = self.root / lake.STAGED / name
        try:
            sink = _Sink(StagedWriter(DATASETS[name], staged_folder))
        except OSError as exc:  # a read-only or full lake: the verdict is still worth having
            sink, cannot_stage = None, exc
        try:
            with open(source, "rb") as stream:
                verdict = validate_stream(
                    stream,
                    dataset=name,
                    source=str(source),
                    reject_threshold=reject_threshold,
                    sink=sink,
                )
        except BaseException as exc:
            if sink is not None:
                sink.writer.discard()
            if isinstance(exc, OSError):
                if sink is not None and exc is sink.failure:
                    raise LakeError(os_error_message(exc, staged_folder)) from None
                raise UnreadableInput(os_error_message(exc, source, verb="read")) from None
            raise
        if not verdict.accepted:
            if sink is not None:
                sink.writer.discard()
            try:
                quarantined = self.quarantine(source, name, verdict.to_dict())
            except OSError as exc:
                return Ingested(verdict, not_quarantined=os_error_message(exc))
            return Ingested(verdict, quarantined=quarantined)
        if sink is None:
            raise LakeError(os_error_message(cannot_stage, staged_folder))
        try:
            return self._accept(source, name, verdict, sink.writer)
        except OSError as exc:
            raise LakeError(os_error_message(exc)) from None

    def _accept(
        self, source: Path, name: str, verdict: FileVerdict, writer: StagedWriter
    ) -> Ingested:
        now = utc_now().isoformat()
        key = lake.raw_key(name, source.name)
        accepted = InputFile(name, key, verdict.sha256, verdict.rows, now, now)
        staged, raw_copy = self.path(accepted.staged), self.path(key)
        partial_copy = raw_copy.with_name(partial_name(os.getpid()))
        try:
            try:
                raw_copy.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(source, partial_copy)
            except OSError as exc:
                exc.filename = str(raw_copy)
                raise
            # Staged file, raw copy and record change together, under the inputs lock, so that
            # a prune (which deletes unreferenced staged files under the same lock) never sees
            # one without the others. What needs disk space comes first: the renames after it
            # cannot fail for want of space.
            with self._inputs_lock(), INTERRUPTS.held():
                inputs = self.inputs()
                new_staged = not staged.exists()
                if new_staged:
                    try:
                        writer.commit(staged)
                    except OSError as exc:
                        exc.filename = exc.filename or str(staged)
                        raise
                else:  # this content was staged before: that file stays as it is
                    writer.discard()
                try:
                    change = inputs.accept(accepted)
                    self._save_inputs(inputs)
                except BaseException:
                    if new_staged:
                        staged.unlink(missing_ok=True)
                    raise
                os.replace(partial_copy, raw_copy)
        finally:
            writer.discard()
            partial_copy.unlink(missing_ok=True)
        return Ingested(verdict, change, inputs.rentals.get(key) or inputs.snapshots[name])

    def quarantine(self, source: Path, dataset: str, report: dict) -> tuple[Path, Path]:
        """Copy a rejected file to quarantine/ with its error report, never over an earlier
        rejection's evidence. Both are written or neither (an OSError names the file)."""
        moment = utc_now()
        text = json.dumps(report, indent=1, ensure_ascii=False) + "\n"
        for attempt in range(1, 1000):
            stamp = lake.time_stamp(moment) + (f"-{attempt}" if attempt > 1 else "")
            copy_key, report_key = lake.quarantine_keys(dataset, source.name, stamp)
            copy = self.path(copy_key)
            report_path = self.path(report_key)
            copy.parent.mkdir(parents=True, exist_ok=True)
            created = False
            try:
                with open(copy, "xb") as target:
                    created = True
                    with open(source, "rb") as original:
                        shutil.copyfileobj(original, target)
                write_atomically(report_path, text.encode())
            except BaseException as exc:
                if not created and isinstance(exc, FileExistsError):
                    continue  # an earlier rejection's name: try the next one
                if created:
                    copy.unlink(missing_ok=True)
                if isinstance(exc, OSError) and exc.filename is None:
                    exc.filename = str(copy)
                raise
            return copy, report_path
        raise LakeError(f"cannot find a free quarantine name for {source.name} in {copy.parent}")

    # ------------------------------------------------------------------ runs

    @contextlib.contextmanager
    def run_lock(self) -> Iterator[None]:
        """Hold the lake for one run; LakeBusy names the run that holds it."""
        with contextlib.ExitStack() as opened:
            try:
                self.root.mkdir(parents=True, exist_ok=True)
                lock = opened.enter_context(open(self.root / ".run.lock", "a+"))
            except OSError as exc:
                raise LakeError(os_error_message(exc, self.root)) from None
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                lock.seek(0)
                holder = lock.read().strip() or "another run"
                raise LakeBusy(
                    f"the lake {self.root} is in use by {holder}; wait for it to finish"
                ) from None
            self._lock = lock
            try:
                yield
            finally:
                del self._lock

    def hold_for(self, run_id: str) -> None:
        """Name the run that holds the lock (what a second run's error message shows)."""
        self._lock.seek(0)
        self._lock.truncate()
        self._lock.write(f"run {run_id} (process {os.getpid()}, since {utc_now():%H:%M:%S} UTC)")
        self._lock.flush()

    def new_run_id(self) -> str:
        """The UTC time; `-2`, `-3`… when a run of that second exists (called under the lock)."""
        base = lake.time_stamp(utc_now())
        run_id, n = base, 1
        while self.run_folder(run_id).exists():
            n += 1
            run_id = f"{base}-{n}"
        return run_id

    def start_run(self, manifest: Manifest) -> None:
        """Create the run's folder with its manifest and status, or nothing."""
        folder = self.run_folder(manifest.run_id)
        folder.mkdir(parents=True)  # a new run id: never an earlier run's folder
        try:
            write_atomically(folder / lake.MANIFEST_FILE, manifest.to_json().encode())
            self.record_status(manifest.run_id, "running", started_at=manifest.created_at)
        except BaseException:
            shutil.rmtree(folder, ignore_errors=True)
            raise

    def manifest(self, run_id: str) -> Manifest:
        return Manifest.from_json((self.run_folder(run_id) / lake.MANIFEST_FILE).read_text())

    def status(self, run_id: str) -> dict:
        path = self.run_folder(run_id) / STATUS_FILE
        try:
            status = json.loads(path.read_text(encoding="utf-8"))
            if not isinstance(status, dict) or not isinstance(status.get("state"), str):
                raise ValueError("it has no state")
        except FileNotFoundError:
            return {"run_id": run_id, "state": "unknown"}
        except (ValueError, OSError) as exc:
            raise LakeError(
                f"{path} is not a readable run status ({_reason(exc)}): restore it, or move it "
                "away (that run's state is then unknown)"
            ) from None
        return status

    def record_status(self, run_id: str, state: str, **details) -> None:
        status = {**self.status(run_id), "run_id": run_id, "state": state, **details}
        text = json.dumps(status, indent=1, ensure_ascii=False, default=str) + "\n"
        write_atomically(self.run_folder(run_id) / STATUS_FILE, text.encode())

    def run_ids(self) -> list[str]:
        folder = self.root / lake.RUNS
        return sorted(p.name for p in folder.iterdir() if p.is_dir()) if folder.is_dir() else []

    # ------------------------------------------------------------------ publishing

    @property
    def record_path(self) -> Path:
        return self.path(lake.PUBLISHED_RECORD)

    def published(self) -> list[PublishedRun]:
        try:
            text = self.record_path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return []
        except (OSError, ValueError) as exc:
            raise LakeError(
                f"{self.record_path} cannot be read ({_reason(exc)}); restore it from a backup"
            ) from None
        try:
            return parse_record(text, str(self.record_path))
        except RecordError as exc:
            raise LakeError(str(exc)) from None

    def current_run(self) -> str | None:
        return next((run.run_id for run in self.published() if run.is_current), None)

    def publish(self, run_id: str) -> None:
        """Make `run_id` the current run: one atomic rewrite of the publish record."""
        runs = with_published(
            self.published(), run_id, utc_now().isoformat(), lake.manifest_key(run_id)
        )
        write_atomically(self.record_path, render_record(runs).encode())

    # ------------------------------------------------------------------ housekeeping

    def discard_outputs(self, run_id: str) -> None:
        """Remove the tables, the report and the checked entries of a run that was not
        published."""
        report = self.report_folder(run_id)
        for folder in (
            report,
            report.with_name(f".{report.name}.tmp"),
            *(Path(lake.table_run_path(str(self.processed), t, run_id)) for t in lake.TABLES),
        ):
            shutil.rmtree(folder, ignore_errors=True)
        checked.discard_local(self.root, run_id)

    def clean_leftovers(self) -> list[Path]:
        """Remove what interrupted runs and ingests left (called under the run lock): partial
        files of processes that are gone, reports and tables of runs that were never
        published, report staging folders. Returns what was removed."""
        published = {run.run_id for run in self.published()}
        removed: list[Path] = []
        for partial in self.root.rglob(f"*{PARTIAL_SUFFIX}"):
            owner = partial_owner(partial.name)
            if owner is not None and not _pid_alive(owner):
                partial.unlink(missing_ok=True)
                removed.append(partial)
        reports = self.root / lake.REPORTS
        if reports.is_dir():
            for folder in reports.iterdir():
                if folder.name.startswith(".") or folder.name not in published:
                    shutil.rmtree(folder, ignore_errors=True)
                    removed.append(folder)
        for table in lake.TABLES:
            for folder in (self.processed / table).glob("run_id=*"):
                if folder.name.removeprefix("run_id=") not in published:
                    shutil.rmtree(folder, ignore_errors=True)
                    removed.append(folder)
        for run_id in self.run_ids():  # a run killed after its publish is published all the same
            if self.status(run_id).get("state") == "running":
                self.record_status(run_id, "published" if run_id in published else "interrupted")
        return removed

    def prune(self) -> None:
        """Keep the tables and reports of the last KEEP_PUBLISHED_RUNS published runs, and the
        staged files that the inputs or those runs' manifests name, and the checked entries
        those manifests name (carrental.checked); delete the rest. Runs under the run lock."""
        kept = [run.run_id for run in self.published()][-KEEP_PUBLISHED_RUNS:]
        for table in lake.TABLES:
            for folder in (self.processed / table).glob("run_id=*"):
                if folder.name.removeprefix("run_id=") not in kept:
                    shutil.rmtree(folder, ignore_errors=True)
        reports = self.root / lake.REPORTS
        if reports.is_dir():
            for folder in reports.iterdir():
                if folder.name not in kept:
                    shutil.rmtree(folder, ignore_errors=True)
        with self.changing_inputs() as inputs:  # no ingest adds a staged file meanwhile
            referenced = {f.staged for f in [*inputs.snapshots.values(), *inputs.rentals.values()]}
            manifests = []
            for run_id in kept:
                with contextlib.suppress(FileNotFoundError, ValueError):
                    manifests.append(self.manifest(run_id))
            referenced |= {f.staged for m in manifests for f in m.inputs}
            for staged in (self.root / lake.STAGED).rglob("*.parquet"):
                if staged.relative_to(self.root).as_posix() not in referenced:
                    staged.unlink(missing_ok=True)
        checked.prune_local(self.root, manifests)


def _reason(exc: BaseException) -> str:
    """What went wrong, without the path (the message names that itself)."""
    if isinstance(exc, OSError):
        return os.strerror(exc.errno) if exc.errno else str(exc.args[0] if exc.args else exc)
    return f"{type(exc).__name__}: {exc}" if isinstance(exc, (KeyError, TypeError)) else str(exc)
