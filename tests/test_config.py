"""Config: defaults in one place, YAML and --set overrides, errors that name the field."""

import pytest

from distmeta.config import Config, config_hash, from_dict, load_config, save_config, to_dict
from distmeta.errors import ConfigError


def test_no_file_gives_the_built_in_sinusoid_maml_default():
    config = load_config()
    assert config == Config()
    assert (config.task.name, config.algorithm.name, config.model_name) == ("sinusoid", "maml", "mlp")


def test_yaml_and_overrides_are_applied_in_order(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("algorithm:\n  inner_lr: 0.5\n  inner_steps: 3\ntrain:\n  steps: 7\n")
    config = load_config(path, ["algorithm.inner_lr=1e-3", "model.hidden_sizes=[20, 20]"])
    assert config.algorithm.inner_lr == 0.001
    assert config.algorithm.inner_steps == 3
    assert config.train.steps == 7
    assert config.model.hidden_sizes == (20, 20)


def test_a_saved_config_loads_back_equal(tmp_path):
    config = load_config(None, ["task.name=omniglot", "task.omniglot.roots=[a.zip, b]"])
    save_config(config, tmp_path / "c.yaml")
    assert load_config(tmp_path / "c.yaml") == config
    assert from_dict(to_dict(config)) == config


@pytest.mark.parametrize(
    "override, field",
    [
        ("algorithm.inner_lr=0", "algorithm.inner_lr"),
        ("algorithm.inner_lr=-0.1", "algorithm.inner_lr"),
        ("train.meta_lr=.nan", "train.meta_lr"),
        ("algorithm.name=mamll", "algorithm.name"),
        ("algorithm.inner_stepz=3", "algorithm.inner_stepz"),
        ("task.ways=0", "task.ways"),
        ("task.train_ways=-5", "task.train_ways"),
        ("task.train_ways=20", "task.train_ways"),  # the default task, sinusoid regression, has no classes
        ("train.meta_batch_size=2.5", "train.meta_batch_size"),
        ("algorithm.first_order=yes please", "algorithm.first_order"),
        ("train.vectorize=gpu", "train.vectorize"),
        ("algorithm.name=protonet", "algorithm.name"),
        ("task.name=omniglot", "task.omniglot.roots"),
        ("model.name=conv4", "model.name"),
        ("task.omniglot.test_fraction=1.5", "task.omniglot.test_fraction"),
        ("train=5", "train"),
        ("seed=-1", "seed"),
        ("seed=99999999999999999999999", "seed"),  # numpy's and torch's seeds are 64-bit
        ("task.omniglot.image_size=100000", "task.omniglot.image_size"),  # Omniglot's images are 105 wide
    ],
)
def test_invalid_values_raise_config_error_naming_the_field(override, field):
    with pytest.raises(ConfigError) as error:
        load_config(None, [override])
    assert error.value.field == field
    assert str(error.value).startswith(field)


def test_a_missing_or_malformed_file_is_named(tmp_path):
    with pytest.raises(ConfigError, match="nope.yaml does not exist"):
        load_config(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("algorithm: [unclosed\n")
    with pytest.raises(ConfigError, match="bad.yaml is not valid YAML"):
        load_config(bad)


def test_conv4_on_omniglot_needs_images_its_four_poolings_leave_a_pixel_of():
    synthetic = ["task.name=omniglot", "task.omniglot.synthetic=true"]
    with pytest.raises(ConfigError, match="task.omniglot.image_size: conv4 .* at least 16, got 3"):
        load_config(None, [*synthetic, "task.omniglot.image_size=3"])
    assert load_config(None, [*synthetic, "task.omniglot.image_size=16"]).task.omniglot.image_size == 16


@pytest.mark.parametrize("field", ["task.ways", "task.train_ways"])
def test_a_classification_task_of_one_class_is_refused(field):
    with pytest.raises(ConfigError, match=f"{field}: a classification task needs at least 2 classes, got 1"):
        load_config(None, ["task.name=omniglot", "task.omniglot.synthetic=true", f"{field}=1"])


def test_a_folder_or_a_binary_file_given_as_the_config_is_named(tmp_path):
    with pytest.raises(ConfigError, match=f"{tmp_path} is a folder, not a YAML file"):
        load_config(tmp_path)
    binary = tmp_path / "binary.yaml"
    binary.write_bytes(b"\xff\xfe")
    with pytest.raises(ConfigError, match="binary.yaml is not text"):
        load_config(binary)


def test_an_override_without_equals_sign_is_refused():
    with pytest.raises(ConfigError, match="expected key=value"):
        load_config(None, ["algorithm.inner_lr"])


def test_config_hash_ignores_where_the_run_lives_but_not_what_it_trains():
    base = load_config()
    assert config_hash(base) == config_hash(load_config(None, ["train.run_dir=elsewhere", "train.steps=9"]))
    assert config_hash(base) != config_hash(load_config(None, ["algorithm.inner_lr=0.02"]))


def test_a_field_added_later_leaves_the_hash_of_older_configs_as_it_was():
    # 0021f6c00a09990a: the default config's hash before algorithm.inner_batch_size existed,
    # which checkpoints written then carry; they must stay resumable
    assert config_hash(load_config()) == "0021f6c00a09990a"
    reptile = load_config(None, ["algorithm.name=reptile"])
    assert config_hash(reptile) != config_hash(
        load_config(None, ["algorithm.name=reptile", "algorithm.inner_batch_size=5"])
    )


def test_an_inner_gradient_clip_that_is_negative_or_not_a_number_is_refused_naming_the_field():
    for value in ("-1", "nan", "inf"):
        with pytest.raises(ConfigError, match="algorithm.inner_grad_clip: must be zero or more"):
            load_config(None, [f"algorithm.inner_grad_clip={value}"])
    assert config_hash(load_config(None, ["algorithm.inner_grad_clip=10"])) != config_hash(load_config())


def test_minibatches_of_the_support_set_are_refused_for_an_algorithm_other_than_reptile():
    with pytest.raises(ConfigError, match="algorithm.inner_batch_size: only reptile"):
        load_config(None, ["algorithm.inner_batch_size=5"])
    with pytest.raises(ConfigError, match="algorithm.inner_batch_size: must be zero or more"):
        load_config(None, ["algorithm.name=reptile", "algorithm.inner_batch_size=-1"])


def test_a_meta_grad_clip_on_a_learned_optimiser_run_is_refused_pointing_to_its_own_clip():
    with pytest.raises(ConfigError, match="train.meta_grad_clip.*algorithm.learned_optimizer.gradient_clip"):
        load_config(None, ["algorithm.name=learned_optimizer", "task.name=quadratic", "train.meta_grad_clip=2"])
