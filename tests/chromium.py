"""Headless Chromium driven over its DevTools pipe, stdlib only: for the web pages' tests.

``chromium --remote-debugging-pipe`` reads DevTools commands on fd 3 and writes answers and
events on fd 4, each a JSON object ended by a NUL byte; no websocket library is needed (none
is installed). One browser serves a whole test module (it takes a second or two to start):
``Browser.page()`` opens a tab, which can log in through the real form, load a URL, return
the DOM as the browser built it, evaluate an expression, and save a screenshot.

Waiting is on conditions with deadlines: a load waits for the tab's ``Page.loadEventFired``
of a navigation, never a fixed sleep.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import select
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


class DevToolsError(RuntimeError):
    pass


class Browser:
    def __init__(self, profile: Path) -> None:
        to_child_r, self._to_child = os.pipe()
        self._from_child, from_child_w = os.pipe()
        args = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu",
                "--remote-debugging-pipe", f"--user-data-dir={profile}", "--no-first-run",
                "--disable-extensions", "--disable-background-networking", "about:blank"]

        def as_fds_3_and_4() -> None:
            # in the child, before exec: the pipe's ends become fds 3 and 4, whatever numbers
            # they have here (copied out of the way first, in case one of them is 3 or 4)
            r, w = os.dup(to_child_r), os.dup(from_child_w)
            os.dup2(r, 3)
            os.dup2(w, 4)

        self.proc = subprocess.Popen(args, pass_fds=(3, 4), preexec_fn=as_fds_3_and_4,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        os.close(to_child_r)
        os.close(from_child_w)
        self._buf = b""
        self._next_id = 0
        self.events: list[dict[str, Any]] = []

    def call(self, method: str, params: dict[str, Any] | None = None,
             session: str | None = None, timeout: float = 30.0) -> dict[str, Any]:
        self._next_id += 1
        msg: dict[str, Any] = {"id": self._next_id, "method": method, "params": params or {}}
        if session is not None:
            msg["sessionId"] = session
        os.write(self._to_child, json.dumps(msg).encode() + b"\0")
        want = self._next_id
        answer = self._until(lambda m: m.get("id") == want, timeout, method)
        if "error" in answer:
            raise DevToolsError(f"{method}: {answer['error']}")
        result: dict[str, Any] = answer.get("result", {})
        return result

    def wait_event(self, method: str, session: str | None, timeout: float = 30.0,
                   since: int = 0) -> dict[str, Any]:
        """The first event ``method`` of ``session`` at or after index ``since``."""
        def match(m: dict[str, Any]) -> bool:
            return m.get("method") == method and m.get("sessionId") == session
        for e in self.events[since:]:
            if match(e):
                return e
        return self._until(match, timeout, method)

    def _until(self, match: Any, timeout: float, what: str) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            while b"\0" in self._buf:
                raw, self._buf = self._buf.split(b"\0", 1)
                msg = json.loads(raw)
                if "id" not in msg:
                    self.events.append(msg)
                if match(msg):
                    return dict(msg)
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"chromium: no answer to {what} in {timeout} s")
            ready, _, _ = select.select([self._from_child], [], [], left)
            if ready:
                chunk = os.read(self._from_child, 1 << 20)
                if not chunk:
                    raise DevToolsError(f"chromium exited (rc {self.proc.poll()}) during {what}")
                self._buf += chunk

    def page(self, width: int = 1280, height: int = 900) -> Page:
        target = self.call("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = self.call("Target.attachToTarget", {"targetId": target,
                                                      "flatten": True})["sessionId"]
        tab = Page(self, str(session))
        tab.call("Page.enable")
        tab.call("Emulation.setDeviceMetricsOverride", {
            "width": width, "height": height, "deviceScaleFactor": 1, "mobile": False})
        return tab

    def close(self) -> None:
        with contextlib.suppress(DevToolsError, TimeoutError, OSError):
            self.call("Browser.close", timeout=5)
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        os.close(self._to_child)
        os.close(self._from_child)


class Page:
    def __init__(self, browser: Browser, session: str) -> None:
        self.browser = browser
        self.session = session

    def call(self, method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        return self.browser.call(method, params, self.session)

    def load(self, url: str) -> None:
        """Navigate and wait for the load event of the document it ends at (redirects
        included)."""
        since = len(self.browser.events)
        self.call("Page.navigate", {"url": url})
        self.browser.wait_event("Page.loadEventFired", self.session, since=since)

    def evaluate(self, expression: str) -> Any:
        """The value of ``expression`` in the page (DevTools runs it whatever the page's
        Content-Security-Policy says: the test's reach, not the page's)."""
        out = self.call("Runtime.evaluate", {"expression": expression, "returnByValue": True})
        if "exceptionDetails" in out:
            raise DevToolsError(f"{expression}: {out['exceptionDetails']}")
        return out["result"].get("value")

    def submit(self, form_selector: str, values: dict[str, str]) -> None:
        """Fill ``values`` into the form's fields by name and submit it; wait for the load."""
        since = len(self.browser.events)
        sets = "".join(f"f.elements[{json.dumps(k)}].value = {json.dumps(v)};"
                       for k, v in values.items())
        self.evaluate(f"(() => {{ const f = document.querySelector({json.dumps(form_selector)});"
                      f"{sets} f.submit(); }})()")
        self.browser.wait_event("Page.loadEventFired", self.session, since=since)

    def outside_references(self) -> list[str]:
        """Every URL the page loaded (the browser's resource timing) or points at (``href``,
        ``src``, ``action``, a style's ``url()``) that is not on the page's own origin: the
        pages must work on a station or centre without internet (no CDN, font or script)."""
        found = self.evaluate("""(() => {
            const at = u => new URL(u, location.href).href;
            const urls = performance.getEntriesByType('resource').map(e => e.name);
            for (const el of document.querySelectorAll('[href], [src], [action]'))
                for (const a of ['href', 'src', 'action'])
                    if (el.hasAttribute(a)) urls.push(at(el.getAttribute(a)));
            for (const m of document.documentElement.outerHTML.matchAll(/url\\(([^)]*)\\)/g))
                urls.push(at(m[1].replace(/['"]/g, '')));
            return urls.filter(u => new URL(u).origin !== location.origin);
        })()""")
        return [str(u) for u in found]

    def dom(self) -> str:
        return str(self.evaluate("document.documentElement.outerHTML"))

    def url(self) -> str:
        return str(self.evaluate("location.href"))

    def screenshot(self, path: Path, full_page: bool = True) -> None:
        params: dict[str, Any] = {"format": "png"}
        if full_page:
            h = int(self.evaluate("document.documentElement.scrollHeight"))
            w = int(self.evaluate("document.documentElement.scrollWidth"))
            params.update(captureBeyondViewport=True,
                          clip={"x": 0, "y": 0, "width": w, "height": min(h, 4000),
                                "scale": 1})
        data = self.call("Page.captureScreenshot", params)["data"]
        path.write_bytes(base64.b64decode(data))
