"""Deploy plans without any network: fit verdicts per GPU, the template and spec they lead to, diffs, cost."""

from __future__ import annotations

import pytest

from notus_cli.deploy.plan import DeployRequest, check_name, cuda_floor, parse_env, plan_deploy
from notus_cli.errors import ConfigError
from notus_cli.runpod.control import EndpointInfo, NetworkVolumeRef, Template
from notus_cli.runpod.gpus import resolve_pools
from notus_cli.runpod.regions import resolve_locations

IMAGE = "ghcr.io/acme/notus@sha256:" + "ab" * 32
MODEL = "nvidia/NVIDIA-Nemotron-3-Nano-30B-A3B-BF16"


def request(gpu: str = "a100", **changes: object) -> DeployRequest:
    fields: dict[str, object] = {"name": "prod", "image": IMAGE, "model_id": MODEL, "pools": tuple(resolve_pools(gpu))}
    return DeployRequest(**(fields | changes))  # type: ignore[arg-type]


@pytest.mark.parametrize("gpu", ["a100", "h100", "h200"])
def test_80gb_and_larger_cards_fit_with_concurrency_from_the_fit(gpu: str) -> None:
    plan = plan_deploy(request(gpu), endpoints=[], templates=[])
    ((_pool, fit),) = plan.fits
    assert fit.verdict == "fits"
    assert plan.max_num_seqs == min(1024, fit.max_sequences) >= 8
    env = {var.key: var.value for var in plan.template.env}
    assert env["NOTUS_MAX_NUM_SEQS"] == str(plan.max_num_seqs)
    assert env["NOTUS_MAX_MODEL_LEN"] == "32768"


def test_h200_runs_more_sequences_than_a100() -> None:
    a100 = plan_deploy(request("a100"), endpoints=[], templates=[])
    h200 = plan_deploy(request("h200"), endpoints=[], templates=[])
    assert h200.max_num_seqs > 4 * a100.max_num_seqs


def test_a40_is_refused_as_needing_fp8_and_names_the_gpus_that_fit() -> None:
    with pytest.raises(ConfigError, match=r"AMPERE_48 .* needs FP8 weights") as caught:
        plan_deploy(request("a40"), endpoints=[], templates=[])
    assert caught.value.hint is not None
    assert "a100 (AMPERE_80)" in caught.value.hint
    assert "h200 (HOPPER_141)" in caught.value.hint
    assert "a40" not in caught.value.hint.split(";")[0]


def test_a40_takes_an_fp8_build_with_a_note() -> None:
    plan = plan_deploy(request("a40", model_id="nvidia/NVIDIA-Nemotron-3-Nano-30B-A3B-FP8"), endpoints=[], templates=[])
    assert plan.notes
    assert "FP8" in plan.notes[0]
    assert plan.template.container_disk_in_gb < 100  # smaller weights, smaller disk


def test_small_cards_are_refused_with_the_reason() -> None:
    with pytest.raises(ConfigError, match=r"ADA_24 .* cannot hold the model: .* GiB usable"):
        plan_deploy(request("4090"), endpoints=[], templates=[])


def test_a100_40gb_is_not_a_serverless_pool() -> None:
    with pytest.raises(ConfigError, match="not offered by any RunPod serverless pool"):
        resolve_pools("a100-40")


def test_mixed_pools_refuse_the_one_that_does_not_fit() -> None:
    with pytest.raises(ConfigError, match="AMPERE_48"):
        plan_deploy(request("a100,a40"), endpoints=[], templates=[])


def test_new_deployment_plan() -> None:
    plan = plan_deploy(request("a100,h100", workers_min=1, workers_max=3, gpu_count=2), endpoints=[], templates=[])
    assert [c.action for c in plan.changes] == ["create template", "create endpoint"]
    assert plan.template.name.startswith("prod__abababababab-")
    assert plan.template.container_disk_in_gb == 100  # BF16 weights + vLLM, as the hand-made template had
    assert {v.key: v.value for v in plan.template.env}["NOTUS_TENSOR_PARALLEL_SIZE"] == "2"
    assert plan.endpoint.gpu_ids == "AMPERE_80,ADA_80_PRO"
    assert plan.endpoint.workers_standby is None  # not declared by the schema: not part of the spec
    assert "workersStandby" not in plan.endpoint.wire()
    assert plan.usd_per_hour == pytest.approx((0.00076 * 3600 * 2, 0.00116 * 3600 * 2))
    assert plan.max_usd_per_hour == pytest.approx(0.00116 * 3600 * 2 * 3)


def existing(plan_request: DeployRequest) -> tuple[list[EndpointInfo], list[Template]]:
    """What RunPod holds after `plan_request` was applied."""
    plan = plan_deploy(plan_request, endpoints=[], templates=[])
    template = Template(**plan.template.model_dump(exclude={"id"}), id="tpl1")
    endpoint = EndpointInfo(**plan.endpoint.model_dump(exclude={"id", "template_id"}), id="ep1", template_id="tpl1")
    return [endpoint], [template]


def test_the_same_request_again_changes_nothing() -> None:
    endpoints, templates = existing(request())
    assert plan_deploy(request(), endpoints=endpoints, templates=templates).changes == ()


def test_a_new_image_is_a_rolling_release_and_new_settings_a_full_save() -> None:
    endpoints, templates = existing(request())
    plan = plan_deploy(request(image="ghcr.io/acme/notus:v2", workers_max=4), endpoints=endpoints, templates=templates)
    assert [c.action for c in plan.changes] == ["create template", "update endpoint", "rolling release"]
    assert "workers_max: 1 -> 4" in plan.changes[1].detail
    assert plan.template.name.startswith("prod__v2-")
    assert plan.endpoint.id == "ep1"
    assert plan.endpoint.template_id == "tpl1"


def test_max_model_len_is_bounded_by_the_model() -> None:
    with pytest.raises(ConfigError, match="--max-model-len 300000 exceeds the model's context"):
        plan_deploy(request(max_model_len=300_000), endpoints=[], templates=[])
    long = plan_deploy(request("h200", max_model_len=262_144), endpoints=[], templates=[])
    assert 1 <= long.max_num_seqs < plan_deploy(request("h200"), endpoints=[], templates=[]).max_num_seqs


def test_regions() -> None:
    assert resolve_locations("is") == "EUR-IS-1,EUR-IS-2,EUR-IS-3"
    assert "EU-SE-1" in (resolve_locations("eu") or "")
    assert resolve_locations("eur-is-1, eu-ro-1") == "EUR-IS-1,EU-RO-1"
    with pytest.raises(ConfigError, match="--region: 'MARS' is not a region"):
        resolve_locations("mars")


def test_env_and_names() -> None:
    assert parse_env(["A=x=y", 'B=a "q" \\ \n z']) == (("A", "x=y"), ("B", 'a "q" \\ \n z'))
    with pytest.raises(ConfigError, match="--env '1BAD=x' is not KEY=VALUE"):
        parse_env(["1BAD=x"])
    with pytest.raises(ConfigError, match="NAME 'Prod_1'"):
        check_name("Prod_1")
    with pytest.raises(ConfigError, match="NAME 'ab'") as caught:
        check_name("ab")  # RunPod wants at least 3 characters
    assert "3 to 40" in (caught.value.hint or "")


def test_workers_standby_is_set_and_compared_only_where_declared() -> None:
    plan = plan_deploy(request(workers_min=1, workers_max=2), endpoints=[], templates=[], standby=True)
    assert plan.endpoint.workers_standby == plan.endpoint.workers_min == 1
    endpoints, templates = existing(request(workers_min=1, workers_max=2))
    read_back = [endpoints[0].model_copy(update={"workers_standby": 0})]  # what RunPod reports
    wanted = request(workers_min=1, workers_max=2)
    assert plan_deploy(wanted, endpoints=read_back, templates=templates).changes == ()
    declared = plan_deploy(wanted, endpoints=read_back, templates=templates, standby=True)
    assert [c.detail for c in declared.changes] == ["workers_standby: 0 -> 1"]


def test_an_update_carries_over_what_notus_does_not_set() -> None:
    """saveEndpoint is a full replace: fields set in RunPod's console must survive a redeploy."""
    endpoints, templates = existing(request())
    console = {
        "network_volume_id": "vol-1",
        "network_volume_ids": (NetworkVolumeRef(network_volume_id="vol-1", data_center_id="EU-RO-1"),),
        "allowed_cuda_versions": "12.8,12.9",
        "min_cuda_version": "12.8",
        "model_references": ("https://huggingface.co/nvidia/x:main",),
        "execution_timeout_ms": 1_200_000,
    }
    endpoints = [endpoints[0].model_copy(update=console)]
    plan = plan_deploy(request(workers_max=4), endpoints=endpoints, templates=templates)
    assert [c.action for c in plan.changes] == ["update endpoint"]
    wire = plan.endpoint.wire()
    assert wire["networkVolumeId"] == "vol-1"
    assert wire["networkVolumeIds"] == [{"networkVolumeId": "vol-1"}]  # the input type has no dataCenterId
    assert wire["allowedCudaVersions"] == "12.8,12.9"
    assert wire["minCudaVersion"] == "12.8"
    assert wire["modelReferences"] == ["https://huggingface.co/nvidia/x:main"]
    assert wire["executionTimeoutMs"] == 1_200_000
    assert wire["workersMax"] == 4


def test_the_image_cuda_sets_min_cuda_version_and_its_size_the_disk() -> None:
    plan = plan_deploy(request(cuda_version="12.9.1", image_size_bytes=75 * 10**9), endpoints=[], templates=[])
    assert plan.endpoint.min_cuda_version == "12.9"
    assert plan.template.container_disk_in_gb == 90  # 75 GB measured x 1.2 headroom, in tens
    endpoints, templates = existing(request())
    newer = plan_deploy(request(cuda_version="13.0"), endpoints=endpoints, templates=templates)
    assert "min_cuda_version: None -> '13.0'" in newer.changes[0].detail
    assert cuda_floor("12.8") == "12.8"
    endpoints = [endpoints[0].model_copy(update={"allowed_cuda_versions": "12.4,12.6"})]
    clash = plan_deploy(request(cuda_version="12.8"), endpoints=endpoints, templates=templates)
    assert any("allows CUDA 12.4, 12.6 only" in note for note in clash.notes)
    with pytest.raises(ConfigError, match="CUDA version 'cuda12'"):
        cuda_floor("cuda12")


def test_other_tools_endpoints_and_templates_read_back_with_nulls() -> None:
    """A CPU or Hub endpoint has no gpuIds or template; reading the account must not fail on it."""
    cpu = EndpointInfo.model_validate(
        {"id": "e1", "name": "cpu-job", "templateId": None, "gpuIds": None, "gpuCount": None, "workersStandby": None}
    )
    assert (cpu.gpu_ids, cpu.template_id, cpu.gpu_count, cpu.workers_standby) == ("", "", 1, None)
    raw = {"id": "t1", "name": "pod", "imageName": "i", "containerDiskInGb": None, "env": None}
    bare = Template.model_validate(raw)
    assert (bare.container_disk_in_gb, bare.env) == (0, ())
    plan = plan_deploy(request(), endpoints=[cpu], templates=[bare])
    assert [c.action for c in plan.changes] == ["create template", "create endpoint"]


@pytest.mark.parametrize(
    ("image", "hub"),
    [("notus:latest", "docker.io/library/notus"), ("acme/notus:v1", "docker.io/acme/notus"), (IMAGE, None)],
)
def test_an_image_without_a_registry_is_said_to_come_from_docker_hub(image: str, hub: str | None) -> None:
    notes = plan_deploy(request(image=image), endpoints=[], templates=[]).notes
    said = [note for note in notes if "names no registry" in note]
    assert said == ([f"{image} names no registry: RunPod pulls it from Docker Hub as {hub}"] if hub else [])
