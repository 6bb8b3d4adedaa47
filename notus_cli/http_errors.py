"""How a server that could not be reached is worded: one sentence for every HTTP client in the CLI."""

from __future__ import annotations

import httpx

from notus_cli.errors import EndpointUnreachable


def unreachable(url: str, exc: httpx.HTTPError) -> EndpointUnreachable:
    """The error for a server that could not be reached (or did not answer in time)."""
    kind = "timed out" if isinstance(exc, httpx.TimeoutException) else "is unreachable"
    return EndpointUnreachable(
        f"{url} {kind} ({type(exc).__name__})", hint="check the URL, your network, and that the endpoint is running"
    )
