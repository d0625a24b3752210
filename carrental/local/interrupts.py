"""Ctrl-C (SIGINT) for the local commands: one watcher, INTERRUPTS, shared by the CLI and the
lake code, so that an interrupt always ends as an interrupt and never cuts the lake's
bookkeeping half-way.

- Libraries sometimes turn the KeyboardInterrupt raised inside them into an error of their own
  (DuckDB: RuntimeError "Query interrupted"; pyarrow importing pandas: AttributeError
  "partially initialized module"), or swallow it and go on. `seen` remembers the signal, so an
  error, or a result, that follows it is reported as the interrupt (`check()`).
- `held()` defers the signal while a few files are renamed into place (a record and what it
  names): the KeyboardInterrupt is raised when the block ends, never inside it.

Python runs signal handlers in the main thread only; in any other thread both are no-ops.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Callable, Iterator


class Interrupted(KeyboardInterrupt):
    """A Ctrl-C, with the one line that says what it stopped and what it left as it was."""


def _in_main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


class Interrupts:
    def __init__(self) -> None:
        self.seen = False
        self._depth = 0
        self._holding = 0
        self._pending = False
        self._previous = None
        self._callbacks: list[Callable[[], object]] = []

    def also_call(self, callback: Callable[[], object]) -> None:
        """Call `callback()` on Ctrl-C, e.g. DuckDB's connection.interrupt(): DuckDB sees the
        KeyboardInterrupt only when it happens to check for one, and may drop it."""
        self._callbacks.append(callback)

    def check(self) -> None:
        """Raise KeyboardInterrupt if one was swallowed (before printing or publishing)."""
        if self.seen:
            raise KeyboardInterrupt

    @contextlib.contextmanager
    def reported_as(self, message: str) -> Iterator[None]:
        """Whatever ends the block after a Ctrl-C ends it as Interrupted(message)."""
        try:
            yield
        except Interrupted:
            raise
        except BaseException as exc:
            if isinstance(exc, KeyboardInterrupt) or self.seen:
                raise Interrupted(message) from exc
            raise

    def _handler(self, signum, frame) -> None:
        if self._holding:
            self._pending = True
            return
        self._interrupt()

    def _interrupt(self) -> None:
        self.seen = True
        for callback in self._callbacks:
            with contextlib.suppress(Exception):  # e.g. a connection closed meanwhile
                callback()
        raise KeyboardInterrupt

    def __enter__(self) -> Interrupts:
        """Watch SIGINT until the outermost block ends (blocks nest)."""
        if _in_main_thread():
            if self._depth == 0:
                self.seen = self._pending = False
                self._callbacks.clear()
                # A command started with SIGINT ignored (`nohup`, `cmd &` in a script) stays so.
                if signal.getsignal(signal.SIGINT) is not signal.SIG_IGN:
                    self._previous = signal.signal(signal.SIGINT, self._handler)
            self._depth += 1
        return self

    def __exit__(self, *exc_info) -> None:
        if _in_main_thread() and self._depth:
            self._depth -= 1
            if self._depth == 0 and self._previous is not None:
                signal.signal(signal.SIGINT, self._previous)
                self._previous = None

    @contextlib.contextmanager
    def held(self) -> Iterator[None]:
        """Defer Ctrl-C until the block ends."""
        if not _in_main_thread():
            yield
            return
        with self:
            self._holding += 1
            try:
                yield
            finally:
                self._holding -= 1
                if not self._holding and self._pending:
                    self._pending = False
                    self._interrupt()


INTERRUPTS = Interrupts()
