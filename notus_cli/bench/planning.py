"""Step 1 of a benchmark run: the plan. Options in, everything decided before a request is sent out.

`plan_benchmark` checks the options and settles the target, the load levels, the SLOs, the GPU for
cost, the tokenizer and how the prompts will be made (they are made in step 3, once the server has
answered). Raises ConfigError for bad options, before anything touches the network.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import SecretStr
from tokenizers import Tokenizer

from notus_cli.bench import DEFAULT_INPUT_LEN, DEFAULT_OUTPUT_LEN
from notus_cli.bench.coldstart import EndpointScaler
from notus_cli.bench.endpoints import TargetSpec, make_target
from notus_cli.bench.load import LoadPlan, make_plan
from notus_cli.bench.metrics import Slos, parse_slos
from notus_cli.bench.senders import Target
from notus_cli.bench.workload import Workload, load_tokenizer, random_workload, sharegpt_workload
from notus_cli.errors import ConfigError
from notus_cli.runpod.gpus import GpuPool, resolve_pool

UNBOUNDED_PROMPTS = 1024  # prompts made for a level bounded only by --duration (they are reused in turn)


@dataclass
class BenchOptions:
    """Everything `notus bench` was asked, flags and settings merged."""

    base_url: str | None = None  # an OpenAI-compatible server, when `target` is not given
    target: TargetSpec | None = None
    model: str | None = None
    api_key: SecretStr | None = None
    tokenizer: Path | None = None
    dataset: Path | None = None
    input_len: int = DEFAULT_INPUT_LEN
    output_len: int | None = None
    range_ratio: float = 0.0
    num_prompts: int | None = None
    duration: float | None = None
    warmup: int = 2
    concurrency: list[int] = field(default_factory=list)
    rates: list[float] = field(default_factory=list)
    burstiness: float = 1.0
    goodput: list[str] = field(default_factory=list)
    attainment: float = 0.9
    temperature: float | None = None
    ignore_eos: bool | None = None
    stop_when_saturated: bool = True
    gpu: str | None = None
    seed: int = 0
    timeout: float = 600.0
    cold_start: bool = False
    cold_within: float = 900.0  # seconds to wait for the endpoint to scale to zero
    scaler: EndpointScaler | None = None  # --force-cold


@dataclass(frozen=True)
class ColdPlan:
    zero_within: float
    scaler: EndpointScaler | None = None


@dataclass(frozen=True)
class BenchPlan:
    """What a run will do, decided from its options (see plan_benchmark)."""

    options: BenchOptions
    spec: TargetSpec
    load: LoadPlan
    slos: Slos
    gpu: GpuPool | None
    tokenizer: Tokenizer | None
    ignore_eos: bool
    cold: ColdPlan | None

    def target(self) -> Target:
        """Step 2: the request sender for the planned target (nothing is sent yet)."""
        return make_target(
            self.spec,
            model=self.options.model,
            sampling=self.sampling,
            ignore_eos=self.ignore_eos,
            tokenizer=self.tokenizer,
            timeout=self.options.timeout,
            max_connections=_connections(self.load),
        )

    @property
    def sampling(self) -> dict[str, Any]:
        return {} if self.options.temperature is None else {"temperature": self.options.temperature}

    def settings(self) -> dict[str, Any]:
        """What the report records of the plan (the workload is filled in once the prompts are made)."""
        options = self.options
        return {
            "target": self.spec.describe(),
            "workload": {},
            "load": self.load.to_dict(),
            "tokenizer": str(options.tokenizer) if options.tokenizer else None,
            "sampling": {"temperature": options.temperature, "max_tokens": "per prompt"},
            "timeout": options.timeout,
            "cold_start": options.cold_start,
        }

    def workload(self) -> Workload:
        """The prompts (step 3, after the server has answered): see build_workload."""
        return build_workload(self.options, self.load, self.tokenizer, self.ignore_eos)


def plan_benchmark(options: BenchOptions) -> BenchPlan:
    """Check `options` and decide the run. Raises ConfigError for bad options."""
    slos = parse_slos(options.goodput)
    if not 0 < options.attainment <= 1:
        raise ConfigError(f"--attainment must be above 0 and at most 1; got {options.attainment}")
    spec = options.target or _openai_spec(options)
    if options.cold_start and spec.kind != "runpod":
        raise ConfigError(
            "--cold-start needs a RunPod endpoint reached through its job API",
            hint="name a deployment, or pass --endpoint ID or --local (not --base-url or --route openai)",
        )
    gpu_name = options.gpu or spec.gpu
    load = plan_for(options)
    tokenizer = load_tokenizer(options.tokenizer) if options.tokenizer else None
    if options.dataset is None and tokenizer is None:
        raise _no_tokenizer()
    return BenchPlan(
        options=options,
        spec=spec,
        load=load,
        slos=slos,
        gpu=resolve_pool(gpu_name) if gpu_name else None,
        tokenizer=tokenizer,
        # Random prompts ask for exactly their length (as vLLM's random dataset does); conversations end naturally.
        ignore_eos=options.dataset is None if options.ignore_eos is None else options.ignore_eos,
        cold=ColdPlan(options.cold_within, options.scaler) if options.cold_start else None,
    )


def plan_for(options: BenchOptions) -> LoadPlan:
    """The load plan the options ask for. Raises ConfigError for bad load options."""
    return make_plan(
        concurrency=options.concurrency,
        rates=options.rates,
        num_prompts=options.num_prompts,
        duration=options.duration,
        warmup=options.warmup,
        burstiness=options.burstiness,
        seed=options.seed,
        stop_when_saturated=options.stop_when_saturated,
    )


def _openai_spec(options: BenchOptions) -> TargetSpec:
    if not options.base_url:
        raise ConfigError("no server to benchmark", hint="pass --base-url URL of an OpenAI-compatible server")
    return TargetSpec(kind="openai", url=options.base_url, source="--base-url", api_key=options.api_key)


def _connections(plan: LoadPlan) -> int:
    """Enough connections for the busiest level; 0 (no limit) for an uncapped request rate."""
    caps = [level.concurrency for level in plan.levels]
    return 0 if None in caps else max(cap or 0 for cap in caps)


def build_workload(options: BenchOptions, plan: LoadPlan, tokenizer: Tokenizer | None, ignore_eos: bool) -> Workload:
    """As many prompts as the largest level sends (they are reused in turn when a level runs long)."""
    counts = [plan.requests_for(level) for level in plan.levels]
    count = max(UNBOUNDED_PROMPTS if n is None else n for n in counts)
    if options.dataset is not None:
        return sharegpt_workload(
            options.dataset,
            count=count,
            tokenizer=tokenizer,
            output_len=options.output_len,
            seed=options.seed,
            ignore_eos=ignore_eos,
        )
    if tokenizer is None:
        raise _no_tokenizer()
    return random_workload(
        tokenizer,
        count=count,
        input_len=options.input_len,
        output_len=options.output_len or DEFAULT_OUTPUT_LEN,
        range_ratio=options.range_ratio,
        seed=options.seed,
        ignore_eos=ignore_eos,
    )


def _no_tokenizer() -> ConfigError:
    return ConfigError(
        "random prompts need the model's tokenizer, to make prompts of --input-len tokens",
        hint="pass --tokenizer MODEL_DIR (the directory with tokenizer.json), or --dataset FILE.json",
    )
