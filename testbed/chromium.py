"""Open a page in headless Chromium and ask it what it shows, over the DevTools protocol.

Chromium comes from Debian (scripts/apt-packages.txt, installed by `scripts/setup --test`). It
runs with a fresh profile and every network feature off, and is driven over its DevTools
websocket (with aiohttp, already a dependency): load the page, evaluate an expression in it,
take a full-page screenshot.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import json
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-default-apps", "--mute-audio", "--hide-scrollbars", "--remote-debugging-port=0",
    "--window-size=1280,900",
)  # fmt: skip


def chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if path := shutil.which(name):
            return path
    return None


@dataclass
class PageView:
    value: Any  # what the expression evaluated to
    screenshot: bytes  # PNG


async def _devtools_url(process: asyncio.subprocess.Process, limit: float) -> str:
    assert process.stderr is not None
    async with asyncio.timeout(limit):
        while line := (await process.stderr.readline()).decode(errors="replace"):
            if match := re.search(r"DevTools listening on (ws://\S+)", line):
                return match.group(1)
    raise RuntimeError("Chromium exited before it opened its DevTools port")


class _Session:
    def __init__(self, socket: aiohttp.ClientWebSocketResponse) -> None:
        self.socket = socket
        self.ids = itertools.count(1)
        self.events: list[dict[str, Any]] = []

    async def call(self, method: str, **params: Any) -> dict[str, Any]:
        call_id = next(self.ids)
        await self.socket.send_json({"id": call_id, "method": method, "params": params})
        while True:
            message = json.loads((await self.socket.receive()).data)
            if message.get("id") == call_id:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                result: dict[str, Any] = message.get("result", {})
                return result
            self.events.append(message)

    async def wait_for(self, event: str) -> None:
        if any(message.get("method") == event for message in self.events):
            return
        while True:
            message = json.loads((await self.socket.receive()).data)
            if message.get("method") == event:
                return


async def _drain(stream: asyncio.StreamReader | None) -> None:
    while stream is not None and await stream.read(65536):
        pass


async def view_page(url: str, expression: str, profile: Path, *, limit: float = 120.0) -> PageView:
    """Load `url`, evaluate `expression` once it has loaded, and take a full-page screenshot (PNG)."""
    binary = chromium()
    if binary is None:
        raise RuntimeError("Chromium is not installed: run scripts/setup --test (it installs scripts/apt-packages.txt)")
    process = await asyncio.create_subprocess_exec(
        binary, *FLAGS, f"--user-data-dir={profile}", "about:blank",
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    drain: asyncio.Task[None] | None = None
    try:
        browser = await _devtools_url(process, limit)
        drain = asyncio.create_task(_drain(process.stderr))  # a full stderr pipe would stall Chromium
        port = re.search(r":(\d+)/", browser).group(1)  # type: ignore[union-attr]
        async with aiohttp.ClientSession() as http, asyncio.timeout(limit):
            async with http.get(f"http://127.0.0.1:{port}/json/list") as response:
                pages = [target for target in await response.json() if target.get("type") == "page"]
            async with http.ws_connect(pages[0]["webSocketDebuggerUrl"], max_msg_size=0) as socket:
                session = _Session(socket)
                await session.call("Page.enable")
                await session.call("Page.navigate", url=url)
                await session.wait_for("Page.loadEventFired")
                evaluated = await session.call("Runtime.evaluate", expression=expression, returnByValue=True)
                metrics = await session.call("Page.getLayoutMetrics")
                size = metrics["cssContentSize"]
                shot = await session.call(
                    "Page.captureScreenshot",
                    format="png",
                    captureBeyondViewport=True,
                    clip={"x": 0, "y": 0, "width": size["width"], "height": size["height"], "scale": 1},
                )
        return PageView(value=evaluated["result"].get("value"), screenshot=base64.b64decode(shot["data"]))
    finally:
        if drain is not None:
            drain.cancel()
        with contextlib.suppress(ProcessLookupError):
            process.terminate()
        try:
            await asyncio.wait_for(process.wait(), 20)
        except TimeoutError:
            process.kill()
            await process.wait()
