"""The `distmeta` command line: train, eval (tune, submit and bench come with the Ray runtime)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from distmeta.errors import DistmetaError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="distmeta", description="Meta-learning: MAML, Reptile, ANIL, Meta-SGD, ProtoNets.")
    commands = parser.add_subparsers(dest="command", required=True)

    train = commands.add_parser("train", help="meta-train (the built-in default: sinusoid MAML)")
    train.add_argument("config", nargs="?", help="YAML config; omitted: the built-in defaults")
    train.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                       help="override a config field, e.g. --set algorithm.inner_lr=0.4 (repeatable)")
    train.add_argument("--run-dir", help="run directory (train.run_dir); an existing one is resumed")
    train.add_argument("--no-eval", action="store_true", help="skip the meta-test at the end")

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
        return run_eval(args)
    except DistmetaError as error:
        print(f"distmeta {args.command}: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"distmeta {args.command}: interrupted; the latest checkpoint is kept", file=sys.stderr)
        return 130


def run_train(args) -> int:
    from distmeta.config import load_config
    from distmeta.training.trainer import train

    overrides = list(args.overrides)
    if args.run_dir:
        overrides.append(f"train.run_dir={args.run_dir}")
    config = load_config(args.config, overrides)
    train(config, final_eval=not args.no_eval)
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
