"""vmap and the per-task loop give the same meta-gradients, for every algorithm and both models."""

import pytest
import torch

from distmeta.execution import batch_evaluation, batch_meta_gradient, resolve_vectorize
from tests.conftest import classification_batch, make_algorithm, meta_params_for, regression_batch, tiny_conv4, tiny_mlp

ALGORITHMS = ["maml", "fomaml", "reptile", "anil", "metasgd", "protonet"]


def _setups(name: str):
    """(model, algorithm, batch) for both models; ProtoNets classifies, also with the MLP."""
    conv = tiny_conv4(3)
    yield "conv4", conv, make_algorithm(name, conv, True, 3), classification_batch(tasks=3)
    if name == "protonet":
        mlp = tiny_mlp(4, 3)
        yield "mlp", mlp, make_algorithm(name, mlp, True, 3), classification_batch(tasks=3, image=False)
        return
    mlp = tiny_mlp()
    yield "mlp", mlp, make_algorithm(name, mlp, False), regression_batch(tasks=4)


@pytest.mark.parametrize("name", ALGORITHMS)
def test_vmap_and_loop_give_equal_meta_gradients(name):
    for model_name, model, algorithm, batch in _setups(name):
        params = meta_params_for(algorithm, model)
        vmapped = batch_meta_gradient(algorithm, params, batch, "vmap")
        looped = batch_meta_gradient(algorithm, params, batch, "loop")
        assert set(vmapped.grad_sum) == set(params)
        for key in params:
            torch.testing.assert_close(
                vmapped.grad_sum[key], looped.grad_sum[key], rtol=1e-5, atol=1e-10, msg=f"{name} on {model_name}: {key}"
            )
        torch.testing.assert_close(vmapped.losses, looped.losses, rtol=1e-5, atol=1e-12)
        assert any(g.abs().sum() > 0 for g in vmapped.grad_sum.values()), f"{name} on {model_name}: all zero"


@pytest.mark.parametrize("name", ALGORITHMS)
def test_vmap_and_loop_give_equal_evaluations(name):
    for _, model, algorithm, batch in _setups(name):
        params = meta_params_for(algorithm, model)
        vmapped = batch_evaluation(algorithm, params, batch, 3, "vmap")
        looped = batch_evaluation(algorithm, params, batch, 3, "loop")
        torch.testing.assert_close(vmapped, looped, rtol=1e-5, atol=1e-12)


def test_vmap_and_loop_agree_for_reptile_on_minibatches_of_the_support_set():
    model = tiny_conv4(3)
    algorithm = make_algorithm("reptile", model, True, 3, inner_steps=3, inner_batch_size=3)
    batch = classification_batch(tasks=3, shots=2)  # 6 support examples: minibatches of 3
    params = meta_params_for(algorithm, model)
    vmapped = batch_meta_gradient(algorithm, params, batch, "vmap")
    looped = batch_meta_gradient(algorithm, params, batch, "loop")
    whole = batch_meta_gradient(make_algorithm("reptile", model, True, 3, inner_steps=3), params, batch, "loop")
    for key in params:
        torch.testing.assert_close(vmapped.grad_sum[key], looped.grad_sum[key], rtol=1e-5, atol=1e-10, msg=key)
    assert any(not torch.allclose(looped.grad_sum[key], whole.grad_sum[key]) for key in params)


def test_gradient_sum_is_the_sum_of_single_task_gradients():
    model = tiny_mlp()
    algorithm = make_algorithm("maml", model, False)
    params = meta_params_for(algorithm, model)
    batch = regression_batch(tasks=3)
    whole = batch_meta_gradient(algorithm, params, batch, "vmap")
    parts = [batch_meta_gradient(algorithm, params, batch.select(i, i + 1), "loop") for i in range(3)]
    for key in params:
        torch.testing.assert_close(whole.grad_sum[key], sum(p.grad_sum[key] for p in parts))


def test_auto_picks_vmap_for_the_mlp_and_the_loop_for_conv4_on_cpu():
    cpu = torch.device("cpu")
    assert resolve_vectorize("auto", "mlp", cpu)[0] == "vmap"
    assert resolve_vectorize("auto", "conv4", cpu)[0] == "loop"
    assert resolve_vectorize("auto", "conv4", torch.device("cuda"))[0] == "vmap"
    assert resolve_vectorize("loop", "mlp", cpu) == ("loop", "set in the config")


@pytest.mark.parametrize("name", ALGORITHMS)
def test_vmap_in_chunks_of_tasks_equals_the_loop(name):
    for model_name, model, algorithm, batch in _setups(name):
        params = meta_params_for(algorithm, model)
        chunked = batch_meta_gradient(algorithm, params, batch, "vmap", chunk_size=2)  # 3 or 4 tasks: 2 chunks
        looped = batch_meta_gradient(algorithm, params, batch, "loop")
        for key in params:
            torch.testing.assert_close(
                chunked.grad_sum[key], looped.grad_sum[key], rtol=1e-5, atol=1e-10, msg=f"{name} on {model_name}: {key}"
            )
        torch.testing.assert_close(chunked.losses, looped.losses, rtol=1e-5, atol=1e-12)
        evaluated = batch_evaluation(algorithm, params, batch, 3, "vmap", chunk_size=1)
        torch.testing.assert_close(
            evaluated, batch_evaluation(algorithm, params, batch, 3, "loop"), rtol=1e-5, atol=1e-12
        )


def test_a_batch_off_the_cpu_loops_in_the_calling_thread_on_the_shared_model(monkeypatch):
    import threading

    from distmeta import execution

    monkeypatch.setattr(torch, "get_num_threads", lambda: 4)
    model = tiny_mlp()
    algorithm = make_algorithm("maml", model, False)
    calls = []

    def work(looped, chunk):
        calls.append((threading.current_thread().name, looped.model is model, len(chunk)))
        return len(chunk)

    on_meta = regression_batch(tasks=4).to("meta")  # stands in for a batch on a GPU
    assert execution._in_threads(algorithm, work, on_meta) == [4]
    assert calls == [(threading.current_thread().name, True, 4)]
    calls.clear()
    assert execution._in_threads(algorithm, work, regression_batch(tasks=4)) == [1, 1, 1, 1]
    assert all(name.startswith("distmeta-task") and not shared for name, shared, _ in calls)
