"""Prometheus instruments the services update as they work (prometheus-client's default
registry, one per process); /metrics (ivr.web.metrics) adds figures read from the database.

Kept cheap on the hot paths: one histogram observation per AGI command or AMI commit.
"""

from __future__ import annotations

from prometheus_client import Counter, Histogram

AGI_COMMAND_SECONDS = Histogram(
    "dasan_agi_command_seconds",
    "From writing an AGI command to Asterisk's reply (a prompt's playback included), by command verb",
    ["command"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
AGI_SESSIONS = Counter("dasan_agi_sessions", "FastAGI sessions (a call entering the IVR) this process served")
AMI_COMMIT_BATCH = Histogram(
    "dasan_ami_commit_batch_events", "AMI events written per group commit by the AMI bridge",
    buckets=(1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000),
)

GROUP_COMMIT_BATCH = Histogram(
    "dasan_group_commit_batch_writes", "Writes per group commit (ivr.db.group_commit), by writer",
    ["writer"], buckets=(1, 2, 5, 10, 20, 50, 100, 200, 500, 1000),
)


def agi_verb(command: str) -> str:
    """The label for a command line: its first word (bounded: the IVR's own commands)."""
    return (command.split(None, 1) or ["?"])[0].upper()[:20]
