"""Cold and warm `delayTime` of an endpoint created through the emulator's control plane.

    .venv/bin/python benchmarks/cold_start.py [--runs 5]

The endpoint scales to zero (workersMin 0, idleTimeout 1 s), so each cold /runsync waits for the
autoscaler to start a real runpod SDK worker process (echo handler) and for that worker's first poll;
the warm request right after finds it running. RunPod's own cold start adds image pull and model
load, which the emulator does not imitate: this is the floor the local stack adds.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pydantic import SecretStr  # noqa: E402

from notus_cli.runpod.control import EndpointInput, TemplateInput  # noqa: E402
from notus_cli.runpod.graphql import RunPodGraphQL  # noqa: E402
from testbed.control import control_harness  # noqa: E402
from testbed.emulator import wait_for  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    runs = parser.parse_args().runs
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


if __name__ == "__main__":
    main()
