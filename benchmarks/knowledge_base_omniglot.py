"""Knowledge base on Omniglot: alphabet identification and the warm start's effect on 5-way 1-shot accuracy.

    nice -n 10 python benchmarks/knowledge_base_omniglot.py --protonet-run RUN [--maml-run RUN]
        [--maml-steps 1500] [--stored-train 300] [--stored-test 300] [--tasks 600] [--store-steps 20]
        [--json benchmarks/results/knowledge_base_omniglot.json]

The real Omniglot data of ../shared/data (8 alphabets split by alphabet: 5 to meta-train, 1 to
validate, 2 to test; benchmarks/configs/omniglot_*.yaml), 5-way 1-shot, 5 query drawings per class.
Two trained learners: ProtoNets (--protonet-run) and MAML (--maml-run; without it, one is
meta-trained here for --maml-steps steps, meta-batch 8, as benchmarks/configs/omniglot_maml_5w1s.yaml).

For each learner a store is built as `distmeta kb build` builds one (`build_records`: the
`features` embedding, --store-steps adaptation steps on the whole task), of --stored-train tasks of
the train split and --stored-test tasks of the test split, both from the build stream: the held-out
queries, --tasks tasks of the test split's evaluation stream (`distmeta eval`'s), are never in the
store, but their alphabets are, so a query can have neighbours of its own alphabet. A task's family
is the alphabet most of its 5 classes come from.

1. Alphabet identification, per embedding kind (`features`; for MAML also `gradient` and
   `adapted`) and metric (Euclidean, cosine): the rate at which the nearest stored task, and the
   majority of the 10 nearest, share the query's alphabet, with chance = the share of stored tasks of
   the query's alphabet, averaged over the queries; the same among the test split's records only
   (what tells whether the embedding separates the two test alphabets), with the majority-alphabet
   rate as a second baseline there.
2. Warm start (MAML): 5-way 1-shot query accuracy after `algorithm.test_inner_steps` (10) steps
   on the support set from the plain meta-parameters and from the fitted warm start
   (`KnowledgeBase.fitted_warm_start_delta`: of the 50 nearest by `features`, the 5 stored models
   that fit the support set best, softmax(-loss / 0.2)) with the whole stored delta (head
   included), and with the body's delta alone (`warm_start.label_free_names`, what
   `Learner.adapt(warm_start="knowledge")` does for a classifier; checked against it on the
   first queries). Mean +- 95% interval, and the paired difference.
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import distmeta  # noqa: E402
from benchmarks.knowledge_base import mean_ci, warm_params  # noqa: E402  (the multimodal benchmark's)
from distmeta.config import config_hash, load_config  # noqa: E402
from distmeta.knowledge import (  # noqa: E402
    EmbeddingSpec,
    ExactIndex,
    KnowledgeBase,
    KnowledgeStore,
    TaskRecords,
    build_header,
    build_records,
    task_embedding,
)
from distmeta.knowledge.warm_start import DEFAULT_CANDIDATES, DEFAULT_TEMPERATURE, label_free_names, support_loss_of  # noqa: E402
from distmeta.tasks import task_seed  # noqa: E402
from distmeta.training.trainer import train  # noqa: E402

MAML_CONFIG = ROOT / "benchmarks/configs/omniglot_maml_5w1s.yaml"
METRICS = ("euclidean", "cosine")
VOTERS = 10
NEIGHBOURS = 5
"""`Learner.adapt`'s default `neighbours`: the stored models combined by a fitted warm start."""
CHECKED_QUERIES = 3
"""Queries on which the benchmark's warm start is checked against `Learner.adapt(warm_start="knowledge")`."""


# ---------------------------------------------------------------- learners


def trained_maml(args) -> Path:
    """--maml-run, or a MAML run meta-trained here (resumed if its folder holds checkpoints)."""
    if args.maml_run:
        return args.maml_run
    run_dir = args.work_dir / "maml-trained"
    overrides = [
        f"train.steps={args.maml_steps}",
        "train.meta_batch_size=8",
        "train.val_every=500",
        "train.val_tasks=200",
        "train.checkpoint_every=250",
        f"train.run_dir={run_dir}",
    ]
    train(load_config(MAML_CONFIG, overrides), final_eval=False)
    return run_dir


def run_info(run: Path, learner) -> dict:
    """What the learner is: its run, algorithm, meta-training steps and last validation accuracy."""
    info = {"run": str(run), "algorithm": learner.algorithm.name, "step": learner.step}
    metrics = run / "metrics.jsonl"
    rows = [json.loads(line) for line in metrics.read_text().splitlines() if line.strip()] if metrics.exists() else []
    validated = [row for row in rows if row.get("val_accuracy") is not None and row["step"] <= learner.step]
    if validated:  # the validation of the checkpoint's step or the last one before it
        info["val_step"] = validated[-1]["step"]
        info["val_accuracy"] = validated[-1]["val_accuracy"]
        info["val_accuracy_ci95"] = validated[-1].get("val_accuracy_ci95")
    train_config = learner.config.train
    info["meta_batch_size"] = train_config.meta_batch_size
    info["test_inner_steps"] = learner.algorithm.test_inner_steps
    return info


# ---------------------------------------------------------------- store and queries


def build_store(learner, args, spec: EmbeddingSpec) -> TaskRecords:
    """Train-split and test-split tasks of the build stream, as `distmeta kb build --split` stores them."""
    parts = []
    for split, count in (("train", args.stored_train), ("test", args.stored_test)):
        parts.append(
            build_records(
                learner.algorithm,
                learner.meta_params,
                learner.experiment.tasks(split),
                run_seed=learner.config.seed,
                split=split,
                indices=range(count),
                inner_steps=learner.algorithm.test_inner_steps,
                store_steps=args.store_steps,
                spec=spec,
            )
        )
    return TaskRecords.concat(parts)


def query_tasks(learner, count: int) -> tuple[list[list[torch.Tensor]], list[str], list[bool]]:
    """Tasks 0..count-1 of the test split's evaluation stream (`distmeta eval`'s), their alphabets,
    and whether all of a task's classes come from that one alphabet."""
    tasks = learner.experiment.tasks("test")
    seeds = [task_seed(learner.config.seed, "test", 0, i) for i in range(count)]
    pure = [len(set(tasks.task_alphabets(seed))) == 1 for seed in seeds]
    return (
        [[t[0] for t in tasks.sample(1, seed).tensors()] for seed in seeds],
        [tasks.task_family(s) for s in seeds],
        pure,
    )


def stored_supports(learner, records: TaskRecords) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Each stored task's support set again (tasks are seeded: the same data the build saw)."""
    supports = []
    for split, seed in zip(records.split, records.task_seed):
        support_x, support_y, _, _ = learner.experiment.tasks(split).sample(1, seed).tensors()
        supports.append((support_x[0], support_y[0]))
    return supports


# ---------------------------------------------------------------- 1. identification


def identification(
    stored: torch.Tensor, records: TaskRecords, queries: torch.Tensor, families: list[str], pure: list[bool]
) -> dict:
    """For each metric: nearest and majority-of-10 alphabet rates over all records and over the test
    split's; chance: the share of stored tasks of the query's alphabet, averaged over the queries.
    Balanced: the mean over the query alphabets of each one's rate (its chance: the mean share), as
    one test alphabet has more characters than the other; pure: the queries whose 5 classes all come
    from one alphabet."""
    stored_families = np.array(records.family)
    test_rows = np.array([split == "test" for split in records.split])
    result = {}
    for metric in METRICS:
        for scope, rows in (("all", np.ones(len(records), dtype=bool)), ("test_split", test_rows)):
            index = ExactIndex(stored[torch.from_numpy(rows)], metric)
            scope_families = stored_families[rows]
            found = index.search(queries, VOTERS).indices.numpy()
            top1 = [scope_families[row[0]] == family for row, family in zip(found, families)]
            votes = [majority(list(scope_families[row])) == family for row, family in zip(found, families)]
            chance = [float(np.mean(scope_families == family)) for family in families]
            entry = {"top1": mean_ci(top1), f"vote{VOTERS}": mean_ci(votes), "chance": round(float(np.mean(chance)), 4)}
            entry["balanced_top1"] = balanced(top1, families)
            entry["balanced_chance"] = balanced(chance, families)
            entry["pure_queries"] = int(sum(pure))
            entry["pure_top1"] = mean_ci([hit for hit, clean in zip(top1, pure) if clean])
            entry["pure_chance"] = round(float(np.mean([c for c, clean in zip(chance, pure) if clean])), 4)
            if scope == "all":
                entry["top1_is_test_split"] = mean_ci([bool(test_rows[row[0]]) for row in found])
            else:
                names, counts = np.unique(scope_families, return_counts=True)
                entry["majority_alphabet_rate"] = round(
                    float(np.mean([f == names[counts.argmax()] for f in families])), 4
                )
            result[f"{metric}_{scope}"] = entry
    return result


def balanced(values, families: list[str]) -> float:
    """The mean over the alphabets of the mean of `values` over that alphabet's queries."""
    values, families_array = np.array(values, dtype=float), np.array(families)
    return round(float(np.mean([values[families_array == name].mean() for name in sorted(set(families))])), 4)


def majority(values: list[str]) -> str:
    """The most common value, the nearest's on a tie (values are nearest first)."""
    return max(values, key=lambda value: (values.count(value), -values.index(value)))


def embeddings_of(kind: str, learner, supports) -> torch.Tensor:
    spec = EmbeddingSpec(kind, 64, learner.config.seed)
    return torch.stack([task_embedding(spec, learner.algorithm, learner.meta_params, sx, sy) for sx, sy in supports])


# ---------------------------------------------------------------- 2. warm start


def query_accuracy(algorithm, start, support_x, support_y, query_x, query_y) -> float:
    adapted = algorithm.adapt(start, support_x, support_y, algorithm.test_inner_steps, differentiable=False)
    with torch.no_grad():
        return float(algorithm.score(algorithm.predict(start, adapted, query_x), query_y))


def warm_starts(learner, base: KnowledgeBase, tests, query_embeddings: torch.Tensor) -> dict:
    algorithm, params = learner.algorithm, learner.meta_params
    variants = {"whole_delta": None, "body_delta": label_free_names(algorithm, base.header.adapted_names)}
    accuracy: dict[str, list[float]] = {"plain": [], **{name: [] for name in variants}}
    for number, (task, embedding) in enumerate(zip(tests, query_embeddings)):
        support_x, support_y = task[0], task[1]
        accuracy["plain"].append(query_accuracy(algorithm, params, *task))
        loss = support_loss_of(algorithm, params, support_x, support_y)
        for name, names in variants.items():
            delta = base.fitted_warm_start_delta(
                embedding, loss, NEIGHBOURS, DEFAULT_CANDIDATES, DEFAULT_TEMPERATURE, names=names
            )
            accuracy[name].append(query_accuracy(algorithm, warm_params(params, delta), *task))
        if number % 100 == 0:
            print(
                f"warm start: task {number}",
                {key: round(float(np.mean(v)), 4) for key, v in accuracy.items()},
                flush=True,
            )
    result = {"plain": mean_ci(accuracy["plain"])}
    for name in variants:
        difference = np.array(accuracy[name]) - np.array(accuracy["plain"])
        result[name] = {**mean_ci(accuracy[name]), "difference": mean_ci(difference)}
    return result


def library_check(run_copy: Path, tests, base: KnowledgeBase, query_embeddings) -> dict:
    """`Learner.adapt(warm_start="knowledge")` on the store written to `run_copy` gives the query
    outputs of the benchmark's body-delta warm start on the first queries."""
    learner = distmeta.load(run_copy, device="cpu")
    algorithm, params = learner.algorithm, learner.meta_params
    names = label_free_names(algorithm, base.header.adapted_names)
    largest = 0.0
    for task, embedding in list(zip(tests, query_embeddings))[:CHECKED_QUERIES]:
        support_x, support_y, query_x, _ = task
        model = learner.adapt(support_x, support_y, warm_start="knowledge", neighbours=NEIGHBOURS)
        loss = support_loss_of(algorithm, params, support_x, support_y)
        start = warm_params(params, base.fitted_warm_start_delta(embedding, loss, NEIGHBOURS, names=names))
        adapted = algorithm.adapt(start, support_x, support_y, algorithm.test_inner_steps, differentiable=False)
        with torch.no_grad():
            ours = algorithm.predict(start, adapted, query_x)
        largest = max(largest, float((model.outputs(query_x) - ours).abs().max()))
    if largest > 1e-3:
        raise AssertionError(
            f"Learner.adapt(warm_start='knowledge') differs from the body-delta warm start by {largest}"
        )
    return {"queries": CHECKED_QUERIES, "largest_output_difference": largest}


# ---------------------------------------------------------------- per learner


def measure(name: str, run: Path, args, kinds: tuple[str, ...], warm: bool, result: dict, save) -> None:
    """Fill `result` with the learner's measurements, calling `save()` after each part (a long run
    interrupted keeps what it measured)."""
    learner = distmeta.load(run, device="cpu")
    result.update(run_info(run, learner))
    print(name, json.dumps(result), flush=True)
    spec = EmbeddingSpec("features", 64, learner.config.seed)
    started = time.perf_counter()
    records = build_store(learner, args, spec)
    result["store"] = {
        "train_split_tasks": args.stored_train,
        "test_split_tasks": args.stored_test,
        "store_steps": args.store_steps if warm else None,
        "alphabets": family_counts(records),
        "build_seconds": round(time.perf_counter() - started, 1),
    }
    tests, families, pure = query_tasks(learner, args.tasks)
    result["queries"] = {"tasks": args.tasks, "alphabets": dict(zip(*np.unique(families, return_counts=True)))}
    result["queries"]["alphabets"] = {str(k): int(v) for k, v in result["queries"]["alphabets"].items()}
    supports = None
    result["identification"] = {}
    query_features = None
    for kind in kinds:
        if kind == "adapted" and warm:  # the warm start before the costliest embedding
            warm_start_part(name, run, args, learner, spec, records, tests, query_features, result)
            save()
        started = time.perf_counter()
        if kind == "features":
            stored = records.embedding
        else:
            supports = supports or stored_supports(learner, records)
            stored = embeddings_of(kind, learner, supports)
        queries = embeddings_of(kind, learner, [(task[0], task[1]) for task in tests])
        if kind == "features":
            query_features = queries
        entry = identification(stored, records, queries, families, pure)
        entry["seconds"] = round(time.perf_counter() - started, 1)
        result["identification"][kind] = entry
        print(name, kind, json.dumps(entry), flush=True)
        save()


def warm_start_part(name, run, args, learner, spec, records, tests, query_features, result) -> None:
    header = build_header(
        learner.algorithm,
        learner.meta_params,
        run=run.name,
        config_hash=config_hash(learner.config),
        step=learner.step,
        spec=spec,
        inner_steps=learner.algorithm.test_inner_steps,
        store_steps=args.store_steps,
        writer="knowledge-base-omniglot",
    )
    base = KnowledgeBase(header, records)
    run_copy = fresh_copy(run, args.work_dir / "maml-with-store")
    KnowledgeStore(run_copy).append(header, records)
    check = library_check(run_copy, tests, base, query_features)
    started = time.perf_counter()
    result["warm_start"] = warm_starts(learner, base, tests, query_features)
    result["warm_start"]["seconds"] = round(time.perf_counter() - started, 1)
    result["warm_start"]["library_check"] = check
    print(name, "warm start", json.dumps(result["warm_start"]), flush=True)


def fresh_copy(run: Path, target: Path) -> Path:
    """The run's config and checkpoints in `target`, with an empty knowledge store of its own."""
    if target.exists():
        shutil.rmtree(target)
    shutil.copytree(run, target, ignore=shutil.ignore_patterns("knowledge", "tensorboard"))
    return target


def family_counts(records: TaskRecords) -> dict[str, dict[str, int]]:
    counts: dict[str, dict[str, int]] = {}
    for split, family in zip(records.split, records.family):
        counts.setdefault(split, {})
        counts[split][str(family)] = counts[split].get(str(family), 0) + 1
    return counts


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--protonet-run", type=Path, required=True, help="a trained Omniglot 5-way 1-shot ProtoNets run"
    )
    parser.add_argument("--maml-run", type=Path, help="a trained Omniglot 5-way 1-shot MAML run (default: train one)")
    parser.add_argument("--maml-train-command", help="how --maml-run was trained, recorded in the JSON as given")
    parser.add_argument("--maml-steps", type=int, default=1500, help="meta-training steps of the MAML trained here")
    parser.add_argument("--stored-train", type=int, default=300)
    parser.add_argument("--stored-test", type=int, default=300)
    parser.add_argument("--store-steps", type=int, default=20)
    parser.add_argument("--tasks", type=int, default=600)
    parser.add_argument("--work-dir", type=Path, default=Path("runs/knowledge-base-omniglot"))
    parser.add_argument("--json", type=Path, default=ROOT / "benchmarks/results/knowledge_base_omniglot.json")
    args = parser.parse_args()
    torch.set_num_threads(1)
    started = time.perf_counter()
    output = {
        "command": "python benchmarks/knowledge_base_omniglot.py " + " ".join(sys.argv[1:]),
        "machine": {
            "platform": platform.platform(),
            "processor": platform.processor(),
            "torch": torch.__version__,
            "threads": torch.get_num_threads(),
        },
        "task": "omniglot 5-way 1-shot, 5 query drawings per class; alphabets split 5 train / 1 val / 2 test",
    }

    def save(done: bool = False) -> None:
        output["complete"] = done
        output["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
        output["wall_seconds"] = round(time.perf_counter() - started, 1)
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(output, indent=2) + "\n")

    maml_started = time.perf_counter()
    maml_run = trained_maml(args)
    output["maml_train_command"] = args.maml_train_command
    output["maml_training_seconds"] = None if args.maml_run else round(time.perf_counter() - maml_started, 1)
    output["protonet"], output["maml"] = {}, {}
    measure("protonet", args.protonet_run, args, ("features",), False, output["protonet"], save)
    measure("maml", maml_run, args, ("features", "gradient", "adapted"), True, output["maml"], save)
    save(done=True)
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
