"""The Python API: load a checkpoint, adapt to a new task from its support set, predict."""

import pytest
import torch

import distmeta
from distmeta.config import load_config
from distmeta.errors import CheckpointError, ConfigError
from distmeta.experiment import build_experiment
from distmeta.training.checkpoint import save_checkpoint
from distmeta.training.trainer import train

OMNIGLOT = ["task.name=omniglot", "task.omniglot.roots=[not-read-by-load]", "model.channels=8",
            "algorithm.inner_lr=0.4"]


def classification_checkpoint(tmp_path, algorithm):
    config = load_config(None, [*OMNIGLOT, f"algorithm.name={algorithm}", f"train.run_dir={tmp_path}"])
    experiment = build_experiment(config, check_data=False)
    save_checkpoint(tmp_path, 0, config, experiment.initial_meta_parameters(), {}, {})
    return tmp_path


def test_a_sinusoid_learner_fits_its_support_points_better_after_adapting(tmp_path):
    config = load_config(None, [f"train.run_dir={tmp_path}", "train.steps=200", "train.log_every=100",
                                "train.val_every=0", "train.meta_lr=0.01"])
    train(config, print_fn=lambda *_: None, final_eval=False)
    learner = distmeta.load(tmp_path)
    assert learner.step == 200
    x = torch.linspace(-5, 5, 10).unsqueeze(1)
    y = 3 * torch.sin(x - 1)
    before = ((learner.adapt(x, y, steps=0).predict(x) - y) ** 2).mean()
    after = ((learner.adapt(x, y, steps=10).predict(x) - y) ** 2).mean()
    assert after < before


@pytest.mark.parametrize("algorithm", ["maml", "protonet", "metasgd", "anil"])
@pytest.mark.parametrize("ways", [3, 5, 7])
def test_any_number_of_ways_with_any_labels(tmp_path, algorithm, ways):
    learner = distmeta.load(classification_checkpoint(tmp_path, algorithm))
    torch.manual_seed(0)
    support_x = torch.rand(ways, 1, 28, 28)
    labels = [f"character-{i}" for i in range(ways)]
    model = learner.adapt(support_x, labels, steps=30)
    assert model.outputs(support_x).shape == (ways, ways)
    # one example per class: after adapting, each support example is recognised as its own class
    assert model.predict(support_x) == labels


def test_proto_maml_adapts_to_another_number_of_ways_from_its_prototypes(tmp_path):
    learner = distmeta.load(classification_checkpoint(tmp_path, "protomaml"))
    torch.manual_seed(0)
    support_x = torch.rand(7, 1, 28, 28)
    labels = [f"character-{i}" for i in range(7)]
    # one example per class: each is its own prototype, so the head recognises it before any step
    assert learner.adapt(support_x, labels, steps=0).predict(support_x) == labels
    # fine-tuning from there (an untrained embedding at lr 0.4) need not keep that; it runs at 7 ways
    assert learner.adapt(support_x, labels, steps=2).outputs(support_x).shape == (7, 7)


@pytest.mark.parametrize("algorithm", ["mmaml", "alfa"])
def test_a_multimodal_checkpoint_resumes_and_adapts_through_the_api(tmp_path, algorithm):
    common = ["task.name=multimodal", "task.shots=5", f"algorithm.name={algorithm}", "algorithm.inner_steps=2",
              "train.log_every=2", "train.val_every=2", "train.val_tasks=5", "train.checkpoint_every=2",
              "model.hidden_sizes=[16, 16]"]

    def run(run_dir, steps):
        config = load_config(None, [*common, f"train.run_dir={run_dir}", f"train.steps={steps}"])
        return train(config, print_fn=lambda *_: None, final_eval=False)

    assert run(tmp_path, 2).steps == 2
    resumed, whole = run(tmp_path, 4), run(tmp_path / "whole", 4)
    assert resumed.steps == whole.steps == 4
    for name in whole.meta_params:
        torch.testing.assert_close(resumed.meta_params[name], whole.meta_params[name])
    records = [line for line in (tmp_path / "metrics.jsonl").read_text().splitlines() if "val_mse" in line]
    assert records and all("val_conditioning_std" in line for line in records)
    learner = distmeta.load(tmp_path)
    x = torch.linspace(-5, 5, 5).unsqueeze(1)
    prediction = learner.adapt(x, 2 * x + 1, steps=3).predict(x)
    assert prediction.shape == (5, 1) and torch.isfinite(prediction).all()


def test_loading_a_missing_or_damaged_checkpoint_names_it(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        distmeta.load(tmp_path / "missing")
    damaged = tmp_path / "step_00000001.pt"
    damaged.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="step_00000001.pt: cannot be read"):
        distmeta.load(damaged)
    (tmp_path / "empty").mkdir()
    with pytest.raises(CheckpointError, match="without checkpoints"):
        distmeta.load(tmp_path / "empty")


def test_a_checkpoint_trained_on_cuda_loads_on_the_cpu_and_answers_on_the_cpu(tmp_path):
    config = load_config(None, ["train.device=cuda", f"train.run_dir={tmp_path}"])
    params = build_experiment(config, torch.device("cpu"), check_data=False).initial_meta_parameters()
    save_checkpoint(tmp_path, 7, config, params, {}, {})
    for learner in (distmeta.load(tmp_path), distmeta.load(tmp_path, device="cpu")):
        assert learner.device == torch.device("cpu")
        x = torch.linspace(-5, 5, 10).unsqueeze(1)
        outputs = learner.adapt(x, torch.sin(x), steps=1).predict(x)
        assert outputs.device.type == "cpu" and outputs.shape == (10, 1)
    with pytest.raises(ConfigError, match="^device: cuda was asked for"):
        distmeta.load(tmp_path, device="cuda")
