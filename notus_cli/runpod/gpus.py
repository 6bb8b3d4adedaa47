"""RunPod's serverless GPU pools, their memory and flex prices, and the aliases people type.

Kept as data (from RunPod's published pools and prices; see reference/runpod.md) so cost and fit
checks work offline; `serverlessGpuPools` / `gpuTypes` can refresh it. Billing is per second.
"""

from __future__ import annotations

from dataclasses import dataclass

from notus_cli.errors import ConfigError


@dataclass(frozen=True)
class GpuCard:
    """A GPU type as RunPod's `gpuTypes` names it, and the memory its driver reports.

    `id` and `memory_gb` (RunPod's memoryInGb) are from runpod/docs references/gpu-types.mdx;
    `vram_gib` is the card's total memory as nvidia-smi reports it (MiB / 1024), which is what vLLM
    can use: an L40S sold as 48 GB has 46068 MiB, about 45 GiB.
    """

    id: str
    display_name: str
    memory_gb: int
    vram_gib: float


@dataclass(frozen=True)
class GpuPool:
    """A serverless pool: the GPU types RunPod may place a worker on, their memory and flex price."""

    id: str
    cards: tuple[GpuCard, ...]
    vram_gb: int
    usd_per_second: float  # the flex (scale-to-zero) rate, runpod/docs snippets/serverless-gpu-pricing-table.mdx

    @property
    def usd_per_hour(self) -> float:
        return self.usd_per_second * 3600

    @property
    def gpus(self) -> tuple[str, ...]:
        return tuple(card.display_name for card in self.cards)

    @property
    def vram_gib(self) -> float:
        """The smallest card's usable memory: a worker may land on any card of the pool."""
        return min(card.vram_gib for card in self.cards)


def _card(gpu_id: str, name: str, memory_gb: int, mib: int) -> GpuCard:
    return GpuCard(gpu_id, name, memory_gb, round(mib / 1024, 1))


POOLS: tuple[GpuPool, ...] = (
    GpuPool(
        "AMPERE_16",
        (
            _card("NVIDIA RTX A4000", "RTX A4000", 16, 16376),
            _card("NVIDIA RTX A4500", "RTX A4500", 20, 20470),
            _card("NVIDIA RTX 4000 Ada Generation", "RTX 4000 Ada", 20, 20475),
            _card("NVIDIA RTX 2000 Ada Generation", "RTX 2000 Ada", 16, 16380),
        ),
        16,
        0.00016,
    ),
    GpuPool(
        "AMPERE_24",
        (
            _card("NVIDIA RTX A5000", "RTX A5000", 24, 24564),
            _card("NVIDIA L4", "L4", 24, 23034),
            _card("NVIDIA GeForce RTX 3090", "RTX 3090", 24, 24576),
        ),
        24,
        0.00019,
    ),
    GpuPool("ADA_24", (_card("NVIDIA GeForce RTX 4090", "RTX 4090", 24, 24564),), 24, 0.00031),
    GpuPool(
        "AMPERE_48",
        (_card("NVIDIA A40", "A40", 48, 46068), _card("NVIDIA RTX A6000", "RTX A6000", 48, 49140)),
        48,
        0.00034,
    ),
    GpuPool(
        "ADA_48_PRO",
        (
            _card("NVIDIA L40", "L40", 48, 46068),
            _card("NVIDIA L40S", "L40S", 48, 46068),
            _card("NVIDIA RTX 6000 Ada Generation", "RTX 6000 Ada", 48, 49140),
        ),
        48,
        0.00053,
    ),
    GpuPool(
        "AMPERE_80",
        (
            _card("NVIDIA A100 80GB PCIe", "A100 PCIe", 80, 81920),
            _card("NVIDIA A100-SXM4-80GB", "A100 SXM", 80, 81920),
        ),
        80,
        0.00076,
    ),
    GpuPool(
        "ADA_80_PRO",
        (
            _card("NVIDIA H100 80GB HBM3", "H100 SXM", 80, 81559),
            _card("NVIDIA H100 PCIe", "H100 PCIe", 80, 81559),
            _card("NVIDIA H100 NVL", "H100 NVL", 94, 95830),
        ),
        80,
        0.00116,
    ),
    GpuPool(
        "BLACKWELL_96",
        (_card("NVIDIA RTX PRO 6000 Blackwell Server Edition", "RTX PRO 6000", 96, 97887),),
        96,
        0.00111,
    ),
    GpuPool("HOPPER_141", (_card("NVIDIA H200", "H200 SXM", 141, 143771),), 141, 0.00155),
    GpuPool("BLACKWELL_180", (_card("NVIDIA B200", "B200", 180, 183359),), 180, 0.00240),
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
