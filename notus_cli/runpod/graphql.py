"""An httpx client for RunPod's GraphQL control plane (templates, endpoints, GPU types and pools).

    with RunPodGraphQL(api_key, url=settings.runpod_graphql_url) as runpod:
        template = runpod.save_template(TemplateInput(name=..., image_name=..., container_disk_in_gb=100))

Variables are declared non-null (`String!`), which GraphQL accepts whether RunPod's argument is
nullable or not. Values always travel as GraphQL variables, never inside the query text, so quotes, backslashes and
newlines in env values arrive intact and nothing can be injected. Every answer becomes a typed
result or a NotusError in one place (`_raise_for_answer`): HTTP 401/403 -> AuthError, GraphQL
`errors` -> RunPodQueryError with RunPod's message, 429 after the retries -> RunPodRateLimited.

Queries are retried on 429, 5xx, timeouts and refused connections with bounded backoff (RetryPolicy).
A mutation is retried only when RunPod cannot have carried it out (429, a refused connection or a
connect timeout); after a 5xx or a read timeout its answer is lost, not its effect, so it raises
RunPodAnswerLost and the caller looks before sending it again (deploy/apply.py), as runpod/flash does.

`declares(type, field)` asks the server once per client (introspection of the input type) whether
a disputed input field exists; `workersStandby` and `type` are sent only where it does, and an LB
endpoint is never created without its `type` (that would make a queue endpoint). The key goes in the
Authorization header; RunPod's own tools put it in the URL (`?api_key=`), so every URL and message
that leaves this module is masked, and so is a registry password.
"""

from __future__ import annotations

import re
import time
from typing import Any, TypeVar

import httpx
from pydantic import BaseModel, SecretStr, ValidationError

from notus_cli.errors import (
    AuthError,
    EndpointUnreachable,
    RunPodAnswerLost,
    RunPodError,
    RunPodQueryError,
    RunPodRateLimited,
)
from notus_cli.runpod.control import (
    EndpointInfo,
    EndpointInput,
    GpuPoolInfo,
    GpuType,
    RegistryAuth,
    Template,
    TemplateInput,
    lb_refusal,
)
from notus_cli.runpod.serverless import RetryPolicy
from notus_cli.runpod.urls import RUNPOD_GRAPHQL_URL as DEFAULT_GRAPHQL_URL

DEFAULT_TIMEOUT = httpx.Timeout(30.0, connect=10.0)
M = TypeVar("M", bound=BaseModel)

_TEMPLATE_FIELDS = (
    "id name imageName containerDiskInGb volumeInGb dockerArgs isServerless readme containerRegistryAuthId "
    "env { key value }"
)
_ENDPOINT_FIELDS = (
    "id name templateId gpuIds gpuCount workersMin workersMax workersStandby idleTimeout scalerType scalerValue "
    "flashBootType locations executionTimeoutMs networkVolumeId networkVolumeIds { networkVolumeId dataCenterId } "
    "allowedCudaVersions minCudaVersion modelReferences type"  # type: read back by runpod/flash's saveEndpoint
)
# Input fields whose existence is disputed: sent only where the live schema declares them.
# `type` ("QB" | "LB"): runpod/flash sends it (core/resources/serverless.py), no other published client does.
PROBED = {"EndpointInput": ("workersStandby", "type")}
Q_TEMPLATES = f"query Templates {{ myself {{ podTemplates {{ {_TEMPLATE_FIELDS} }} }} }}"
Q_ENDPOINTS = f"query Endpoints {{ myself {{ endpoints {{ {_ENDPOINT_FIELDS} }} }} }}"
Q_GPU_TYPES = "query GpuTypes { gpuTypes { id displayName memoryInGb } }"
Q_GPU_POOLS = "query GpuPools { serverlessGpuPools { id gpuTypeIds } }"
M_SAVE_TEMPLATE = (
    f"mutation SaveTemplate($input: SaveTemplateInput!) {{ saveTemplate(input: $input) {{ {_TEMPLATE_FIELDS} }} }}"
)
M_DELETE_TEMPLATE = "mutation DeleteTemplate($name: String!) { deleteTemplate(templateName: $name) }"
M_SAVE_ENDPOINT = (
    f"mutation SaveEndpoint($input: EndpointInput!) {{ saveEndpoint(input: $input) {{ {_ENDPOINT_FIELDS} }} }}"
)
M_UPDATE_TEMPLATE = (
    "mutation UpdateEndpointTemplate($input: UpdateEndpointTemplateInput!) "
    "{ updateEndpointTemplate(input: $input) { id templateId } }"
)
M_DELETE_ENDPOINT = "mutation DeleteEndpoint($id: String!) { deleteEndpoint(id: $id) }"
Q_REGISTRY_AUTHS = "query RegistryAuths { myself { containerRegistryCreds { id name } } }"
# The input object is written out (its type name is not published; runpod-python inlines it too).
M_SAVE_REGISTRY_AUTH = (
    "mutation SaveRegistryAuth($name: String!, $username: String!, $password: String!) "
    "{ saveRegistryAuth(input: {name: $name, username: $username, password: $password}) { id name } }"
)
Q_INPUT_FIELDS = "query InputFields($name: String!) { __type(name: $name) { inputFields { name } } }"


def mask(text: str, *secrets: str | SecretStr | None) -> str:
    """`text` with every given secret and every `api_key=` URL parameter replaced by ***."""
    text = re.sub(r"(api_key=)[^&\s'\"]+", r"\1***", text)
    for secret in secrets:
        value = secret.get_secret_value() if isinstance(secret, SecretStr) else secret
        if value:
            text = text.replace(value, "***")
    return text


class RunPodGraphQL:
    """RunPod's control plane over GraphQL. Pass `http` to share a client (or, in tests, a transport)."""

    def __init__(
        self,
        api_key: SecretStr,
        *,
        url: str = DEFAULT_GRAPHQL_URL,
        http: httpx.Client | None = None,
        retry: RetryPolicy | None = None,
        timeout: httpx.Timeout = DEFAULT_TIMEOUT,
    ) -> None:
        self.url = url
        self.mutations = 0
        self.retry_policy = retry or RetryPolicy()
        self._key = api_key
        self._own_http = http is None
        self._http = http or httpx.Client()
        self._timeout = timeout
        self._input_fields: dict[str, frozenset[str] | None] = {}

    def __enter__(self) -> RunPodGraphQL:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._own_http:
            self._http.close()

    # ---- queries -----------------------------------------------------------------------------

    def templates(self) -> list[Template]:
        return _many(Template, self.execute(Q_TEMPLATES)["myself"]["podTemplates"])

    def endpoints(self) -> list[EndpointInfo]:
        return _many(EndpointInfo, self.execute(Q_ENDPOINTS)["myself"]["endpoints"])

    def gpu_types(self) -> list[GpuType]:
        return _many(GpuType, self.execute(Q_GPU_TYPES)["gpuTypes"])

    def gpu_pools(self) -> list[GpuPoolInfo]:
        return _many(GpuPoolInfo, self.execute(Q_GPU_POOLS)["serverlessGpuPools"])

    def registry_auths(self) -> list[RegistryAuth]:
        return _many(RegistryAuth, self.execute(Q_REGISTRY_AUTHS)["myself"]["containerRegistryCreds"])

    def declares(self, input_type: str, field: str) -> bool:
        """Whether the server's `input_type` has `field` (asked once per type; a refused introspection: no)."""
        if input_type not in self._input_fields:
            try:
                found = self.execute(Q_INPUT_FIELDS, {"name": input_type}).get("__type") or {}
                fields = found.get("inputFields") if isinstance(found, dict) else None
                self._input_fields[input_type] = frozenset(f["name"] for f in fields or [] if isinstance(f, dict))
            except RunPodQueryError:
                self._input_fields[input_type] = None
        names = self._input_fields[input_type]
        return names is not None and field in names

    # ---- mutations ---------------------------------------------------------------------------

    def save_template(self, template: TemplateInput) -> Template:
        return _one(Template, self.execute(M_SAVE_TEMPLATE, {"input": template.wire()})["saveTemplate"])

    def delete_template(self, name: str) -> None:
        self.execute(M_DELETE_TEMPLATE, {"name": name})

    def save_endpoint(self, endpoint: EndpointInput) -> EndpointInfo:
        """Raises ConfigError for a new LB endpoint where the schema has no `type` (see lb_refusal)."""
        if endpoint.id is None and endpoint.kind == "lb" and not self.declares("EndpointInput", "type"):
            raise lb_refusal()
        wire = self._declared_only("EndpointInput", endpoint.wire())
        return _one(EndpointInfo, self.execute(M_SAVE_ENDPOINT, {"input": wire})["saveEndpoint"])

    def save_registry_auth(self, name: str, username: str, password: SecretStr) -> RegistryAuth:
        variables = {"name": name, "username": username, "password": password.get_secret_value()}
        return _one(RegistryAuth, self.execute(M_SAVE_REGISTRY_AUTH, variables, secret=password)["saveRegistryAuth"])

    def _declared_only(self, input_type: str, wire: dict[str, object]) -> dict[str, object]:
        """`wire` without the probed fields the server does not declare."""
        for field in PROBED.get(input_type, ()):
            if field in wire and not self.declares(input_type, field):
                del wire[field]
        return wire

    def update_endpoint_template(self, endpoint_id: str, template_id: str) -> None:
        self.execute(M_UPDATE_TEMPLATE, {"input": {"endpointId": endpoint_id, "templateId": template_id}})

    def delete_endpoint(self, endpoint_id: str) -> None:
        self.execute(M_DELETE_ENDPOINT, {"id": endpoint_id})

    # ---- transport ---------------------------------------------------------------------------

    def execute(
        self, query: str, variables: dict[str, Any] | None = None, *, secret: SecretStr | None = None
    ) -> dict[str, Any]:
        """Send one operation; returns its `data`. Raises a RunPodError or EndpointUnreachable.

        Queries are retried on 429/5xx/timeouts; mutations only where RunPod cannot have run them
        (module docstring), else RunPodAnswerLost. `secret` is masked in every message, like the key.
        """
        mutation = query.lstrip().startswith("mutation")
        if mutation:
            self.mutations += 1
        body = {"query": query, "variables": variables or {}}
        headers = {"Authorization": f"Bearer {self._key.get_secret_value()}", "Accept": "application/json"}
        attempts = self.retry_policy.attempts
        for attempt in range(attempts):
            last = attempt + 1 >= attempts
            try:
                response = self._http.post(self.url, json=body, headers=headers, timeout=self._timeout)
            except (httpx.TimeoutException, httpx.ConnectError) as exc:
                unsent = isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout)
                if mutation and not unsent:
                    raise self._lost(query, f"no answer ({type(exc).__name__})") from None
                if last:
                    raise EndpointUnreachable(
                        f"RunPod's API at {mask(self.url, self._key)} did not answer: {mask(str(exc), self._key)}",
                        hint="check the network, or runpod_graphql_url in notus.toml",
                    ) from None
                time.sleep(self.retry_policy.delay(attempt))
                continue
            except httpx.HTTPError as exc:
                raise RunPodError(f"talking to RunPod failed: {mask(str(exc), self._key, secret)}") from None
            if response.status_code >= 500 and mutation:
                raise self._lost(query, f"HTTP {response.status_code}")
            if (response.status_code == 429 or response.status_code >= 500) and not last:
                time.sleep(self.retry_policy.delay(attempt, response.headers.get("retry-after")))
                continue
            return self._raise_for_answer(response, secret)
        raise AssertionError("unreachable")  # pragma: no cover

    @staticmethod
    def _lost(query: str, why: str) -> RunPodAnswerLost:
        operation = re.search(r"mutation\s+(\w+)", query)
        name = operation.group(1) if operation else "a mutation"
        return RunPodAnswerLost(
            f"RunPod did not answer {name} ({why}); it may or may not have been carried out",
            hint="see `notus endpoints`; running the same command again looks before it changes anything",
        )

    def _raise_for_answer(self, response: httpx.Response, secret: SecretStr | None = None) -> dict[str, Any]:
        """The one place a control-plane answer becomes data or a typed error."""
        status = response.status_code
        if status in (401, 403):
            raise AuthError(
                "RunPod rejected the API key",
                hint="check RUNPOD_API_KEY, or store a valid key with `notus login`",
            )
        if status == 429:
            raise RunPodRateLimited(
                "RunPod's API is rate limiting this key (HTTP 429), still after retries", hint="wait a minute"
            )
        try:
            answer = response.json()
        except ValueError:
            answer = None
        errors = answer.get("errors") if isinstance(answer, dict) else None
        if errors:
            messages = "; ".join(str(error.get("message", error)) for error in errors if isinstance(error, dict))
            raise RunPodQueryError(mask(messages or str(errors), self._key, secret))
        if status >= 400 or not isinstance(answer, dict) or not isinstance(answer.get("data"), dict):
            raise RunPodError(
                f"RunPod's API answered HTTP {status} without data: {mask(response.text[:200], self._key, secret)}"
            )
        data: dict[str, Any] = answer["data"]
        return data


def _one(model: type[M], raw: Any) -> M:
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        raise RunPodError(f"RunPod answered a {model.__name__} this client does not understand: {exc}") from None


def _many(model: type[M], raw: Any) -> list[M]:
    return [_one(model, item) for item in raw or []]
