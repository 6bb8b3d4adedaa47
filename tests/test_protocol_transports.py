"""Both clients, one protocol: the same job scenarios through chat's httpx client (ServerlessClient) and
bench's aiohttp sender (RunPodTarget), against the real emulator with a real SDK echo worker, must see
the same states, the same items and the same errors.

Each transport drives notus_cli.runpod.protocol.follow.JobFollower with the same retry policy; only
the bytes move differently. A poll may bring items in other batches on the two transports (timing),
so items are compared joined up in order; everything else is compared event by event.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest
from pydantic import SecretStr

from notus_cli.bench.runpod_target import RunPodTarget
from notus_cli.emulator import Endpoint
from notus_cli.emulator.config import RateLimiter
from notus_cli.errors import NotusError
from notus_cli.runpod.protocol import routes
from notus_cli.runpod.protocol.bodies import openai_job_input
from notus_cli.runpod.protocol.follow import (
    CallRefused,
    FollowEvent,
    JobAccepted,
    JobEnded,
    JobFollower,
    RetryScheduled,
    StreamedItems,
    call,
)
from notus_cli.runpod.protocol.limits import RetryPolicy
from notus_cli.runpod.serverless import ServerlessClient
from testbed.emulator import Harness

pytestmark = pytest.mark.anyio

POLICY = RetryPolicy(attempts=4, base=0.05, cap=3.0)
CHAT = {"messages": [{"role": "user", "content": "hello"}], "max_tokens": 3, "stream": True}


@dataclass(frozen=True)
class Scenario:
    job_input: Any = None
    job_id: str | None = None
    cancel: bool = False  # cancel the job once it is accepted (through the same transport)


SCENARIOS = {
    "completes": Scenario({"echo": "a", "items": 3, "delay": 0.05}),
    "streams a chat": Scenario(openai_job_input(CHAT)),
    "fails": Scenario({"fail": "boom"}),
    "is cancelled": Scenario({"sleep": 30}, cancel=True),
    "unknown job id": Scenario(job_id="no-such-job-u1"),
}


@pytest.fixture(scope="module")
def echo(emulator: Harness) -> Endpoint:
    endpoint, _pool = emulator.endpoint(workers=1)
    return endpoint


class Seen:
    """What one transport saw, as comparable tuples (job ids left out: each run has its own)."""

    def __init__(self, endpoint_id: str) -> None:
        self.endpoint_id = endpoint_id
        self.events: list[tuple[Any, ...]] = []

    def add(self, event: FollowEvent) -> None:
        if isinstance(event, JobAccepted):
            self.events.append(("accepted",))
        elif isinstance(event, StreamedItems):
            if self.events and self.events[-1][0] == "items":
                self.events[-1] = ("items", self.events[-1][1] + list(event.items))
            else:
                self.events.append(("items", list(event.items)))
        elif isinstance(event, RetryScheduled):
            self.events.append(("retry", event.reply.status if event.reply else None))
        elif isinstance(event, JobEnded):
            error = event.job.error
            self.events.append(("ended", str(event.job.status), error and (error.type, error.message)))
        elif isinstance(event, CallRefused):
            self.refused(event.reply.to_error(self.endpoint_id))

    def refused(self, error: NotusError) -> None:
        self.events.append(("refused", type(error).__name__, error.message))


async def through_httpx(harness: Harness, endpoint_id: str, scenario: Scenario) -> list[tuple[Any, ...]]:
    seen = Seen(endpoint_id)
    async with ServerlessClient(endpoint_id, harness.key, base_url=f"{harness.url}/v2", retry=POLICY) as client:
        try:
            async for event in client.follow(scenario.job_input, job_id=scenario.job_id):
                seen.add(event)
                if scenario.cancel and isinstance(event, JobAccepted):
                    await client.cancel(event.job_id)
        except NotusError as exc:
            seen.refused(exc)
    return seen.events


async def through_aiohttp(harness: Harness, endpoint_id: str, scenario: Scenario) -> list[tuple[Any, ...]]:
    seen = Seen(endpoint_id)
    target = RunPodTarget(endpoint_id, api_key=SecretStr(harness.key), api_base=f"{harness.url}/v2")
    async with target:
        await target.prepare()
        follower = JobFollower(scenario.job_input, job_id=scenario.job_id, retry=POLICY)
        events: AsyncIterator[tuple[FollowEvent, float]] = target.drive(follower)
        async for event, _at in events:
            seen.add(event)
            if scenario.cancel and isinstance(event, JobAccepted):
                status, _body, _retry_after = await target.exchange(call(routes.CANCEL, job_id=event.job_id))
                assert status == 200
    return seen.events


@pytest.mark.parametrize("name", list(SCENARIOS))
async def test_both_transports_see_the_same_job(emulator: Harness, echo: Endpoint, name: str) -> None:
    scenario = SCENARIOS[name]
    by_httpx = await through_httpx(emulator, echo.id, scenario)
    by_aiohttp = await through_aiohttp(emulator, echo.id, scenario)
    assert by_httpx == by_aiohttp
    expected_end = {
        "completes": ("ended", "COMPLETED", None),
        "streams a chat": ("ended", "COMPLETED", None),
        "fails": ("ended", "FAILED", ("worker_error", "boom")),
        "is cancelled": ("ended", "CANCELLED", None),
    }
    if name == "unknown job id":
        assert by_httpx == [("refused", "RunPodQueryError", by_httpx[0][2])]
        assert "404" in by_httpx[0][2]
        assert "no-such-job-u1" in by_httpx[0][2]
        return
    assert by_httpx[0] == ("accepted",)
    assert by_httpx[-1] == expected_end[name]
    items = [event[1] for event in by_httpx if event[0] == "items"]
    if name == "completes":
        assert items == [[{"index": i, "echo": "a"} for i in range(3)]]
    elif name == "streams a chat":
        assert len(items) == 1
        assert all(item.startswith("data: ") for item in items[0])
        assert items[0][-1] == "data: [DONE]\n\n"
    else:
        assert items == []


async def test_both_transports_wait_out_a_429_the_same_way(emulator: Harness) -> None:
    """/run limited to one per 2 s on this endpoint: the second job of a pair is refused with HTTP 429 and
    Retry-After, waited out, then accepted, on either transport."""
    endpoint, _pool = emulator.endpoint(workers=1)

    def limit() -> None:
        endpoint.limiter = RateLimiter({"run": (1, 2.0)})

    emulator.emulator.call(limit)
    scenario = Scenario({"echo": "r"})
    seen: list[list[tuple[Any, ...]]] = []
    for transport in (through_httpx, through_aiohttp):
        await asyncio.sleep(2.1)  # a fresh window for each pair
        seen.append(await transport(emulator, endpoint.id, scenario) + await transport(emulator, endpoint.id, scenario))
    by_httpx, by_aiohttp = seen
    assert by_httpx == by_aiohttp
    done = [("accepted",), ("items", [{"index": 0, "echo": "r"}]), ("ended", "COMPLETED", None)]
    assert by_httpx == [*done, ("retry", 429), *done]
