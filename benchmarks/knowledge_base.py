"""Knowledge base: family identification, warm starts, and lookup latency.

    nice -n 10 python benchmarks/knowledge_base.py [--steps 6000] [--stored 2000] [--tasks 600]
        [--sizes 10000,100000,1000000] [--json benchmarks/results/knowledge_base.json]

1. A 5-family regression stand-in (multimodal regression is not on main): MMAML's simple
   functions (Vuorio et al. 2019, `maml/datasets/simple_functions.py`): sinusoid, linear,
   quadratic, |x| (l1 norm) and tanh, x ~ U[-5, 5], Gaussian noise 0.3 on every target, 5-shot.
   MAML (1-40-40-1, inner lr 0.01, 1 inner step, meta-batch 25) is meta-trained in this process
   for --steps steps; `--stored` tasks of the train stream are stored (as `distmeta kb build`:
   features embedding, adaptation of --store-steps steps on the whole task); then on --tasks
   held-out test tasks: the nearest stored task's family (top-1; both embeddings, both
   metrics), and the query MSE after 1 inner step from the plain MAML initialisation and from
   the knowledge base's warm start (k = 1, 5, 10 neighbours), mean +- 95% interval.
2. Lookup latency (p50 / p99 of one query, and queries/s) at each of --sizes stored tasks of 64
   entries (random: exact search's time does not depend on the values): the exact index in this
   process (brute force), the same index served by a Ray actor (4 concurrent clients), and
   faiss-cpu's exact IndexFlatIP when faiss is importable (an optional dependency).
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from distmeta.config import config_hash, load_config  # noqa: E402
from distmeta.evaluation import mean_and_ci95  # noqa: E402
from distmeta.experiment import build_experiment  # noqa: E402
from distmeta.knowledge import (  # noqa: E402
    EmbeddingSpec,
    ExactIndex,
    KnowledgeBase,
    KnowledgeStore,
    build_header,
    build_records,
    task_embedding,
)
from distmeta.tasks import SPLITS, TaskBatch, task_seed  # noqa: E402
from distmeta.training.checkpoint import save_checkpoint  # noqa: E402
from distmeta.training.trainer import initial_state, meta_step  # noqa: E402

FAMILIES = ("sinusoid", "linear", "quadratic", "l1norm", "tanh")
WARM_START_NEIGHBOURS = (1, 5, 10)
NOISE = 0.3


class SimpleFunctionTasks:
    """MMAML's five simple function families; the family is the first draw of a task's seed."""

    is_classification = False
    output_size = 1

    def __init__(self, shots: int, query_shots: int):
        self.shots, self.query_shots = shots, query_shots

    def task_family(self, seed: int) -> str:
        return FAMILIES[int(np.random.default_rng(seed).integers(len(FAMILIES)))]

    def sample(self, num_tasks: int, seed: int) -> TaskBatch:
        rng = np.random.default_rng(seed)
        xs, ys = [], []
        for _ in range(num_tasks):
            family = FAMILIES[int(rng.integers(len(FAMILIES)))]
            x = rng.uniform(-5, 5, size=(self.shots + self.query_shots, 1))
            xs.append(x)
            ys.append(function_values(family, x, rng) + rng.normal(0, NOISE, size=x.shape))
        x, y = torch.from_numpy(np.stack(xs)).float(), torch.from_numpy(np.stack(ys)).float()
        k = self.shots
        return TaskBatch(x[:, :k], y[:, :k], x[:, k:], y[:, k:], seed=seed)


def function_values(family: str, x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """MMAML's FiveFunctionsMetaDataset ranges: slopes and tanh/|x| scales U[-3, 3], centres and
    biases U[-3, 3], quadratic curvature +-U[0.02, 0.15]."""
    if family == "sinusoid":
        return rng.uniform(0.1, 5.0) * np.sin(x - rng.uniform(0, np.pi))
    if family == "linear":
        return rng.uniform(-3, 3) * x + rng.uniform(-3, 3)
    slope, center, bias = rng.uniform(-3, 3), rng.uniform(-3, 3), rng.uniform(-3, 3)
    if family == "quadratic":
        curvature = rng.uniform(0.02, 0.15) * rng.choice([-1.0, 1.0])
        return curvature * (x - center) ** 2 + bias
    if family == "l1norm":
        return slope * np.abs(x - center) + bias
    return slope * np.tanh(x - center) + bias


# ---------------------------------------------------------------- 1. identification and warm starts


def train_learner(run_dir: Path, steps: int):
    config = load_config(ROOT / "benchmarks/configs/sinusoid_maml.yaml",
                         [f"train.steps={steps}", f"train.run_dir={run_dir}", "algorithm.test_inner_steps=10"])
    experiment = build_experiment(config, check_data=False)
    for split in SPLITS:  # the stand-in family in place of the config's sinusoid
        experiment._distributions[split] = SimpleFunctionTasks(config.task.shots, config.task.query_shots)
    state = initial_state(experiment)
    started = time.perf_counter()
    while state.step < steps:
        meta_step(experiment, state)
    save_checkpoint(run_dir, state.step, config, state.meta_params, state.optimizer.state_dict(), {})
    return config, experiment, state, time.perf_counter() - started


def identification_and_warm_start(args, run_dir: Path) -> dict:
    config, experiment, state, train_s = train_learner(run_dir, args.steps)
    algorithm, params, tasks = experiment.algorithm, state.meta_params, experiment.tasks("train")
    test_seeds = [task_seed(config.seed, "test", 0, i) for i in range(args.tasks)]
    test_tasks = [tasks.sample(1, seed) for seed in test_seeds]
    test_families = [tasks.task_family(seed) for seed in test_seeds]
    result = {"train_seconds": round(train_s, 1), "meta_steps": state.step, "stored_tasks": args.stored,
              "held_out_tasks": args.tasks, "store_steps": args.store_steps, "test_inner_steps": 10,
              "embeddings": {}}
    spec = EmbeddingSpec("features", 64, config.seed)
    started = time.perf_counter()
    records = build_records(algorithm, params, tasks, run_seed=config.seed, split="train",
                            indices=range(args.stored), inner_steps=10, store_steps=args.store_steps, spec=spec)
    result["build_seconds"] = round(time.perf_counter() - started, 1)
    header = build_header(algorithm, params, run=run_dir.name, config_hash=config_hash(config), step=state.step,
                          spec=spec, inner_steps=10, store_steps=args.store_steps)
    KnowledgeStore(run_dir).append(header, records)  # the default kind, as `distmeta kb build` stores it
    for kind in ("features", "gradient"):
        kind_spec = EmbeddingSpec(kind, 64, config.seed)
        if kind != "features":  # the same stored tasks and adaptations, embedded the other way
            embeddings = [task_embedding(kind_spec, algorithm, params, *first_support(tasks, seed))
                          for seed in records.task_seed]
            records = replace(records, embedding=torch.stack(embeddings))
            header = replace(header, embedding_kind=kind)
        bases = {metric: KnowledgeBase(header, records, metric) for metric in ("euclidean", "cosine")}
        result["embeddings"][kind] = evaluate_kind(algorithm, params, bases, test_tasks, test_families, kind_spec)
        print(kind, json.dumps(result["embeddings"][kind]), flush=True)
    return result


def first_support(tasks, seed):
    task = tasks.sample(1, seed)
    return task.support_x[0], task.support_y[0]


def evaluate_kind(algorithm, params, bases, test_tasks, test_families, spec) -> dict:
    hits = {metric: [] for metric in bases}
    plain, warm = [], {(metric, k): [] for metric in bases for k in WARM_START_NEIGHBOURS}
    for task, family in zip(test_tasks, test_families):
        sx, sy, qx, qy = (t[0] for t in task.tensors())
        embedding = task_embedding(spec, algorithm, params, sx, sy)
        plain.append(query_mse(algorithm, params, sx, sy, qx, qy))
        for metric, base in bases.items():
            hits[metric].append(base.nearest(embedding, 1)[0].family == family)
            for k in WARM_START_NEIGHBOURS:
                delta = base.warm_start_delta(embedding, k)
                start = {**params, **{name: params[name] + value for name, value in delta.items()}}
                warm[(metric, k)].append(query_mse(algorithm, start, sx, sy, qx, qy))
    summary = {f"top1_family_{metric}": mean_ci(values) for metric, values in hits.items()}
    summary["chance"] = 1 / len(FAMILIES)
    summary["mse_1_step_plain"] = mean_ci(plain)
    for (metric, k), values in warm.items():
        summary[f"mse_1_step_warm_start_{metric}_k{k}"] = mean_ci(values)
        summary[f"mse_reduction_{metric}_k{k}"] = round(1 - float(np.mean(values)) / float(np.mean(plain)), 4)
    return summary


def query_mse(algorithm, start, sx, sy, qx, qy) -> float:
    adapted = algorithm.adapt(start, sx, sy, 1, differentiable=False)
    with torch.no_grad():
        return float(algorithm.loss(algorithm.predict(start, adapted, qx), qy))


def mean_ci(values) -> dict:
    mean, ci = mean_and_ci95(torch.tensor([float(v) for v in values], dtype=torch.float64))
    return {"mean": round(mean, 4), "ci95": round(ci, 4)}


# ---------------------------------------------------------------- 2. lookup latency


def latency(search, queries: torch.Tensor, repeats: int) -> dict:
    times = []
    for i in range(repeats):
        started = time.perf_counter()
        search(queries[i % len(queries)].unsqueeze(0))
        times.append(time.perf_counter() - started)
    times_ms = np.array(times) * 1e3
    return {"p50_ms": round(float(np.percentile(times_ms, 50)), 3),
            "p99_ms": round(float(np.percentile(times_ms, 99)), 3)}


def throughput(search, queries: torch.Tensor, clients: int, per_client: int) -> float:
    """Single-query requests per second from `clients` threads at once."""
    def client(offset: int):
        for i in range(per_client):
            search(queries[(offset + i) % len(queries)].unsqueeze(0))

    started = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        list(pool.map(client, range(clients)))
    return round(clients * per_client / (time.perf_counter() - started), 1)


def lookup_latency(args) -> dict:
    import ray

    from distmeta.runtime.knowledge import serve_index

    faiss = optional_faiss()
    ray.init(num_cpus=2, include_dashboard=False, configure_logging=False, log_to_driver=False)
    rows = []
    try:
        for size in args.sizes:
            generator = torch.Generator().manual_seed(size)
            stored = torch.randn(size, 64, generator=generator)
            queries = torch.randn(256, 64, generator=generator)
            repeats = 200 if size <= 100_000 else 50
            index = ExactIndex(stored, "cosine")
            row = {"stored": size, "index_mb": round(index.nbytes / 2**20, 1)}
            row["brute_force"] = {**latency(lambda q: index.search(q, 5), queries, repeats),
                                  "queries_per_s_batch_256": round(256 / timed(lambda: index.search(queries, 5)), 1)}
            served = serve_index(stored, "cosine", max_concurrency=4, num_cpus=1)
            try:
                row["ray_actor"] = {**latency(lambda q: served.search(q, 5), queries, repeats),
                                    "queries_per_s_4_clients": throughput(lambda q: served.search(q, 5), queries, 4,
                                                                          repeats // 4)}
                same = torch.equal(served.search(queries, 5).indices, index.search(queries, 5).indices)
                row["ray_actor"]["same_neighbours_as_brute_force"] = same
            finally:
                served.stop()
            if faiss is not None:
                row["faiss_flat_ip"] = faiss_row(faiss, stored, queries, index, repeats)
            print(json.dumps(row), flush=True)
            rows.append(row)
    finally:
        ray.shutdown()
    return {"faiss": faiss.__version__ if faiss else "not importable (optional: pip install faiss-cpu)",
            "rows": rows}


def faiss_row(faiss, stored, queries, index, repeats) -> dict:
    unit = torch.nn.functional.normalize(stored, dim=1).numpy()
    flat = faiss.IndexFlatIP(unit.shape[1])
    flat.add(unit)
    unit_queries = torch.nn.functional.normalize(queries, dim=1).numpy()

    def search(q):
        return flat.search(torch.nn.functional.normalize(q, dim=1).numpy(), 5)

    _, found = flat.search(unit_queries, 5)
    same = bool((found == index.search(queries, 5).indices.numpy()).mean() > 0.99)
    return {**latency(search, queries, repeats),
            "queries_per_s_batch_256": round(256 / timed(lambda: flat.search(unit_queries, 5)), 1),
            "same_neighbours_as_brute_force": same}


def timed(function) -> float:
    function()
    started = time.perf_counter()
    function()
    return time.perf_counter() - started


def optional_faiss():
    try:
        import faiss
    except ImportError:
        return None
    return faiss


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=6000)
    parser.add_argument("--stored", type=int, default=2000)
    parser.add_argument("--store-steps", type=int, default=100)
    parser.add_argument("--tasks", type=int, default=600)
    parser.add_argument("--sizes", default="10000,100000,1000000")
    parser.add_argument("--run-dir", type=Path, default=Path("runs/knowledge-base-bench"))
    parser.add_argument("--json", type=Path, default=ROOT / "benchmarks/results/knowledge_base.json")
    parser.add_argument("--skip-latency", action="store_true")
    args = parser.parse_args()
    args.sizes = [int(s) for s in args.sizes.split(",") if s]
    torch.set_num_threads(1)
    started = time.perf_counter()
    output = {"command": "python benchmarks/knowledge_base.py " + " ".join(sys.argv[1:]),
              "machine": {"platform": platform.platform(), "processor": platform.processor(),
                          "torch": torch.__version__, "threads": torch.get_num_threads()},
              "stand_in": "MMAML's 5 simple function families (sinusoid, linear, quadratic, l1norm, tanh), "
                          "noise 0.3, 5-shot: the multimodal family of the task-conditioned issue is not on main"}
    output["identification_and_warm_start"] = identification_and_warm_start(args, args.run_dir)
    if not args.skip_latency:
        output["lookup"] = lookup_latency(args)
    output["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    output["wall_seconds"] = round(time.perf_counter() - started, 1)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(output, indent=2) + "\n")
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
