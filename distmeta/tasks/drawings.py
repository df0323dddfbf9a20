"""How a drawing becomes a model's input: one preprocessing for the training data and the API.

The Omniglot cache (`omniglot_cache.decode`) and `Learner.preprocess` both call
`drawing_pixels`, so a new drawing given to `adapt` or `predict` is exactly what the
meta-training saw of the same PNG: greyscale, resized with Lanczos, inverted
(strokes 255 on 0), then scaled to [0, 1] as a task batch is (`to_model_input`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from distmeta.errors import DatasetError, InputError


def drawing_pixels(image: Image.Image, size: int) -> np.ndarray:
    """`image` as a size x size uint8 array, strokes 255 on 0."""
    grey = image.convert("L").resize((size, size), Image.Resampling.LANCZOS)
    return 255 - np.asarray(grey, dtype=np.uint8)


def to_model_input(pixels: np.ndarray) -> torch.Tensor:
    """(N, size, size) uint8 pixels as the models take them: (N, 1, size, size) floats in [0, 1]."""
    return torch.from_numpy(np.ascontiguousarray(pixels)).float().div_(255.0).unsqueeze(1)


def open_drawing(drawing, argument: str) -> Image.Image:
    """A drawing as a PIL image: from a file path, a PIL image, or a 2-D array (or an
    RGB/RGBA one) of any size, dark strokes on a light ground as in the PNGs: uint8
    (0-255), bool (1-bit), or floats in [0, 1]."""
    if isinstance(drawing, Image.Image):
        return drawing
    if isinstance(drawing, (str, Path)):
        try:
            with Image.open(drawing) as image:
                image.load()
                return image
        except Exception as error:  # Pillow raises many types for missing or damaged files
            raise DatasetError(drawing, f"is not a readable image ({type(error).__name__}: {error})") from None
    array = drawing.numpy() if isinstance(drawing, torch.Tensor) else np.asarray(drawing)
    if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[-1] not in (3, 4)):
        raise InputError(
            argument, "a drawing of shape (height, width) or (height, width, 3 or 4)", f"shape {tuple(array.shape)}"
        )
    if array.dtype == np.bool_ or array.dtype == np.uint8:
        return Image.fromarray(array)
    if np.issubdtype(array.dtype, np.floating) and array.size and 0.0 <= array.min() and array.max() <= 1.0:
        return Image.fromarray(np.rint(array * 255).astype(np.uint8))
    raise InputError(
        argument,
        "a drawing of uint8 (0-255), bool or floats in [0, 1]",
        f"dtype {array.dtype}" + (f" with values in [{array.min()}, {array.max()}]" if array.size else ""),
    )
