"""Every failure Notus reports to a person, with a hint and an exit code.

    NotusError                 exit 1 (FAILED) unless a subclass says otherwise
    ├── ConfigError            bad notus.toml, environment variable, flag or input (USAGE, 2)
    ├── ModelError             model files missing, corrupt or not loadable
    ├── EngineError            vLLM could not be found, started or reached
    ├── BuildError             the image build failed
    ├── RegistryError          push/pull or registry credentials failed
    ├── AuthError              no API key, or a server refused it: RunPod, an endpoint, OpenAI (CREDENTIALS, 5)
    ├── RunPodError            RunPod answered with an error (REJECTED, 6)
    │   ├── RunPodRateLimited  HTTP 429 after the retries
    │   ├── RunPodQueryError   a GraphQL or REST call was refused
    │   └── RunPodAnswerLost   a mutation's answer never came (it may or may not have been carried out)
    ├── BenchError             a benchmark could not run or produced no usable result
    ├── ServerError            an OpenAI-compatible server answered with something unusable
    ├── EndpointUnreachable    nothing answers at the endpoint URL (UNREACHABLE, 3)
    └── JobFailed              the endpoint ran the job and it failed (JOB_FAILED, 4)
        ├── ContextOverflow    the prompt does not fit the model's context
        └── EmptyAnswer        the job ended with no answer text (the model stopped inside its reasoning)

`ExitCode` is the one table of exit codes for the whole CLI; docs/cli.md prints it from here. The
CLI's entry point (notus_cli.app) is the only place that turns these errors, and usage errors from
the command line parser, into text on stderr.
"""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    """What `notus` exits with; `EXIT_CODES` says when, for people and for docs/cli.md."""

    OK = 0
    FAILED = 1
    USAGE = 2
    UNREACHABLE = 3
    JOB_FAILED = 4
    CREDENTIALS = 5
    REJECTED = 6
    INTERRUPTED = 130


EXIT_CODES: dict[ExitCode, str] = {
    ExitCode.OK: "done",
    ExitCode.FAILED: "failed for another reason: a build, push, model, engine or file; a question not confirmed",
    ExitCode.USAGE: (
        "usage: an unknown or bad flag, argument, setting or input; no target, or several; an unknown name; "
        "a confirmation or secret asked for without a terminal"
    ),
    ExitCode.UNREACHABLE: "nothing answers at the address: the network, a wrong URL, no `notus serve` running",
    ExitCode.JOB_FAILED: "the endpoint ran the request and it failed, or it ended with no answer",
    ExitCode.CREDENTIALS: "no API key found, or the server refused it",
    ExitCode.REJECTED: "RunPod refused the request (a bad query, a rate limit, a quota) or its answer was lost",
    ExitCode.INTERRUPTED: "interrupted (Ctrl-C)",
}


def exit_code_table() -> str:
    """EXIT_CODES as a Markdown table (docs/cli.md includes it)."""
    rows = ["| code | meaning |", "| --- | --- |"]
    rows += [f"| {int(code)} | {meaning.replace('|', '/')} |" for code, meaning in EXIT_CODES.items()]
    return "\n".join(rows) + "\n"


class NotusError(Exception):
    """A failure with a message for the user and, where we know one, a hint to fix it."""

    exit_code: int = ExitCode.FAILED

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint


class ConfigError(NotusError):
    exit_code = ExitCode.USAGE


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

    exit_code = ExitCode.CREDENTIALS


class RunPodError(NotusError):
    exit_code = ExitCode.REJECTED


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
    exit_code = ExitCode.UNREACHABLE


class JobFailed(NotusError):
    """`status` is the job's final state; `error_type` and `param` come from the worker's error, when known."""

    exit_code = ExitCode.JOB_FAILED

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


class EmptyAnswer(JobFailed):
    """The answer has no text: `content` null or empty (the model ended inside its reasoning), or the
    worker's marker for that. Reasoning, when there was some, is still in the answer."""
