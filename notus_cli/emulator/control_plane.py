"""The emulator's control plane: RunPod's GraphQL API for templates and serverless endpoints.

    POST /graphql   {"query": ..., "variables": {...}}   key as `?api_key=` (RunPod's tools) or Bearer

The schema is runpod_schema.py (written from RunPod's published sources, each field cited there);
graphql-core parses, validates and coerces each operation against it, so a request with a field
RunPod does not declare, a query or an input, is refused as a GraphQL server refuses it: HTTP 400,
`{"errors": [{"message": "Variable '$input' got invalid value ...; Field 'x' is not defined by type
'EndpointInput'."}]}`. `rules.declares_workers_standby` and `rules.declares_type` pick the shape of
`EndpointInput`.

RunPod's rules apply: template names are unique, a template an endpoint uses cannot be deleted, nor
one used within `rules.template_release_delay` seconds (runpod/docs sdks/graphql/manage-pod-templates:
"It can take up to 2 minutes to delete a template after its most recent use"), `saveEndpoint`
replaces the whole endpoint (omitted fields return to RunPod's defaults), and `deleteEndpoint` needs
workersMin and workersMax at 0 first. Refusals of a valid request come back as `{"errors":
[{"message"}]}` with HTTP 200, a bad key as HTTP 401, like RunPod.

Images on `rules.private_registries` hosts (e.g. "ghcr.io": GHCR packages are private by default)
can be pulled only with a registry auth (saveRegistryAuth) the template names in
`containerRegistryAuthId`; without one, no worker ever starts, as on RunPod where the pull fails.

An endpoint saved here is a real emulated endpoint: its jobs run on worker processes that a
`Scaler` starts and stops (see scaler.py) through the emulator's worker factory. Without a factory
the endpoint exists but no worker ever takes its jobs.
"""

from __future__ import annotations

import asyncio
import secrets
import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from graphql import GraphQLError, graphql_sync
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from notus_cli.emulator.endpoint_specs import endpoint_spec
from notus_cli.emulator.http import presented_key, read_json
from notus_cli.emulator.loop import AccountLoop
from notus_cli.emulator.runpod_schema import schema
from notus_cli.emulator.scaler import Scaler, ScalingSpec
from notus_cli.runpod.gpus import POOLS

if TYPE_CHECKING:
    from notus_cli.emulator.endpoint import Endpoint
    from notus_cli.emulator.scaler import WorkerFactory


class AccountEndpoints(AccountLoop, Protocol):
    """What the control plane changes in the account that owns it (account.py's Account): its keys, and
    the endpoints it creates and removes, with their workers."""

    api_keys: set[str]
    endpoints: dict[str, Endpoint]
    worker_factory: WorkerFactory | None

    def create_endpoint(self, endpoint_id: str | None = None, *, name: str = "", max_workers: int = 1) -> Endpoint: ...

    def remove_endpoint(self, endpoint_id: str) -> None: ...


MAX_BODY = 1024 * 1024
TEMPLATE_DEFAULTS: dict[str, Any] = {
    "dockerArgs": "",
    "volumeInGb": 0,
    "env": [],
    "isServerless": False,
    "readme": "",
    "isPublic": False,
    "containerRegistryAuthId": None,
}


@dataclass
class ControlRules:
    """How this emulated account behaves where RunPod's behaviour varies or takes time (module docstring)."""

    declares_workers_standby: bool = False
    declares_type: bool = True  # EndpointInput.type (runpod_schema.py); False: the shape without it
    template_release_delay: float = 120.0
    private_registries: frozenset[str] = frozenset()
    introspection: bool = True  # False: refuse __type/__schema, as servers with introspection turned off do


class EmulatedControlPlane:
    """Templates and endpoint specs of the account; state lives on the emulator's event loop."""

    def __init__(self, account: AccountEndpoints) -> None:
        self.account = account
        self.templates: dict[str, dict[str, Any]] = {}
        self.specs: dict[str, dict[str, Any]] = {}  # endpoint id -> what myself.endpoints shows
        self.scalers: dict[str, Scaler] = {}
        self.registry_auths: dict[str, dict[str, Any]] = {}  # id -> {id, name, username}; passwords are not kept
        self.released: dict[str, float] = {}  # template id -> when an endpoint last stopped using it
        self.rules = ControlRules()
        self.requests: list[dict[str, Any]] = []  # every {query, variables} received (tests validate them)
        self.mutations: list[str] = []  # every mutation carried out, by name (tests count them)
        self._faults: deque[_Fault] = deque()
        self._lock = threading.Lock()

    def inject(self, status: int | None = None, *, delay: float = 0.0, count: int = 1, lost: str = "") -> None:
        """RunPod's bad days: answer the next `count` requests with HTTP `status` and/or after `delay` s.

        With `lost` (an operation name such as "saveTemplate"), the fault waits for that operation and
        strikes after carrying it out: the change is made, but its answer is lost, as behind a failing gateway.
        """
        with self._lock:
            self._faults.extend([_Fault(status, delay, lost)] * count)

    async def handle(self, request: Request) -> Response:
        body = await read_json(request, MAX_BODY)
        query = body.get("query") if isinstance(body, dict) else None
        fault = self._fault(query if isinstance(query, str) else "")
        if fault is not None and not fault.lost:
            await asyncio.sleep(fault.delay)
            if fault.status is not None:
                return _injected(fault.status)
        key = request.query_params.get("api_key") or presented_key(request)
        if key is None or key not in self.account.api_keys:
            return JSONResponse({"errors": [{"message": "Unauthorized"}]}, status_code=401)
        if not isinstance(body, dict) or not isinstance(query, str):
            return JSONResponse({"errors": [{"message": "send {query, variables}"}]}, status_code=400)
        self.requests.append({"query": query, "variables": body.get("variables") or {}})
        if not self.rules.introspection and ("__type" in query or "__schema" in query):
            message = "GraphQL introspection is not allowed, but the query contained __schema or __type"
            return JSONResponse({"errors": [{"message": message}]}, status_code=400)
        result = graphql_sync(
            schema(
                declares_workers_standby=self.rules.declares_workers_standby, declares_type=self.rules.declares_type
            ),
            query,
            root_value=_Root(self),
            variable_values=body.get("variables") or {},
            operation_name=body.get("operationName"),
        )
        if fault is not None and fault.lost and fault.status is not None:
            return _injected(fault.status)
        if result.errors and result.data is None:  # the request itself is invalid: nothing was run
            errors = [{"message": e.message, "extensions": {"code": "BAD_USER_INPUT"}} for e in result.errors]
            return JSONResponse({"errors": errors, "data": None}, status_code=400)
        return JSONResponse(result.formatted)

    def _fault(self, query: str) -> _Fault | None:
        with self._lock:
            for fault in self._faults:
                if not fault.lost or fault.lost in query:
                    self._faults.remove(fault)
                    return fault
        return None

    def tick(self, now: float) -> None:
        for scaler in list(self.scalers.values()):
            scaler.tick(now)

    def stop_workers(self) -> None:
        """Stop every control-plane endpoint's workers; blocks, so call it off the event loop."""
        for scaler in list(self.scalers.values()):
            scaler.shutdown()

    # ---- the operations (on the event loop) ---------------------------------------------------

    def save_template(self, raw: dict[str, Any]) -> dict[str, Any]:
        template = {**TEMPLATE_DEFAULTS, **{k: v for k, v in raw.items() if v is not None}}
        template_id = template.get("id") or secrets.token_hex(5)
        if raw.get("id") and raw["id"] not in self.templates:
            raise GraphQLError(f"template {raw['id']} not found")
        if not str(template["name"]).strip() or not str(template["imageName"]).strip():
            raise GraphQLError("name and imageName must not be empty")
        if not 1 <= template["containerDiskInGb"] <= 1000:
            raise GraphQLError("containerDiskInGb must be from 1 to 1000")
        auth = template["containerRegistryAuthId"] or None
        if auth is not None and auth not in self.registry_auths:
            raise GraphQLError(f"containerRegistryAuthId {auth} not found")
        template["containerRegistryAuthId"] = auth
        if any(t["name"] == template["name"] and t["id"] != template_id for t in self.templates.values()):
            raise GraphQLError(f"Template name must be unique: '{template['name']}' is taken")
        template["id"] = template_id
        template["env"] = [{"key": var["key"], "value": var["value"]} for var in template["env"] or []]
        self._mutated("saveTemplate")
        self.templates[template_id] = template
        return template

    def delete_template(self, name: str) -> None:
        template = next((t for t in self.templates.values() if t["name"] == name), None)
        if template is None:
            raise GraphQLError(f"template '{name}' not found")
        users = [spec["name"] for spec in self.specs.values() if spec["templateId"] == template["id"]]
        if users:
            raise GraphQLError(f"template '{name}' is in use by endpoint(s) {', '.join(users)}; it cannot be deleted")
        released = self.released.get(template["id"])
        if released is not None and time.monotonic() - released < self.rules.template_release_delay:
            raise GraphQLError(
                f"template '{name}' was used recently; it can take up to "
                f"{self.rules.template_release_delay:g} s after its most recent use before it can be deleted"
            )
        self._mutated("deleteTemplate")
        del self.templates[template["id"]]
        self.released.pop(template["id"], None)

    def save_endpoint(self, raw: dict[str, Any]) -> dict[str, Any]:
        spec = endpoint_spec(raw, self.templates)
        endpoint_id = spec.get("id")
        if endpoint_id is not None and endpoint_id not in self.specs:
            raise GraphQLError(f"endpoint {endpoint_id} not found")
        self._mutated("saveEndpoint")
        if endpoint_id is None:
            endpoint = self.account.create_endpoint(name=spec["name"], max_workers=max(1, spec["workersMax"]))
            spec["id"] = endpoint.id
            if self.account.worker_factory is not None:
                self.scalers[endpoint.id] = Scaler(
                    self.account, endpoint, self.account.worker_factory, self._scaling(spec)
                )
        else:
            self.account.endpoints[endpoint_id].name = spec["name"]
            if self.specs[endpoint_id]["templateId"] != spec["templateId"]:
                self.released[self.specs[endpoint_id]["templateId"]] = time.monotonic()
        self.specs[spec["id"]] = spec
        self._rescale(spec)
        return spec

    def update_endpoint_template(self, endpoint_id: str, template_id: str) -> dict[str, Any]:
        spec = self.specs.get(endpoint_id)
        if spec is None:
            raise GraphQLError(f"endpoint {endpoint_id} not found")
        if template_id not in self.templates:
            raise GraphQLError(f"template {template_id} not found")
        self._mutated("updateEndpointTemplate")
        if spec["templateId"] != template_id:
            self.released[spec["templateId"]] = time.monotonic()
        spec["templateId"] = template_id
        self._rescale(spec)
        return spec

    def delete_endpoint(self, endpoint_id: str) -> None:
        spec = self.specs.get(endpoint_id)
        if spec is None:
            raise GraphQLError(f"endpoint {endpoint_id} not found")
        if spec["workersMin"] or spec["workersMax"]:
            raise GraphQLError(
                f"endpoint {endpoint_id} still has workersMin {spec['workersMin']} / workersMax {spec['workersMax']}: "
                "scale both to 0 before deleting it"
            )
        self._mutated("deleteEndpoint")
        self.released[spec["templateId"]] = time.monotonic()
        del self.specs[endpoint_id]
        scaler = self.scalers.pop(endpoint_id, None)
        self.account.remove_endpoint(endpoint_id)
        if scaler is not None:
            asyncio.get_running_loop().run_in_executor(None, scaler.shutdown)

    def save_registry_auth(self, raw: dict[str, Any]) -> dict[str, Any]:
        if any(auth["name"] == raw["name"] for auth in self.registry_auths.values()):
            raise GraphQLError(f"Registry auth name must be unique: '{raw['name']}' is taken")
        if not raw["username"] or not raw["password"]:
            raise GraphQLError("username and password must not be empty")
        self._mutated("saveRegistryAuth")
        auth = {"id": secrets.token_hex(6), "name": raw["name"], "username": raw["username"]}
        self.registry_auths[auth["id"]] = auth
        return auth

    def pull_error(self, template: dict[str, Any]) -> str | None:
        """Why RunPod could not pull the template's image, if it could not (module docstring)."""
        image = str(template["imageName"])
        first = image.split("/", 1)[0]
        host = first if "/" in image and ("." in first or ":" in first or first == "localhost") else "docker.io"
        if host not in self.rules.private_registries:
            return None
        if template.get("containerRegistryAuthId") in self.registry_auths:
            return None
        return f"{image}: {host} refused the pull (no registry credential on the template)"

    def _mutated(self, name: str) -> None:
        self.mutations.append(name)

    def _scaling(self, spec: dict[str, Any]) -> ScalingSpec:
        template = self.templates[spec["templateId"]]
        return ScalingSpec(
            template_id=template["id"],
            env={var["key"]: var["value"] for var in template["env"]},
            workers_min=spec["workersMin"],
            workers_max=spec["workersMax"],
            idle_timeout=spec["idleTimeout"],
            scaler_type=spec["scalerType"],
            scaler_value=spec["scalerValue"],
            model_references=tuple(spec["modelReferences"] or ()),
            pull_error=self.pull_error(template),
        )

    def _rescale(self, spec: dict[str, Any]) -> None:
        scaler = self.scalers.get(spec["id"])
        if scaler is not None:
            scaler.configure(self._scaling(spec))


@dataclass(frozen=True)
class _Fault:
    status: int | None
    delay: float
    lost: str


def _injected(status: int) -> JSONResponse:
    return JSONResponse({"errors": [{"message": f"injected HTTP {status}"}]}, status_code=status)


class _Root:
    """GraphQL's root value: graphql-core calls these with the field's arguments."""

    def __init__(self, control: EmulatedControlPlane) -> None:
        self.control = control

    def myself(self, _info: Any) -> dict[str, Any]:
        return {
            "id": "notus-emulator",
            "endpoints": list(self.control.specs.values()),
            "podTemplates": list(self.control.templates.values()),
            "containerRegistryCreds": list(self.control.registry_auths.values()),
        }

    def gpuTypes(self, _info: Any) -> list[dict[str, Any]]:
        return [
            {"id": card.id, "displayName": card.display_name, "memoryInGb": card.memory_gb}
            for pool in POOLS
            for card in pool.cards
        ]

    def serverlessGpuPools(self, _info: Any) -> list[dict[str, Any]]:
        return [{"id": pool.id, "gpuTypeIds": [card.id for card in pool.cards]} for pool in POOLS]

    def saveRegistryAuth(self, _info: Any, input: dict[str, Any]) -> dict[str, Any]:
        return self.control.save_registry_auth(input)

    def saveTemplate(self, _info: Any, input: dict[str, Any]) -> dict[str, Any]:
        return self.control.save_template(input)

    def deleteTemplate(self, _info: Any, templateName: str) -> None:
        self.control.delete_template(templateName)

    def saveEndpoint(self, _info: Any, input: dict[str, Any]) -> dict[str, Any]:
        return self.control.save_endpoint(input)

    def updateEndpointTemplate(self, _info: Any, input: dict[str, Any]) -> dict[str, Any]:
        return self.control.update_endpoint_template(input["endpointId"], input["templateId"])

    def deleteEndpoint(self, _info: Any, id: str) -> None:
        self.control.delete_endpoint(id)
