"""`python -m worker` with the runpod SDK's start-up fitness checks on, its network check kept on loopback.

The SDK's network check opens a TCP connection to 8.8.8.8:53 (runpod-python
runpod/serverless/modules/rp_system_fitness.py `_check_network_connectivity`). Tests here may reach
nothing but this machine, so that one check connects to the loopback listener named by
NOTUS_TEST_NETWORK_CHECK (host:port) instead: the same SDK code path, check registration and
timeout, another address. The memory and disk checks run unchanged, with the SDK's real thresholds.
"""

from __future__ import annotations

import asyncio
import os
import runpy

# The worker holds the SDK's logging at INFO before it imports runpod (worker/__main__.py); the SDK
# sets its level on import, so this module, which imports it first, does the same.
os.environ.setdefault("RUNPOD_LOG_LEVEL", "INFO")
from runpod.serverless.modules import rp_system_fitness


async def _loopback_network_check() -> None:
    host, port = os.environ["NOTUS_TEST_NETWORK_CHECK"].rsplit(":", 1)
    try:
        _, writer = await asyncio.wait_for(
            asyncio.open_connection(host, int(port)), timeout=rp_system_fitness.NETWORK_CHECK_TIMEOUT
        )
    except (OSError, TimeoutError) as exc:
        raise RuntimeError(f"Network connectivity failed: {host}:{port}: {exc}") from None
    writer.close()
    await writer.wait_closed()
    rp_system_fitness.log.info(f"Network connectivity passed: Connected to {host}")


if __name__ == "__main__":
    rp_system_fitness._check_network_connectivity = _loopback_network_check
    runpy.run_module("worker", run_name="__main__", alter_sys=True)
