"""Will the model fit on a GPU, and how many sequences can run at once at a given context length?

vLLM takes `gpu_memory_utilization` of each card, loads the weights, keeps some for activations and
runtime buffers, and gives the rest to the caches. For Nemotron-H, a running sequence holds K/V for
its tokens in the few attention layers plus a fixed Mamba state in every Mamba layer, so at short
contexts the Mamba state, not the KV cache, bounds concurrency. The runtime reserve is an estimate
(2 GiB + 5% of the card), calibrated so that one 80 GB card at 0.9 leaves ~7 GiB for the caches;
to absorb its error a layout must leave at least MIN_CACHE_GIB for the caches to count as fitting.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from notus_cli.model.shape import BF16_BYTES, ModelShape

GIB = 1024**3
FP8_BYTES = 1
MIN_CACHE_GIB = 2.0


class Verdict(StrEnum):
    FITS = "fits"
    NEEDS_FP8 = "needs FP8"
    TOO_SMALL = "too small"


@dataclass(frozen=True)
class Fit:
    vram_gib: float
    gpu_count: int
    max_model_len: int
    weights_bytes: int
    cache_bytes: int
    bytes_per_sequence: int
    max_sequences: int
    verdict: Verdict
    reason: str

    @property
    def weights_gib(self) -> float:
        return self.weights_bytes / GIB

    @property
    def cache_gib(self) -> float:
        return self.cache_bytes / GIB


def weights_bytes(shape: ModelShape, *, fp8_experts: bool = False) -> int:
    """BF16 weights; FP8 checkpoints quantise the routed experts and keep the rest in BF16."""
    parts = shape.parameters()
    experts = parts.pop("moe_experts")
    return sum(parts.values()) * BF16_BYTES + experts * (FP8_BYTES if fp8_experts else BF16_BYTES)


def runtime_reserve_bytes(vram_gib: float) -> int:
    return int((2 + 0.05 * vram_gib) * GIB)


def check_fit(
    shape: ModelShape,
    *,
    vram_gib: float,
    gpu_count: int = 1,
    max_model_len: int,
    gpu_memory_utilization: float = 0.9,
    weights: int | None = None,
) -> Fit:
    """Size the caches on `gpu_count` cards of `vram_gib` each, in BF16 and, failing that, FP8.

    `weights` overrides the computed BF16 weight size (e.g. summed from the real safetensors files).
    """
    usable = int(vram_gib * GIB * gpu_memory_utilization * gpu_count) - gpu_count * runtime_reserve_bytes(vram_gib)
    per_sequence = shape.kv_bytes_per_token() * max_model_len + shape.mamba_bytes_per_sequence()
    bf16 = weights if weights is not None else weights_bytes(shape)

    def sized(weight_bytes: int, verdict: Verdict, reason: str) -> Fit:
        cache = max(0, usable - weight_bytes)
        return Fit(
            vram_gib=vram_gib,
            gpu_count=gpu_count,
            max_model_len=max_model_len,
            weights_bytes=weight_bytes,
            cache_bytes=cache,
            bytes_per_sequence=per_sequence,
            max_sequences=cache // per_sequence,
            verdict=verdict,
            reason=reason,
        )

    def roomy(fit: Fit) -> bool:
        return fit.max_sequences >= 1 and fit.cache_gib >= MIN_CACHE_GIB

    fit = sized(bf16, Verdict.FITS, "")
    if roomy(fit):
        return sized(
            bf16, Verdict.FITS, f"BF16 weights {fit.weights_gib:.1f} GiB leave {fit.cache_gib:.1f} GiB for caches"
        )
    fp8 = sized(weights_bytes(shape, fp8_experts=True), Verdict.NEEDS_FP8, "")
    if roomy(fp8):
        return sized(
            fp8.weights_bytes,
            Verdict.NEEDS_FP8,
            f"BF16 weights ({bf16 / GIB:.1f} GiB) do not fit in {usable / GIB:.1f} GiB usable; "
            f"an FP8 checkpoint ({fp8.weights_gib:.1f} GiB) leaves {fp8.cache_gib:.1f} GiB for caches",
        )
    return sized(
        bf16,
        Verdict.TOO_SMALL,
        f"{usable / GIB:.1f} GiB usable cannot hold the weights ({bf16 / GIB:.1f} GiB in BF16, "
        f"{fp8.weights_gib:.1f} GiB in FP8) with {MIN_CACHE_GIB:.0f} GiB left for caches "
        f"({per_sequence / 2**20:.0f} MiB per sequence at {max_model_len} tokens)",
    )
