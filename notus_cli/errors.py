"""Every failure Notus reports to a person, with a hint and an exit code.

    NotusError                 exit 1 unless a subclass says otherwise
    ├── ConfigError            bad notus.toml, environment variable or flag (exit 2)
    ├── ModelError             model files missing, corrupt or not loadable
    ├── EngineError            vLLM could not be found, started or reached
    ├── BuildError             the image build failed
    ├── RegistryError          push/pull or registry credentials failed
    ├── AuthError              no API key, or the server refused it: RunPod, an endpoint or any OpenAI server
    ├── RunPodError            RunPod answered with an error
    │   ├── RunPodRateLimited  HTTP 429 after the retries
    │   ├── RunPodQueryError   a GraphQL or REST call was refused
    │   └── RunPodAnswerLost   a mutation's answer never came (it may or may not have been carried out)
    ├── BenchError             a benchmark could not run or produced no usable result
    ├── ServerError            an OpenAI-compatible server answered with something unusable
    ├── EndpointUnreachable    nothing answers at the endpoint URL (exit 3)
    └── JobFailed              the endpoint ran the job and it failed (exit 4)
        └── ContextOverflow    the prompt does not fit the model's context

The CLI's entry point is the only place that turns these into text on stderr.
"""

from __future__ import annotations


class NotusError(Exception):
    """A failure with a message for the user and, where we know one, a hint to fix it."""

    exit_code = 1

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint


class ConfigError(NotusError):
    exit_code = 2


class ModelError(NotusError):
    pass


class EngineError(NotusError):
    pass


class BuildError(NotusError):
    pass


class RegistryError(NotusError):
    pass


class AuthError(NotusError):
    """The same failure wherever the key goes, so chat and bench report it alike."""


class RunPodError(NotusError):
    pass


class RunPodRateLimited(RunPodError):
    pass


class RunPodQueryError(RunPodError):
    pass


class RunPodAnswerLost(RunPodError):
    """A mutation was sent but its answer was lost (5xx, timeout): look before sending it again."""


class BenchError(NotusError):
    pass


class ServerError(NotusError):
    pass


class EndpointUnreachable(NotusError):
    exit_code = 3


class JobFailed(NotusError):
    """`status` is the job's final state; `error_type` and `param` come from the worker's error, when known."""

    exit_code = 4

    def __init__(
        self,
        message: str,
        *,
        hint: str | None = None,
        job_id: str | None = None,
        status: str | None = None,
        error_type: str | None = None,
        param: str | None = None,
    ) -> None:
        super().__init__(message, hint=hint)
        self.job_id = job_id
        self.status = status
        self.error_type = error_type
        self.param = param


class ContextOverflow(JobFailed):
    """The server refused the prompt as longer than the model's context (vLLM answers HTTP 400)."""
