"""Sizing Nemotron on RunPod's GPUs: parameter counts, cache sizes and the fit verdicts."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from notus_cli.model.fit import MIN_CACHE_GIB, Verdict, check_fit
from notus_cli.model.safetensors_io import read_safetensors_header
from notus_cli.model.shape import NEMOTRON_3_NANO, ModelShape
from notus_cli.model.tiny import write_tiny_model
from notus_cli.runpod.gpus import resolve_pool


def test_default_shape_matches_the_published_size() -> None:
    total = sum(NEMOTRON_3_NANO.parameters().values())
    assert 31.5e9 < total < 31.7e9  # "31.6 B parameters in all"
    assert NEMOTRON_3_NANO.layers("M") == 23
    assert NEMOTRON_3_NANO.layers("E") == 23
    assert NEMOTRON_3_NANO.layers("*") == 6
    assert NEMOTRON_3_NANO.kv_bytes_per_token() == 6 * 1024  # "about 6 KiB per token"
    mamba_mib = NEMOTRON_3_NANO.mamba_bytes_per_sequence() / 2**20
    assert 23 * 2 <= mamba_mib < 23 * 2.1  # "about 2 MiB per layer"


def test_shape_from_a_real_config_counts_every_weight(tmp_path: Path) -> None:
    model = write_tiny_model(tmp_path / "tiny")
    header = read_safetensors_header(model.path / "model.safetensors")
    shape = ModelShape.from_dir(model.path)
    counted = sum(math.prod(entry["shape"]) for entry in header.values())  # type: ignore[arg-type]
    assert sum(shape.parameters().values()) == model.parameters == counted


@pytest.mark.parametrize(
    ("gpu", "vram", "verdict"),
    [
        ("a100-40", 40.0, Verdict.TOO_SMALL),
        ("a40", 45.0, Verdict.NEEDS_FP8),  # sold as 48 GB; the driver reports 46068 MiB
        ("a100", 80.0, Verdict.FITS),
        ("h100", 79.6, Verdict.FITS),
        ("h200", 140.4, Verdict.FITS),
        ("4090", 24.0, Verdict.TOO_SMALL),
    ],
)
def test_verdicts_at_8k_context(gpu: str, vram: float, verdict: Verdict) -> None:
    if gpu != "a100-40":
        assert resolve_pool(gpu).vram_gib == pytest.approx(vram)  # what the plan sizes with
    fit = check_fit(NEMOTRON_3_NANO, vram_gib=vram, max_model_len=8192)
    assert fit.verdict is verdict
    assert fit.reason
    if verdict is Verdict.TOO_SMALL:
        assert fit.max_sequences == 0 or fit.cache_gib < MIN_CACHE_GIB
    else:
        assert fit.max_sequences >= 1


def test_one_80gb_card_leaves_about_7_gib_and_concurrency_falls_with_context() -> None:
    short = check_fit(NEMOTRON_3_NANO, vram_gib=80, max_model_len=8192)
    long = check_fit(NEMOTRON_3_NANO, vram_gib=80, max_model_len=65536)
    assert 6.5 < short.cache_gib < 7.5
    assert short.max_sequences > long.max_sequences >= 1
    assert short.bytes_per_sequence == 8192 * 6144 + NEMOTRON_3_NANO.mamba_bytes_per_sequence()


def test_tensor_parallelism_pools_the_cards() -> None:
    assert check_fit(NEMOTRON_3_NANO, vram_gib=48, gpu_count=2, max_model_len=8192).verdict is Verdict.FITS
