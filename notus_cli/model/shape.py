"""A hybrid Mamba-2/attention/MoE model's shape, and the parameter and cache sizes that follow from it.

The default model's shape is kept as data so sizing works before anything is downloaded; when the
model is at hand, `ModelShape.from_dir` reads its config.json instead.
"""

from __future__ import annotations

import json
from dataclasses import MISSING, dataclass, fields
from pathlib import Path
from typing import Any

from notus_cli.errors import ModelError

BF16_BYTES = 2
FP32_BYTES = 4


@dataclass(frozen=True)
class ModelShape:
    """The config.json fields that decide memory (names as in Nemotron-H configs)."""

    hybrid_override_pattern: str  # M = Mamba-2, * = attention, E = MoE, - = MLP
    hidden_size: int
    vocab_size: int
    num_attention_heads: int
    num_key_value_heads: int
    head_dim: int
    mamba_num_heads: int
    mamba_head_dim: int
    ssm_state_size: int
    n_groups: int
    conv_kernel: int
    intermediate_size: int = 0
    n_routed_experts: int = 0
    num_experts_per_tok: int = 0
    moe_intermediate_size: int = 0
    moe_shared_expert_intermediate_size: int = 0
    n_shared_experts: int = 0
    tie_word_embeddings: bool = False
    max_position_embeddings: int = 4096

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> ModelShape:
        """Raises ModelError when a field that decides memory is missing."""
        names = {f.name for f in fields(cls)}
        values = {key: value for key, value in config.items() if key in names}
        if "hybrid_override_pattern" not in values and isinstance(config.get("layers_block_type"), list):
            kinds = {
                "mamba": "M",
                "linear_attention": "M",
                "attention": "*",
                "full_attention": "*",
                "mlp": "-",
                "moe": "E",
            }
            values["hybrid_override_pattern"] = "".join(kinds.get(k, "?") for k in config["layers_block_type"])
        required = [f.name for f in fields(cls) if f.default is MISSING and f.name not in values]
        if required:
            raise ModelError(
                f"config.json lacks {', '.join(required)}", hint="is this a Nemotron-H (hybrid Mamba) model?"
            )
        return cls(**values)

    @classmethod
    def from_dir(cls, directory: Path) -> ModelShape:
        try:
            return cls.from_config(json.loads((directory / "config.json").read_text()))
        except (OSError, json.JSONDecodeError) as exc:
            raise ModelError(f"cannot read {directory / 'config.json'}: {exc}") from None

    def layers(self, kind: str) -> int:
        return self.hybrid_override_pattern.count(kind)

    @property
    def mamba_inner(self) -> int:
        return self.mamba_num_heads * self.mamba_head_dim

    @property
    def conv_channels(self) -> int:
        return self.mamba_inner + 2 * self.n_groups * self.ssm_state_size

    def parameters(self) -> dict[str, int]:
        """Parameter counts by part; their sum is the model's size."""
        h = self.hidden_size
        mamba = h * (self.mamba_inner + self.conv_channels + self.mamba_num_heads)  # in_proj
        mamba += self.conv_channels * (self.conv_kernel + 1) + 3 * self.mamba_num_heads + self.mamba_inner
        mamba += self.mamba_inner * h + h  # out_proj, layer norm
        q, kv = self.num_attention_heads * self.head_dim, self.num_key_value_heads * self.head_dim
        attention = h * q + 2 * h * kv + q * h + h
        experts = self.n_routed_experts * 2 * h * self.moe_intermediate_size
        shared = self.n_shared_experts * 2 * h * self.moe_shared_expert_intermediate_size
        router = self.n_routed_experts * h + h
        return {
            "embeddings": self.vocab_size * h * (1 if self.tie_word_embeddings else 2) + h,
            "mamba": self.layers("M") * mamba,
            "attention": self.layers("*") * attention,
            "mlp": self.layers("-") * (2 * h * self.intermediate_size + h),
            "moe_experts": self.layers("E") * experts,
            "moe_shared": self.layers("E") * (shared + router),
        }

    def kv_bytes_per_token(self, dtype_bytes: int = BF16_BYTES) -> int:
        """K and V for every attention layer; Mamba layers keep no per-token cache."""
        return self.layers("*") * 2 * self.num_key_value_heads * self.head_dim * dtype_bytes

    def mamba_bytes_per_sequence(self, ssm_bytes: int = FP32_BYTES, conv_bytes: int = BF16_BYTES) -> int:
        """The fixed recurrent state every running sequence holds, whatever its length."""
        ssm = self.mamba_num_heads * self.mamba_head_dim * self.ssm_state_size * ssm_bytes
        conv = self.conv_channels * (self.conv_kernel - 1) * conv_bytes
        return self.layers("M") * (ssm + conv)


# NVIDIA Nemotron-3 Nano 30B-A3B, from its published config (see reference/runpod.md).
NEMOTRON_3_NANO = ModelShape(
    hybrid_override_pattern="MEMEM*EMEMEM*EMEMEM*EMEMEM*EMEMEM*EMEMEMEM*EMEMEMEME",
    hidden_size=2688,
    vocab_size=131072,
    num_attention_heads=32,
    num_key_value_heads=2,
    head_dim=128,
    mamba_num_heads=64,
    mamba_head_dim=64,
    ssm_state_size=128,
    n_groups=8,
    conv_kernel=4,
    n_routed_experts=128,
    num_experts_per_tok=6,
    moe_intermediate_size=1856,
    moe_shared_expert_intermediate_size=3712,
    n_shared_experts=1,
    max_position_embeddings=262144,
)
