"""A tiny, random-weight Nemotron-H, made offline, for tests and the local demo.

It has the real model's architecture in miniature (Mamba-2, attention and MLP layers, no MoE,
which vLLM's CPU build cannot run), its special tokens and a ChatML chat template with
Nemotron's thinking switch, so the worker, the reasoning parser and vLLM see what they would see
with the real model. The weights are random: what it writes is random text.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from importlib.resources import files
from pathlib import Path

import numpy as np
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

from notus_cli.errors import ModelError
from notus_cli.model.safetensors_io import write_safetensors

SPECIAL_TOKENS = (
    "<pad>",
    "<s>",
    "</s>",
    "<|im_start|>",
    "<|im_end|>",
    "<think>",
    "</think>",
    "<tool_call>",
    "</tool_call>",
    "<tool_response>",
    "</tool_response>",
)
RANDOM_TEXT_NOTICE = "tiny random-weight model: its answers are random text"


@dataclass(frozen=True)
class TinyShape:
    """Layer pattern and sizes; the CPU build needs head_dim in {32, 64, 80, ...}."""

    pattern: str = "M*M-M*"  # M = Mamba-2, * = attention, - = MLP
    hidden_size: int = 128
    num_attention_heads: int = 4
    num_key_value_heads: int = 2
    head_dim: int = 32
    intermediate_size: int = 256
    mamba_num_heads: int = 8
    mamba_head_dim: int = 32
    n_groups: int = 2
    ssm_state_size: int = 16
    conv_kernel: int = 4
    chunk_size: int = 128
    max_position_embeddings: int = 4096
    vocab_target: int = 1024


@dataclass(frozen=True)
class TinyModel:
    path: Path
    parameters: int
    vocab_size: int
    pattern: str


def write_tiny_model(
    directory: Path, *, seed: int = 0, shape: TinyShape = TinyShape(), force: bool = False
) -> TinyModel:
    """Write config, BF16 weights, tokenizer and chat template into `directory`.

    The same seed gives byte-identical files. Raises ModelError if `directory` holds other files
    and `force` is not set.
    """
    if directory.exists() and any(directory.iterdir()) and not force:
        raise ModelError(f"{directory} is not empty", hint="choose an empty directory or pass --force")
    directory.mkdir(parents=True, exist_ok=True)

    tokenizer = _train_tokenizer(shape.vocab_target)
    vocab_size = tokenizer.get_vocab_size()
    tokenizer.save(str(directory / "tokenizer.json"))
    ids = {token: tokenizer.token_to_id(token) or 0 for token in SPECIAL_TOKENS}

    tensors = _random_weights(shape, vocab_size, np.random.default_rng(seed))
    write_safetensors(directory / "model.safetensors", tensors, bfloat16=True, metadata={"format": "pt"})

    _write_json(directory / "config.json", _config(shape, vocab_size, ids))
    _write_json(
        directory / "generation_config.json",
        {"bos_token_id": ids["<s>"], "eos_token_id": [ids["</s>"], ids["<|im_end|>"]], "pad_token_id": ids["<pad>"]},
    )
    _write_json(
        directory / "tokenizer_config.json",
        {
            "tokenizer_class": "PreTrainedTokenizerFast",
            "bos_token": "<s>",
            "eos_token": "<|im_end|>",
            "pad_token": "<pad>",
            "model_max_length": shape.max_position_embeddings,
            "clean_up_tokenization_spaces": False,
        },
    )
    _write_json(
        directory / "special_tokens_map.json", {"bos_token": "<s>", "eos_token": "<|im_end|>", "pad_token": "<pad>"}
    )
    (directory / "chat_template.jinja").write_text(files("notus_cli.model").joinpath("chat_template.jinja").read_text())
    (directory / "README.md").write_text(
        f"# Tiny Nemotron-H (seed {seed})\n\nWritten by `notus model tiny`. {RANDOM_TEXT_NOTICE}.\n"
        "It exists to exercise vLLM, the worker and the tools offline on a CPU.\n"
    )
    parameters = sum(int(array.size) for array in tensors.values())
    return TinyModel(path=directory, parameters=parameters, vocab_size=vocab_size, pattern=shape.pattern)


def _train_tokenizer(vocab_target: int) -> Tokenizer:
    """A byte-level BPE trained on a short public-domain text that ships with the package."""
    corpus = files("notus_cli.model").joinpath("corpus.txt").read_text().splitlines()
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_target,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(corpus, trainer)
    return tokenizer


def _config(shape: TinyShape, vocab_size: int, ids: dict[str, int]) -> dict[str, object]:
    sizes = {k: v for k, v in asdict(shape).items() if k not in ("pattern", "vocab_target")}
    return {
        "architectures": ["NemotronHForCausalLM"],
        "model_type": "nemotron_h",
        "hybrid_override_pattern": shape.pattern,
        "num_hidden_layers": len(shape.pattern),
        "vocab_size": vocab_size,
        **sizes,
        "expand": 2,
        "mlp_hidden_act": "relu2",
        "mamba_hidden_act": "silu",
        "use_conv_bias": True,
        "use_bias": False,
        "mamba_proj_bias": False,
        "attention_bias": False,
        "mlp_bias": False,
        "layer_norm_epsilon": 1e-5,
        "residual_in_fp32": False,
        "rescale_prenorm_residual": True,
        "tie_word_embeddings": False,
        "time_step_min": 0.001,
        "time_step_max": 0.1,
        "initializer_range": 0.02,
        "mamba_ssm_cache_dtype": "float32",
        "torch_dtype": "bfloat16",
        "bos_token_id": ids["<s>"],
        "eos_token_id": ids["</s>"],
        "pad_token_id": ids["<pad>"],
        "use_cache": True,
    }


def _random_weights(shape: TinyShape, vocab_size: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Weights named and shaped as in NVIDIA's checkpoints (prefix `backbone.`)."""
    hidden = shape.hidden_size

    def normal(*dims: int) -> np.ndarray:
        return rng.normal(0.0, 0.02, size=dims).astype(np.float32)

    def ones(n: int) -> np.ndarray:
        return np.ones(n, dtype=np.float32)

    tensors = {"backbone.embeddings.weight": normal(vocab_size, hidden)}
    for i, kind in enumerate(shape.pattern):
        prefix = f"backbone.layers.{i}"
        tensors[f"{prefix}.norm.weight"] = ones(hidden)
        if kind == "M":
            inner = shape.mamba_num_heads * shape.mamba_head_dim
            conv_dim = inner + 2 * shape.n_groups * shape.ssm_state_size
            dt = np.exp(rng.uniform(np.log(0.001), np.log(0.1), size=shape.mamba_num_heads))
            tensors |= {
                f"{prefix}.mixer.in_proj.weight": normal(inner + conv_dim + shape.mamba_num_heads, hidden),
                f"{prefix}.mixer.conv1d.weight": normal(conv_dim, 1, shape.conv_kernel),
                f"{prefix}.mixer.conv1d.bias": np.zeros(conv_dim, dtype=np.float32),
                f"{prefix}.mixer.dt_bias": (dt + np.log(-np.expm1(-dt))).astype(np.float32),
                f"{prefix}.mixer.A_log": np.log(np.arange(1, shape.mamba_num_heads + 1, dtype=np.float32)),
                f"{prefix}.mixer.D": ones(shape.mamba_num_heads),
                f"{prefix}.mixer.norm.weight": ones(inner),
                f"{prefix}.mixer.out_proj.weight": normal(hidden, inner),
            }
        elif kind == "*":
            q_dim = shape.num_attention_heads * shape.head_dim
            kv_dim = shape.num_key_value_heads * shape.head_dim
            tensors |= {
                f"{prefix}.mixer.q_proj.weight": normal(q_dim, hidden),
                f"{prefix}.mixer.k_proj.weight": normal(kv_dim, hidden),
                f"{prefix}.mixer.v_proj.weight": normal(kv_dim, hidden),
                f"{prefix}.mixer.o_proj.weight": normal(hidden, q_dim),
            }
        elif kind == "-":
            tensors |= {
                f"{prefix}.mixer.up_proj.weight": normal(shape.intermediate_size, hidden),
                f"{prefix}.mixer.down_proj.weight": normal(hidden, shape.intermediate_size),
            }
        else:
            raise ModelError(
                f"layer pattern {shape.pattern!r} has {kind!r}", hint="use M (Mamba-2), * (attention), - (MLP)"
            )
    tensors["backbone.norm_f.weight"] = ones(hidden)
    tensors["lm_head.weight"] = normal(vocab_size, hidden)
    return tensors


def _write_json(path: Path, data: object) -> None:
    path.write_text(json.dumps(data, indent=2) + "\n")
