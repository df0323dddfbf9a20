"""Learned-optimiser runs: `distmeta train / eval / bench` and `distmeta.load` for a config
whose `algorithm.name` is `learned_optimizer`.

The math (rules, estimators, unrolls, optimisee families, baselines) is the pure-torch
`distmeta.learned_optimizers` and `distmeta.algorithms.truncated`; this package maps the
application config onto it, shares the persistent unrolls of a meta-batch among ranks by
task index, checkpoints them, and compares a trained rule with tuned baselines. The Ray
worker that runs it is `distmeta.runtime.optimizer_worker`.

- `settings`: the config's learned-optimiser section checked, and the pieces it describes;
- `training`: the run state, one rank's meta-step, the loop, in-process training;
- `unroll_states`: the persistent unrolls in checkpoints, keyed by task index;
- `trained`: what `distmeta.load(run)` returns for such a run (`.optimizer(params)`);
- `comparison`: `distmeta eval` of a trained rule against tuned hand-designed optimisers.
"""
