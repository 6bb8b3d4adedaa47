"""Whether the model fits each chosen GPU pool, and which pools would, for `notus deploy` and `notus gpus`."""

from __future__ import annotations

from notus_cli.errors import ConfigError
from notus_cli.model.fit import Fit, Verdict, check_fit
from notus_cli.model.shape import ModelShape
from notus_cli.runpod.gpus import ALIASES, POOLS, GpuPool


def fit_pools(
    pools: tuple[GpuPool, ...], *, shape: ModelShape, gpu_count: int, max_model_len: int
) -> tuple[tuple[GpuPool, Fit], ...]:
    return tuple(
        (pool, check_fit(shape, vram_gib=pool.vram_gib, gpu_count=gpu_count, max_model_len=max_model_len))
        for pool in pools
    )


def check_fits(
    fits: tuple[tuple[GpuPool, Fit], ...], gpu_count: int, *, fp8: bool, shape: ModelShape, max_model_len: int
) -> tuple[str, ...]:
    """Refuse GPUs that cannot serve the model; returns notes for the ones that need FP8 weights."""
    notes: list[str] = []
    for pool, fit in fits:
        if fit.verdict is Verdict.FITS or (fit.verdict is Verdict.NEEDS_FP8 and fp8):
            if fit.verdict is Verdict.NEEDS_FP8:
                notes.append(f"{pool.id} ({pool.vram_gib:g} GiB) runs the FP8 checkpoint: {fit.reason}")
            continue
        good = _fitting_aliases(shape, gpu_count, max_model_len)
        what = "needs FP8 weights" if fit.verdict is Verdict.NEEDS_FP8 else "cannot hold the model"
        hint = f"GPUs that fit at {max_model_len} tokens x{gpu_count}: {', '.join(good) or 'none'}"
        if fit.verdict is Verdict.NEEDS_FP8:
            hint += "; or deploy an FP8 build of the model to this GPU"
        raise ConfigError(f"--gpu {pool.id} ({pool.vram_gib:g} GiB) {what}: {fit.reason}", hint=hint)
    return tuple(notes)


def _fitting_aliases(shape: ModelShape, gpu_count: int, max_model_len: int) -> list[str]:
    fitting = {
        pool.id
        for pool in POOLS
        if check_fit(shape, vram_gib=pool.vram_gib, gpu_count=gpu_count, max_model_len=max_model_len).verdict
        is Verdict.FITS
    }
    names: dict[str, str] = {}
    for alias, pool_id in ALIASES.items():
        if pool_id in fitting and not alias.endswith("gb"):
            names.setdefault(pool_id, alias)
    return [f"{alias} ({pool_id})" for pool_id, alias in names.items()]
