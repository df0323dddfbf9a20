"""The `distmeta` command line: train (on Ray, or in this process), tune, eval."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from distmeta.errors import DistmetaError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="distmeta", description="Meta-learning: MAML, Reptile, ANIL, Meta-SGD, ProtoNets.")
    commands = parser.add_subparsers(dest="command", required=True)

    train = commands.add_parser("train", help="meta-train on Ray workers (the built-in default: sinusoid MAML)",
                                description="Meta-train on a Ray cluster (a local one unless --address is given). "
                                            "Running the same command again resumes <storage>/<name> "
                                            "from its latest checkpoint.")
    train.add_argument("config", nargs="?", help="YAML config; omitted: the built-in defaults")
    train.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                       help="override a config field, e.g. --set algorithm.inner_lr=0.4 (repeatable)")
    train.add_argument("--workers", type=int, default=1, help="Ray Train workers sharing each meta-batch (default 1)")
    train.add_argument("--gpus-per-worker", type=int, default=None,
                       help="GPUs each worker owns (default: 1 when the cluster has a GPU per worker, else 0)")
    train.add_argument("--cpus-per-worker", type=int, default=1, help="CPUs (torch threads) per worker (default 1)")
    train.add_argument("--address", help="a running Ray cluster, e.g. auto or ray://head:10001 (default: start one)")
    train.add_argument("--storage", help="folder for runs, shared by all nodes (default: runs, or the parent "
                                         "of train.run_dir)")
    train.add_argument("--name", help="run name, the folder under --storage (default: the name of train.run_dir, "
                                      "else <task>-<algorithm>-<time>)")
    train.add_argument("--run-dir", help="the run folder at once (sets --storage and --name)")
    train.add_argument("--in-process", action="store_true",
                       help="train in this process, without Ray (debugging; no worker restarts)")
    train.add_argument("--no-eval", action="store_true", help="skip the meta-test at the end")

    search = commands.add_parser("tune", help="search hyper-parameters with Ray Tune; each trial a distributed run",
                                 description="Search a config's hyper-parameters with Ray Tune. Running the same "
                                             "command again resumes <storage>/<name> without re-running "
                                             "finished trials.")
    search.add_argument("config", nargs="?", help="YAML config of what every trial trains; omitted: the defaults")
    search.add_argument("--space", required=True, help="YAML search space: dotted config fields -> distributions")
    search.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config field for every trial (repeatable)")
    search.add_argument("--trials", type=int, default=8, help="samples of the space; each covers every grid point")
    search.add_argument("--workers-per-trial", type=int, default=1, help="Ray Train workers of each trial")
    search.add_argument("--gpus-per-worker", type=int, default=None,
                        help="GPUs per worker (default: 1 when the cluster has a GPU for every worker of a trial)")
    search.add_argument("--cpus-per-worker", type=int, default=1)
    search.add_argument("--scheduler", default="asha", choices=["asha", "fifo"],
                        help="asha stops poor trials early (default); fifo runs every trial to the end")
    search.add_argument("--metric", help="what to rank by (default: val_accuracy, or val_mse for regression)")
    search.add_argument("--mode", choices=["max", "min"], help="default: max for accuracy, min otherwise")
    search.add_argument("--address", help="a running Ray cluster (default: start one)")
    search.add_argument("--storage", default="runs", help="folder for searches, shared by all nodes (default: runs)")
    search.add_argument("--name", help="the search's folder under --storage (default: tune-<task>-<algorithm>-<time>)")

    evaluate = commands.add_parser("eval", help="meta-test a checkpoint: mean and 95%% interval over many tasks")
    evaluate.add_argument("checkpoint", help="checkpoint file or run directory (its latest checkpoint)")
    evaluate.add_argument("--tasks", type=int, help="number of tasks (default eval.tasks, 600)")
    evaluate.add_argument("--inner-steps", type=int, help="adaptation steps (default algorithm.test_inner_steps)")
    evaluate.add_argument("--split", default="test", choices=["train", "val", "test"])
    evaluate.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                          help="change a task setting for evaluation, e.g. --set task.shots=5")
    evaluate.add_argument("--json", type=Path, help="also write the result to this JSON file")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command == "train":
            return run_train(args)
        if args.command == "tune":
            return run_tune(args)
        return run_eval(args)
    except DistmetaError as error:
        print(f"distmeta {args.command}: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"distmeta {args.command}: interrupted; the latest checkpoint is kept", file=sys.stderr)
        return 130


def run_train(args) -> int:
    from distmeta.config import load_config
    from distmeta.training.trainer import default_run_dir, train

    overrides = list(args.overrides)
    if args.run_dir:
        overrides.append(f"train.run_dir={args.run_dir}")
    config = load_config(args.config, overrides)
    if args.in_process:
        train(config, final_eval=not args.no_eval)
        return 0

    from distmeta.runtime.launcher import ClusterRequest, train_distributed

    run_dir = Path(config.train.run_dir or default_run_dir(config))
    request = ClusterRequest(workers=args.workers, gpus_per_worker=args.gpus_per_worker,
                             cpus_per_worker=args.cpus_per_worker, address=args.address,
                             storage=args.storage or str(run_dir.parent), name=args.name or run_dir.name)
    train_distributed(config, request, final_eval=not args.no_eval)
    return 0


def run_tune(args) -> int:
    from datetime import datetime

    from distmeta.config import load_config
    from distmeta.tuning.search import TuneRequest, run_search
    from distmeta.tuning.space import load_space

    config = load_config(args.config, args.overrides)
    space = load_space(args.space, config)
    name = args.name or f"tune-{config.task.name}-{config.algorithm.name}-{datetime.now():%Y%m%d-%H%M%S}"
    request = TuneRequest(trials=args.trials, workers_per_trial=args.workers_per_trial,
                          gpus_per_worker=args.gpus_per_worker, cpus_per_worker=args.cpus_per_worker,
                          scheduler=args.scheduler, metric=args.metric, mode=args.mode, address=args.address,
                          storage=args.storage, name=name)
    run_search(config, space, request)
    return 0


def run_eval(args) -> int:
    import torch

    from distmeta.config import apply_override, from_dict, to_dict, validate
    from distmeta.evaluation import evaluate
    from distmeta.experiment import build_experiment
    from distmeta.training.checkpoint import load_checkpoint

    payload = load_checkpoint(args.checkpoint)
    raw = to_dict(from_dict(payload["config"]))
    for override in args.overrides:
        apply_override(raw, override)
    config = from_dict(raw)
    validate(config)
    experiment = build_experiment(config, check_data=False)
    params = {name: value.to(experiment.device) for name, value in payload["meta_parameters"].items()}
    print(f"{payload['path']}: step {payload['step']}, {config.task.name} / {config.algorithm.name}; "
          f"inner loops: {experiment.strategy} ({experiment.strategy_reason})")
    with torch.no_grad():
        result = evaluate(experiment, params, args.split, args.tasks, args.inner_steps)
    print(result)
    if args.json:
        args.json.write_text(json.dumps({**result.to_dict(), "checkpoint": payload["path"]}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
