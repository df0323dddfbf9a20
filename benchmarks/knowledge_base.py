"""Knowledge base: family identification, warm starts, and lookup latency.

    nice -n 10 python benchmarks/knowledge_base.py [--steps 6000] [--stored 1000] [--tasks 600]
        [--sizes 10000,100000,1000000] [--skip-latency] [--json benchmarks/results/knowledge_base.json]

1. The multimodal regression family (`task.name: multimodal`, distmeta/tasks/multimodal.py: MMAML's
   sinusoid, linear, quadratic, tanh and |x| with the authors' ranges, noise 0.3), 5-shot, 10 query
   points. MAML (1-40-40-1, inner lr 0.01, 1 inner step, meta-batch 25) is meta-trained in this
   process for --steps steps; `--stored` tasks of the train split's build stream are stored (as
   `distmeta kb build`: adaptation of --store-steps steps on the whole task); then on --tasks
   held-out test tasks, for each embedding (the library's `features`, `gradient`, `adapted`, and two
   candidates measured here only: the gradient normalised per layer, and task2vec's diagonal Fisher
   averaged per unit): the nearest stored task's family (top-1, Euclidean and cosine; and the
   majority of the 10 nearest), and the query MSE after 1 inner step from the plain MAML
   initialisation and from warm starts: the inverse-distance mean of the 5 nearest, and the fitted
   warm start (`Learner.adapt`'s: of the embedding's 50 nearest, the 5 whose stored models fit the
   support set best, softmax(-loss / 0.2)); for the default embedding also other k, temperatures
   and candidate counts. References that need no embedding: the Bayes-optimal family
   (benchmarks/multimodal_bayes.py: the generator's own likelihoods, the ceiling of any
   identification) and the family of the stored model that fits the support set best among all
   stored tasks. Mean +- 95% interval over the held-out tasks.
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
from pathlib import Path

import numpy as np
import torch
from torch.func import functional_call, vmap

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.multimodal_bayes import bayes_hits  # noqa: E402
from distmeta.config import config_hash, load_config  # noqa: E402
from distmeta.evaluation import mean_and_ci95  # noqa: E402
from distmeta.experiment import build_experiment  # noqa: E402
from distmeta.knowledge import (  # noqa: E402
    DEFAULT_KIND,
    EmbeddingSpec,
    ExactIndex,
    KnowledgeBase,
    KnowledgeStore,
    build_header,
    build_records,
    task_embedding,
)
from distmeta.knowledge.embeddings import embedded_parameter_names, projection  # noqa: E402
from distmeta.knowledge.records import split_delta  # noqa: E402
from distmeta.knowledge.warm_start import support_loss_of  # noqa: E402
from distmeta.tasks import task_seed  # noqa: E402
from distmeta.training.checkpoint import save_checkpoint  # noqa: E402
from distmeta.training.trainer import initial_state, meta_step  # noqa: E402

TASK = [
    "task.name=multimodal",
    "task.modes=[sinusoid, linear, quadratic, tanh, abs]",
    "task.noise_std=0.3",
    "task.shots=5",
    "task.query_shots=10",
]
KINDS = ("features", "gradient", "adapted", "gradient_per_layer", "fisher")
"""The library's embeddings, then two candidates measured here only."""
TEST_INNER_STEPS = 10
FITTED = {"candidates": 50, "k": 5, "temperature": 0.2}
"""`Learner.adapt`'s fitted warm start (distmeta.knowledge.warm_start's defaults, k = neighbours = 5)."""
FITTED_VARIANTS = [(50, 1, 0.2), (50, 5, 0.05), (50, 5, 1.0), (50, 20, 0.2), (200, 5, 0.2)]
"""(candidates, k, temperature) measured for the default embedding besides FITTED."""


# ---------------------------------------------------------------- 1. identification and warm starts


def train_learner(run_dir: Path, steps: int):
    config = load_config(
        ROOT / "benchmarks/configs/sinusoid_maml.yaml",
        [*TASK, f"train.steps={steps}", f"train.run_dir={run_dir}", f"algorithm.test_inner_steps={TEST_INNER_STEPS}"],
    )
    experiment = build_experiment(config, check_data=False)
    state = initial_state(experiment)
    started = time.perf_counter()
    while state.step < steps:
        meta_step(experiment, state)
    save_checkpoint(run_dir, state.step, config, state.meta_params, state.optimizer.state_dict(), {})
    return config, experiment, state, time.perf_counter() - started


def candidate_vector(kind: str, algorithm, params, support_x, support_y) -> torch.Tensor:
    """The raw vectors of the two embeddings measured here only."""
    names = embedded_parameter_names(algorithm, params)
    if kind == "gradient_per_layer":  # each parameter's gradient at unit length: no layer dominates
        grads = parameter_gradients(algorithm, params, names, support_x, support_y)
        return torch.cat([grad.reshape(-1) / grad.norm().clamp(min=1e-12) for grad in grads])
    # task2vec (Achille et al. 2019): the diagonal empirical Fisher, each point's squared gradient, per unit
    squares = [torch.zeros_like(params[name]) for name in names]
    for point in range(len(support_x)):
        grads = parameter_gradients(
            algorithm, params, names, support_x[point : point + 1], support_y[point : point + 1]
        )
        squares = [total + grad.square() for total, grad in zip(squares, grads)]
    return torch.cat([(total / len(support_x)).reshape(len(total), -1).mean(dim=1) for total in squares])


def parameter_gradients(algorithm, params, names, support_x, support_y) -> list[torch.Tensor]:
    leaves = {name: value.detach().requires_grad_(True) for name, value in params.items()}
    with torch.enable_grad():
        state = algorithm.adapt(leaves, support_x, support_y, 0, differentiable=True)
        loss = algorithm.loss(algorithm.predict(leaves, state, support_x), support_y)
        return list(torch.autograd.grad(loss, [leaves[name] for name in names]))


def embed(kind: str, algorithm, params, support_x, support_y, seed: int) -> torch.Tensor:
    if kind in ("features", "gradient", "adapted"):
        return task_embedding(EmbeddingSpec(kind, 64, seed), algorithm, params, support_x, support_y)
    raw = candidate_vector(kind, algorithm, params, support_x, support_y).detach().float()
    return raw @ projection(raw.numel(), 64, seed)


def stored_support_losses(algorithm, params, header, records, support_x, support_y) -> torch.Tensor:
    """The support loss of every stored model at once (vmap over the stored deltas: MAML's plain
    forward pass); the same numbers as `support_loss_of` row by row (checked on the first task)."""
    deltas = split_delta_rows(header, records.adapted_delta)
    stacked = {name: params[name].unsqueeze(0) + deltas[name] for name in header.adapted_names}

    def loss(model_params):
        return algorithm.loss(functional_call(algorithm.model, model_params, (support_x,)), support_y)

    with torch.no_grad():
        return vmap(loss)(stacked).double()


def split_delta_rows(header, rows: torch.Tensor) -> dict[str, torch.Tensor]:
    parts, start = {}, 0
    for name, shape in zip(header.adapted_names, header.adapted_shapes):
        size = int(np.prod(shape))
        parts[name] = rows[:, start : start + size].float().reshape(len(rows), *shape)
        start += size
    return parts


def identification_and_warm_start(args, run_dir: Path) -> dict:
    config, experiment, state, train_s = train_learner(run_dir, args.steps)
    algorithm, params = experiment.algorithm, state.meta_params
    store_tasks, test_tasks = experiment.tasks("train"), experiment.tasks("test")
    test_seeds = [task_seed(config.seed, "test", 0, i) for i in range(args.tasks)]
    tests = [[t[0] for t in test_tasks.sample(1, seed).tensors()] for seed in test_seeds]
    test_families = [test_tasks.task_family(seed) for seed in test_seeds]
    result = {
        "train_seconds": round(train_s, 1),
        "meta_steps": state.step,
        "stored_tasks": args.stored,
        "held_out_tasks": args.tasks,
        "store_steps": args.store_steps,
        "test_inner_steps": TEST_INNER_STEPS,
        "fitted_warm_start": FITTED,
        "chance": 1 / len(config.task.modes),
        "embeddings": {},
    }
    started = time.perf_counter()
    result["bayes_top1_family"] = mean_ci(bayes_hits(test_tasks, test_seeds))
    result["bayes_seconds"] = round(time.perf_counter() - started, 1)
    print("bayes", result["bayes_top1_family"], flush=True)
    spec = EmbeddingSpec(DEFAULT_KIND, 64, config.seed)
    started = time.perf_counter()
    records = build_records(
        algorithm,
        params,
        store_tasks,
        run_seed=config.seed,
        split="train",
        indices=range(args.stored),
        inner_steps=TEST_INNER_STEPS,
        store_steps=args.store_steps,
        spec=spec,
    )
    result["build_seconds"] = round(time.perf_counter() - started, 1)
    header = build_header(
        algorithm,
        params,
        run=run_dir.name,
        config_hash=config_hash(config),
        step=state.step,
        spec=spec,
        inner_steps=TEST_INNER_STEPS,
        store_steps=args.store_steps,
    )
    KnowledgeStore(run_dir).append(header, records)  # the default kind, as `distmeta kb build` stores it
    losses = [stored_support_losses(algorithm, params, header, records, sx, sy) for sx, sy, _, _ in tests]
    check = support_loss_of(algorithm, params, tests[0][0], tests[0][1])
    for row in range(3):
        assert abs(check(split_delta(header, records.adapted_delta[row])) - float(losses[0][row])) < 1e-4
    families = np.array(records.family)
    result["best_fit_top1_family"] = mean_ci(
        [
            families[int(torch.nan_to_num(loss, nan=torch.inf).argmin())] == family
            for loss, family in zip(losses, test_families)
        ]
    )
    plain = [query_mse(algorithm, params, *task) for task in tests]
    result["mse_1_step_plain"] = mean_ci(plain)
    base_all = KnowledgeBase(header, records)  # every stored task a candidate: the embedding does not matter
    result["fitted_all_stored_k5"] = warm_summary(
        plain,
        [
            query_mse(
                algorithm,
                warm_params(
                    params, fitted(base_all, records.embedding[0], loss, 5, len(records), FITTED["temperature"])
                ),
                *task,
            )
            for task, loss in zip(tests, losses)
        ],
    )
    print(
        "references",
        json.dumps({key: result[key] for key in ("best_fit_top1_family", "mse_1_step_plain", "fitted_all_stored_k5")}),
        flush=True,
    )
    store_supports = [[t[0] for t in store_tasks.sample(1, seed).tensors()][:2] for seed in records.task_seed]
    for kind in KINDS:
        started = time.perf_counter()
        stored = torch.stack([embed(kind, algorithm, params, sx, sy, config.seed) for sx, sy in store_supports])
        queries = [embed(kind, algorithm, params, sx, sy, config.seed) for sx, sy, _, _ in tests]
        kind_records = records.select(list(range(len(records))))
        kind_records.embedding = stored
        summary = evaluate_kind(
            algorithm,
            params,
            header,
            kind_records,
            tests,
            test_families,
            queries,
            losses,
            plain,
            variants=kind == DEFAULT_KIND,
        )
        summary["seconds"] = round(time.perf_counter() - started, 1)
        result["embeddings"][kind] = summary
        print(kind, json.dumps(summary), flush=True)
    return result


def evaluate_kind(
    algorithm, params, header, records, tests, test_families, queries, losses, plain, variants: bool
) -> dict:
    bases = {metric: KnowledgeBase(header, records, metric) for metric in ("euclidean", "cosine")}
    families = np.array(records.family)
    summary = {}
    for metric, base in bases.items():
        summary[f"top1_family_{metric}"] = mean_ci(
            [base.nearest(query, 1)[0].family == family for query, family in zip(queries, test_families)]
        )
    votes = []
    for query, family in zip(queries, test_families):
        nearest = list(families[bases["euclidean"].index.search(query, 10).indices[0].numpy()])
        votes.append(max(set(nearest), key=nearest.count) == family)
    summary["vote10_family_euclidean"] = mean_ci(votes)
    base = bases["euclidean"]
    summary["warm_inverse_distance_k5"] = warm_summary(
        plain,
        [
            query_mse(algorithm, warm_params(params, base.warm_start_delta(query, 5)), *task)
            for query, task in zip(queries, tests)
        ],
    )
    settings = [(FITTED["candidates"], FITTED["k"], FITTED["temperature"])] + (FITTED_VARIANTS if variants else [])
    for candidates, k, temperature in settings:
        summary[f"warm_fitted_c{candidates}_k{k}_t{temperature}"] = warm_summary(
            plain,
            [
                query_mse(algorithm, warm_params(params, fitted(base, query, loss, k, candidates, temperature)), *task)
                for query, task, loss in zip(queries, tests, losses)
            ],
        )
    return summary


def fitted(base: KnowledgeBase, query, losses: torch.Tensor, k: int, candidates: int, temperature: float):
    """`KnowledgeBase.fitted_warm_start_delta`, with every stored model's support loss computed at once."""
    rows = base.index.search(query, candidates).indices[0]
    return base.fitted_delta(rows, losses[rows], k, temperature)


def warm_params(params, delta: dict[str, torch.Tensor]):
    return {**params, **{name: params[name] + value for name, value in delta.items()}}


def warm_summary(plain: list[float], warm: list[float]) -> dict:
    return {**mean_ci(warm), "change": round(float(np.mean(warm)) / float(np.mean(plain)) - 1, 4)}


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
    return {
        "p50_ms": round(float(np.percentile(times_ms, 50)), 3),
        "p99_ms": round(float(np.percentile(times_ms, 99)), 3),
    }


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
            row["brute_force"] = {
                **latency(lambda q: index.search(q, 5), queries, repeats),
                "queries_per_s_batch_256": round(256 / timed(lambda: index.search(queries, 5)), 1),
            }
            served = serve_index(stored, "cosine", max_concurrency=4, num_cpus=1)
            try:
                row["ray_actor"] = {
                    **latency(lambda q: served.search(q, 5), queries, repeats),
                    "queries_per_s_4_clients": throughput(lambda q: served.search(q, 5), queries, 4, repeats // 4),
                }
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
    return {"faiss": faiss.__version__ if faiss else "not importable (optional: pip install faiss-cpu)", "rows": rows}


def faiss_row(faiss, stored, queries, index, repeats) -> dict:
    unit = torch.nn.functional.normalize(stored, dim=1).numpy()
    flat = faiss.IndexFlatIP(unit.shape[1])
    flat.add(unit)
    unit_queries = torch.nn.functional.normalize(queries, dim=1).numpy()

    def search(q):
        return flat.search(torch.nn.functional.normalize(q, dim=1).numpy(), 5)

    _, found = flat.search(unit_queries, 5)
    same = bool((found == index.search(queries, 5).indices.numpy()).mean() > 0.99)
    return {
        **latency(search, queries, repeats),
        "queries_per_s_batch_256": round(256 / timed(lambda: flat.search(unit_queries, 5)), 1),
        "same_neighbours_as_brute_force": same,
    }


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
    parser.add_argument("--stored", type=int, default=1000)
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
    output = {
        "command": "python benchmarks/knowledge_base.py " + " ".join(sys.argv[1:]),
        "machine": {
            "platform": platform.platform(),
            "processor": platform.processor(),
            "torch": torch.__version__,
            "threads": torch.get_num_threads(),
        },
        "task": TASK,
    }
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
