"""Headless Chromium for the report page tests, driven over the DevTools protocol on a pipe.

`--remote-debugging-pipe` makes Chromium read protocol commands from fd 3 and write replies and
events to fd 4 (JSON messages ended by a NUL byte): no port, no websocket library. One page is
opened per `load`; everything the page asks of the network (Network.requestWillBeSent), every
uncaught exception and every console error is recorded, then the page can be queried with
JavaScript and captured to a PNG.

The browser is found as $CARRENTAL_CHROMIUM, else `chromium`, `chromium-browser`,
`google-chrome` on PATH. Without one, tests skip and say what to install, unless
$CARRENTAL_REQUIRE_CHROMIUM is set (CI sets it in .ci/run): then a missing browser fails.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import json
import os
import select
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import pytest

INSTALL_HINT = (
    "headless Chromium is needed to test report.html: install it "
    "(Debian/Ubuntu: sudo apt-get install chromium; macOS: brew install --cask chromium) "
    "or point CARRENTAL_CHROMIUM at a Chromium or Chrome binary"
)
TIMEOUT_SECONDS = 60
WIDTH = 1280


def find_chromium() -> str:
    """The browser's path; skips the test (fails it in CI) when there is none."""
    candidates = [os.environ.get("CARRENTAL_CHROMIUM"), "chromium", "chromium-browser"]
    for candidate in [*candidates, "google-chrome"]:
        found = candidate and shutil.which(candidate)
        if found:
            return found
    if os.environ.get("CARRENTAL_REQUIRE_CHROMIUM"):
        pytest.fail(f"CARRENTAL_REQUIRE_CHROMIUM is set but no browser was found: {INSTALL_HINT}")
    pytest.skip(INSTALL_HINT)


@dataclass
class LoadedPage:
    browser: Chromium
    session: str
    url: str
    requests: list[str] = field(default_factory=list)  # every URL the page asked for
    errors: list[str] = field(default_factory=list)  # exceptions and console errors

    def evaluate(self, expression: str) -> object:
        """The JSON value of a JavaScript expression (awaited if it is a promise)."""
        reply = self.browser.command(
            "Runtime.evaluate",
            {"expression": expression, "returnByValue": True, "awaitPromise": True},
            self.session,
        )
        if "exceptionDetails" in reply:
            raise AssertionError(f"{expression!r} threw: {reply['exceptionDetails']}")
        return reply["result"].get("value")

    def screenshot(self, png: Path) -> tuple[int, int]:
        """The whole page (not only the window) as a PNG; returns its CSS width and height."""
        metrics = self.browser.command("Page.getLayoutMetrics", {}, self.session)
        width = int(metrics["cssContentSize"]["width"])
        height = int(metrics["cssContentSize"]["height"])
        shot = self.browser.command(
            "Page.captureScreenshot",
            {
                "format": "png",
                "captureBeyondViewport": True,
                "clip": {"x": 0, "y": 0, "width": width, "height": height, "scale": 1},
            },
            self.session,
        )
        png.write_bytes(base64.b64decode(shot["data"]))
        return width, height


class Chromium:
    def __init__(self, executable: str):
        self.profile = tempfile.mkdtemp(prefix="carrental-chromium-")
        to_browser_read, self._to_browser = os.pipe()
        self._from_browser, from_browser_write = os.pipe()
        # Chromium reads fd 3 and writes fd 4. A tiny Python launcher moves the pipe ends there
        # (in this process those numbers may belong to anyone), then becomes Chromium; the ends
        # are first moved to fds >= 10 so that the launcher's dup2 calls cannot collide.
        child_ends = tuple(
            fcntl.fcntl(fd, fcntl.F_DUPFD, 10) for fd in (to_browser_read, from_browser_write)
        )
        os.close(to_browser_read)
        os.close(from_browser_write)
        launcher = (
            "import os, sys; os.dup2(int(sys.argv[1]), 3); os.dup2(int(sys.argv[2]), 4); "
            "os.close(int(sys.argv[1])); os.close(int(sys.argv[2])); "
            "os.execv(sys.argv[3], sys.argv[3:])"
        )
        with open(Path(self.profile, "chromium.log"), "wb") as log:  # the child keeps a copy
            self.process = subprocess.Popen(
                [
                    sys.executable,
                    "-c",
                    launcher,
                    *map(str, child_ends),
                    executable,
                    "--headless=new",
                    "--no-sandbox",  # tests run as root in CI containers
                    "--disable-gpu",
                    "--hide-scrollbars",
                    "--no-first-run",
                    "--no-default-browser-check",
                    "--disable-extensions",
                    "--disable-background-networking",
                    "--disable-component-update",
                    "--remote-debugging-pipe",
                    f"--user-data-dir={self.profile}",
                    f"--window-size={WIDTH},900",
                    "about:blank",
                ],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=log,
                pass_fds=child_ends,
            )
        for fd in child_ends:
            os.close(fd)
        self._next_id = 0
        self._buffer = b""
        self._events: list[dict] = []

    def close(self) -> None:
        with contextlib.suppress(OSError, AssertionError):  # it may exit before it answers
            self.command("Browser.close", {})
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        os.close(self._to_browser)
        os.close(self._from_browser)
        shutil.rmtree(self.profile, ignore_errors=True)

    def _fail(self, problem: str) -> AssertionError:
        log = Path(self.profile, "chromium.log")
        tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
        return AssertionError(f"Chromium {problem} (exit code {self.process.poll()}):\n{tail}")

    def _read_message(self) -> dict:
        while b"\0" not in self._buffer:
            ready, _, _ = select.select([self._from_browser], [], [], TIMEOUT_SECONDS)
            if not ready:
                raise self._fail(f"did not answer within {TIMEOUT_SECONDS} s")
            chunk = os.read(self._from_browser, 1 << 16)
            if not chunk:
                raise self._fail("closed its DevTools pipe")
            self._buffer += chunk
        message, self._buffer = self._buffer.split(b"\0", 1)
        return json.loads(message)

    def command(self, method: str, params: dict, session: str | None = None) -> dict:
        self._next_id += 1
        message = {"id": self._next_id, "method": method, "params": params}
        if session:
            message["sessionId"] = session
        try:
            os.write(self._to_browser, json.dumps(message).encode() + b"\0")
        except BrokenPipeError:
            raise self._fail("closed its DevTools pipe") from None
        while True:
            reply = self._read_message()
            if reply.get("id") == self._next_id:
                if "error" in reply:
                    raise AssertionError(f"{method} failed: {reply['error']}")
                return reply["result"]
            self._events.append(reply)

    def _wait_for(self, method: str, session: str) -> None:
        while not any(
            e.get("method") == method and e.get("sessionId") == session for e in self._events
        ):
            self._events.append(self._read_message())

    def load(self, page: Path) -> LoadedPage:
        """Open a file in a fresh tab, wait until it is loaded and its charts have drawn."""
        target = self.command("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = self.command("Target.attachToTarget", {"targetId": target, "flatten": True})[
            "sessionId"
        ]
        for domain in ("Network", "Page", "Runtime", "Log"):
            self.command(f"{domain}.enable", {}, session)
        self.command(
            "Emulation.setDeviceMetricsOverride",
            {"width": WIDTH, "height": 900, "deviceScaleFactor": 1, "mobile": False},
            session,
        )
        self._events.clear()
        url = page.resolve().as_uri()
        self.command("Page.navigate", {"url": url}, session)
        self._wait_for("Page.loadEventFired", session)
        loaded = LoadedPage(self, session, url)
        # two animation frames: Chart.js sizes its canvases on the first
        loaded.evaluate(
            "new Promise(r => requestAnimationFrame(() => requestAnimationFrame(() => r(true))))"
        )
        for event in self._events:
            if event.get("sessionId") != session:
                continue
            params = event.get("params", {})
            if event["method"] == "Network.requestWillBeSent":
                loaded.requests.append(params["request"]["url"])
            elif event["method"] == "Runtime.exceptionThrown":
                loaded.errors.append(json.dumps(params["exceptionDetails"]))
            elif event["method"] == "Runtime.consoleAPICalled" and params["type"] == "error":
                loaded.errors.append(json.dumps(params["args"]))
            elif event["method"] == "Log.entryAdded" and params["entry"]["level"] == "error":
                loaded.errors.append(params["entry"]["text"])
        return loaded
