"""GPU aliases resolve to RunPod pools (real gpuTypes ids, memory in GiB); unknown names are refused; cost per GPU."""

from __future__ import annotations

import pytest

from notus_cli.bench.cost import level_cost
from notus_cli.bench.metrics import summarize
from notus_cli.errors import ConfigError
from notus_cli.runpod.gpus import POOLS, resolve_pool, resolve_pools


def test_aliases_and_pool_ids_resolve() -> None:
    assert resolve_pool("a100").id == "AMPERE_80"
    assert resolve_pool("H100").id == "ADA_80_PRO"
    assert resolve_pool("ampere_48").id == "AMPERE_48"
    assert [p.id for p in resolve_pools("a100, h100,a100")] == ["AMPERE_80", "ADA_80_PRO"]


def test_hourly_price_is_the_per_second_price_times_3600() -> None:
    for pool in POOLS:
        assert pool.usd_per_hour == pytest.approx(pool.usd_per_second * 3600)
    assert resolve_pool("a100").usd_per_hour == pytest.approx(2.736)


@pytest.mark.parametrize("name", ["v100", "", "a100-40"])
def test_unknown_gpu_lists_the_choices(name: str) -> None:
    with pytest.raises(ConfigError) as caught:
        resolve_pools(name)
    assert "a100" in (caught.value.hint or "")


def test_pools_name_runpods_gpu_type_ids_and_the_memory_vllm_can_use() -> None:
    ids = {card.id for pool in POOLS for card in pool.cards}
    assert {"NVIDIA H100 80GB HBM3", "NVIDIA A100 80GB PCIe", "NVIDIA L40S", "NVIDIA GeForce RTX 4090"} <= ids
    l40s = resolve_pool("l40s")
    assert l40s.vram_gb == 48  # as RunPod sells it
    assert l40s.vram_gib == pytest.approx(45.0)  # as the driver reports it (46068 MiB)
    assert resolve_pool("a100").vram_gib == pytest.approx(80.0)


def test_cost_counts_every_gpu_of_a_worker() -> None:
    h100 = resolve_pool("h100")
    summary = summarize([], duration=10.0)
    one, two = level_cost(h100, summary), level_cost(h100, summary, gpu_count=2, workers=3)
    assert one.usd == pytest.approx(0.00116 * 10)
    assert two.usd == pytest.approx(0.00116 * 10 * 2 * 3)
    assert two.gpu_count == 2
