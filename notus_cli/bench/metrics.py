"""What one request measured, and what a load level adds up to, by vLLM's definitions.

The definitions follow `vllm bench serve` so the two tools' figures can be compared (the report
prints them, see DEFINITIONS). Failed requests are kept, counted by cause, and count against
goodput; they never silently vanish from a run.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from notus_cli.errors import ConfigError

SLO_METRICS = ("ttft", "tpot", "e2el")
PERCENTILES = (50, 90, 99)

DEFINITIONS: dict[str, str] = {
    "TTFT": "time to first token: from sending the request to the first streamed chunk that carries "
    "content (text, reasoning or a tool call)",
    "E2EL": "end-to-end latency: from sending the request to the last streamed chunk with choices",
    "TPOT": "time per output token, excluding the first: (E2EL - TTFT) / (output tokens - 1), per request "
    "with more than one output token",
    "ITL": "inter-token latency: the gaps between consecutive content chunks, pooled over all requests "
    "(a chunk may carry several tokens)",
    "Output tokens": "the server's usage.completion_tokens when it reports usage (we ask with "
    "stream_options.include_usage), else the tokenizer's count of the text, else the number of content chunks",
    "Request throughput": "successful requests / level duration (first send to last answer)",
    "Output throughput": "output tokens of successful requests / level duration",
    "Total token throughput": "(prompt + output tokens of successful requests) / level duration",
    "Goodput": "successful requests meeting every SLO (TTFT, TPOT, E2EL limits) / level duration; "
    "SLO attainment is the share of all requests, failed ones included, that met them",
    "Queue": "RunPod targets: the job's delayTime, from /run accepting it to a worker taking it (includes a "
    "worker's start when none was free)",
    "Execution": "RunPod targets: the job's executionTime, from a worker taking it to its end",
    "Statistics": "mean, median, p90, p99 (linear interpolation, as numpy.percentile) and population std",
}


@dataclass
class RequestRecord:
    """One request as the target saw it; times in seconds (`sent_at` on the level's clock)."""

    index: int
    sent_at: float = 0.0
    ok: bool = False
    ttft: float | None = None
    e2el: float | None = None
    itl: list[float] = field(default_factory=list)
    output_tokens: int = 0
    token_source: str = "none"  # usage | tokenizer | chunks | none
    prompt_tokens: int | None = None
    max_tokens: int | None = None
    error_cause: str | None = None
    error: str | None = None
    # Timings only some targets know, e.g. a RunPod job's queue delay and execution time.
    phases: dict[str, float] = field(default_factory=dict)
    job_id: str | None = None  # a RunPod job's id, to look it up in the endpoint's logs

    def fail(self, cause: str, message: str) -> None:
        self.ok = False
        self.error_cause = cause
        self.error = message[:300]

    @property
    def tpot(self) -> float | None:
        if not self.ok or self.ttft is None or self.e2el is None or self.output_tokens <= 1:
            return None
        return (self.e2el - self.ttft) / (self.output_tokens - 1)

    def to_dict(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "sent_at": self.sent_at,
            "ok": self.ok,
            "ttft": self.ttft,
            "e2el": self.e2el,
            "tpot": self.tpot,
            "itl": self.itl,
            "output_tokens": self.output_tokens,
            "token_source": self.token_source,
            "prompt_tokens": self.prompt_tokens,
            "max_tokens": self.max_tokens,
            "error_cause": self.error_cause,
            "error": self.error,
            "phases": self.phases,
            "job_id": self.job_id,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RequestRecord:
        fields = {key: value for key, value in data.items() if key != "tpot"}
        return cls(**fields)


@dataclass(frozen=True)
class Stats:
    """Milliseconds."""

    mean: float
    median: float
    p90: float
    p99: float
    std: float
    count: int

    @classmethod
    def of(cls, seconds: Sequence[float]) -> Stats | None:
        if not seconds:
            return None
        values = np.asarray(seconds, dtype=float) * 1000.0
        p50, p90, p99 = np.percentile(values, PERCENTILES)
        return cls(
            mean=float(values.mean()),
            median=float(p50),
            p90=float(p90),
            p99=float(p99),
            std=float(values.std()),
            count=len(values),
        )


@dataclass(frozen=True)
class Slos:
    """Per-request limits in milliseconds; a request is good when it meets every one given."""

    ttft: float | None = None
    tpot: float | None = None
    e2el: float | None = None

    def __bool__(self) -> bool:
        return any(value is not None for value in (self.ttft, self.tpot, self.e2el))

    def met_by(self, record: RequestRecord) -> bool:
        if not record.ok:
            return False
        # A request with a single output token has no TPOT; like vLLM, it counts as 0.
        measured = {"ttft": record.ttft, "tpot": record.tpot or 0.0, "e2el": record.e2el}
        for name in SLO_METRICS:
            limit = getattr(self, name)
            value = measured[name]
            if limit is not None and (value is None or value * 1000.0 > limit):
                return False
        return True

    def to_dict(self) -> dict[str, float]:
        return {name: getattr(self, name) for name in SLO_METRICS if getattr(self, name) is not None}


def parse_slos(values: Iterable[str]) -> Slos:
    """`["ttft:500 tpot:50", "e2el:10000"]` (spaces or commas between pairs) into Slos.

    Raises ConfigError naming the bad pair and what is accepted.
    """
    limits: dict[str, float] = {}
    for value in values:
        for pair in value.replace(",", " ").split():
            name, sep, number = pair.partition(":")
            name = name.strip().lower()
            if not sep or name not in SLO_METRICS:
                raise ConfigError(
                    f"--goodput: '{pair}' is not METRIC:MILLISECONDS",
                    hint=f"METRIC is one of {', '.join(SLO_METRICS)}, e.g. --goodput ttft:500,tpot:50",
                )
            try:
                limit = float(number)
            except ValueError:
                limit = -1.0
            if not limit > 0:
                raise ConfigError(
                    f"--goodput: the limit in '{pair}' must be a positive number of milliseconds",
                    hint="e.g. --goodput ttft:500,tpot:50,e2el:20000",
                )
            limits[name] = limit
    return Slos(**limits)


@dataclass(frozen=True)
class LevelSummary:
    """One load level's figures; latencies in ms, throughputs per second."""

    requests: int
    completed: int
    failed: int
    failures: dict[str, int]
    duration: float
    input_tokens: int
    output_tokens: int
    request_throughput: float
    output_throughput: float
    total_token_throughput: float
    ttft: Stats | None
    tpot: Stats | None
    itl: Stats | None
    e2el: Stats | None
    good: int | None = None
    goodput: float | None = None
    slo_attainment: float | None = None
    token_sources: dict[str, int] = field(default_factory=dict)
    phases: dict[str, Stats] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LevelSummary:
        def stats(value: dict[str, Any] | None) -> Stats | None:
            return None if value is None else Stats(**value)

        values = dict(data)
        for name in ("ttft", "tpot", "itl", "e2el"):
            values[name] = stats(values.get(name))
        values["phases"] = {name: Stats(**value) for name, value in (values.get("phases") or {}).items()}
        return cls(**values)


def summarize(records: Sequence[RequestRecord], duration: float, slos: Slos = Slos()) -> LevelSummary:
    """Add up one level: `duration` runs from its first send to its last answer (seconds)."""
    done = [record for record in records if record.ok]
    failures = Counter(record.error_cause or "unknown" for record in records if not record.ok)
    input_tokens = sum(record.prompt_tokens or 0 for record in done)
    output_tokens = sum(record.output_tokens for record in done)
    per_second = 1.0 / duration if duration > 0 else 0.0
    phase_names = sorted({name for record in done for name in record.phases})
    good = sum(1 for record in records if slos.met_by(record)) if slos else None
    return LevelSummary(
        requests=len(records),
        completed=len(done),
        failed=len(records) - len(done),
        failures=dict(sorted(failures.items())),
        duration=duration,
        input_tokens=input_tokens,
        output_tokens=output_tokens,
        request_throughput=len(done) * per_second,
        output_throughput=output_tokens * per_second,
        total_token_throughput=(input_tokens + output_tokens) * per_second,
        ttft=Stats.of([r.ttft for r in done if r.ttft is not None]),
        tpot=Stats.of([tpot for r in done if (tpot := r.tpot) is not None]),
        itl=Stats.of([gap for r in done for gap in r.itl]),
        e2el=Stats.of([r.e2el for r in done if r.e2el is not None]),
        good=good,
        goodput=None if good is None else good * per_second,
        slo_attainment=None if good is None or not records else good / len(records),
        token_sources=dict(Counter(record.token_source for record in done)),
        phases={name: s for name in phase_names if (s := Stats.of([r.phases[name] for r in done if name in r.phases]))},
    )
