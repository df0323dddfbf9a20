"""The pure-torch engine (algorithms, models, tasks, execution) imports neither Ray nor the application config."""

import subprocess
import sys

ENGINE = [
    "distmeta.algorithms",
    "distmeta.algorithms.truncated",
    "distmeta.models",
    "distmeta.tasks",
    "distmeta.learned_optimizers",
    "distmeta.learned_optimizers.meta_training",
    "distmeta.learned_optimizers.evaluation",
    "distmeta.tasks.quadratic",
    "distmeta.tasks.digits",
    "distmeta.tasks.omniglot",
    "distmeta.tasks.multimodal",
    "distmeta.execution",
    "distmeta.knowledge",
]


def test_the_engine_imports_neither_ray_nor_the_config():
    code = (
        f"import sys\nfor name in {ENGINE!r}:\n    __import__(name)\n"
        "print(sorted(m for m in sys.modules if m == 'ray' or m.startswith('ray.') or m == 'distmeta.config'))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
