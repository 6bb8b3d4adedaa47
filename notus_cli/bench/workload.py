"""What the benchmark sends: random prompts of given token lengths, or a ShareGPT-style file.

Prompt lengths are counted with the model's own tokenizer (a `tokenizer.json`), so "1,024 input
tokens" means what the server will see before its chat template is applied.
"""

from __future__ import annotations

import itertools
import json
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tokenizers import Tokenizer

from notus_cli.errors import ConfigError

HUMAN_ROLES = ("human", "user")
ASSISTANT_ROLES = ("gpt", "assistant", "chatgpt", "bard", "model")


@dataclass(frozen=True)
class Prompt:
    """One request's messages, its prompt length by our tokenizer, and the output length asked for."""

    messages: list[dict[str, str]]
    input_tokens: int | None
    max_tokens: int


@dataclass(frozen=True)
class Workload:
    kind: str  # random | sharegpt
    prompts: list[Prompt]
    ignore_eos: bool
    settings: dict[str, Any]

    def describe(self) -> dict[str, Any]:
        return {"kind": self.kind, "prompts": len(self.prompts), "ignore_eos": self.ignore_eos, **self.settings}


def load_tokenizer(path: Path) -> Tokenizer:
    """A `tokenizers` tokenizer from a model directory (its tokenizer.json) or the file itself.

    Raises ConfigError when there is none or it does not load.
    """
    file = path / "tokenizer.json" if path.is_dir() else path
    if not file.is_file():
        raise ConfigError(
            f"--tokenizer: no tokenizer.json at {path}",
            hint="give the model directory (it holds tokenizer.json), e.g. --tokenizer .notus/models/tiny",
        )
    try:
        return Tokenizer.from_file(str(file))
    except Exception as exc:  # the Rust side raises plain Exception subclasses
        raise ConfigError(f"--tokenizer: {file} is not a tokenizers file: {exc}") from None


def count_tokens(tokenizer: Tokenizer, text: str) -> int:
    return len(tokenizer.encode(text, add_special_tokens=False).ids)


def random_workload(
    tokenizer: Tokenizer,
    *,
    count: int,
    input_len: int,
    output_len: int,
    range_ratio: float = 0.0,
    seed: int = 0,
    ignore_eos: bool = True,
) -> Workload:
    """`count` prompts of random text, each `input_len` tokens (± range_ratio), asking for `output_len`.

    Like vLLM's random dataset, lengths are drawn uniformly from [len·(1−r), len·(1+r)] and the
    server is asked to ignore end-of-sequence, so outputs have exactly the length asked for.
    """
    if input_len < 1 or output_len < 1:
        raise ConfigError("--input-len and --output-len must be at least 1")
    if not 0 <= range_ratio < 1:
        raise ConfigError(f"--range-ratio must be at least 0 and below 1; got {range_ratio}")
    rng = np.random.default_rng(seed)
    vocabulary = _plain_tokens(tokenizer)
    inputs = _lengths(rng, count, input_len, range_ratio)
    outputs = _lengths(rng, count, output_len, range_ratio)
    prompts = []
    for n_in, n_out in zip(inputs, outputs, strict=True):
        text, n_tokens = _random_text(tokenizer, vocabulary, n_in, rng)
        prompts.append(Prompt(messages=[{"role": "user", "content": text}], input_tokens=n_tokens, max_tokens=n_out))
    settings = {"input_len": input_len, "output_len": output_len, "range_ratio": range_ratio, "seed": seed}
    return Workload(kind="random", prompts=prompts, ignore_eos=ignore_eos, settings=settings)


def sharegpt_workload(
    path: Path,
    *,
    count: int,
    tokenizer: Tokenizer | None,
    output_len: int | None = None,
    seed: int = 0,
    ignore_eos: bool = False,
) -> Workload:
    """The first user turn of each conversation in a ShareGPT-style JSON file, shuffled with `seed`.

    Without `output_len`, each request asks for as many tokens as the file's first reply has
    (which needs the tokenizer). Entries: `{"conversations": [{"from": "human", "value": ...},
    {"from": "gpt", "value": ...}]}`; `role`/`content` keys and a `messages` list work too.
    Raises ConfigError for a missing or malformed file.
    """
    if output_len is None and tokenizer is None:
        raise ConfigError(
            "--dataset needs --tokenizer to size each answer like the file's own reply",
            hint="pass --tokenizer MODEL_DIR, or fix the answer length with --output-len N",
        )
    pairs = _conversations(path)
    random.Random(seed).shuffle(pairs)
    prompts = []
    for question, answer in pairs:
        wanted = output_len or (count_tokens(tokenizer, answer) if tokenizer else 0)
        if wanted < 1:
            continue
        prompts.append(
            Prompt(
                messages=[{"role": "user", "content": question}],
                input_tokens=count_tokens(tokenizer, question) if tokenizer else None,
                max_tokens=wanted,
            )
        )
        if len(prompts) == count:
            break
    if not prompts:
        raise ConfigError(f"--dataset: {path} has no conversation with a user turn followed by a reply")
    settings = {"path": str(path), "output_len": output_len, "seed": seed}
    return Workload(kind="sharegpt", prompts=prompts, ignore_eos=ignore_eos, settings=settings)


def _conversations(path: Path) -> list[tuple[str, str]]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"--dataset: {path} does not exist") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ConfigError(f"--dataset: {path} is not a JSON file: {exc}") from None
    if not isinstance(data, list):
        raise ConfigError(f"--dataset: {path} must hold a JSON list of conversations")
    pairs = []
    for entry in data:
        turns = (entry.get("conversations") or entry.get("messages")) if isinstance(entry, dict) else None
        if not isinstance(turns, list):
            continue
        texts = [(_role(turn), _text(turn)) for turn in turns if isinstance(turn, dict)]
        for (role, text), (next_role, reply) in itertools.pairwise(texts):
            if role in HUMAN_ROLES and next_role in ASSISTANT_ROLES and text and reply:
                pairs.append((text, reply))
                break
    return pairs


def _role(turn: dict[str, Any]) -> str:
    return str(turn.get("from") or turn.get("role") or "").lower()


def _text(turn: dict[str, Any]) -> str:
    value = turn.get("value", turn.get("content"))
    return value if isinstance(value, str) else ""


def _lengths(rng: np.random.Generator, count: int, length: int, ratio: float) -> list[int]:
    low, high = max(1, int(length * (1 - ratio))), max(1, int(length * (1 + ratio)))
    return [int(n) for n in rng.integers(low, high + 1, size=count)]


def _plain_tokens(tokenizer: Tokenizer) -> np.ndarray:
    """Ids that are not special and decode on their own to printable text."""
    special = set(tokenizer.get_added_tokens_decoder())
    plain = []
    for token_id in range(tokenizer.get_vocab_size()):
        if token_id in special:
            continue
        text = tokenizer.decode([token_id])
        if text and text.isprintable() and "\ufffd" not in text:
            plain.append(token_id)
    if not plain:
        raise ConfigError("--tokenizer: this tokenizer has no plain-text tokens to build prompts from")
    return np.asarray(plain)


def _random_text(
    tokenizer: Tokenizer, vocabulary: np.ndarray, length: int, rng: np.random.Generator
) -> tuple[str, int]:
    """Text that re-encodes to `length` tokens (or as close as a few rounds of trimming get)."""
    ids = rng.choice(vocabulary, size=length).tolist()
    text = tokenizer.decode(ids)
    for _ in range(8):
        encoded = tokenizer.encode(text, add_special_tokens=False).ids
        if len(encoded) == length:
            break
        if len(encoded) > length:
            encoded = encoded[:length]
        else:
            encoded += rng.choice(vocabulary, size=length - len(encoded)).tolist()
        text = tokenizer.decode(encoded)
    return text, count_tokens(tokenizer, text)
