"""What the emulated saveEndpoint makes of its input: RunPod's defaults for what it leaves out (it is a
full replace) and RunPod's validation, each rule with its source. Refusals are GraphQLErrors naming the field.
"""

from __future__ import annotations

from typing import Any

from graphql import GraphQLError

from notus_cli.emulator.models import check_model_references
from notus_cli.runpod.gpus import POOLS_BY_ID
from notus_cli.runpod.protocol import lb

# What RunPod sets for a field saveEndpoint's input leaves out (it is a full replace).
ENDPOINT_DEFAULTS: dict[str, Any] = {
    "gpuCount": 1,
    "locations": None,
    "networkVolumeId": None,
    "idleTimeout": 5,
    "scalerType": "QUEUE_DELAY",
    "scalerValue": 4,
    "workersMin": 0,
    "workersMax": 3,
    "workersStandby": 1,  # read back as 1 on endpoints that never set it ([ref] CORRECTION)
    "flashBootType": "FLASHBOOT",  # runpod/docs serverless/endpoints/endpoint-configurations: enabled by default
    "executionTimeoutMs": 600_000,  # same page: 600 s
    "allowedCudaVersions": None,
    "minCudaVersion": None,
    "modelReferences": [],
    "networkVolumeIds": None,
}
# An LB endpoint saved without a scaler gets the request-count one, the only one LB endpoints take:
# runpod/flash load_balancer_sls_resource.py sets REQUEST_COUNT when none is given ("LB endpoints
# shouldn't use queue-based scaling") and refuses QUEUE_DELAY; runpod/docs api-reference-v2/openapi.json
# EndpointScaling: QUEUE_DELAY is for "queue-based endpoints only", REQUEST_COUNT "Required for
# load-balancing endpoints". (What RunPod's own server fills in is not published.)
LB_DEFAULTS: dict[str, Any] = {"scalerType": lb.SCALER_TYPE}
ENDPOINT_TYPES = (lb.QUEUE_ENDPOINT_TYPE, lb.ENDPOINT_TYPE)  # [flash] core/resources/serverless.py ServerlessType


def endpoint_spec(raw: dict[str, Any], templates: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The endpoint as saveEndpoint's `raw` input makes it: omitted fields take RunPod's defaults (an LB
    endpoint's scaler too). Raises GraphQLError for a spec RunPod refuses."""
    defaults = {**ENDPOINT_DEFAULTS, **(LB_DEFAULTS if raw.get("type") == lb.ENDPOINT_TYPE else {})}
    spec = {**defaults, **{k: v for k, v in raw.items() if v is not None}}
    _check(spec, templates)
    return spec


def _check(spec: dict[str, Any], templates: dict[str, dict[str, Any]]) -> None:
    """RunPod's validation of an endpoint spec; raises GraphQLError naming the field."""
    if len(str(spec["name"])) < 3:
        raise GraphQLError("name must be at least 3 characters")  # runpodctl AGENTS.md: String!, min 3
    if spec.get("templateId") not in templates:
        raise GraphQLError(f"templateId {spec['templateId']} not found")
    gpus = [part.strip() for part in str(spec["gpuIds"]).split(",") if part.strip()]
    pools = [gpu for gpu in gpus if not gpu.startswith("-")]
    unknown = [gpu for gpu in pools if gpu not in POOLS_BY_ID]
    if not pools or unknown:
        raise GraphQLError(f"gpuIds: unknown pool {unknown[0] if unknown else '(none)'}; use {', '.join(POOLS_BY_ID)}")
    if not 1 <= spec["idleTimeout"] <= 3600:
        raise GraphQLError("idleTimeout must be from 1 to 3600 seconds")
    if spec["scalerType"] not in ("QUEUE_DELAY", "REQUEST_COUNT"):
        raise GraphQLError("scalerType must be QUEUE_DELAY or REQUEST_COUNT")
    if spec.get("type") is not None and spec["type"] not in ENDPOINT_TYPES:
        raise GraphQLError(f"type must be {' or '.join(ENDPOINT_TYPES)}")
    if spec.get("type") == lb.ENDPOINT_TYPE and spec["scalerType"] != lb.SCALER_TYPE:  # LB_DEFAULTS' sources
        raise GraphQLError(f"a load-balancing endpoint scales on {lb.SCALER_TYPE} only, not {spec['scalerType']}")
    if spec["scalerValue"] < 1:
        raise GraphQLError("scalerValue must be at least 1")
    if spec["flashBootType"] not in ("OFF", "FLASHBOOT", "PRIORITY_FLASHBOOT"):
        raise GraphQLError("flashBootType must be OFF, FLASHBOOT or PRIORITY_FLASHBOOT")
    if not 0 <= spec["workersMin"] <= spec["workersMax"]:
        raise GraphQLError("workersMin must be from 0 to workersMax")
    if spec["gpuCount"] < 1:
        raise GraphQLError("gpuCount must be at least 1")
    check_model_references(spec["modelReferences"] or [])
