"""Errors the CLI turns into one clear line and an exit code (no traceback).

Exit codes are part of the job's contract with whoever runs it (make, the
KubeRay submitter, CI): 2 means the input is wrong and retrying will not help,
3 means a service could not be reached and a retry later may, 4 means the data
on disk is missing or corrupt.
"""


class JobError(Exception):
    """Base class: an expected failure with a message meant for the user."""

    exit_code = 1


class InvalidInput(JobError):
    """Bad params, flags or settings. ``problems`` lists every bad field."""

    exit_code = 2

    def __init__(self, problems: list[str] | str):
        self.problems = [problems] if isinstance(problems, str) else list(problems)
        super().__init__("; ".join(self.problems))

    def __str__(self) -> str:
        if len(self.problems) == 1:
            return f"invalid input: {self.problems[0]}"
        lines = "\n".join(f"  - {p}" for p in self.problems)
        return f"invalid input ({len(self.problems)} problems):\n{lines}"


class ServiceUnavailable(JobError):
    """A service (MLflow, S3, Ray) did not answer. The message names the endpoint."""

    exit_code = 3


class DataError(JobError):
    """The dataset is missing, incomplete or fails its checksums."""

    exit_code = 4


class Stopped(JobError):
    """The driver was told to stop: Ctrl-C (SIGINT) or SIGTERM (what Kubernetes sends a pod)."""

    def __init__(self, message: str, signum: int):
        super().__init__(message)
        self.exit_code = 128 + signum  # the shell's convention: 130 for SIGINT, 143 for SIGTERM
