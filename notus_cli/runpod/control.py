"""RunPod's control plane as typed objects, and the small interface deploy needs from it.

The GraphQL client (`graphql.py`) implements `ControlPlane`; a REST backend could too. Field names
follow RunPod's GraphQL schema (camelCase on the wire, snake_case here); the fields and their sources
are in notus_cli/emulator/runpod_schema.py. `EndpointInput` holds every field Notus reads back, also
those it does not set (network volumes, CUDA filters, cached models), because saveEndpoint is a full
replace: an update carries them over so it never resets what the user set elsewhere.
"""

from __future__ import annotations

from typing import Any, Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator
from pydantic.alias_generators import to_camel

from notus_cli.errors import ConfigError

ScalerType = Literal["QUEUE_DELAY", "REQUEST_COUNT"]
FlashBootType = Literal["OFF", "FLASHBOOT", "PRIORITY_FLASHBOOT"]
# What Notus calls the two endpoint types; RunPod's GraphQL says "QB" and "LB" (runpod/flash
# core/resources/serverless.py ServerlessType), and reads back null on endpoints made without one.
EndpointKind = Literal["queue", "lb"]
ENDPOINT_TYPES: dict[EndpointKind, str] = {"queue": "QB", "lb": "LB"}


def endpoint_kind(runpod_type: str | None) -> EndpointKind:
    """Notus's name for RunPod's `type`: "lb" for "LB", else "queue" (QB, or no type: the default)."""
    return "lb" if runpod_type == ENDPOINT_TYPES["lb"] else "queue"


def lb_refusal() -> ConfigError:
    """Why no LB deploy is made where EndpointInput has no `type`: saveEndpoint would then make a queue
    endpoint (a create), or could reset an LB one to the default (an update: it is a full replace)."""
    return ConfigError(
        "RunPod's GraphQL EndpointInput does not declare `type` here, so Notus cannot create or update "
        "a load-balancing endpoint (saveEndpoint would make or leave a queue endpoint)",
        hint="deploy with --type queue",
    )


class _Wire(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, frozen=True, extra="ignore")

    def wire(self) -> dict[str, object]:
        """The GraphQL input object: camelCase keys, unset optional fields left out."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)


class _ReadBack(BaseModel):
    """What RunPod answers: a null field takes our default, so another tool's endpoint (CPU, Hub, load
    balancer: no gpuIds, no template) never stops Notus from reading the account."""

    @model_validator(mode="before")
    @classmethod
    def _nulls_to_defaults(cls, raw: Any) -> Any:
        return {k: v for k, v in raw.items() if v is not None} if isinstance(raw, dict) else raw


class EnvVar(_Wire):
    key: str
    value: str


class TemplateInput(_Wire):
    """`saveTemplate`'s input. With `id` it replaces that template whole."""

    name: str
    image_name: str
    container_disk_in_gb: int
    env: tuple[EnvVar, ...] = ()
    # required by SaveTemplateInput (volumeInGb: Int!), 0 for serverless: RunPod's docs, manage-pod-templates
    volume_in_gb: int = 0
    docker_args: str = ""
    is_serverless: bool = True
    readme: str = ""
    container_registry_auth_id: str | None = None
    id: str | None = None


class Template(TemplateInput, _ReadBack):
    id: str  # always set once saved
    container_disk_in_gb: int = 0

    def env_dict(self) -> dict[str, str]:
        return {var.key: var.value for var in self.env}


class NetworkVolumeRef(_Wire):
    network_volume_id: str
    data_center_id: str | None = None  # read back only: NetworkVolumeIdInput has networkVolumeId alone


class EndpointInput(_Wire):
    """`saveEndpoint`'s input: always the full spec, since RunPod resets omitted fields to defaults.

    `workers_standby` is None unless the live schema declares it (see RunPodGraphQL.declares); `type`
    ("QB" | "LB") is sent only where the schema declares it too, and None leaves it out.
    """

    name: str
    template_id: str
    gpu_ids: str
    gpu_count: int = 1
    workers_min: int = 0
    workers_max: int = 1
    workers_standby: int | None = None
    idle_timeout: int = 5
    scaler_type: ScalerType = "QUEUE_DELAY"
    scaler_value: int = 4
    flash_boot_type: FlashBootType = "FLASHBOOT"
    locations: str | None = None
    execution_timeout_ms: int | None = None
    network_volume_id: str | None = None
    network_volume_ids: tuple[NetworkVolumeRef, ...] | None = None
    allowed_cuda_versions: str | None = None
    min_cuda_version: str | None = None
    model_references: tuple[str, ...] | None = None
    type: str | None = None
    id: str | None = None

    @property
    def kind(self) -> EndpointKind:
        return endpoint_kind(self.type)

    def wire(self) -> dict[str, object]:
        raw = super().wire()
        if self.network_volume_ids is not None:
            raw["networkVolumeIds"] = [{"networkVolumeId": ref.network_volume_id} for ref in self.network_volume_ids]
        return raw


# What Notus does not set but carries over on every update (saveEndpoint is a full replace); `type`
# too: an update that left it out could turn an LB endpoint back into a queue one.
CARRIED_FIELDS = (
    "type",
    "execution_timeout_ms",
    "network_volume_id",
    "network_volume_ids",
    "allowed_cuda_versions",
    "min_cuda_version",
    "model_references",
)


class EndpointInfo(EndpointInput, _ReadBack):
    id: str
    template_id: str = ""
    gpu_ids: str = ""


class GpuType(_Wire):
    id: str
    display_name: str = ""
    memory_in_gb: int = 0


class RegistryAuth(_Wire):
    """A registry credential saved on RunPod; RunPod never returns the password."""

    id: str
    name: str


class GpuPoolInfo(_Wire):
    id: str
    gpu_type_ids: tuple[str, ...] = Field(default=())


class ControlPlane(Protocol):
    """What `notus deploy`, `status`, `endpoints` and `down` need from RunPod."""

    mutations: int  # mutations sent so far (a dry run sends none)

    def templates(self) -> list[Template]: ...
    def endpoints(self) -> list[EndpointInfo]: ...
    def gpu_types(self) -> list[GpuType]: ...
    def gpu_pools(self) -> list[GpuPoolInfo]: ...
    def registry_auths(self) -> list[RegistryAuth]: ...
    def declares(self, input_type: str, field: str) -> bool: ...
    def save_registry_auth(self, name: str, username: str, password: SecretStr) -> RegistryAuth: ...
    def save_template(self, template: TemplateInput) -> Template: ...
    def delete_template(self, name: str) -> None: ...
    def save_endpoint(self, endpoint: EndpointInput) -> EndpointInfo: ...
    def update_endpoint_template(self, endpoint_id: str, template_id: str) -> None: ...
    def delete_endpoint(self, endpoint_id: str) -> None: ...
