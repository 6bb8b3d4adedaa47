"""RunPod's serverless GPU pools, their memory and flex prices, and the aliases people type.

Kept as data (from RunPod's published pools and prices; see reference/runpod.md) so cost and fit
checks work offline; `serverlessGpuPools` / `gpuTypes` can refresh it. Billing is per second.
"""

from __future__ import annotations

from dataclasses import dataclass

from notus_cli.errors import ConfigError


@dataclass(frozen=True)
class GpuPool:
    """A serverless pool: the GPU types RunPod may place a worker on, their memory and price."""

    id: str
    gpus: tuple[str, ...]
    vram_gb: int
    usd_per_second: float

    @property
    def usd_per_hour(self) -> float:
        return self.usd_per_second * 3600


POOLS: tuple[GpuPool, ...] = (
    GpuPool("AMPERE_16", ("RTX A4000", "RTX A4500", "RTX 4000 Ada", "RTX 2000 Ada"), 16, 0.00016),
    GpuPool("AMPERE_24", ("RTX A5000", "L4", "RTX 3090"), 24, 0.00019),
    GpuPool("ADA_24", ("RTX 4090",), 24, 0.00031),
    GpuPool("AMPERE_48", ("A40", "RTX A6000"), 48, 0.00034),
    GpuPool("ADA_48_PRO", ("L40", "L40S", "RTX 6000 Ada"), 48, 0.00053),
    GpuPool("AMPERE_80", ("A100 80GB PCIe", "A100-SXM4-80GB"), 80, 0.00076),
    GpuPool("ADA_80_PRO", ("H100 80GB HBM3", "H100 PCIe", "H100 NVL"), 80, 0.00116),
    GpuPool("BLACKWELL_96", ("RTX PRO 6000",), 96, 0.00111),
    GpuPool("HOPPER_141", ("H200",), 141, 0.00155),
    GpuPool("BLACKWELL_180", ("B200",), 180, 0.00240),
)
POOLS_BY_ID = {pool.id: pool for pool in POOLS}

# What people type -> pool id. An alias names the pool a card is served from.
ALIASES: dict[str, str] = {
    "a4000": "AMPERE_16",
    "a4500": "AMPERE_16",
    "16gb": "AMPERE_16",
    "a5000": "AMPERE_24",
    "l4": "AMPERE_24",
    "3090": "AMPERE_24",
    "24gb": "AMPERE_24",
    "4090": "ADA_24",
    "a40": "AMPERE_48",
    "a6000": "AMPERE_48",
    "48gb": "AMPERE_48",
    "l40": "ADA_48_PRO",
    "l40s": "ADA_48_PRO",
    "6000ada": "ADA_48_PRO",
    "a100": "AMPERE_80",
    "a100-80": "AMPERE_80",
    "80gb": "AMPERE_80",
    "h100": "ADA_80_PRO",
    "pro6000": "BLACKWELL_96",
    "h200": "HOPPER_141",
    "b200": "BLACKWELL_180",
}

# Cards people ask about that no serverless pool offers; the fit check still answers for them.
UNPOOLED_VRAM_GB: dict[str, int] = {"a100-40": 40}


def resolve_pool(name: str) -> GpuPool:
    """The pool for an alias (`a100`) or pool id (`AMPERE_80`), case-insensitive.

    Raises ConfigError listing what is accepted.
    """
    key = name.strip()
    pool_id = ALIASES.get(key.lower()) or (key.upper() if key.upper() in POOLS_BY_ID else None)
    if pool_id is None:
        if key.lower() in UNPOOLED_VRAM_GB:
            raise ConfigError(
                f"GPU '{name}' is not offered by any RunPod serverless pool",
                hint=f"choose one of: {', '.join(ALIASES)}",
            )
        raise ConfigError(f"unknown GPU '{name}'", hint=f"choose one of: {', '.join(ALIASES)} (or a pool id)")
    return POOLS_BY_ID[pool_id]


def resolve_pools(names: str) -> list[GpuPool]:
    """Comma-separated aliases (`a100,h100`) to pools, in order, without duplicates."""
    pools: list[GpuPool] = []
    for name in names.split(","):
        if name.strip():
            pool = resolve_pool(name)
            if pool not in pools:
                pools.append(pool)
    if not pools:
        raise ConfigError("no GPU given", hint=f"choose one of: {', '.join(ALIASES)}")
    return pools
