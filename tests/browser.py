"""A real headless Chromium for tests, driven over the Chrome DevTools Protocol on a pipe.

``--remote-debugging-pipe``: Chromium reads commands from its fd 3 and writes answers and events
to its fd 4, each a JSON message ending in a NUL byte. No port, no dependency: a reader thread
splits the stream, ``Browser.send`` waits (with a deadline) for the answer to its id, and events
are kept for the test to look at. Debian's ``chromium`` package (``make tools`` installs it).
"""

from __future__ import annotations

import base64
import fcntl
import json
import os
import queue
import shutil
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import pytest

FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-extensions", "--disable-sync", "--no-first-run", "--no-default-browser-check",
         "--mute-audio", "--disable-dev-shm-usage", "--remote-debugging-pipe")
MAX_MESSAGE = 64 << 20  # a screenshot is well under this


def chromium() -> str:
    path = shutil.which("chromium")
    if path is None:
        pytest.fail("chromium is not installed: `make tools` installs Debian's chromium package")
    return path


class BrowserError(Exception):
    pass


class Browser:
    """One headless Chromium process; ``tab(url)`` opens a page in it."""

    def __init__(self, profile: Path, timeout: float = 15.0) -> None:
        self.timeout = timeout
        to_chrome_r, to_chrome_w = os.pipe()
        from_chrome_r, from_chrome_w = os.pipe()
        # high numbers first, so the redirections onto 3 and 4 cannot clobber each other (bash:
        # dash refuses fd numbers above 9)
        read_end = fcntl.fcntl(to_chrome_r, fcntl.F_DUPFD, 10)
        write_end = fcntl.fcntl(from_chrome_w, fcntl.F_DUPFD, 10)
        os.close(to_chrome_r)
        os.close(from_chrome_w)
        command = " ".join([chromium(), *FLAGS, f"--user-data-dir={profile}", "about:blank"])
        self.proc = subprocess.Popen(
            ["/bin/bash", "-c", f"exec {command} 3<&{read_end} 4>&{write_end}"],
            pass_fds=(read_end, write_end), stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL, stderr=open(profile.parent / "chromium.log", "wb"))
        os.close(read_end)
        os.close(write_end)
        self._out = to_chrome_w
        self._in = from_chrome_r
        self._next_id = 0
        self._answers: dict[int, queue.Queue] = {}
        self._lock = threading.Lock()
        self.events: list[dict] = []
        self._reader = threading.Thread(target=self._read, name="cdp-reader", daemon=True)
        self._reader.start()

    def _read(self) -> None:
        buffer = b""
        while True:
            try:
                chunk = os.read(self._in, 1 << 16)
            except OSError:
                return
            if not chunk:
                return
            buffer += chunk
            if len(buffer) > MAX_MESSAGE:
                return
            while b"\0" in buffer:
                raw, buffer = buffer.split(b"\0", 1)
                message = json.loads(raw)
                if "id" in message:
                    with self._lock:
                        waiter = self._answers.get(message["id"])
                    if waiter is not None:
                        waiter.put(message)
                else:
                    self.events.append(message)

    def send(self, method: str, params: dict | None = None, session: str | None = None) -> dict:
        with self._lock:
            self._next_id += 1
            ident = self._next_id
            waiter: queue.Queue = queue.Queue()
            self._answers[ident] = waiter
        message: dict[str, Any] = {"id": ident, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        os.write(self._out, json.dumps(message).encode() + b"\0")
        try:
            answer = waiter.get(timeout=self.timeout)
        except queue.Empty:
            raise BrowserError(f"no answer to {method} within {self.timeout}s") from None
        finally:
            with self._lock:
                self._answers.pop(ident, None)
        if "error" in answer:
            raise BrowserError(f"{method}: {answer['error']}")
        return answer.get("result", {})

    def tab(self, url: str, width: int = 1000, height: int = 900, mobile: bool = False) -> Tab:
        target = self.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = self.send("Target.attachToTarget", {"targetId": target, "flatten": True})[
            "sessionId"]
        tab = Tab(self, session)
        for domain in ("Page", "Runtime", "Log"):
            tab.send(f"{domain}.enable")
        tab.send("Emulation.setDeviceMetricsOverride", {
            "width": width, "height": height, "deviceScaleFactor": 1, "mobile": mobile})
        tab.navigate(url)
        return tab

    def close(self) -> None:
        try:
            self.send("Browser.close")
        except (BrowserError, OSError):
            pass
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        for fd in (self._out, self._in):
            try:
                os.close(fd)
            except OSError:
                pass


class Tab:
    def __init__(self, browser: Browser, session: str) -> None:
        self.browser = browser
        self.session = session

    def send(self, method: str, params: dict | None = None) -> dict:
        return self.browser.send(method, params, self.session)

    def events(self, method: str) -> list[dict]:
        return [e for e in list(self.browser.events)
                if e.get("sessionId") == self.session and e.get("method") == method]

    @property
    def loads(self) -> int:
        """Load events so far: a reload or a navigation adds one."""
        return len(self.events("Page.loadEventFired"))

    def navigate(self, url: str, timeout: float = 15.0) -> None:
        before = self.loads
        answer = self.send("Page.navigate", {"url": url})
        if answer.get("errorText"):
            raise BrowserError(f"cannot open {url}: {answer['errorText']}")
        deadline = time.monotonic() + timeout
        while self.loads == before:
            if time.monotonic() > deadline:
                raise BrowserError(f"{url} did not load within {timeout}s")
            time.sleep(0.02)

    def evaluate(self, expression: str) -> Any:
        answer = self.send("Runtime.evaluate", {"expression": expression, "returnByValue": True})
        if "exceptionDetails" in answer:
            raise BrowserError(f"{expression}: {answer['exceptionDetails']}")
        return answer["result"].get("value")

    def screenshot(self, path: Path) -> Path:
        data = self.send("Page.captureScreenshot", {"format": "png",
                                                    "captureBeyondViewport": True})["data"]
        path.write_bytes(base64.b64decode(data))
        return path

    def console(self) -> list[str]:
        """Every console message, log entry and uncaught exception, as text."""
        texts = [e["params"]["entry"].get("text", "") for e in self.events("Log.entryAdded")]
        texts += [" ".join(str(a.get("value", a.get("description", ""))) for a in
                           e["params"].get("args", []))
                  for e in self.events("Runtime.consoleAPICalled")]
        texts += [json.dumps(e["params"]) for e in self.events("Runtime.exceptionThrown")]
        return texts
