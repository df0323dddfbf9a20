"""`train.deterministic`: torch's process-wide settings, both ways, and refused ops named."""

import pytest
import torch
from torch._prims_common import alert_not_deterministic

from distmeta.config import load_config
from distmeta.determinism import DeterminismError, refusals_named, set_determinism
from distmeta.execution import batch_meta_gradient
from distmeta.experiment import build_experiment
from tests.conftest import make_algorithm, meta_params_for, regression_batch, tiny_mlp


@pytest.fixture(autouse=True)
def torch_defaults_afterwards():
    yield
    set_determinism(False)


def test_a_deterministic_experiment_turns_tf32_off_and_deterministic_algorithms_on_and_back():
    default_conv = torch.backends.cudnn.conv.fp32_precision
    build_experiment(load_config(None, ["train.deterministic=true"]), check_data=False)
    assert torch.are_deterministic_algorithms_enabled()
    assert torch.backends.cudnn.deterministic and not torch.backends.cudnn.benchmark
    assert torch.backends.cuda.matmul.fp32_precision == "ieee"
    assert torch.backends.cudnn.conv.fp32_precision == "ieee"
    build_experiment(load_config(None, []), check_data=False)
    assert not torch.are_deterministic_algorithms_enabled() and not torch.backends.cudnn.deterministic
    assert torch.backends.cudnn.conv.fp32_precision == default_conv


def test_an_op_without_a_deterministic_implementation_is_named_once_as_a_user_error(monkeypatch):
    set_determinism(True)
    model = tiny_mlp()
    algorithm = make_algorithm("maml", model, False)

    def refused(*args):
        alert_not_deterministic("scatter_add_cuda_kernel")  # what torch raises for such an op on a GPU

    monkeypatch.setattr(algorithm, "task_estimate", refused)
    with pytest.raises(
        DeterminismError,
        match=r"^train\.deterministic: scatter_add_cuda_kernel has no "
        r"deterministic implementation",
    ):
        batch_meta_gradient(algorithm, meta_params_for(algorithm, model), regression_batch(), "loop")


def test_other_runtime_errors_pass_through_unchanged():
    with pytest.raises(RuntimeError, match="^something else$"):
        with refusals_named():
            raise RuntimeError("something else")


def test_deterministic_and_the_chunk_size_do_not_change_what_a_checkpoint_resumes():
    from distmeta.config import config_hash

    plain = load_config(None, [])
    assert config_hash(plain) == config_hash(load_config(None, ["train.deterministic=true", "train.vmap_chunk_size=8"]))


def test_cublas_gets_its_deterministic_workspace_before_any_gpu_work():
    import os

    assert os.environ["CUBLAS_WORKSPACE_CONFIG"] in (":4096:8", ":16:8")  # set on import, or by the user
