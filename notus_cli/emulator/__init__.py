"""A local RunPod Serverless: the public and worker-facing APIs on loopback, with real worker processes.

See `app.py` for how the pieces fit, `account.py` for the state the routes share (keys, endpoints,
the control plane), `jobs.py` for the job states and `endpoint.py` for what happens to the jobs of
a worker that dies.
"""

from notus_cli.emulator.account import new_key
from notus_cli.emulator.config import EmulatorConfig
from notus_cli.emulator.endpoint import Endpoint
from notus_cli.emulator.jobs import Job, JobState
from notus_cli.emulator.server import Emulator, EmulatorServer
from notus_cli.emulator.worker_records import WorkerRecord
from notus_cli.emulator.workers import LocalWorkers, WorkerCommand, WorkerProcess

__all__ = [
    "Emulator",
    "EmulatorConfig",
    "EmulatorServer",
    "Endpoint",
    "Job",
    "JobState",
    "LocalWorkers",
    "WorkerCommand",
    "WorkerProcess",
    "WorkerRecord",
    "new_key",
]
