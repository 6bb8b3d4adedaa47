"""An httpx client for RunPod's GraphQL control plane (templates, endpoints, GPU types and pools).

    with RunPodGraphQL(api_key, url=settings.runpod_graphql_url) as runpod:
        template = runpod.save_template(TemplateInput(name=..., image_name=..., container_disk_in_gb=100))

Values always travel as GraphQL variables, never inside the query text, so quotes, backslashes and
newlines in env values arrive intact and nothing can be injected. Every answer becomes a typed
result or a NotusError in one place (`_raise_for_answer`): HTTP 401/403 -> RunPodAuthError, GraphQL
`errors` -> RunPodQueryError with RunPod's message, 429 after the retries -> RunPodRateLimited.
429, 5xx, timeouts and refused connections are retried with bounded backoff (RetryPolicy). The key
goes in the Authorization header; RunPod's own tools put it in the URL (`?api_key=`), so every URL
and message that leaves this module is masked.
"""

from __future__ import annotations

import re
import time
from typing import Any, TypeVar

import httpx
from pydantic import BaseModel, SecretStr, ValidationError

from notus_cli.errors import EndpointUnreachable, RunPodAuthError, RunPodError, RunPodQueryError, RunPodRateLimited
from notus_cli.runpod.control import (
    EndpointInfo,
    EndpointInput,
    GpuPoolInfo,
    GpuType,
    Template,
    TemplateInput,
)
from notus_cli.runpod.serverless import RetryPolicy
from notus_cli.runpod.urls import RUNPOD_GRAPHQL_URL as DEFAULT_GRAPHQL_URL

DEFAULT_TIMEOUT = httpx.Timeout(30.0, connect=10.0)
M = TypeVar("M", bound=BaseModel)

_TEMPLATE_FIELDS = "id name imageName containerDiskInGb volumeInGb dockerArgs isServerless readme env { key value }"
_ENDPOINT_FIELDS = (
    "id name templateId gpuIds gpuCount workersMin workersMax workersStandby idleTimeout scalerType scalerValue "
    "flashBootType locations executionTimeoutMs modelReferences"
)
Q_TEMPLATES = f"query Templates {{ myself {{ podTemplates {{ {_TEMPLATE_FIELDS} }} }} }}"
Q_ENDPOINTS = f"query Endpoints {{ myself {{ endpoints {{ {_ENDPOINT_FIELDS} }} }} }}"
Q_GPU_TYPES = "query GpuTypes { gpuTypes { id displayName memoryInGb } }"
Q_GPU_POOLS = "query GpuPools { serverlessGpuPools { id gpuTypeIds } }"
M_SAVE_TEMPLATE = (
    f"mutation SaveTemplate($input: SaveTemplateInput) {{ saveTemplate(input: $input) {{ {_TEMPLATE_FIELDS} }} }}"
)
M_DELETE_TEMPLATE = "mutation DeleteTemplate($name: String) { deleteTemplate(templateName: $name) }"
M_SAVE_ENDPOINT = (
    f"mutation SaveEndpoint($input: EndpointInput!) {{ saveEndpoint(input: $input) {{ {_ENDPOINT_FIELDS} }} }}"
)
M_UPDATE_TEMPLATE = (
    "mutation UpdateEndpointTemplate($input: UpdateEndpointTemplateInput!) "
    "{ updateEndpointTemplate(input: $input) { id templateId } }"
)
M_DELETE_ENDPOINT = "mutation DeleteEndpoint($id: String) { deleteEndpoint(id: $id) }"


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

    # ---- mutations ---------------------------------------------------------------------------

    def save_template(self, template: TemplateInput) -> Template:
        return _one(Template, self.execute(M_SAVE_TEMPLATE, {"input": template.wire()})["saveTemplate"])

    def delete_template(self, name: str) -> None:
        self.execute(M_DELETE_TEMPLATE, {"name": name})

    def save_endpoint(self, endpoint: EndpointInput) -> EndpointInfo:
        return _one(EndpointInfo, self.execute(M_SAVE_ENDPOINT, {"input": endpoint.wire()})["saveEndpoint"])

    def update_endpoint_template(self, endpoint_id: str, template_id: str) -> None:
        self.execute(M_UPDATE_TEMPLATE, {"input": {"endpointId": endpoint_id, "templateId": template_id}})

    def delete_endpoint(self, endpoint_id: str) -> None:
        self.execute(M_DELETE_ENDPOINT, {"id": endpoint_id})

    # ---- transport ---------------------------------------------------------------------------

    def execute(self, query: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
        """Send one operation (with retries); returns its `data`. Raises a RunPodError or EndpointUnreachable."""
        if query.lstrip().startswith("mutation"):
            self.mutations += 1
        body = {"query": query, "variables": variables or {}}
        headers = {"Authorization": f"Bearer {self._key.get_secret_value()}", "Accept": "application/json"}
        attempts = self.retry_policy.attempts
        for attempt in range(attempts):
            last = attempt + 1 >= attempts
            try:
                response = self._http.post(self.url, json=body, headers=headers, timeout=self._timeout)
            except (httpx.TimeoutException, httpx.ConnectError) as exc:
                if last:
                    raise EndpointUnreachable(
                        f"RunPod's API at {mask(self.url, self._key)} did not answer: {mask(str(exc), self._key)}",
                        hint="check the network, or runpod_graphql_url in notus.toml",
                    ) from None
                time.sleep(self.retry_policy.delay(attempt))
                continue
            except httpx.HTTPError as exc:
                raise RunPodError(f"talking to RunPod failed: {mask(str(exc), self._key)}") from None
            if (response.status_code == 429 or response.status_code >= 500) and not last:
                time.sleep(self.retry_policy.delay(attempt, response.headers.get("retry-after")))
                continue
            return self._raise_for_answer(response)
        raise AssertionError("unreachable")  # pragma: no cover

    def _raise_for_answer(self, response: httpx.Response) -> dict[str, Any]:
        """The one place a control-plane answer becomes data or a typed error."""
        status = response.status_code
        if status in (401, 403):
            raise RunPodAuthError(
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
            raise RunPodQueryError(mask(messages or str(errors), self._key))
        if status >= 400 or not isinstance(answer, dict) or not isinstance(answer.get("data"), dict):
            raise RunPodError(
                f"RunPod's API answered HTTP {status} without data: {mask(response.text[:200], self._key)}"
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
