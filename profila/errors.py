"""Errors a user can act on: one line each, with the exit status profila ends with.

Everything that can go wrong before or around the target's run is raised as a ProfilaError;
the CLI turns it into ``profila: <message>`` on stderr and the exit status, in one place.
"""

from __future__ import annotations

# Exit statuses of profila itself (the target's own exit status is passed through otherwise).
EXIT_USAGE = 2  # bad command line, script or module not found, output path not writable
EXIT_ENVIRONMENT = 3  # gdb missing or unusable, ptrace or perf_event_open not permitted
EXIT_INTERNAL = 4  # profila failed while the target ran (the target's status is lost)


class ProfilaError(Exception):
    """A failure with a one-line message for the user and profila's exit status."""

    exit_code = EXIT_INTERNAL

    def __init__(self, message: str, exit_code: int | None = None) -> None:
        super().__init__(message)
        if exit_code is not None:
            self.exit_code = exit_code


class UsageError(ProfilaError):
    exit_code = EXIT_USAGE


class EnvironmentProblem(ProfilaError):
    exit_code = EXIT_ENVIRONMENT
