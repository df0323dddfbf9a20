"""Checks of what a user passes to the Python API (`distmeta.api`), before torch sees it.

Each bad argument raises an `InputError` naming the argument, what was expected and
what came (a shape, a length, a dtype, the labels), instead of torch's
`shape '[10, -1]' is invalid for input of size 5` from deep inside a model.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from distmeta.errors import InputError

N = "N"  # the number of examples, in messages


def described(shape: tuple) -> str:
    return "(" + ", ".join(str(size) for size in shape) + ("," if len(shape) == 1 else "") + ")"


def as_tensor(value, argument: str) -> torch.Tensor:
    """`value` (a tensor, an array, nested lists of numbers) as a tensor of real numbers."""
    if not isinstance(value, torch.Tensor):
        try:
            array = np.asarray(value)
        except ValueError as error:  # ragged nested lists
            raise InputError(
                argument,
                "numbers (a tensor, an array or nested lists of one shape)",
                f"{type(value).__name__} that is not ({error})",
            ) from None
        if array.dtype == object:
            raise InputError(
                argument,
                "numbers (a tensor, an array or nested lists of one shape)",
                f"{type(value).__name__} of other things",
            )
        if not np.issubdtype(array.dtype, np.number) or np.issubdtype(array.dtype, np.complexfloating):
            raise InputError(argument, "real numbers", f"dtype {array.dtype}")
        value = torch.as_tensor(array)
    if value.is_complex() or not (value.is_floating_point() or value.dtype in INTEGER_DTYPES):
        raise InputError(argument, "real numbers", f"dtype {value.dtype}")
    return value


INTEGER_DTYPES = (torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64)


def model_inputs(value, argument: str, example_shape: tuple[int, ...], device: torch.device) -> torch.Tensor:
    """`value` as a float32 batch of shape (N, *example_shape) on `device`; N >= 1."""
    tensor = as_tensor(value, argument)
    expected = (N, *example_shape)
    if tensor.dim() != len(expected) or tuple(tensor.shape[1:]) != example_shape or tensor.shape[0] == 0:
        raise InputError(argument, f"shape {described(expected)}", f"shape {described(tuple(tensor.shape))}")
    return tensor.to(device=device, dtype=torch.float32)


def regression_targets(value, argument: str, count: int, outputs: int, device: torch.device) -> torch.Tensor:
    """`value` as float32 targets of shape (count, outputs); (count,) is taken for one output."""
    given = as_tensor(value, argument)
    tensor = given.unsqueeze(1) if outputs == 1 and given.dim() == 1 else given
    if tuple(tensor.shape) != (count, outputs):
        expected = f"shape ({count}, {outputs})" + (f" or ({count},)" if outputs == 1 else "")
        raise InputError(argument, f"{expected}: one target per input", f"shape {described(tuple(given.shape))}")
    return tensor.to(device=device, dtype=torch.float32)


def class_labels(value, argument: str, count: int) -> tuple[list, torch.Tensor]:
    """The classes of `value` (one label per input, any hashable values), sorted, and each
    label's index into them; at least two classes."""
    if isinstance(value, (torch.Tensor, np.ndarray)):
        if value.ndim != 1:
            raise InputError(
                argument, f"one label per input, shape ({count},)", f"shape {described(tuple(value.shape))}"
            )
        values = value.tolist()
    elif isinstance(value, Sequence) and not isinstance(value, str):
        values = list(value)
    else:
        raise InputError(argument, f"a sequence of {count} labels", type(value).__name__)
    if len(values) != count:
        raise InputError(argument, f"{count} labels, one per input", f"{len(values)}")
    try:
        classes = sorted(set(values), key=lambda label: (str(type(label)), label))
    except TypeError as error:  # unhashable or unorderable labels
        raise InputError(
            argument, "hashable labels of one kind (ints, strings...)", f"{values[:3]}... ({error})"
        ) from None
    if len(classes) < 2:
        raise InputError(argument, "at least 2 classes in a classification task's support set", f"only {classes}")
    index = {label: i for i, label in enumerate(classes)}
    return classes, torch.tensor([index[label] for label in values], dtype=torch.long)


def inner_steps(value, argument: str = "steps") -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
        raise InputError(argument, "a whole number of inner steps, 0 or more", repr(value))
    return int(value)
