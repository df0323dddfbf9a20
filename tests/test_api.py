"""The Python API: load a checkpoint, adapt to a new task from its support set, predict."""

import zipfile
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
import torch
from PIL import Image

import distmeta
from distmeta.config import load_config
from distmeta.errors import CheckpointError, ConfigError, DatasetError, InputError
from distmeta.experiment import build_experiment
from distmeta.tasks.omniglot_cache import load_images
from distmeta.training.checkpoint import save_checkpoint
from distmeta.training.trainer import train
from tests.conftest import SHARED_OMNIGLOT

OMNIGLOT = [
    "task.name=omniglot",
    "task.omniglot.roots=[not-read-by-load]",
    "model.channels=8",
    "algorithm.inner_lr=0.4",
]


def classification_checkpoint(tmp_path, algorithm):
    config = load_config(None, [*OMNIGLOT, f"algorithm.name={algorithm}", f"train.run_dir={tmp_path}"])
    experiment = build_experiment(config, check_data=False)
    save_checkpoint(tmp_path, 0, config, experiment.initial_meta_parameters(), {}, {})
    return tmp_path


def test_a_sinusoid_learner_fits_its_support_points_better_after_adapting(tmp_path):
    config = load_config(
        None,
        [
            f"train.run_dir={tmp_path}",
            "train.steps=200",
            "train.log_every=100",
            "train.val_every=0",
            "train.meta_lr=0.01",
        ],
    )
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
    common = [
        "task.name=multimodal",
        "task.shots=5",
        f"algorithm.name={algorithm}",
        "algorithm.inner_steps=2",
        "algorithm.test_inner_steps=2",
        "train.log_every=2",
        "train.val_every=2",
        "train.val_tasks=5",
        "train.checkpoint_every=2",
        "model.hidden_sizes=[16, 16]",
    ]

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
    prediction = learner.adapt(x, 2 * x + 1, steps=2).predict(x)
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


def sinusoid_learner(tmp_path):
    config = load_config(None, [f"train.run_dir={tmp_path}"])
    save_checkpoint(tmp_path, 0, config, build_experiment(config, check_data=False).initial_meta_parameters(), {}, {})
    return distmeta.load(tmp_path)


@pytest.mark.parametrize(
    "support_x, support_y, message",
    [
        (
            torch.zeros(10, 1),
            torch.zeros(5),
            r"^support_y: expected shape \(10, 1\) or \(10,\): one target per input, "
            r"got shape \(5,\)$",
        ),
        (torch.zeros(10, 3), torch.zeros(10), r"^support_x: expected shape \(N, 1\), got shape \(10, 3\)$"),
        (torch.zeros(10), torch.zeros(10), r"^support_x: expected shape \(N, 1\), got shape \(10,\)$"),
        (torch.zeros(0, 1), torch.zeros(0), r"^support_x: expected shape \(N, 1\), got shape \(0, 1\)$"),
        (
            torch.zeros(4, 1, dtype=torch.complex64),
            torch.zeros(4),
            r"^support_x: expected real numbers, got dtype "
            r"torch.complex64$",
        ),
        (
            [[1.0], [2.0, 3.0]],
            [0.0, 1.0],
            r"^support_x: expected numbers \(a tensor, an array or nested lists of one "
            r"shape\), got list that is not",
        ),
        (torch.zeros(3, 1), ["a", "b", "c"], r"^support_y: expected real numbers, got"),
    ],
)
def test_bad_regression_inputs_are_named_with_the_shape_expected_and_received(tmp_path, support_x, support_y, message):
    learner = sinusoid_learner(tmp_path)
    with pytest.raises(InputError, match=message) as error:
        learner.adapt(support_x, support_y)
    assert error.value.argument in ("support_x", "support_y")


def test_predict_checks_its_input_as_adapt_does_and_steps_must_be_a_count(tmp_path):
    learner = sinusoid_learner(tmp_path)
    model = learner.adapt(torch.zeros(5, 1), torch.zeros(5, 1), steps=1)
    with pytest.raises(InputError, match=r"^x: expected shape \(N, 1\), got shape \(5, 2\)$"):
        model.predict(torch.zeros(5, 2))
    with pytest.raises(InputError, match=r"^steps: expected a whole number of inner steps, 0 or more, got -1$"):
        learner.adapt(torch.zeros(5, 1), torch.zeros(5), steps=-1)


def test_bad_classification_inputs_name_the_labels_or_the_image_shape(tmp_path):
    learner = distmeta.load(classification_checkpoint(tmp_path, "maml"))
    images = torch.rand(4, 1, 28, 28)
    with pytest.raises(InputError, match=r"^support_y: expected 4 labels, one per input, got 3$"):
        learner.adapt(images, [0, 1, 2])
    with pytest.raises(InputError, match=r"^support_y: expected at least 2 classes .*, got only \[7\]$"):
        learner.adapt(images, [7, 7, 7, 7])
    with pytest.raises(InputError, match=r"^support_x: expected shape \(N, 1, 28, 28\), got shape \(4, 28, 28\)$"):
        learner.adapt(torch.rand(4, 28, 28), [0, 1, 0, 1])
    with pytest.raises(
        InputError,
        match=r"^support_y: expected one label per input, "
        r"shape \(4,\), got shape \(4, 1\)$",
    ):
        learner.adapt(images, torch.tensor([[0], [1], [0], [1]]))
    with pytest.raises(InputError, match=r"^drawings\[1\]: expected a drawing of shape \(height, width\)"):
        learner.adapt([torch.zeros(50, 50), torch.zeros(2, 50, 50)], ["a", "b"])


needs_shared_data = pytest.mark.skipif(
    not SHARED_OMNIGLOT.is_dir(), reason=f"needs the Omniglot subsets in {SHARED_OMNIGLOT}"
)


@needs_shared_data
def test_preprocess_gives_exactly_the_cache_pixels_of_a_png_from_a_path_a_pil_image_or_an_array(tmp_path):
    root = tmp_path / "omniglot"
    pngs = []
    with zipfile.ZipFile(SHARED_OMNIGLOT / "images_background_small1.zip") as archive:
        names = sorted(name for name in archive.namelist() if name.endswith(".png"))
        for name in names[:2] + names[-2:]:  # two drawings of two characters
            target = root / Path(name).relative_to(Path(name).parts[0])
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(archive.read(name))
            pngs.append(target)
    load_images((str(root),), str(tmp_path / "cache"), 28)
    table = pa.ipc.open_file(next((tmp_path / "cache").glob("*.arrow"))).read_all()
    cached = {
        source: np.frombuffer(image, dtype=np.uint8).reshape(28, 28)
        for source, image in zip(table.column("source").to_pylist(), table.column("image").to_pylist())
    }
    learner = distmeta.load(classification_checkpoint(tmp_path / "run", "protonet"))

    from_paths = learner.preprocess([str(png) for png in pngs])
    expected = torch.stack([torch.from_numpy(cached[str(png)].copy()).float().div(255.0) for png in pngs]).unsqueeze(1)
    assert torch.equal(from_paths, expected)  # what training saw of these PNGs, bit for bit
    with Image.open(pngs[0]) as image:
        assert torch.equal(learner.preprocess(image), expected[:1])
        assert torch.equal(learner.preprocess([np.asarray(image)]), expected[:1])  # a 105x105 bool array
    # the same drawings passed to adapt and predict as paths give the outputs of their pixels
    model = learner.adapt(pngs[:2] + pngs[2:], ["a", "a", "b", "b"], steps=1)
    assert torch.equal(model.outputs(pngs), model.outputs(expected))


def test_a_missing_drawing_file_is_named(tmp_path):
    learner = distmeta.load(classification_checkpoint(tmp_path, "protonet"))
    with pytest.raises(DatasetError, match="nowhere.png: is not a readable image"):
        learner.preprocess(tmp_path / "nowhere.png")


def test_a_learner_loaded_from_ray_trains_checkpoint_folders_knows_its_run_folder(tmp_path):
    config = load_config(None, [f"train.run_dir={tmp_path}"])
    ray_folder = tmp_path / "checkpoint_2026-11-26_08-18-32.805790"  # Ray Train's layout of a run on Ray
    save_checkpoint(ray_folder, 3, config, build_experiment(config, check_data=False).initial_meta_parameters(), {}, {})
    assert distmeta.load(tmp_path).run_dir == tmp_path
    assert distmeta.load(ray_folder / "checkpoints" / "step_00000003.pt").run_dir == tmp_path
    assert sinusoid_learner(tmp_path / "in-process").run_dir == tmp_path / "in-process"
