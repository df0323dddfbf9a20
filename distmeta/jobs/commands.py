"""The `distmeta submit` and `distmeta jobs` commands: parsed arguments in, lines a person reads out."""

from __future__ import annotations

import sys
from pathlib import Path

from distmeta.config import default_run_dir, default_search_name, load_config
from distmeta.jobs import listing, submission
from distmeta.jobs.client import connect, default_address, job_details, job_logs
from distmeta.tuning.space import load_space

PASSED_TO_JOB = {
    "train": ["--workers", "--gpus-per-worker", "--cpus-per-worker", "--scale-timeout", "--no-eval"],
    "tune": [
        "--trials",
        "--workers-per-trial",
        "--gpus-per-worker",
        "--cpus-per-worker",
        "--scale-timeout",
        "--scheduler",
        "--metric",
        "--mode",
    ],
}
"""The options of `submit train|tune` that the job's own command takes as they are."""


def run_submit(args) -> int:
    """`distmeta submit train|tune ...`: validate here, send, and (with --wait) follow to the end."""
    config = load_config(args.config, args.overrides)  # a bad config stops here, before anything is sent
    working_dir = submission.check_working_dir(args.working_dir)
    arguments = []
    if args.config:
        arguments.append(submission.path_in_working_dir(args.config, working_dir, "CONFIG"))
    if args.job_command == "tune":
        load_space(args.space, config)
        arguments += ["--space", submission.path_in_working_dir(args.space, working_dir, "--space")]
    for override in args.overrides:
        arguments += ["--set", override]
    arguments += _passed_options(args, PASSED_TO_JOB[args.job_command])
    storage = submission.check_cluster_storage(args.storage)
    name = args.name or _default_name(config, args.job_command)
    arguments += ["--address", "auto", "--storage", storage, "--name", name]
    job = submission.Submission(
        args.job_command,
        arguments,
        working_dir,
        name,
        storage,
        submission.read_requirements(args.pip_packages, args.requirements),
    )

    address = args.address or default_address()
    client = connect(address, args.token_file)  # refused here, before anything is sent, without a valid token
    job_id = submission.submit(client, job)
    print(f"submitted job {job_id} to {address}: {job.entrypoint}")
    print(f"run folder on the cluster: {job.run_folder} (submit the same command again to resume it)")
    if not args.wait:
        print(f"follow it:  distmeta jobs logs {job_id} --follow --address {address}")
        print(f"stop it:    distmeta jobs stop {job_id} --address {address}")
        return 0
    submission.follow_logs(client, job_id, lambda text: print(text, end="", flush=True))
    return _report_end(client, job_id)


def _passed_options(args, flags: list[str]) -> list[str]:
    arguments = []
    for flag in flags:
        value = getattr(args, flag.lstrip("-").replace("-", "_"))
        if value is None or value is False:
            continue
        arguments += [flag] if value is True else [flag, str(value)]
    return arguments


def _default_name(config, command: str) -> str:
    if command == "tune":
        return default_search_name(config)
    return Path(config.train.run_dir or default_run_dir(config)).name


def _report_end(client, job_id: str) -> int:
    """Say how the job ended; 0 only if it succeeded."""
    job = submission.wait_for_end(client, job_id)
    if str(job.status) == "SUCCEEDED":
        print(f"job {job_id} SUCCEEDED")
        return 0
    print(f"job {job_id} {job.status}: {submission.failure_message(job, job_logs(client, job_id))}", file=sys.stderr)
    return 1


def run_jobs(args) -> int:
    """`distmeta jobs list | status ID | logs ID [--follow] | stop ID`."""
    client = connect(args.address or default_address(), args.token_file)
    if args.job_command == "list":
        print(listing.jobs_table(listing.submitted(client.list_jobs())))
        return 0
    job = job_details(client, args.job_id)
    if args.job_command == "status":
        print(listing.job_summary(job))
        return 0
    if args.job_command == "logs":
        if args.follow:
            submission.follow_logs(client, args.job_id, lambda text: print(text, end="", flush=True))
        else:
            print(job_logs(client, args.job_id), end="")
        return 0
    if client.stop_job(args.job_id):
        job = submission.wait_for_end(client, args.job_id, timeout_s=60)
    print(f"job {args.job_id} {job.status}")
    return 0
