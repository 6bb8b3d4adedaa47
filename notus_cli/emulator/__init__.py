"""A local RunPod Serverless: the public and worker-facing APIs on loopback, with real worker processes.

See `app.py` for how the pieces fit, `jobs.py` for the job states and `endpoint.py` for what
happens to the jobs of a worker that dies.
"""

from notus_cli.emulator.app import Emulator, EmulatorServer, new_key
from notus_cli.emulator.config import EmulatorConfig
from notus_cli.emulator.endpoint import Endpoint, WorkerRecord
from notus_cli.emulator.jobs import Job, JobState
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
