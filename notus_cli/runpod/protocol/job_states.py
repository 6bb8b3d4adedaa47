"""The states of a RunPod job, one enum for clients and the emulator.

    IN_QUEUE -> IN_PROGRESS -> COMPLETED | FAILED | CANCELLED | TIMED_OUT
    FAILED | TIMED_OUT --/retry--> IN_QUEUE

Sources: runpod/docs serverless/endpoints/job-states.mdx (the six states); runpod-python
runpod/endpoint/helpers.py (`is_completed` counts CANCELLED as final, while its FINAL_STATES list,
which `Job.stream()` loops on, omits it: we treat CANCELLED as final everywhere); /retry takes only
FAILED or TIMED_OUT jobs (runpod/docs serverless/endpoints/operation-reference.mdx, /retry).
"""

from __future__ import annotations

import enum


class JobState(enum.StrEnum):
    IN_QUEUE = "IN_QUEUE"
    IN_PROGRESS = "IN_PROGRESS"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"
    TIMED_OUT = "TIMED_OUT"

    @property
    def final(self) -> bool:
        return self not in (JobState.IN_QUEUE, JobState.IN_PROGRESS)

    @property
    def without_result(self) -> bool:
        """Ended, but not with an output: FAILED, CANCELLED or TIMED_OUT."""
        return self.final and self is not JobState.COMPLETED

    @property
    def retryable(self) -> bool:
        return self in (JobState.FAILED, JobState.TIMED_OUT)

    @classmethod
    def parse(cls, text: object) -> JobState:
        """Raises ValueError naming the allowed states."""
        try:
            return cls(str(text))
        except ValueError:
            raise ValueError(f"unknown job status {str(text)[:40]!r} (known: {', '.join(cls)})") from None


FINAL_STATES = frozenset(state for state in JobState if state.final)
