"""RunPod's load-balancing (LB) endpoints as data: the URL, the worker's env and health codes, the caps
and RunPod's answer to each. I/O-free, like the rest of the protocol package.

An LB endpoint has no queue: `https://{endpoint_id}.api.runpod.ai/<any path>` with
`Authorization: Bearer <key>` goes straight to one healthy worker's own HTTP server, once (no
retries). Sources, each read in runpod/docs (a900806e, 2026-08-20) unless a line says otherwise:

  [overview]  serverless/load-balancing/overview.mdx: the URL, "Health checks" (200 healthy, 204
              initializing, other unhealthy; `HEALTH_CHECK_PATH`, added in 2d6cf8d7, 2026-06-29),
              the env table (PORT 80, PORT_HEALTH = PORT), "Timeouts and limits" (2 min without a
              worker, 5.5 min processing, 30 MB request and response; misconfigured ports: 502),
              "No built-in retry".
  [overview@09cecca0]  the same page as first published (2025-08-05), whose "Request timeouts"
              gave the codes: no worker within 2 minutes -> `400`, processing over 5.5 minutes ->
              the connection is terminated with `524`. Every version up to df2726a6 (2026-02-09)
              kept them; c183078c ("Simplify Pods + Serverless docs", 2026-03-11) cut them and kept
              only the 502. They remain the only codes RunPod published for the two caps.
  [build]     serverless/load-balancing/build-a-worker.mdx, vllm-worker.mdx: a request that found
              no worker answers `{"error":"no workers available"}`.
  [affinity]  serverless/load-balancing/worker-affinity.mdx: every answer carries
              `X-Runpod-Worker-Id: <worker id>`; a strict-affinity request that waits too long gets
              `400` ("timed out waiting for worker"), which agrees with [overview@09cecca0].
  [flash]     runpod/flash (757420db) src/runpod_flash/core/resources/load_balancer_sls_resource.py:
              saveEndpoint with `type: "LB"` and `scalerType: REQUEST_COUNT` ("LB endpoints
              shouldn't use queue-based scaling"; QUEUE_DELAY refused), URL
              `https://{id}.{ENDPOINT_DOMAIN}`; core/urls.py: ENDPOINT_DOMAIN defaults to
              `api.runpod.ai`; core/resources/serverless.py: ServerlessType QB | LB.

No published code exists for a payload over 30 MB: `PAYLOAD_TOO_LARGE` (413, HTTP's own status for
it, RFC 9110 §15.5.14) is our choice, and says so in its message.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Literal

MB = 1024 * 1024

# ---- the endpoint ---------------------------------------------------------------------------------

URL_TEMPLATE = "https://{endpoint_id}.api.runpod.ai"  # [overview], [flash]: https://{id}.{ENDPOINT_DOMAIN}
ENDPOINT_TYPE = "LB"  # saveEndpoint's `type` [flash]
QUEUE_ENDPOINT_TYPE = "QB"  # the queue endpoint's [flash]
SCALER_TYPE = "REQUEST_COUNT"  # the one scaler an LB endpoint takes [flash]
WORKER_ID_HEADER = "X-Runpod-Worker-Id"  # on every answer: the worker that served it [affinity]
# The emulator has one host for every endpoint, so an endpoint's LB URL is a path of it instead.
EMULATOR_PATH = "/lb/{endpoint_id}"


def emulator_template(url: str) -> str:
    """The LB URL template of an emulator at `url` (http://127.0.0.1:8300 -> .../lb/{endpoint_id})."""
    return url.rstrip("/") + EMULATOR_PATH


def lb_url(template: str, endpoint_id: str) -> str:
    """The base URL of an LB endpoint from a template holding `{endpoint_id}` (RunPod's, or an emulator's
    `http://127.0.0.1:8000/lb/{endpoint_id}`); raises ValueError when the template lacks the id."""
    if "{endpoint_id}" not in template:
        raise ValueError(f"the LB URL template {template!r} must contain {{endpoint_id}}")
    return template.replace("{endpoint_id}", endpoint_id).rstrip("/")


# ---- the worker -----------------------------------------------------------------------------------

# What RunPod sets on an LB worker and reads from it [overview], "Environment variables".
PORT_ENV, PORT_HEALTH_ENV, HEALTH_CHECK_PATH_ENV = "PORT", "PORT_HEALTH", "HEALTH_CHECK_PATH"
DEFAULT_PORT = 80
DEFAULT_HEALTH_CHECK_PATH = "/ping"

HEALTHY, INITIALIZING = 200, 204  # [overview], "Health checks"
HealthState = Literal["healthy", "initializing", "unhealthy"]


def health_state(status: int | None) -> HealthState:
    """What the load balancer makes of a health answer: only `healthy` workers get requests;
    any status but 200 and 204, or no answer at all (None), is unhealthy [overview]."""
    if status == HEALTHY:
        return "healthy"
    return "initializing" if status == INITIALIZING else "unhealthy"


# ---- the caps, and RunPod's answer to each ---------------------------------------------------------

WORKER_WAIT_S = 120.0  # a request waits this long for a worker [overview]: "2 min (no worker available)"
PROCESSING_S = 330.0  # then runs at most this long on it [overview]: "5.5 min (per request)"
PAYLOAD_BYTES = 30 * MB  # request and response [overview]: "30 MB (request and response)"


@dataclass(frozen=True)
class Refusal:
    """One of RunPod's LB answers that does not come from a worker: its status and `{"error"}` text."""

    status: int
    error: str


NO_WORKER = Refusal(400, "no workers available")  # [overview@09cecca0] 400; the text [build]
# [overview@09cecca0]: "the connection will be terminated with a 524"; once a worker's answer has begun,
# only the termination remains (the status is gone).
PROCESSING_TIMEOUT = Refusal(524, "the request ran longer than the 5.5 min an LB request may take")
PAYLOAD_TOO_LARGE = Refusal(413, "the request body is over the 30 MB an LB request may carry (413: Notus's choice)")
BAD_GATEWAY = Refusal(502, "the worker's port did not answer")  # [overview]: misconfigured ports give 502

REFUSALS: Mapping[int, Refusal] = MappingProxyType(
    {refusal.status: refusal for refusal in (NO_WORKER, PROCESSING_TIMEOUT, PAYLOAD_TOO_LARGE, BAD_GATEWAY)}
)
