"""Omniglot images: decoded once from the official folders or zips into an Arrow file.

The official layout is `<root>/<Alphabet>/characterNN/<id>_<drawer>.png`; a root
is a folder or a .zip, either holding the alphabets directly or one top folder
above them (as `images_background.zip` does). Every PNG is decoded with Pillow,
resized and inverted (strokes 255, background 0) once (`drawings.drawing_pixels`), and written with the
alphabet and character of each drawing to `<cache_dir>/omniglot-<fingerprint>.arrow`.
Later runs memory-map that file, so that many workers on one machine share its
pages instead of each decoding 32,000 PNGs.
"""

from __future__ import annotations

import functools
import hashlib
import io
import json
import os
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
from PIL import Image

from distmeta.atomic import write_atomically
from distmeta.errors import DatasetError
from distmeta.tasks.drawings import drawing_pixels

FORMAT_VERSION = 1
EXPECTED_LAYOUT = "<root>/<Alphabet>/characterNN/*.png (optionally under one top folder)"
_loaded: dict[Path, OmniglotImages] = {}


@dataclass(frozen=True)
class Drawing:
    """One PNG of the sources, before decoding."""

    alphabet: str
    character: str
    source: str
    """Where it came from, for error messages: a file path, or archive.zip:member."""
    read: Callable[[], bytes]


@dataclass
class OmniglotImages:
    """All decoded drawings: `images[i]` is drawing i, of character `character_of[i]`."""

    images: np.ndarray
    """(drawings, size, size) uint8, memory-mapped from the cache file."""
    characters: list[tuple[str, str]]
    """(alphabet, character) of each distinct character, sorted."""
    character_of: np.ndarray
    """Index into `characters` of every drawing."""
    character_paths: list[str]
    """Where each character's drawings came from (for error messages)."""
    cache_path: Path

    def drawings_of(self, character: int) -> np.ndarray:
        return np.flatnonzero(self.character_of == character)


# ---------------------------------------------------------------- reading the sources


def _relative_parts(name: str) -> tuple[str, str] | None:
    """(alphabet, character) of a PNG path relative to its root, or None if the layout is wrong."""
    parts = [p for p in name.replace(os.sep, "/").split("/") if p]
    if len(parts) == 3:
        return parts[0], parts[1]
    if len(parts) == 4:  # one top folder, e.g. images_background/
        return parts[1], parts[2]
    return None


def _folder_drawings(root: Path) -> Iterator[tuple[str, Drawing | None]]:
    for path in sorted(root.rglob("*.png")):
        relative = path.relative_to(root).as_posix()
        where = _relative_parts(relative)
        drawing = Drawing(where[0], where[1], str(path), path.read_bytes) if where else None
        yield str(path), drawing


def _zip_drawings(root: Path) -> Iterator[tuple[str, Drawing | None]]:
    try:
        archive = zipfile.ZipFile(root)
    except (zipfile.BadZipFile, OSError) as error:
        raise DatasetError(root, f"is not a readable zip archive ({error})") from None
    for name in sorted(n for n in archive.namelist() if n.lower().endswith(".png")):
        where = _relative_parts(name)
        source = f"{root}:{name}"
        drawing = Drawing(where[0], where[1], source, functools.partial(archive.read, name)) if where else None
        yield source, drawing


def list_drawings(roots: tuple[str, ...]) -> list[Drawing]:
    """Every drawing of every root; a character already seen in an earlier root is skipped."""
    drawings: list[Drawing] = []
    seen: set[tuple[str, str]] = set()
    for root_name in roots:
        root = _existing_root(root_name)
        found = list(_zip_drawings(root) if root.is_file() else _folder_drawings(root))
        if not found:
            raise DatasetError(root, f"holds no PNG files; expected {EXPECTED_LAYOUT}")
        placed = [drawing for _, drawing in found if drawing is not None]
        if len(placed) < len(found):
            misplaced = next(source for source, drawing in found if drawing is None)
            raise DatasetError(misplaced, f"is not where Omniglot keeps drawings; expected {EXPECTED_LAYOUT}")
        new = [d for d in placed if (d.alphabet, d.character) not in seen]
        seen.update((d.alphabet, d.character) for d in new)
        drawings += new
    drawings.sort(key=lambda d: (d.alphabet, d.character, d.source))
    return drawings


def _existing_root(name: str) -> Path:
    root = Path(os.path.expanduser(name))
    if not root.exists():
        raise DatasetError(root, f"does not exist; expected an Omniglot folder or zip laid out as {EXPECTED_LAYOUT}")
    return root


def decode(drawing: Drawing, size: int) -> np.ndarray:
    """A drawing as a size x size uint8 image, strokes 255 on 0."""
    try:
        with Image.open(io.BytesIO(drawing.read())) as image:
            return drawing_pixels(image, size)  # as `Learner.preprocess` does for a new drawing
    except Exception as error:  # Pillow raises many types for damaged files
        raise DatasetError(drawing.source, f"is not a readable PNG ({type(error).__name__}: {error})") from None


# ---------------------------------------------------------------- the Arrow cache


def fingerprint(roots: tuple[str, ...], size: int) -> str:
    """Changes whenever a source file, the image size or this format changes."""
    digest = hashlib.sha256(f"omniglot-v{FORMAT_VERSION}-{size}".encode())
    for name in roots:
        root = _existing_root(name).resolve()
        files = [root] if root.is_file() else sorted(root.rglob("*.png"))
        for path in files:
            stat = path.stat()
            digest.update(f"{path}|{stat.st_size}|{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:20]


def _schema(metadata: dict) -> pa.Schema:
    fields = [
        pa.field("alphabet", pa.string()),
        pa.field("character", pa.string()),
        pa.field("source", pa.string()),
        pa.field("image", pa.binary(metadata["image_bytes"])),
    ]
    return pa.schema(fields, metadata={"distmeta": json.dumps(metadata)})


def build_cache(roots: tuple[str, ...], size: int, path: Path, key: str) -> None:
    """Decode every drawing and write the Arrow file atomically (two builders at once are fine)."""
    drawings = list_drawings(roots)
    images = np.stack([decode(d, size) for d in drawings])
    metadata = {
        "fingerprint": key,
        "format_version": FORMAT_VERSION,
        "images": len(drawings),
        "image_size": size,
        "image_bytes": size * size,
        "roots": list(roots),
    }
    columns = [
        pa.array([d.alphabet for d in drawings]),
        pa.array([d.character for d in drawings]),
        pa.array([d.source for d in drawings]),
        pa.FixedSizeBinaryArray.from_buffers(
            pa.binary(size * size), len(drawings), [None, pa.py_buffer(images.tobytes())]
        ),
    ]
    table = pa.Table.from_arrays(columns, schema=_schema(metadata))

    def write(file) -> None:
        with pa.ipc.new_file(file, table.schema) as writer:
            writer.write_table(table)

    write_atomically(path, write)


def open_cache(path: Path, key: str, size: int) -> OmniglotImages:
    """Memory-map a cache file, refusing one that is damaged or was made from other sources."""
    stale = "is a stale or corrupt Omniglot cache; delete it to rebuild it"
    try:
        reader = pa.ipc.open_file(pa.memory_map(str(path), "r"))
        metadata = json.loads(reader.schema.metadata[b"distmeta"])
        table = reader.read_all()
    except Exception as error:  # pyarrow raises several types for damaged files
        raise DatasetError(path, f"{stale} ({type(error).__name__}: {error})") from None
    expected = (key, FORMAT_VERSION, size)
    found = (metadata.get("fingerprint"), metadata.get("format_version"), metadata.get("image_size"))
    if found != expected or table.num_rows != metadata.get("images") or table.schema != _schema(metadata):
        raise DatasetError(
            path,
            f"{stale} (it records {found} and {table.num_rows} rows, expected {expected} "
            f"and {metadata.get('images')} rows)",
        )
    return _index(table, size, path)


def _index(table: pa.Table, size: int, path: Path) -> OmniglotImages:
    column = table.column("image").combine_chunks()
    # zero-copy view of the mapped file: the data buffer of the fixed-size binary column
    data = np.frombuffer(column.buffers()[1], dtype=np.uint8)
    images = data[column.offset * size * size :][: len(column) * size * size].reshape(len(column), size, size)
    keys = list(zip(table.column("alphabet").to_pylist(), table.column("character").to_pylist()))
    characters = sorted(set(keys))
    number = {key: i for i, key in enumerate(characters)}
    character_of = np.array([number[key] for key in keys], dtype=np.int64)
    sources = table.column("source").to_pylist()
    first_source: dict[tuple[str, str], str] = {}
    for key, source in zip(keys, sources):
        first_source.setdefault(key, source.rsplit("/", 1)[0])
    return OmniglotImages(images, characters, character_of, [first_source[k] for k in characters], path)


def make_cache_folder(folder: Path) -> None:
    """`task.omniglot.cache_dir`, made if missing; refused, naming it, where it cannot be (before
    the drawings are decoded)."""
    if folder.exists() and not folder.is_dir():
        raise DatasetError("task.omniglot.cache_dir", f"{folder} is a file, not a folder")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise DatasetError("task.omniglot.cache_dir", f"{folder} cannot be made: {error.strerror}") from None


def load_images(roots: tuple[str, ...], cache_dir: str, size: int) -> OmniglotImages:
    """The decoded drawings of `roots`: from the cache (built first if missing), shared in-process."""
    if not roots:
        raise DatasetError("task.omniglot.roots", "no Omniglot folder or zip given")
    key = fingerprint(roots, size)
    path = Path(os.path.expanduser(cache_dir)) / f"omniglot-{key}.arrow"
    if path in _loaded:
        return _loaded[path]
    if not path.exists():
        make_cache_folder(path.parent)
        build_cache(roots, size, path, key)
    _loaded[path] = open_cache(path, key, size)
    return _loaded[path]
