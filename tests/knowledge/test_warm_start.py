"""Use: similar tasks and warm starts through the Python API, and the `distmeta kb` commands."""

import pytest
import torch

import distmeta
from distmeta.cli import main
from distmeta.errors import KnowledgeBaseError
from distmeta.knowledge.build import BUILD_STREAM
from distmeta.knowledge.records import split_delta
from distmeta.knowledge.warm_start import support_loss_of
from distmeta.tasks import task_seed
from tests.knowledge.helpers import fill, sinusoid_run


def stored_task(learner, index):
    seed = task_seed(learner.config.seed, "train", BUILD_STREAM, index)
    return learner.experiment.tasks("train").sample(1, seed)


def test_a_stored_task_is_its_own_nearest_similar_task(tmp_path):
    config, experiment, params = sinusoid_run(tmp_path)
    fill(tmp_path, config, experiment, params, tasks=20)
    learner = distmeta.load(tmp_path)
    task = stored_task(learner, 11)
    similar = learner.similar_tasks(task.support_x[0], task.support_y[0], k=3)
    assert [s.task_index for s in similar][0] == 11 and similar[0].distance < 1e-5
    assert similar[0].distance <= similar[1].distance <= similar[2].distance


def test_a_warm_start_starts_at_the_stored_model_that_fits_the_support_set_best(tmp_path):
    config, experiment, params = sinusoid_run(tmp_path)
    fill(tmp_path, config, experiment, params, tasks=20)
    learner = distmeta.load(tmp_path)
    task = stored_task(learner, 4)
    support_x, support_y = task.support_x[0], task.support_y[0]
    support_loss = support_loss_of(learner.algorithm, learner.meta_params, support_x, support_y)
    base = learner.knowledge
    losses = [support_loss(split_delta(base.header, row)) for row in base.records.adapted_delta]
    warm = learner.adapt(support_x, support_y, steps=0, warm_start="knowledge", neighbours=1)
    plain = learner.adapt(support_x, support_y, steps=0)
    loss = {
        name: float(((model.predict(support_x) - support_y) ** 2).mean())
        for name, model in (("warm", warm), ("plain", plain))
    }
    # 20 stored tasks, all among the candidates: the best of them, not the plain start
    assert loss["warm"] == pytest.approx(min(losses), rel=1e-5)
    assert loss["warm"] < loss["plain"]


def test_a_warm_start_without_a_knowledge_base_says_how_to_build_one(tmp_path):
    sinusoid_run(tmp_path)
    learner = distmeta.load(tmp_path)
    with pytest.raises(KnowledgeBaseError, match="kb build"):
        learner.adapt(torch.zeros(5, 1), torch.zeros(5, 1), warm_start="knowledge")
    with pytest.raises(distmeta.errors.DistmetaError, match="warm_start"):
        learner.adapt(torch.zeros(5, 1), torch.zeros(5, 1), warm_start="nearest")


def test_kb_build_stats_and_query_from_the_command_line(tmp_path, capsys):
    sinusoid_run(tmp_path)
    assert (
        main(["kb", "build", str(tmp_path), "--tasks", "12", "--writers", "2", "--size", "8", "--store-steps", "5"])
        == 0
    )
    assert main(["kb", "stats", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "2 file(s), 12 record(s)" in out and "step 0 (current): 12 record(s), features embedding of 8" in out
    assert (tmp_path / "knowledge" / "embeddings.png").stat().st_size > 0
    assert main(["kb", "query", str(tmp_path), "--task-index", "3", "--k", "4", "--metric", "euclidean"]) == 0
    out = capsys.readouterr().out
    assert "query loss after 3 step(s) from the meta-parameters" in out and "from knowledge" in out
    assert main(["kb", "build", str(tmp_path), "--tasks", "2", "--embedding", "gradient"]) == 2
    assert "one step has one space" in capsys.readouterr().err
