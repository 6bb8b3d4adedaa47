"""The worker names what RunPod's API did not take (worker/lost_reports.py), through the runpod SDK's own
result path (rp_http.stream_result / send_result), without the content. Only the HTTP post is faked:
it fails the way aiohttp fails after the SDK's retries, since no RunPod API answers here."""

from __future__ import annotations

import logging
from typing import Any

import aiohttp
import pytest
from runpod.serverless.modules import rp_http

from worker import lost_reports

pytestmark = pytest.mark.anyio

SECRET = "the user's words"


class Session:
    """What `_handle_result` touches of an aiohttp session before it posts."""

    def __init__(self) -> None:
        self.headers: dict[str, str] = {}


async def refused(_session: Any, url: str, _data: Any) -> None:
    info = aiohttp.RequestInfo(aiohttp.client.URL(url), "POST", {}, aiohttp.client.URL(url))  # type: ignore[arg-type]
    raise aiohttp.ClientResponseError(info, (), status=502, message="Bad Gateway")


@pytest.fixture
def sdk(monkeypatch: pytest.MonkeyPatch) -> None:
    """The SDK's module with RunPod's URL templates (as RUNPOD_WEBHOOK_* set them) and a failing post."""
    monkeypatch.setattr(rp_http, "JOB_STREAM_URL", "https://api.runpod.ai/v2/ep/job-stream/pod1/$ID?gpu=x")
    monkeypatch.setattr(rp_http, "JOB_DONE_URL", "https://api.runpod.ai/v2/ep/job-done/pod1/$ID?gpu=x")
    monkeypatch.setattr(rp_http, "_transmit", refused)
    lost_reports.install()


@pytest.mark.usefixtures("sdk")
async def test_a_lost_stream_item_and_a_lost_result_are_named_without_content(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="notus.worker")
    await rp_http.stream_result(Session(), {"output": SECRET}, {"id": "job-7"})
    await rp_http.send_result(Session(), {"output": [SECRET]}, {"id": "job-8"})
    said = [record.getMessage() for record in caplog.records if record.name == "notus.worker"]
    assert said == [
        "job job-7: a streamed item lost: RunPod's API did not take it (ClientResponseError, HTTP 502)",
        "job job-8: its result lost: RunPod's API did not take it (ClientResponseError, HTTP 502)",
    ]
    assert SECRET not in caplog.text


async def test_a_post_that_goes_through_says_nothing(caplog: pytest.LogCaptureFixture) -> None:
    sent: list[str] = []

    async def taken(_session: Any, url: str, _data: Any) -> None:
        sent.append(url)

    wrapped = lost_reports.reporting(taken, stream_url="s/$ID", done_url="d/$ID")
    await wrapped(None, "s/job-1?isStream=false", "{}")
    assert sent == ["s/job-1?isStream=false"]
    assert not caplog.records
