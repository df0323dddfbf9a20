"""The layout of a distributed run in its storage: `<storage>/<name>/`.

Ray Train owns the `checkpoint_*` folders (each holds one of our `step_*.pt`
files; `training.checkpoint.newest_readable_checkpoint` finds the newest whole one);
rank 0 adds `metrics.jsonl`, `tensorboard/`, `workers.json`; the driver adds
`session.json` (which driver owns the run: `runtime.session`) and `summary.json`.
Rank 0 writes the final meta-test, taken on the workers, to `meta_test.json`.
A worker's user error reaches the driver through an actor (`runtime.worker_errors`),
not through the storage.
"""

WORKERS_FILE = "workers.json"
META_TEST_FILE = "meta_test.json"
