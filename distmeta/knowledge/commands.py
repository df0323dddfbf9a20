"""The `distmeta kb build|stats|query RUN` commands: parsed arguments in, lines a person reads out."""

from __future__ import annotations

import importlib.util
import time
from dataclasses import dataclass

from distmeta.api import Learner, load
from distmeta.config import config_hash
from distmeta.errors import DistmetaError
from distmeta.knowledge.build import build_header, build_records, shard
from distmeta.knowledge.embeddings import EmbeddingSpec
from distmeta.knowledge.plot import plot_embeddings
from distmeta.knowledge.store import KnowledgeStore
from distmeta.storage import location
from distmeta.tasks import task_seed


def run_kb(args) -> int:
    if args.kb_command == "build":
        return kb_build(args)
    if args.kb_command == "stats":
        return kb_stats(args)
    return kb_query(args)


def kb_build(args) -> int:
    if args.tasks < 1:
        raise DistmetaError(f"--tasks: must be positive, got {args.tasks}")
    if args.store_steps < 0:
        raise DistmetaError(f"--store-steps: must be 0 or more, got {args.store_steps}")
    if args.workers:
        args.writers = args.workers  # one shard per Ray worker
    if args.writers < 1 or args.writers > args.tasks:
        raise DistmetaError(f"--writers/--workers: must be in [1, --tasks], got {args.writers}")
    learner = load(args.run, device=args.device)
    spec = build_spec(KnowledgeStore(learner.run_dir), learner, args.embedding, args.size)
    request = BuildRequest(
        args.tasks,
        args.split,
        spec.kind,
        spec.size,
        learner.algorithm.test_inner_steps if args.inner_steps is None else args.inner_steps,
        args.store_steps,
        args.writers,
    )
    started = time.perf_counter()
    if args.workers:
        from distmeta.runtime.knowledge import build_on_ray

        written = build_on_ray(learner.run_dir, request, args.workers, args.address)
    else:
        written = [write_shard(learner, request, rank) for rank in range(request.writers)]
    for path, rows in written:
        print(f"wrote {rows} record(s) to {path}")
    print(
        f"{args.tasks} task(s) of the {args.split} split at step {learner.step}, {spec.kind} embedding of "
        f"{spec.size}, {request.inner_steps} inner step(s), in {time.perf_counter() - started:.1f} s"
    )
    return 0


@dataclass(frozen=True)
class BuildRequest:
    """What `kb build` stores: the same for every writer, which takes shard `rank` of `writers`."""

    tasks: int
    split: str
    embedding: str
    size: int
    inner_steps: int
    store_steps: int
    writers: int


def write_shard(learner: Learner, request: BuildRequest, rank: int) -> tuple[str, int]:
    """Build shard `rank` of `request` and append it to the run's store as one file: (its path, rows).
    The same function runs in this process and in Ray workers (`distmeta.runtime.knowledge`)."""
    if learner.run_dir is None:
        raise DistmetaError("this learner has no run folder to build a knowledge store in: load it from a run")
    spec = EmbeddingSpec(request.embedding, request.size, learner.config.seed)
    # the split's own number of ways: a run may meta-train on wider tasks (task.train_ways)
    algorithm, meta_params = learner.experiment.algorithm_for(request.split, learner.meta_params)
    records = build_records(
        algorithm,
        meta_params,
        learner.experiment.tasks(request.split),
        run_seed=learner.config.seed,
        split=request.split,
        indices=shard(request.tasks, rank, request.writers),
        inner_steps=request.inner_steps,
        store_steps=request.store_steps,
        spec=spec,
    )
    header = build_header(
        algorithm,
        meta_params,
        run=learner.run_dir.name,
        config_hash=config_hash(learner.config),
        step=learner.step,
        spec=spec,
        inner_steps=request.inner_steps,
        store_steps=request.store_steps,
        writer=f"kb-build-{rank}-of-{request.writers}",
    )
    return str(KnowledgeStore(learner.run_dir).append(header, records)), len(records)


def build_spec(store: KnowledgeStore, learner: Learner, kind: str | None, size: int | None) -> EmbeddingSpec:
    """The embedding of a build: as asked, else the one the store's records of this step use, else the default."""
    existing = [header for header, _ in store.read(config_hash(learner.config)) if header.step == learner.step]
    spec = EmbeddingSpec(
        kind or (existing[0].embedding_kind if existing else EmbeddingSpec.kind),
        size or (existing[0].embedding_size if existing else EmbeddingSpec.size),
        learner.config.seed,
    )
    if existing and (existing[0].embedding_kind, existing[0].embedding_size) != (spec.kind, spec.size):
        raise DistmetaError(
            f"--embedding/--size: the store already holds {existing[0].embedding_kind} embeddings "
            f"of size {existing[0].embedding_size} for step {learner.step}; one step has one space"
        )
    return spec


def kb_stats(args) -> int:
    learner = load(args.run, device="cpu")
    store = KnowledgeStore(learner.run_dir)
    parts = store.read(config_hash(learner.config))
    print(
        f"{store.folder}: {len(parts)} file(s), {sum(len(records) for _, records in parts)} record(s); "
        f"the learner is at step {learner.step}"
    )
    for step in sorted({header.step for header, _ in parts}):
        header, records = store.load(config_hash(learner.config), step)
        state = "current" if step == learner.step else "stale: older meta-parameters"
        metric = "accuracy" if learner.config.is_classification else "mse"
        print(
            f"step {step} ({state}): {len(records)} record(s), {header.embedding_kind} embedding of "
            f"{header.embedding_size}, {header.inner_steps} inner step(s) (stored adaptations: "
            f"{header.store_steps} step(s) on the whole task); query {metric} before adaptation "
            f"{finite_mean(records.metrics['score_before'])}, after {finite_mean(records.metrics['score_after'])}"
        )
        families = family_counts(records.family)
        if families:
            print("  families: " + ", ".join(f"{name} {count}" for name, count in families.items()))
    if learner.step in {header.step for header, _ in parts}:
        header, records = store.load(config_hash(learner.config), learner.step)
        path = args.plot or store.folder / "embeddings.png"
        if importlib.util.find_spec("matplotlib") is None:
            print("no plot: matplotlib is not installed (pip install 'distmeta[plot]')")
            return 0
        title = (
            f"{learner.run_dir.name}: {len(records)} tasks at step {learner.step} ({header.embedding_kind} "
            f"embedding, PCA)"
        )
        location(path).write_with(lambda file: plot_embeddings(file, records.embedding, records.family, title))
        print(f"plot: {path}")
    return 0


def finite_mean(values) -> str:
    """The mean of the finite values, and how many were not (a task whose adaptation diverged)."""
    finite = values[values.isfinite()]
    mean = f"{float(finite.mean()):.4f}" if len(finite) else "-"
    diverged = len(values) - len(finite)
    return mean + (f" ({diverged} task(s) diverged: NaN or infinite)" if diverged else "")


def family_counts(families: list[str | None]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for family in families:
        if family is not None:
            counts[family] = counts.get(family, 0) + 1
    return dict(sorted(counts.items()))


def kb_query(args) -> int:
    learner = load(args.run, device="cpu")
    learner.knowledge_metric = args.metric
    distribution = learner.experiment.tasks(args.split)
    seed = task_seed(learner.config.seed, args.split, 0, args.task_index)
    support_x, support_y, query_x, query_y = (t[0] for t in distribution.sample(1, seed).tensors())
    family = getattr(distribution, "task_family", lambda _: None)(seed)
    print(f"task {args.task_index} of the {args.split} split (seed {seed})" + (f", family {family}" if family else ""))
    similar = learner.similar_tasks(support_x, support_y, args.k)
    print(f"{'rank':>4} | {args.metric + ' distance':>18} | {'task':>6} | {'family':>12} | query loss after")
    for rank, task in enumerate(similar, 1):
        print(
            f"{rank:>4} | {task.distance:>18.4f} | {task.task_index:>6} | {task.family or '-':>12} | "
            f"{task.loss_after:.4f}"
        )
    if learner.knowledge.header.delta_size:
        steps = learner.algorithm.test_inner_steps if args.inner_steps is None else args.inner_steps
        for warm_start in (None, "knowledge"):
            model = learner.adapt(support_x, support_y, steps, warm_start=warm_start, neighbours=args.k)
            loss = float(learner.algorithm.loss(model.outputs(query_x), query_y))
            print(f"query loss after {steps} step(s) from {warm_start or 'the meta-parameters'}: {loss:.4f}")
    return 0
