"""What `distmeta jobs list` and `distmeta jobs status` print about jobs."""

from __future__ import annotations

from ray.job_submission import JobDetails, JobType

from distmeta.jobs.client import duration, timestamp
from distmeta.training.progress import column_table, summary_table


def submitted(jobs: list[JobDetails]) -> list[JobDetails]:
    """Jobs sent through the job server, oldest first (not the drivers of interactive sessions)."""
    jobs = [job for job in jobs if job.type == JobType.SUBMISSION]
    return sorted(jobs, key=lambda job: job.start_time or 0)


def jobs_table(jobs: list[JobDetails]) -> str:
    if not jobs:
        return "no submitted jobs on this cluster"
    headers = ["job id", "status", "command", "run", "started", "duration"]
    rows = [
        [
            job.submission_id or "-",
            str(job.status),
            (job.metadata or {}).get("distmeta", "-"),
            (job.metadata or {}).get("run", "-"),
            timestamp(job.start_time),
            duration(job),
        ]
        for job in jobs
    ]
    return column_table(headers, rows)


def job_summary(job: JobDetails) -> str:
    message = (job.message or "").strip().splitlines()
    rows = [
        ("job id", job.submission_id or "-"),
        ("status", str(job.status)),
        ("entrypoint", job.entrypoint),
        ("run folder", (job.metadata or {}).get("run", "-")),
        ("started", timestamp(job.start_time)),
        ("ended", timestamp(job.end_time)),
        ("duration", duration(job)),
        ("message", message[0] if message else "-"),
    ]
    return summary_table(rows)
