"""RunPod's GraphQL schema, the part Notus uses, written by us from RunPod's published sources (data).

Every type and field below carries the source it was read from. The emulator's control plane
validates each request against this SDL with graphql-core, so an input field RunPod does not
declare is refused here as it is there. Sources (snapshots read 2026-12):

  [ctl]   runpod/runpodctl internal/api/endpoints.go (EndpointCreateGQLInput, UpdateEndpointModels,
          CreateEndpointGQL), internal/api/templates.go, api/endpoint.go, AGENTS.md
  [py]    runpod/runpod-python runpod/api/mutations/{endpoints,templates,container_register_auth}.py,
          runpod/api/queries/endpoints.py
  [flash] runpod/flash src/runpod_flash/core/api/runpod.py (save_endpoint), core/resources/serverless.py
  [docs]  runpod/docs sdks/graphql/manage-endpoints.mdx, manage-pod-templates.mdx (volumeInGb required,
          "up to 2 minutes to delete a template after its most recent use"), references/gpu-types.mdx
  [ref]   what endpoints made in RunPod's console read back (the team's notes beside DESIGN.md)

`workersStandby` is a disputed input: it is read back on `Endpoint` by [ctl], [py] and [flash],
but no published client sends it, so `schema(declares_workers_standby=...)` builds both shapes and
clients must ask (introspection) before sending it. `type` is sent by [flash] alone (neither [ctl]
nor [py] has it), so it is probed the same way: `declares_type=False` builds the shape without it.
"""

from __future__ import annotations

from functools import cache

from graphql import GraphQLSchema, build_schema

SDL = """
scalar Void

type Query {
  myself: User!
  gpuTypes: [GpuType!]!                 # [ctl] gpu list; ids like "NVIDIA H100 80GB HBM3" [docs] gpu-types
  serverlessGpuPools: [GpuPool!]!       # [ctl] AGENTS.md: saveEndpoint.gpuIds wants pool ids
}

type User {
  id: String!
  endpoints: [Endpoint!]!               # [ctl] GetEndpoints, [py] queries/endpoints.py
  podTemplates: [PodTemplate!]!         # [docs] manage-pod-templates
  containerRegistryCreds: [RegistryAuth!]!  # public third-party scripts: myself { containerRegistryCreds { id name } }
}

type GpuType { id: String! displayName: String! memoryInGb: Int! }
type GpuPool { id: String! gpuTypeIds: [String!]! }
type EnvironmentVariable { key: String! value: String! }
input EnvironmentVariableInput { key: String! value: String! }
type RegistryAuth { id: String! name: String! }       # [py] saveRegistryAuth returns { id name }

type PodTemplate {
  id: String! name: String! imageName: String! dockerArgs: String containerDiskInGb: Int volumeInGb: Int
  volumeMountPath: String ports: String env: [EnvironmentVariable!]! isServerless: Boolean readme: String
  isPublic: Boolean startSsh: Boolean containerRegistryAuthId: String
}

# [ctl] CreateTemplateInput, [py] generate_pod_template, [docs] manage-pod-templates "Required fields":
# name, imageName, containerDiskInGb and volumeInGb ("Set to 0 for Serverless templates").
input SaveTemplateInput {
  id: String name: String! imageName: String! dockerArgs: String containerDiskInGb: Int! volumeInGb: Int!
  volumeMountPath: String ports: String env: [EnvironmentVariableInput] isServerless: Boolean readme: String
  isPublic: Boolean startSsh: Boolean containerRegistryAuthId: String      # [py] registry_auth_id
}

# [py] sends `flashBootType: FLASHBOOT` unquoted (an enum); [ctl] AGENTS.md: OFF / FLASHBOOT;
# PRIORITY_FLASHBOOT: read back on console-made endpoints [ref].
enum FlashBootType { OFF FLASHBOOT PRIORITY_FLASHBOOT }

type NetworkVolumeRef { networkVolumeId: String! dataCenterId: String }  # [ctl] CreateEndpointGQL
input NetworkVolumeIdInput { networkVolumeId: String! }                   # [ctl] NetworkVolumeIDInput

type Endpoint {
  id: String! name: String! templateId: String! gpuIds: String! gpuCount: Int! locations: String
  networkVolumeId: String networkVolumeIds: [NetworkVolumeRef!] idleTimeout: Int! scalerType: String!
  scalerValue: Int! workersMin: Int! workersMax: Int! workersStandby: Int! flashBootType: FlashBootType!
  executionTimeoutMs: Int allowedCudaVersions: String minCudaVersion: String modelReferences: [String!]
  instanceIds: [String!] type: String   # type: "QB" (queue) | "LB" (load balancing) [flash] ServerlessType
}

# [ctl] EndpointCreateGQLInput + UpdateEndpointModels (the full round trip), [py] generate_endpoint_mutation
# (allowedCudaVersions: comma-separated string; scalerType a quoted string), [flash] input fields.
# name: String! (min 3) [ctl] AGENTS.md. WORKERS_STANDBY marks the disputed field.
input EndpointInput {
  id: String name: String! templateId: String gpuIds: String gpuCount: Int instanceIds: [String]
  locations: String networkVolumeId: String networkVolumeIds: [NetworkVolumeIdInput] idleTimeout: Int
  scalerType: String scalerValue: Int workersMin: Int workersMax: Int WORKERS_STANDBY flashBootType: FlashBootType
  executionTimeoutMs: Int allowedCudaVersions: String minCudaVersion: String modelReferences: [String]
  TYPE   # [flash] serverless.py ServerlessType (QB | LB), sent by load_balancer_sls_resource.py as "LB"
}

input UpdateEndpointTemplateInput { endpointId: String! templateId: String! }   # [ctl], [py]
# [py] container_register_auth.py inlines {name, username, password}; the type's name is ours (unpublished)
input SaveRegistryAuthInput { name: String! username: String! password: String! }

type Mutation {
  saveTemplate(input: SaveTemplateInput): PodTemplate                 # [ctl] api/endpoint.go CreateTemplate
  deleteTemplate(templateName: String): Void                          # [docs] manage-pod-templates
  saveEndpoint(input: EndpointInput!): Endpoint                       # [ctl], [flash]
  updateEndpointTemplate(input: UpdateEndpointTemplateInput): Endpoint  # [ctl] UpdateEndpointTemplate
  deleteEndpoint(id: String): Void                                    # [docs] manage-endpoints
  saveRegistryAuth(input: SaveRegistryAuthInput): RegistryAuth        # [py] generate_container_registry_auth
}
"""


@cache
def schema(*, declares_workers_standby: bool, declares_type: bool = True) -> GraphQLSchema:
    """The schema in one of the shapes RunPod may have: with or without `EndpointInput.workersStandby`
    and `EndpointInput.type` (flash sends it, so it is there by default)."""
    sdl = SDL.replace("WORKERS_STANDBY", "workersStandby: Int" if declares_workers_standby else "")
    return build_schema(sdl.replace("TYPE   #", "type: String   #" if declares_type else "#"))
