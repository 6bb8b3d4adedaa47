"""Workloads: random prompts have the token counts asked for; ShareGPT files are read as people write them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from tokenizers import Tokenizer

from notus_cli.bench.workload import count_tokens, load_tokenizer, random_workload, sharegpt_workload
from notus_cli.errors import ConfigError


@pytest.fixture(scope="module")
def tokenizer(tiny_model: Path) -> Tokenizer:
    return load_tokenizer(tiny_model)


def test_random_prompts_have_exactly_the_asked_token_count(tokenizer: Tokenizer) -> None:
    workload = random_workload(tokenizer, count=20, input_len=100, output_len=7, seed=3)
    assert workload.kind == "random"
    assert workload.ignore_eos
    for prompt in workload.prompts:
        text = prompt.messages[0]["content"]
        assert prompt.messages[0]["role"] == "user"
        assert count_tokens(tokenizer, text) == prompt.input_tokens == 100
        assert prompt.max_tokens == 7
        assert text.isprintable()
    assert len({p.messages[0]["content"] for p in workload.prompts}) == 20  # all different
    again = random_workload(tokenizer, count=20, input_len=100, output_len=7, seed=3)
    assert again.prompts == workload.prompts  # the seed fixes the workload


def test_range_ratio_spreads_lengths_within_bounds(tokenizer: Tokenizer) -> None:
    workload = random_workload(tokenizer, count=50, input_len=40, output_len=20, range_ratio=0.5, seed=1)
    inputs = [p.input_tokens for p in workload.prompts]
    outputs = [p.max_tokens for p in workload.prompts]
    assert all(n is not None and 20 <= n <= 60 for n in inputs)
    assert all(10 <= n <= 30 for n in outputs)
    assert len(set(outputs)) > 5


def test_sharegpt_takes_the_first_user_turn_and_sizes_the_answer_like_the_reply(
    tokenizer: Tokenizer, tmp_path: Path
) -> None:
    path = tmp_path / "sharegpt.json"
    path.write_text(
        json.dumps(
            [
                {"id": "a", "conversations": [{"from": "human", "value": "What is wisdom?"},
                                              {"from": "gpt", "value": "Wisdom is knowing what to do next."}]},
                {"id": "b", "conversations": [{"from": "gpt", "value": "orphan reply"}]},
                {"messages": [{"role": "system", "content": "be brief"}, {"role": "user", "content": "Hi there"},
                              {"role": "assistant", "content": "Hello"}]},
                "not a conversation",
            ]
        )
    )  # fmt: skip
    workload = sharegpt_workload(path, count=10, tokenizer=tokenizer)
    assert not workload.ignore_eos
    by_text = {p.messages[0]["content"]: p for p in workload.prompts}
    assert set(by_text) == {"What is wisdom?", "Hi there"}
    assert by_text["What is wisdom?"].max_tokens == count_tokens(tokenizer, "Wisdom is knowing what to do next.")
    assert by_text["Hi there"].input_tokens == count_tokens(tokenizer, "Hi there")
    fixed = sharegpt_workload(path, count=1, tokenizer=None, output_len=5)
    assert len(fixed.prompts) == 1
    assert fixed.prompts[0].max_tokens == 5
    assert fixed.prompts[0].input_tokens is None


@pytest.mark.parametrize(
    ("content", "says"),
    [(None, "does not exist"), ("{not json", "not a JSON file"), ('{"a": 1}', "JSON list"), ("[]", "no conversation")],
)
def test_bad_dataset_files_are_refused_clearly(tmp_path: Path, content: str | None, says: str) -> None:
    path = tmp_path / "data.json"
    if content is not None:
        path.write_text(content)
    with pytest.raises(ConfigError) as caught:
        sharegpt_workload(path, count=5, tokenizer=None, output_len=8)
    assert "--dataset" in caught.value.message
    assert says in caught.value.message


def test_dataset_without_tokenizer_or_output_len_says_what_to_add(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        sharegpt_workload(tmp_path / "x.json", count=5, tokenizer=None)
    assert "--tokenizer" in (caught.value.hint or "")
    assert "--output-len" in (caught.value.hint or "")


def test_tokenizer_must_exist(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load_tokenizer(tmp_path)
    assert "--tokenizer" in caught.value.message
    assert "tokenizer.json" in caught.value.message
    (tmp_path / "tokenizer.json").write_text("{}")
    with pytest.raises(ConfigError):
        load_tokenizer(tmp_path)


def test_bad_lengths_are_refused(tokenizer: Tokenizer) -> None:
    with pytest.raises(ConfigError, match="--input-len"):
        random_workload(tokenizer, count=1, input_len=0, output_len=5)
    with pytest.raises(ConfigError, match="--range-ratio"):
        random_workload(tokenizer, count=1, input_len=5, output_len=5, range_ratio=1.0)
