"""Where vLLM's start-up went: weight loading vs engine warm-up, read from vLLM's own log lines.

A cold start on a GPU is mostly two phases, which vLLM times itself and logs (vLLM 0.32):

    Loading weights took 41.20 seconds                                  (model_loader/default_loader.py)
    Model loading took 58.9 GiB memory and 44.731 seconds               (v1/worker/gpu_model_runner.py)
    torch.compile took 28.44 s in total                                 (compilation/monitor.py)
    Graph capturing finished in 19 secs, took 1.20 GiB                  (v1/worker/gpu_model_runner.py)
    init engine (profile, create kv cache, warmup model) took 61.05 s   (v1/engine/core.py)

The worker relays vLLM's output unchanged and keeps these figures, then logs one line with them
(no request content ever passes here: these are start-up lines, before any job is taken).
"""

from __future__ import annotations

import re
import subprocess
import threading
from dataclasses import dataclass
from typing import IO

# A job input that asks a worker for these figures instead of a completion (`notus bench --cold-start`
# sends it right after the cold request, so the worker that just started answers): {"startup": {...}}.
STARTUP_QUERY = {"notus": "startup"}
_NUMBER = r"([0-9]+(?:\.[0-9]+)?)"
PATTERNS = {
    "weights": re.compile(rf"Loading weights took {_NUMBER} seconds"),
    "model_load": re.compile(rf"Model loading took .*? and {_NUMBER} seconds"),
    "compile": re.compile(rf"torch\.compile took {_NUMBER} s in total"),
    "cuda_graphs": re.compile(rf"Graph capturing finished in {_NUMBER} secs"),
    "warmup": re.compile(rf"init engine \(profile, create kv cache, warmup model\) took {_NUMBER} s"),
}


@dataclass
class StartupPhases:
    """Seconds per phase as vLLM reported them; None for a phase it did not log (e.g. no CUDA graphs on a CPU)."""

    weights: float | None = None
    model_load: float | None = None
    compile: float | None = None
    cuda_graphs: float | None = None
    warmup: float | None = None

    def read(self, line: str) -> None:
        for name, pattern in PATTERNS.items():
            if getattr(self, name) is None and (match := pattern.search(line)):
                setattr(self, name, float(match.group(1)))

    @property
    def load(self) -> float | None:
        """Model load: vLLM's whole figure where it logs one (GPU), else the weight loading alone."""
        return self.model_load if self.model_load is not None else self.weights

    def as_dict(self) -> dict[str, float | None]:
        return {"load": self.load, "warmup": self.warmup, "compile": self.compile, "cuda_graphs": self.cuda_graphs}

    def sentence(self) -> str:
        def s(value: float | None) -> str:
            return "?" if value is None else f"{value:.1f} s"

        return (
            f"model load {s(self.load)}, engine warm-up {s(self.warmup)} "
            f"(torch.compile {s(self.compile)}, CUDA graphs {s(self.cuda_graphs)})"
        )


def relay_vllm_log(process: subprocess.Popen[bytes], out: IO[str]) -> StartupPhases:
    """Copy the process's output to `out` line by line on a daemon thread, noting the phase timings."""
    phases = StartupPhases()

    def relay() -> None:
        assert process.stdout is not None
        for raw in process.stdout:
            line = raw.decode("utf-8", "replace")
            phases.read(line)
            out.write(line)
            out.flush()

    threading.Thread(target=relay, name="vllm-log", daemon=True).start()
    return phases
