"""GPU aliases resolve to RunPod pools; unknown names are refused with the accepted list."""

from __future__ import annotations

import pytest

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
