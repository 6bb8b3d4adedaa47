"""`notus model tiny`: a deterministic tiny Nemotron-H that transformers and vLLM load (vLLM: see the
session fixture `vllm_server`, which every handler test uses)."""

from __future__ import annotations

import hashlib
import json
import math
import subprocess
from pathlib import Path

import pytest

from notus_cli.model.safetensors_io import read_safetensors_header
from notus_cli.model.tiny import SPECIAL_TOKENS, write_tiny_model
from testbed.common import notus
from testbed.vllm import vllm_python

EXPECTED_FILES = {
    "config.json",
    "generation_config.json",
    "model.safetensors",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "chat_template.jinja",
    "README.md",
}


def digests(directory: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(directory.iterdir())}


def test_same_seed_same_bytes_and_other_seed_other_weights(tmp_path: Path) -> None:
    first = write_tiny_model(tmp_path / "a", seed=7)
    second = write_tiny_model(tmp_path / "b", seed=7)
    third = write_tiny_model(tmp_path / "c", seed=8)
    assert set(digests(first.path)) == EXPECTED_FILES
    assert digests(first.path) == digests(second.path)
    assert digests(first.path)["model.safetensors"] != digests(third.path)["model.safetensors"]


def test_weights_are_bf16_and_shaped_like_the_config(tmp_path: Path) -> None:
    model = write_tiny_model(tmp_path / "m")
    config = json.loads((model.path / "config.json").read_text())
    header = read_safetensors_header(model.path / "model.safetensors")
    assert {entry["dtype"] for entry in header.values()} == {"BF16"}
    assert header["backbone.embeddings.weight"]["shape"] == [config["vocab_size"], config["hidden_size"]]
    assert config["hybrid_override_pattern"] == "M*M-M*"
    assert config["head_dim"] in (32, 64, 80) or config["head_dim"] > 80
    assert sum(1 for name in header if name.endswith("mixer.A_log")) == config["hybrid_override_pattern"].count("M")
    assert model.parameters == sum(math.prod(entry["shape"]) for entry in header.values())  # type: ignore[arg-type]


def test_refuses_a_non_empty_directory_without_force(tmp_path: Path) -> None:
    (tmp_path / "keep.txt").write_text("mine")
    result = notus("model", "tiny", str(tmp_path))
    assert result.returncode == 1
    assert "is not empty" in result.stderr
    assert "--force" in result.stderr
    assert "Traceback" not in result.stderr
    assert (tmp_path / "keep.txt").read_text() == "mine"


LOAD_WITH_TRANSFORMERS = r"""
import json, sys
from transformers import AutoModelForCausalLM, AutoTokenizer
path = sys.argv[1]
tok = AutoTokenizer.from_pretrained(path)
messages = [{"role": "system", "content": "Be wise."}, {"role": "user", "content": "What is wisdom?"}]
thinking = tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
plain = tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True, enable_thinking=False)
model, info = AutoModelForCausalLM.from_pretrained(path, output_loading_info=True)
ids = tok("wisdom and understanding", return_tensors="pt")
out = model.generate(**ids, max_new_tokens=5, do_sample=False)
print(json.dumps({
    "thinking": thinking, "plain": plain, "dtype": str(model.dtype),
    "missing": sorted(info["missing_keys"]), "unexpected": sorted(info["unexpected_keys"]),
    "roundtrip": tok.decode(tok("Trust in the LORD, 42 {json}!")["input_ids"]),
    "special": [tok.convert_tokens_to_ids(t) for t in sys.argv[2:]],
    "generated": out.shape[1] - ids["input_ids"].shape[1],
}))
"""


@pytest.mark.vllm
def test_transformers_loads_weights_tokenizer_and_chat_template(tiny_model: Path) -> None:
    """transformers lives in vLLM's environment, so the check runs there."""
    result = subprocess.run(
        [vllm_python(), "-c", LOAD_WITH_TRANSFORMERS, str(tiny_model), *SPECIAL_TOKENS],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["missing"] == []
    assert report["unexpected"] == []
    assert report["dtype"] == "torch.bfloat16"
    assert report["roundtrip"] == "Trust in the LORD, 42 {json}!"
    assert len(set(report["special"])) == len(SPECIAL_TOKENS)
    assert report["generated"] == 5
    assert report["thinking"].endswith("<|im_start|>assistant\n<think>\n")
    assert report["plain"].endswith("<|im_start|>assistant\n<think></think>")
    assert report["thinking"].startswith("<|im_start|>system\nBe wise.<|im_end|>\n<|im_start|>user\nWhat is wisdom?")
