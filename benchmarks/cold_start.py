"""Cold and warm `delayTime` of an endpoint created through the emulator's control plane.

    .venv/bin/python -m benchmarks.cold_start [--runs 5]

The endpoint scales to zero (workersMin 0, idleTimeout 1 s), so each cold /runsync waits for the
autoscaler to start a real runpod SDK worker process (echo handler) and for that worker's first poll;
the warm request right after finds it running. RunPod's own cold start adds image pull and model
load, which the emulator does not imitate: this is the floor the local stack adds.
Writes docs/results/cold_start.md and .json.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path

from pydantic import SecretStr

from benchmarks.results import add_out_option, markdown_table, write_results
from notus_cli.runpod.control import EndpointInput, TemplateInput
from notus_cli.runpod.graphql import RunPodGraphQL
from testbed.control import control_harness
from testbed.emulator import wait_for


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    add_out_option(parser, "cold_start")
    args = parser.parse_args()
    runs = args.runs
    harness = control_harness(Path(tempfile.mkdtemp(prefix="cold-start-")))
    try:
        with RunPodGraphQL(SecretStr(harness.key), url=f"{harness.url}/graphql") as runpod:
            template = runpod.save_template(TemplateInput(name="cold", image_name="echo", container_disk_in_gb=10))
            spec = EndpointInput(name="cold", template_id=template.id, gpu_ids="AMPERE_80", idle_timeout=1)
            endpoint_id = runpod.save_endpoint(spec).id
        endpoint = harness.emulator.endpoints[endpoint_id]
        cold: list[int] = []
        warm: list[int] = []
        with harness.http(endpoint_id) as client:
            for _ in range(runs):
                wait_for(lambda: not any(w.alive for w in endpoint.workers.values()), 30)
                cold.append(client.post("/runsync", json={"input": {}}).json()["delayTime"])
                warm.append(client.post("/runsync", json={"input": {}}).json()["delayTime"])
        print(f"cold delayTime ms: median {statistics.median(cold):.0f}  {cold}")
        print(f"warm delayTime ms: median {statistics.median(warm):.0f}  {warm}")
    finally:
        harness.close()
    rows = [
        [name, f"{statistics.median(times):.0f}", ", ".join(map(str, times))]
        for name, times in (("cold", cold), ("warm", warm))
    ]
    body = (
        f"{runs} cold /runsync requests to an endpoint of the emulator's control plane scaled to zero, each followed "
        "by a warm one. A cold request waits for the autoscaler to start a real runpod SDK worker process (echo "
        "handler); RunPod's own cold start adds image pull and model load, which the emulator does not imitate.\n\n"
        + markdown_table(["request", "delayTime median ms", "each run ms"], rows)
    )
    write_results(
        "cold_start",
        "Cold start through the emulator's autoscaler",
        body,
        {"cold_ms": cold, "warm_ms": warm},
        out=args.out,
    )


if __name__ == "__main__":
    main()
