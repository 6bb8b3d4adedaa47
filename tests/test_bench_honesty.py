"""Bench says what it compared and what it measured: unlike runs are refused, toy runs are marked and unpriced.

No server here: runs are built as BenchRun objects (or bench.json files) with the settings a real run
records, and what a run learns of its server is given as ServerFacts, or read from a connection file
and a stand-in nvidia-smi (this machine has no NVIDIA GPU, so a card has to be faked to be found).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from notus_cli.bench import report
from notus_cli.bench.compare import compare
from notus_cli.bench.endpoints import OPENAI_SERVER_MEANS, ROUTE_MEANINGS, TargetSpec
from notus_cli.bench.measured import TOY_PARAMETERS, MeasuredOn, ServerFacts, gather, judge, nvidia_gpus
from notus_cli.bench.results import BenchRun
from notus_cli.errors import ConfigError
from notus_cli.runpod.gpus import resolve_pool
from notus_cli.serve.connection import write_connection
from testbed.bench_runs import REAL, bench_run
from testbed.common import notus
from tests.fake_nvidia import nvidia_smi_env

A100 = "NVIDIA A100-SXM4-80GB"


def toy_on_cpu(tiny_model: Path) -> MeasuredOn:
    facts = ServerFacts(served_model="nvidia/model", weights=tiny_model, on_this_machine=True, local_gpus=[])
    return judge(facts, resolve_pool("a100"))


def test_compare_refuses_another_workload_and_route_naming_each_difference() -> None:
    """The issue's case: a 64/32-token native run against a 32/16-token OpenAI-route run."""
    native = bench_run(route="native", input_len=64, output_len=32)
    openai = bench_run(route="openai", input_len=32, output_len=16, num_prompts=4)
    with pytest.raises(ConfigError) as refused:
        compare([("a", native), ("b", openai)])
    message = str(refused.value)
    for difference in ("input tokens: 64 vs 32", "output tokens: 32 vs 16", "requests per level: 8 vs 4",
                       "route: native vs openai"):  # fmt: skip
        assert difference in message
    assert refused.value.exit_code == 2
    assert "--allow-unlike" in (refused.value.hint or "")

    anyway = compare([("a", native), ("b", openai)], allow_unlike=True)
    assert [str(d) for d in anyway.unlike] == [
        "input tokens: 64 vs 32", "output tokens: 32 vs 16", "requests per level: 8 vs 4", "route: native vs openai",
    ]  # fmt: skip
    assert "UNLIKE, compared anyway: route: native vs openai" in anyway.notes
    assert anyway.data["unlike"]["route"] == ["native", "openai"]


def test_compare_takes_runs_on_two_gpus_and_says_so() -> None:
    """Another GPU is what a comparison is for (`compare runs/a100 runs/h100`): shown, not refused."""
    h100 = bench_run(gpu="h100", measured_on=REAL)
    done = compare([("a100", bench_run()), ("h100", h100)])
    assert done.unlike == []
    assert "Differs: GPU: AMPERE_80 vs ADA_80_PRO" in done.notes
    assert done.header[2:] == ["a100 (AMPERE_80)", "h100 (ADA_80_PRO)", "Change"]


@pytest.mark.parametrize(
    ("other", "says"),
    [
        ({"model": "other/model"}, "model: nvidia/model vs other/model"),
        ({"concurrency": (16,)}, "load levels: concurrency 1, concurrency 4 vs concurrency 16"),
        ({"num_prompts": None}, "requests per level: 8 vs default"),
    ],
)
def test_compare_refuses_another_model_or_no_load_in_common(other: dict[str, Any], says: str) -> None:
    with pytest.raises(ConfigError, match=says):
        compare([("a", bench_run()), ("b", bench_run(**other))])


def test_compare_refuses_a_toy_beside_a_real_run(tiny_model: Path) -> None:
    toy = bench_run(measured_on=toy_on_cpu(tiny_model))
    with pytest.raises(ConfigError, match="served by: real vs toy"):
        compare([("real", bench_run()), ("toy", toy)])
    anyway = compare([("real", bench_run()), ("toy", toy)], allow_unlike=True)
    assert anyway.header[3] == "toy (AMPERE_80, toy)"
    dollars = next(row for row in anyway.rows if row[1] == "$ per 1M output tokens")
    assert dollars[2].startswith("$")
    assert dollars[3] == "—"  # the toy has no price
    assert any(note.startswith("toy: no price for AMPERE_80 (") for note in anyway.notes)


def test_a_tiny_model_on_the_cpu_is_a_toy_without_a_price(tiny_model: Path) -> None:
    measured = toy_on_cpu(tiny_model)
    assert measured.parameters is not None
    assert measured.parameters < TOY_PARAMETERS
    assert measured.toy
    assert measured.toy_reason is not None
    assert "a CPU served it, not a GPU" in measured.toy_reason
    assert f"M parameters (a test model: under {TOY_PARAMETERS / 1e6:g} M)" in measured.toy_reason
    assert (measured.priced, measured.price_basis) == (False, None)
    assert measured.why_unpriced is not None
    assert measured.why_unpriced == measured.toy_reason

    run = bench_run(measured_on=measured)
    assert run.costs() == [None, None]
    _header, rows = report.summary_rows(run)
    assert not [row for row in rows if row[0].startswith("$")]
    assert report.title(run).startswith("notus bench: TOY RUN, nvidia/model at ")
    lines = report.verdicts(run)
    assert lines[0].startswith(f"Measured on: nvidia/model (weights {tiny_model}, ")
    assert "this machine's CPU (nvidia-smi finds no NVIDIA GPU). A toy run: " in lines[0]
    assert f"No price for AMPERE_80: {measured.why_unpriced}" in lines
    assert not [line for line in lines if line.startswith("Cost:")]
    data = run.to_dict()
    assert data["measured_on"]["toy"] is True
    assert data["measured_on"]["served_model"] == "nvidia/model"
    assert [level["cost"] for level in data["levels"]] == [None, None]
    assert BenchRun.from_dict(data).measured_on == measured


def test_prices_hold_only_where_the_priced_gpu_served() -> None:
    a100 = resolve_pool("a100")
    here = judge(ServerFacts("m", None, on_this_machine=True, local_gpus=[A100]), a100)
    assert (here.priced, here.price_basis) == (True, f"this machine's {A100}, a card of AMPERE_80")
    assert here.hardware == f"this machine ({A100})"
    other_card = judge(ServerFacts("m", None, on_this_machine=True, local_gpus=["NVIDIA L4"]), a100)
    assert not other_card.priced
    assert other_card.why_unpriced == "the server runs on this machine, whose NVIDIA L4 is no card of AMPERE_80"
    deployed = ServerFacts("m", None, on_this_machine=False, local_gpus=None, deployment="deployment prod",
                           deployment_pool="ADA_80_PRO")  # fmt: skip
    assert judge(deployed, resolve_pool("h100")).priced
    elsewhere = judge(deployed, a100)
    assert elsewhere.why_unpriced == "deployment prod runs on ADA_80_PRO, not on AMPERE_80"
    remote = judge(ServerFacts("m", None, on_this_machine=False, local_gpus=None), a100)
    assert (remote.priced, remote.toy) == (True, False)
    assert remote.price_basis == "--gpu, as given: bench cannot see the remote server's GPU"
    unasked = judge(ServerFacts("m", None, on_this_machine=True, local_gpus=[]), None)
    assert (unasked.priced, unasked.why_unpriced, unasked.toy) == (False, None, True)


def test_the_local_stack_connection_names_the_weights(tiny_model: Path, tmp_path: Path) -> None:
    """`notus serve` serves the tiny model under the real model's name: its connection file says which weights."""
    write_connection({"api_base": "http://127.0.0.1:8300/v2", "endpoint_id": "local", "model": str(tiny_model)})
    target = {"base_url": "http://127.0.0.1:8300/v2/local", "source": "notus serve"}
    facts = gather(target, {"model": "nvidia/model"}, deployment_pool=None)
    assert (facts.weights, facts.on_this_machine, facts.served_model) == (tiny_model, True, "nvidia/model")
    vllm = gather(
        {"base_url": "http://127.0.0.1:8000/v1"}, {"model": "m", "root": str(tiny_model)}, deployment_pool=None
    )
    assert vllm.weights == tiny_model  # vLLM's /v1/models `root`
    remote = gather({"base_url": "https://api.runpod.ai/v2/abc"}, {"model": "m"}, deployment_pool="AMPERE_80")
    assert (remote.on_this_machine, remote.weights, remote.local_gpus) == (False, None, None)


def test_nvidia_smi_names_this_machines_cards(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in nvidia_smi_env(tmp_path / "two", A100, "NVIDIA L4").items():
        monkeypatch.setenv(name, value)
    assert nvidia_gpus() == [A100, "NVIDIA L4"]
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    assert nvidia_gpus() == []


def test_an_older_bench_json_keeps_the_prices_it_recorded() -> None:
    data = bench_run().to_dict()
    data.pop("measured_on")
    again = BenchRun.from_dict(data)
    assert again.measured_on.hardware == "not recorded"
    assert all(cost is not None for cost in again.costs())
    assert not [line for line in report.verdicts(again) if line.startswith("Measured on")]


def test_cli_compare_refuses_unlike_runs_and_compares_them_with_allow_unlike(tmp_path: Path) -> None:
    for name, run in (("native", bench_run(route="native")), ("openai", bench_run(route="openai"))):
        (tmp_path / name).mkdir()
        (tmp_path / name / "bench.json").write_text(json.dumps(run.to_dict()))
    refused = notus("bench", "compare", str(tmp_path / "native"), str(tmp_path / "openai"))
    assert refused.returncode == 2
    said = " ".join(refused.stderr.split())
    assert "these runs measured different things (native, openai): route: native vs openai" in said
    assert refused.stdout == ""
    anyway = notus("bench", "compare", str(tmp_path / "native"), str(tmp_path / "openai"), "--allow-unlike")
    assert anyway.returncode == 0, anyway.stderr
    assert "notus bench compare: UNLIKE RUNS, see the warnings" in anyway.stdout
    assert "UNLIKE, compared anyway: route: native vs openai" in anyway.stdout
    assert "measured different things, compared anyway" in " ".join(anyway.stderr.split())
    as_json = json.loads(
        notus("bench", "compare", str(tmp_path / "native"), str(tmp_path / "openai"), "--allow-unlike", "--json").stdout
    )
    assert as_json["unlike"] == {"route": ["native", "openai"]}


def test_a_base_url_is_runpods_openai_route_only_on_runpods_hosts() -> None:
    """The report's "Route measured" line must not call a vLLM on loopback RunPod's OpenAI route."""
    vllm = TargetSpec("openai", "http://127.0.0.1:8000/v1", "--base-url", route="openai")
    assert vllm.describe()["route_means"] == OPENAI_SERVER_MEANS
    runpod = TargetSpec("openai", "https://api.runpod.ai/v2/abc/openai/v1", "--base-url", route="openai")
    assert runpod.describe()["route_means"] == ROUTE_MEANINGS["openai"]
    local = TargetSpec("openai", "http://127.0.0.1:8300/v2/local/openai/v1", "notus serve", route="openai")
    assert local.describe()["route_means"] == ROUTE_MEANINGS["openai"]  # the emulator's RunPod route
