"""The `distmeta` command line: train (on Ray, or in this process), tune, eval."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from distmeta.errors import ConfigError, DistmetaError
from distmeta.jobs import DEFAULT_ADDRESS


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="distmeta", description="Meta-learning: MAML, Reptile, ANIL, Meta-SGD, ProtoNets."
    )
    commands = parser.add_subparsers(dest="command", required=True)

    train = commands.add_parser(
        "train",
        help="meta-train on Ray workers (the built-in default: sinusoid MAML)",
        description="Meta-train on a Ray cluster (a local one unless --address is given). "
        "Running the same command again resumes <storage>/<name> "
        "from its latest checkpoint.",
    )
    add_train_options(train)
    train.add_argument("--address", help="a running Ray cluster, e.g. auto or ray://head:10001 (default: start one)")
    train.add_argument("--run-dir", help="the run folder at once (sets --storage and --name)")
    train.add_argument(
        "--in-process", action="store_true", help="train in this process, without Ray (debugging; no worker restarts)"
    )

    search = commands.add_parser(
        "tune",
        help="search hyper-parameters with Ray Tune; each trial a distributed run",
        description="Search a config's hyper-parameters with Ray Tune. Running the same "
        "command again resumes <storage>/<name> without re-running "
        "finished trials.",
    )
    add_tune_options(search)
    search.add_argument("--address", help="a running Ray cluster (default: start one)")

    add_job_commands(commands)

    add_bench_command(commands)

    add_kb_command(commands)

    evaluate = commands.add_parser("eval", help="meta-test a checkpoint: mean and 95%% interval over many tasks")
    evaluate.add_argument("checkpoint", help="checkpoint file or run directory (its latest checkpoint)")
    evaluate.add_argument(
        "--tasks",
        type=at_least(1),
        help="number of tasks (default eval.tasks, 600; a learned optimiser: "
        "algorithm.learned_optimizer.eval_tasks, 5)",
    )
    evaluate.add_argument(
        "--inner-steps",
        type=at_least(0),
        help="adaptation steps (default algorithm.test_inner_steps; a "
        "learned optimiser: optimisee steps, default "
        "algorithm.learned_optimizer.eval_steps)",
    )
    evaluate.add_argument("--split", default="test", choices=["train", "val", "test"])
    evaluate.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="change a task or evaluation setting, e.g. --set task.shots=5 (not what the checkpoint holds: "
        "the model, the algorithm)",
    )
    evaluate.add_argument(
        "--device",
        choices=["auto", "cpu", "cuda"],
        help="where to evaluate (default: the checkpoint's train.device where this machine "
        "has it, else cpu: a GPU-trained checkpoint runs on a CPU machine as it is)",
    )
    evaluate.add_argument(
        "--json",
        type=Path,
        help="also write the result to this JSON file (a learned optimiser: default <run>/eval_<task>.json)",
    )
    evaluate.add_argument(
        "--plot", type=Path, help="a learned optimiser's loss-curve PNG (default: the JSON file's name, .png)"
    )
    return parser


def at_least(minimum: int):
    """An argparse type: a whole number of at least `minimum` (the flag is named in argparse's error)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be at least {minimum}, got {value}")
        return value

    return parse


def add_worker_options(parser: argparse.ArgumentParser, gpus_default: str) -> None:
    """What each Ray worker holds, and how long to wait for a cluster to grow to hold it (train, tune, bench)."""
    parser.add_argument(
        "--gpus-per-worker",
        type=int,
        default=None,
        help=f"0 or 1: GPUs each worker owns (default: {gpus_default}, else 0)",
    )
    parser.add_argument("--cpus-per-worker", type=int, default=1, help="CPUs (torch threads) per worker (default 1)")
    parser.add_argument(
        "--scale-timeout",
        type=float,
        help="seconds to wait for an autoscaling cluster to add the nodes the workers need before "
        "giving up (default 900); for train and tune, also how long in all to wait, after a node "
        "is lost mid-run, for the cluster to hold the workers again",
    )


def add_job_server_options(parser: argparse.ArgumentParser) -> None:
    """Which cluster's job server `submit` and `jobs` talk to, and the token it asks for."""
    parser.add_argument(
        "--address",
        default=None,
        help=f"the cluster's job server (its dashboard), e.g. http://HEAD:8265 "
        f"(default: $RAY_API_SERVER_ADDRESS, else {DEFAULT_ADDRESS})",
    )
    parser.add_argument(
        "--token-file",
        default=None,
        help="a file holding the cluster's Ray token (`ray get-auth-token` on its head) "
        "(default: $RAY_AUTH_TOKEN, else the file $RAY_AUTH_TOKEN_PATH, else ~/.ray/auth_token)",
    )


def add_train_options(train: argparse.ArgumentParser) -> None:
    """What `distmeta train` and `distmeta submit train` share: the run itself, not where it runs."""
    train.add_argument("config", nargs="?", help="YAML config; omitted: the built-in defaults")
    train.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config field, e.g. --set algorithm.inner_lr=0.4 (repeatable)",
    )
    train.add_argument("--workers", type=int, default=1, help="Ray Train workers sharing each meta-batch (default 1)")
    add_worker_options(train, "1 when the cluster has, or its autoscaler can add, a GPU per worker")
    train.add_argument(
        "--storage",
        help="folder for runs, shared by all nodes, or a bucket (s3://..., gs://...) "
        "(default: runs, or the parent of train.run_dir)",
    )
    train.add_argument(
        "--name",
        help="run name, the folder under --storage (default: the name of train.run_dir, "
        "else <task>-<algorithm>-<time>)",
    )
    train.add_argument("--no-eval", action="store_true", help="skip the meta-test at the end")


def add_tune_options(search: argparse.ArgumentParser) -> None:
    """What `distmeta tune` and `distmeta submit tune` share."""
    search.add_argument("config", nargs="?", help="YAML config of what every trial trains; omitted: the defaults")
    search.add_argument("--space", required=True, help="YAML search space: dotted config fields -> distributions")
    search.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config field for every trial (repeatable)",
    )
    search.add_argument("--trials", type=int, default=8, help="samples of the space; each covers every grid point")
    search.add_argument("--workers-per-trial", type=int, default=1, help="Ray Train workers of each trial")
    add_worker_options(search, "1 when the cluster has, or its autoscaler can add, a GPU for every worker of a trial")
    search.add_argument(
        "--scheduler",
        default="asha",
        choices=["asha", "fifo"],
        help="asha stops poor trials early (default); fifo runs every trial to the end",
    )
    search.add_argument("--metric", help="what to rank by (default: val_accuracy, or val_mse for regression)")
    search.add_argument("--mode", choices=["max", "min"], help="default: max for accuracy, min otherwise")
    search.add_argument(
        "--storage",
        default="runs",
        help="folder for searches, shared by all nodes, or a bucket (s3://..., gs://...) (default: runs)",
    )
    search.add_argument("--name", help="the search's folder under --storage (default: tune-<task>-<algorithm>-<time>)")


def add_job_commands(commands) -> None:
    """`distmeta submit train|tune ...` and `distmeta jobs list|status|logs|stop`."""
    submit = commands.add_parser(
        "submit",
        help="send a train or tune command to a Ray cluster as a job",
        description="Validate the config here, then run `distmeta train` or `distmeta tune` "
        "on a cluster as a Ray job, with the working directory and this "
        "distmeta package sent along.",
    )
    kinds = submit.add_subparsers(dest="job_command", required=True)
    for kind, add_options in (("train", add_train_options), ("tune", add_tune_options)):
        parser = kinds.add_parser(kind, help=f"submit `distmeta {kind}`")
        add_options(parser)
        parser.set_defaults(storage=None)  # on a cluster: an absolute path, DEFAULT_CLUSTER_STORAGE unless given
        add_job_server_options(parser)
        parser.add_argument(
            "--working-dir",
            help="folder sent with the job as its current directory; the config "
            "(and space) must be inside it (default: the current folder)",
        )
        parser.add_argument(
            "--pip",
            dest="pip_packages",
            action="append",
            default=[],
            metavar="REQUIREMENT",
            help="a package for Ray to pip-install on the cluster for this job (repeatable)",
        )
        parser.add_argument("--requirements", help="a requirements file for Ray to pip-install on the cluster")
        parser.add_argument(
            "--wait", action="store_true", help="stream the job's log and exit with its status (0 only if it succeeded)"
        )

    jobs = commands.add_parser("jobs", help="list, inspect, follow and stop jobs on a Ray cluster")
    actions = jobs.add_subparsers(dest="job_command", required=True)
    listing = actions.add_parser("list", help="every submitted job: id, status, run, times")
    status = actions.add_parser("status", help="one job's status, times, entrypoint and message")
    logs = actions.add_parser("logs", help="a job's log")
    logs.add_argument("--follow", action="store_true", help="keep printing until the job ends")
    stop = actions.add_parser("stop", help="stop a job and wait until it has stopped")
    for parser in (status, logs, stop):
        parser.add_argument("job_id", metavar="ID")
    for parser in (listing, status, logs, stop):
        add_job_server_options(parser)


def add_bench_command(commands) -> None:
    """`distmeta bench`: meta-steps timed phase by phase across worker counts."""
    bench = commands.add_parser(
        "bench",
        help="throughput and where a meta-step's time goes, across worker counts",
        description="Time meta-steps (after warm-up) with each worker count on a Ray "
        "cluster (a local one unless --address is given): tasks/s, scaling "
        "efficiency, and the step split into sampling, inner loop, outer "
        "backward, sync wait, all-reduce and optimiser.",
    )
    bench.add_argument("config", nargs="?", help="YAML config; omitted: the built-in defaults")
    bench.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config field (repeatable)",
    )
    bench.add_argument(
        "--workers", help="worker counts, e.g. 1,2,4,8 (default: 1, 2, 4, ... up to what the cluster holds)"
    )
    add_worker_options(bench, "1 when the cluster has, or can add, a GPU per worker of the smallest count")
    bench.add_argument(
        "--algo",
        help="sets algorithm.name, e.g. maml (default: the config's; an unknown name "
        "is refused with the list of known ones)",
    )
    bench.add_argument(
        "--task",
        choices=sorted(BENCH_TASKS),
        help="sine or omniglot (default: the config's); omniglot without task.omniglot.roots runs "
        "on synthetic Omniglot-shaped tasks (random images)",
    )
    bench.add_argument(
        "--meta-batch",
        type=int,
        help="weak scaling: tasks per worker; strong: tasks per step, shared (default: train.meta_batch_size)",
    )
    bench.add_argument(
        "--scaling",
        choices=["weak", "strong"],
        default="weak",
        help="weak: the batch per worker stays (default); strong: the global batch stays",
    )
    bench.add_argument("--steps", type=int, default=20, help="timed meta-steps per worker count (default 20)")
    bench.add_argument("--warmup", type=int, default=5, help="untimed meta-steps before them (default 5)")
    bench.add_argument(
        "--rounds",
        type=int,
        default=1,
        help="runs of every count, taken in turn (1, 2, 1, 2, ...) and pooled, so that a "
        "machine whose speed drifts affects every count alike (default 1)",
    )
    bench.add_argument("--json", help="JSON results file (default: bench_<task>_<algorithm>_<scaling>.json)")
    bench.add_argument("--plot", help="PNG scaling plot (default: the JSON file's name, .png)")
    bench.add_argument("--address", help="a running Ray cluster (default: start one with this machine's CPUs)")


BENCH_TASKS = {"sine": "sinusoid", "omniglot": "omniglot"}


def add_kb_command(commands) -> None:
    kb = commands.add_parser("kb", help="the knowledge base of a run: build it, summarise it, query it")
    actions = kb.add_subparsers(dest="kb_command", required=True)
    build = actions.add_parser("build", help="adapt to N tasks and store their embeddings and adaptations")
    build.add_argument("run", help="run directory (its latest checkpoint is used)")
    build.add_argument("--tasks", type=at_least(1), required=True, help="number of tasks to store")
    build.add_argument(
        "--split",
        default="train",
        choices=["train", "val", "test"],
        help="which tasks (default train: the tasks the learner was meta-trained on)",
    )
    build.add_argument(
        "--embedding",
        default=None,
        choices=["features", "gradient", "adapted"],
        help="task embedding (default features, or the kind the store already holds)",
    )
    build.add_argument("--size", type=at_least(1), default=None, help="embedding size after projection (default 64)")
    build.add_argument("--inner-steps", type=at_least(0), help="adaptation steps (default algorithm.test_inner_steps)")
    build.add_argument(
        "--store-steps",
        type=at_least(0),
        default=100,
        help="steps of the stored adaptation, on the task's support and query sets (default 100)",
    )
    build.add_argument(
        "--writers", type=int, default=1, help="write the tasks as this many shards (one file each) in this process"
    )
    build.add_argument(
        "--workers", type=int, default=0, help="build on this many Ray workers instead, one shard (file) each"
    )
    build.add_argument("--address", help="a running Ray cluster for --workers (default: start a local one)")
    build.add_argument("--device", choices=["auto", "cpu", "cuda"], help="where to compute (default as eval)")
    stats = actions.add_parser("stats", help="files, steps, records and families; a 2-D plot of the embeddings")
    stats.add_argument("run")
    stats.add_argument("--plot", type=Path, help="PNG to write (default <run>/knowledge/embeddings.png)")
    query = actions.add_parser("query", help="the stored tasks nearest a task, and the warm start's effect on it")
    query.add_argument("run")
    query.add_argument("--task-index", type=at_least(0), default=0, help="which task of the split (as distmeta eval's)")
    query.add_argument("--split", default="test", choices=["train", "val", "test"])
    query.add_argument("--k", type=at_least(1), default=5, help="how many stored tasks (default 5)")
    query.add_argument("--metric", default="euclidean", choices=["euclidean", "cosine"])
    query.add_argument("--inner-steps", type=at_least(0), help="adaptation steps (default algorithm.test_inner_steps)")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command == "train":
            return run_train(args)
        if args.command == "tune":
            return run_tune(args)
        if args.command == "bench":
            return run_bench(args)
        if args.command == "submit":
            from distmeta.jobs.commands import run_submit

            return run_submit(args)
        if args.command == "jobs":
            from distmeta.jobs.commands import run_jobs

            return run_jobs(args)
        if args.command == "kb":
            from distmeta.knowledge.commands import run_kb

            return run_kb(args)
        return run_eval(args)
    except DistmetaError as error:
        print(f"distmeta {args.command}: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        if args.command in ("submit", "jobs"):
            print(
                f"distmeta {args.command}: stopped following; the job goes on (`distmeta jobs stop ID` stops it)",
                file=sys.stderr,
            )
        else:
            print(f"distmeta {args.command}: interrupted; the latest checkpoint is kept", file=sys.stderr)
        return 130


def scale_timeout(args) -> dict:
    """`--scale-timeout` where given; the requests' own default (900 s) otherwise."""
    return {} if args.scale_timeout is None else {"scale_timeout_s": args.scale_timeout}


def refuse_ray_flags(args) -> None:
    """`train --in-process` runs no Ray workers: a flag about them would be silently ignored."""
    ray_flags = {
        "--workers": args.workers != 1,
        "--address": args.address is not None,
        "--gpus-per-worker": args.gpus_per_worker is not None,
        "--cpus-per-worker": args.cpus_per_worker != 1,
        "--scale-timeout": args.scale_timeout is not None,
    }
    for flag, given in ray_flags.items():
        if given:
            raise ConfigError(flag, "a Ray worker setting, which --in-process (one process, no Ray) does not use")


def run_train(args) -> int:
    from distmeta.config import default_run_dir, load_config, replace
    from distmeta.storage import location
    from distmeta.training.trainer import train

    overrides = list(args.overrides)
    if args.run_dir:
        overrides.append(f"train.run_dir={args.run_dir}")
    config = load_config(args.config, overrides)
    run_dir = location(config.train.run_dir or default_run_dir(config))  # a local folder or a bucket URI
    storage, name = args.storage or str(run_dir.parent), args.name or run_dir.name
    if run_dir.is_file():
        raise ConfigError("--run-dir" if args.run_dir else "train.run_dir", f"{run_dir} is a file, not a folder")
    if args.in_process:
        refuse_ray_flags(args)
        if args.storage or args.name:  # they place the run as on Ray, so that the same command resumes it
            config = replace(config, train={"run_dir": f"{storage.rstrip('/')}/{name}"})
        train(config, final_eval=not args.no_eval)
        return 0

    from distmeta.runtime.launcher import ClusterRequest, train_distributed

    request = ClusterRequest(
        workers=args.workers,
        gpus_per_worker=args.gpus_per_worker,
        cpus_per_worker=args.cpus_per_worker,
        address=args.address,
        storage=storage,
        name=name,
        **scale_timeout(args),
    )
    train_distributed(config, request, final_eval=not args.no_eval)
    return 0


def run_tune(args) -> int:
    from distmeta.config import default_search_name, load_config
    from distmeta.tuning.search import TuneRequest, run_search
    from distmeta.tuning.space import load_space

    config = load_config(args.config, args.overrides)
    space = load_space(args.space, config)
    name = args.name or default_search_name(config)
    request = TuneRequest(
        trials=args.trials,
        workers_per_trial=args.workers_per_trial,
        gpus_per_worker=args.gpus_per_worker,
        cpus_per_worker=args.cpus_per_worker,
        scheduler=args.scheduler,
        metric=args.metric,
        mode=args.mode,
        address=args.address,
        storage=args.storage,
        name=name,
        **scale_timeout(args),
    )
    run_search(config, space, request)
    return 0


def run_bench(args) -> int:
    from distmeta.benchmarking.scaling import BenchRequest, parse_worker_counts
    from distmeta.benchmarking.scaling import run_bench as bench

    overrides = list(args.overrides)
    if args.task:
        overrides.append(f"task.name={BENCH_TASKS[args.task]}")
    if args.algo:
        overrides.append(f"algorithm.name={args.algo}")
    config = bench_config(args.config, overrides)
    request = BenchRequest(
        workers=parse_worker_counts(args.workers),
        gpus_per_worker=args.gpus_per_worker,
        cpus_per_worker=args.cpus_per_worker,
        meta_batch=args.meta_batch,
        scaling=args.scaling,
        steps=args.steps,
        warmup=args.warmup,
        rounds=args.rounds,
        address=args.address,
        **scale_timeout(args),
        json_path=args.json,
        plot_path=args.plot,
        command=dict(vars(args)),
    )
    bench(config, request)
    return 0


def bench_config(path: str | None, overrides: list[str]):
    """The bench's config: Omniglot without roots is benchmarked on synthetic Omniglot-shaped
    tasks (random images; the bench says so), real roots given are used."""
    from distmeta.config import load_config
    from distmeta.errors import ConfigError

    try:
        return load_config(path, overrides)
    except ConfigError as error:
        if error.field != "task.omniglot.roots":
            raise
    return load_config(path, [*overrides, "task.omniglot.synthetic=true"])


def run_eval(args) -> int:
    import torch

    from distmeta.config import apply_override, from_dict, to_dict, validate
    from distmeta.devices import resolve_device, usable_device
    from distmeta.evaluation import evaluate
    from distmeta.experiment import build_experiment
    from distmeta.training.checkpoint import load_checkpoint

    if args.json is not None and args.json.is_dir():
        raise ConfigError("--json", f"{args.json} is a folder: give the file to write")
    payload = load_checkpoint(args.checkpoint)
    raw = to_dict(from_dict(payload["config"]))
    for override in args.overrides:
        check_eval_override(override, raw)
        apply_override(raw, override)
    config = from_dict(raw)
    validate(config)
    if config.learns_update_rule:
        return run_optimizer_eval(args, payload, config)
    if args.device:
        device, why = resolve_device(args.device, field="--device"), f"--device {args.device}"
    else:
        device, why = usable_device(config.train.device)
    experiment = build_experiment(config, device, check_data=False)
    params = {name: value.to(experiment.device) for name, value in payload["meta_parameters"].items()}
    print(
        f"{payload['path']}: step {payload['step']}, {config.task.name} / {config.algorithm.name}; "
        f"device {experiment.device} ({why}); inner loops: {experiment.strategy} ({experiment.strategy_reason})"
    )
    with torch.no_grad():
        result = evaluate(experiment, params, args.split, args.tasks, args.inner_steps)
    print(result)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({**result.to_dict(), "checkpoint": payload["path"]}, indent=2))
    return 0


EVAL_SETTINGS = ("seed", "algorithm.test_inner_steps", "algorithm.inner_lr", "algorithm.inner_grad_clip")
"""What `eval --set` may change besides the tasks (`task.*`, not `task.name`), `eval.*` and how a run
is carried out (`config.NOT_HASHED`): not the model or the algorithm, which the checkpoint holds."""


def check_eval_override(override: str, raw: dict) -> None:
    """Refuse an `eval --set` of a field the checkpoint's parameters were trained for (the model
    would not load, or would be scored as something it is not)."""
    from distmeta.config import NOT_HASHED

    key = override.partition("=")[0].strip()
    if key in NOT_HASHED or key in EVAL_SETTINGS or (key.startswith(("task.", "eval.")) and key != "task.name"):
        return
    value: object = raw
    for part in key.split("."):
        value = value.get(part, "?") if isinstance(value, dict) else "?"
    raise ConfigError(key, f"fixed by the checkpoint ({value}): eval --set changes task and evaluation settings only")


def run_optimizer_eval(args, payload: dict, config) -> int:
    """`distmeta eval` of a learned optimiser: against tuned baselines (`--inner-steps`: optimisee steps)."""
    from distmeta.errors import ConfigError
    from distmeta.learned_optimizer_runs.comparison import evaluate_run

    if args.split != "test":
        raise ConfigError("--split", "a learned optimiser is compared on held-out (test) optimisee tasks only")
    evaluate_run(
        payload,
        config,
        args.tasks,
        args.inner_steps,
        args.json,
        args.plot,
        command="distmeta " + " ".join(sys.argv[1:]),
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
