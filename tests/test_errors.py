"""Every error distmeta raises crosses a process boundary (Ray's pickling) whole:
its type, message, fields and notes, so the driver re-raises what a worker raised."""

import pickle

import pytest
import ray.cloudpickle

from distmeta import errors
from distmeta.jobs.client import JobServerUnreachable

EXAMPLES = [
    errors.DistmetaError("plain"),
    errors.ConfigError("train.steps", "must be at least 1"),
    errors.DatasetError("/data/omniglot.zip", "does not exist"),
    errors.NotEnoughClassesError("/data/omniglot.zip", "test", 3, 5),
    errors.NonFiniteLossError(7, 123456789, float("inf")),
    errors.CheckpointError("/runs/a/step_00000004.pt", "cannot be read"),
    errors.StorageError("/runs/a", "the checkpoint of step 4 could not be written there"),
    errors.InputError("support_x", "shape (N, 1)", "shape (10, 3)"),
    errors.RunTakenOverError("/runs/a", "node-2 (pid 4242, started 2026-11-26T15:00:00+00:00)"),
    errors.KnowledgeBaseError("/runs/a/knowledge/step_00000004-w-0a1b2c3d.parquet", "unreadable knowledge file"),
    errors.ScaleUpTimeoutError("4 GPU workers not there after 900 s"),
    errors.RecoveryFailedError("the lost node's capacity was not back within --scale-timeout (900 s)", 8),
    JobServerUnreachable("http://127.0.0.1:8265", "connection refused"),
]


@pytest.mark.parametrize(
    "dumps, loads", [(pickle.dumps, pickle.loads), (ray.cloudpickle.dumps, pickle.loads)], ids=["pickle", "ray"]
)
@pytest.mark.parametrize("error", EXAMPLES, ids=lambda error: type(error).__name__)
def test_an_error_pickles_with_its_type_message_fields_and_notes(error, dumps, loads):
    error.add_note("(raised on rank 1)")
    copy = loads(dumps(error))
    assert type(copy) is type(error)
    assert str(copy) == str(error) and copy.args == error.args
    assert vars(copy) == vars(error)  # the fields (step, task_seed, path, field...) and __notes__


def test_every_error_class_in_distmeta_errors_has_an_example_here():
    classes = {
        value for value in vars(errors).values() if isinstance(value, type) and issubclass(value, errors.DistmetaError)
    }
    assert classes <= {type(error) for error in EXAMPLES}
