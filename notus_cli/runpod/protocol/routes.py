"""RunPod's serverless routes as one table: clients build paths from it, the emulator's router serves it.

Every route lives under `{api base}/{endpoint_id}` (`https://api.runpod.ai/v2/{endpoint_id}` on RunPod).
Public routes: runpod/docs serverless/endpoints/send-requests.mdx (the operations and their methods)
and runpod-python runpod/endpoint/runner.py (what the official client calls: `run`, `runsync`,
`status/{job}`, `stream/{job}`, `cancel/{job}`, `health`, `purge-queue`); `/retry/{job}` from
runpod/docs serverless/endpoints/operation-reference.mdx. The OpenAI route: runpod/docs
serverless/vllm/openai-compatibility.mdx (`/openai/v1/...`, forwarded to the worker as a job).
Worker-facing routes: runpod-python runpod/serverless/modules/rp_job.py (`job-take`,
`job-take-batch`, `job-stop`), rp_http.py (`job-stream`, `job-done`) and rp_ping.py (`ping`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

API_PREFIX = "/v2"  # the data plane's version segment, before the endpoint id
ENDPOINT_PREFIX = API_PREFIX + "/{endpoint_id}"


@dataclass(frozen=True)
class RouteSpec:
    """One route. `path` is relative to the endpoint base, with `{name}` parameters (`{path:path}`: the rest)."""

    operation: str  # the name rate limits and concurrency caps count it under
    path: str
    methods: tuple[str, ...]
    side: Literal["public", "worker"]

    def fill(self, **params: str) -> str:
        """The path with its parameters filled in (each must be given)."""

        def value(match: re.Match[str]) -> str:
            return params[match.group(1)]

        return re.sub(r"\{(\w+)(?::path)?\}", value, self.path)


RUN = RouteSpec("run", "/run", ("POST",), "public")
RUNSYNC = RouteSpec("runsync", "/runsync", ("POST",), "public")
# The official client GETs status and stream (runner.py); RunPod's older docs show POST, which it also takes.
STATUS = RouteSpec("status", "/status/{job_id}", ("GET", "POST"), "public")
STREAM = RouteSpec("stream", "/stream/{job_id}", ("GET", "POST"), "public")
CANCEL = RouteSpec("cancel", "/cancel/{job_id}", ("POST",), "public")
RETRY = RouteSpec("retry", "/retry/{job_id}", ("POST",), "public")
PURGE_QUEUE = RouteSpec("purge-queue", "/purge-queue", ("POST",), "public")
HEALTH = RouteSpec("health", "/health", ("GET",), "public")
OPENAI = RouteSpec("openai", "/openai/v1/{path:path}", ("GET", "POST"), "public")

JOB_TAKE = RouteSpec("job-take", "/job-take/{pod_id}", ("GET",), "worker")
JOB_TAKE_BATCH = RouteSpec("job-take-batch", "/job-take-batch/{pod_id}", ("GET",), "worker")
JOB_STREAM = RouteSpec("job-stream", "/job-stream/{pod_id}/{job_id}", ("POST",), "worker")
JOB_DONE = RouteSpec("job-done", "/job-done/{pod_id}/{job_id}", ("POST",), "worker")
JOB_STOP = RouteSpec("job-stop", "/job-stop/{pod_id}", ("GET",), "worker")
PING = RouteSpec("ping", "/ping/{pod_id}", ("GET",), "worker")

PUBLIC_ROUTES = (RUN, RUNSYNC, STATUS, STREAM, CANCEL, RETRY, PURGE_QUEUE, HEALTH, OPENAI)
WORKER_ROUTES = (JOB_TAKE, JOB_TAKE_BATCH, JOB_STREAM, JOB_DONE, JOB_STOP, PING)
ALL_ROUTES = PUBLIC_ROUTES + WORKER_ROUTES

# Under the OpenAI route's base (`.../openai/v1`), as any OpenAI client appends them.
OPENAI_CHAT_COMPLETIONS = "/chat/completions"
OPENAI_MODELS = "/models"


def endpoint_base(api_base: str, endpoint_id: str) -> str:
    """`https://api.runpod.ai/v2` + `abc` -> `https://api.runpod.ai/v2/abc`."""
    return f"{api_base.rstrip('/')}/{endpoint_id}"


def openai_base(endpoint_url: str) -> str:
    """The base URL an OpenAI client takes for an endpoint (`.../v2/{id}/openai/v1`)."""
    return endpoint_url.rstrip("/") + OPENAI.fill(path="").rstrip("/")


def worker_webhooks(endpoint_url: str, query: str) -> dict[str, str]:
    """The RUNPOD_WEBHOOK_* templates that point an SDK worker at an endpoint's worker routes.

    `$ID` is the job id (the pod id in job-take) and `$RUNPOD_POD_ID` the worker's: the SDK
    substitutes both (runpod-python runpod/serverless/modules/rp_job.py, rp_http.py, rp_ping.py).
    """
    return {
        "RUNPOD_WEBHOOK_GET_JOB": endpoint_url + JOB_TAKE.fill(pod_id="$ID") + query,
        "RUNPOD_WEBHOOK_POST_OUTPUT": endpoint_url + JOB_DONE.fill(pod_id="$RUNPOD_POD_ID", job_id="$ID") + query,
        "RUNPOD_WEBHOOK_POST_STREAM": endpoint_url + JOB_STREAM.fill(pod_id="$RUNPOD_POD_ID", job_id="$ID") + query,
        "RUNPOD_WEBHOOK_PING": endpoint_url + PING.fill(pod_id="$RUNPOD_POD_ID") + query,
    }
