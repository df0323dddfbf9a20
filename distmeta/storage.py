"""Where a run's files live: a local folder, or a bucket (`s3://`, `gs://`) through `pyarrow.fs`.

Everything a run reads or writes in its folder goes through a `Location`, so that one
code path serves both. A local path keeps the POSIX calls it always had: a write goes to
a temporary file renamed into place (`distmeta.atomic`), so readers see whole files or
none. An object store has no rename, but an upload becomes visible only once it is
complete, so a crash mid-upload leaves no partial object either: the same guarantee.
It has no append: `append_text` rewrites the object (a run's logs are small).

A bucket URI keeps its query (`s3://bucket/runs?endpoint_override=host:port&scheme=http`,
as `pyarrow.fs.FileSystem.from_uri` takes it) in every location under it, so that
`str(location)` opens the same place again on a Ray worker. Credentials come from the
environment (AWS_ACCESS_KEY_ID, GOOGLE_APPLICATION_CREDENTIALS, ...), never from the URI.
"""

from __future__ import annotations

import fnmatch
import io
import posixpath
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import pyarrow
import pyarrow.fs

from distmeta.atomic import write_atomically
from distmeta.errors import DistmetaError

BUCKET_SCHEMES = ("s3", "gs", "gcs")
"""The object stores `pyarrow.fs` reaches from a URI alone, credentials from the environment."""


class UnknownStorageError(DistmetaError, ValueError):
    """A URI whose scheme is not a bucket distmeta writes to; the message starts with the URI."""


@dataclass(frozen=True)
class Location:
    """A file or folder in a run's storage: a local path, or `scheme://bucket/key?query`."""

    path: str
    """The local path, or the bucket and key (`bucket/runs/name`) the filesystem is given."""
    scheme: str = ""
    """"" for a local path, else the bucket's scheme (s3, gs)."""
    query: str = ""
    """The URI's query ("" or "?endpoint_override=..."), kept so that `str(self)` reopens it."""
    filesystem: pyarrow.fs.FileSystem | None = field(default=None, compare=False, repr=False)
    """The bucket's filesystem (None for a local path)."""

    @property
    def is_local(self) -> bool:
        return not self.scheme

    @property
    def local_path(self) -> Path:
        """This location as a `Path`; only a local one has one."""
        if not self.is_local:
            raise ValueError(f"{self} is in a bucket, not on this machine")
        return Path(self.path)

    @property
    def name(self) -> str:
        return posixpath.basename(self.path.rstrip("/"))

    @property
    def parent(self) -> Location:
        return self._at(str(Path(self.path).parent) if self.is_local else posixpath.dirname(self.path.rstrip("/")))

    def __truediv__(self, name: str) -> Location:
        return self._at(str(Path(self.path) / name) if self.is_local else f"{self.path.rstrip('/')}/{name}")

    def __str__(self) -> str:
        return self.path if self.is_local else f"{self.scheme}://{self.path}{self.query}"

    @property
    def _bucket(self) -> pyarrow.fs.FileSystem:
        """The bucket's filesystem; only a bucket location has one."""
        if self.filesystem is None:
            raise ValueError(f"{self} is a local path, not in a bucket")
        return self.filesystem

    def _at(self, path: str) -> Location:
        return Location(path, self.scheme, self.query, self.filesystem)

    # --- what is there ---

    def _info(self) -> pyarrow.fs.FileInfo:
        return self._bucket.get_file_info(self.path)

    def exists(self) -> bool:
        if self.is_local:
            return Path(self.path).exists()
        return self._info().type != pyarrow.fs.FileType.NotFound

    def is_file(self) -> bool:
        if self.is_local:
            return Path(self.path).is_file()
        return self._info().type == pyarrow.fs.FileType.File

    def is_dir(self) -> bool:
        if self.is_local:
            return Path(self.path).is_dir()
        return self._info().type == pyarrow.fs.FileType.Directory

    def size(self) -> int:
        return Path(self.path).stat().st_size if self.is_local else self._info().size

    def children(self) -> list[Location]:
        """What this folder holds directly (nothing when it does not exist)."""
        if self.is_local:
            folder = Path(self.path)
            return [self._at(str(child)) for child in folder.iterdir()] if folder.is_dir() else []
        selector = pyarrow.fs.FileSelector(self.path, allow_not_found=True)
        return [self._at(info.path) for info in self._bucket.get_file_info(selector)]

    def glob(self, pattern: str) -> list[Location]:
        """What matches `pattern` ("checkpoint_*/checkpoints/step_*.pt"), one folder level per part."""
        if self.is_local:
            return [self._at(str(path)) for path in Path(self.path).glob(pattern)]
        matches = [self]
        for part in pattern.split("/"):
            matches = [child for match in matches for child in match.children() if fnmatch.fnmatch(child.name, part)]
        return matches

    # --- reading ---

    def read_bytes(self) -> bytes:
        if self.is_local:
            return Path(self.path).read_bytes()
        with self._bucket.open_input_stream(self.path) as stream:
            return stream.read()

    def read_text(self) -> str:
        return self.read_bytes().decode()

    def read_from(self, offset: int) -> bytes:
        """The bytes after the first `offset` (what a growing log gained since it was last read)."""
        if self.is_local:
            with open(self.path, "rb") as file:
                file.seek(offset)
                return file.read()
        with self._bucket.open_input_file(self.path) as file:
            file.seek(offset)
            return file.read()

    # --- writing ---

    def mkdir(self) -> None:
        """Make this folder (and its parents); a bucket needs none, but a missing bucket fails here."""
        if self.is_local:
            Path(self.path).mkdir(parents=True, exist_ok=True)
            return
        self._bucket.create_dir(self.path, recursive=True)

    def write_with(self, write: Callable[[BinaryIO], object]) -> None:
        """Call `write` on a file that becomes this one whole, or not at all (see the module's note)."""
        if self.is_local:
            write_atomically(Path(self.path), write)
            return
        buffer = io.BytesIO()  # written first, so that a failing `write` uploads nothing
        write(buffer)
        with self._bucket.open_output_stream(self.path) as stream:
            stream.write(buffer.getvalue())

    def write_bytes(self, data: bytes) -> None:
        self.write_with(lambda file: file.write(data))

    def write_text(self, text: str) -> None:
        self.write_bytes(text.encode())

    def append_text(self, text: str) -> None:
        """Add `text` at the end: a real append locally; a bucket's object is read and rewritten."""
        if self.is_local:
            with open(self.path, "a") as file:
                file.write(text)
            return
        before = self.read_bytes() if self.is_file() else b""
        with self._bucket.open_output_stream(self.path) as stream:
            stream.write(before + text.encode())

    def unlink(self) -> None:
        """Delete this file if it is there."""
        if self.is_local:
            Path(self.path).unlink(missing_ok=True)
            return
        try:
            self._bucket.delete_file(self.path)
        except FileNotFoundError:
            pass


def location(where: str | Path | Location) -> Location:
    """The `Location` of a local path (`~` expanded) or a bucket URI.

    Raises `UnknownStorageError` for a URI of another scheme."""
    if isinstance(where, Location):
        return where
    text = str(where)
    if "://" not in text:
        return Location(str(Path(text).expanduser()))
    scheme = text.split("://", 1)[0].lower()
    if scheme == "file":
        return location(text.split("://", 1)[1])
    if scheme not in BUCKET_SCHEMES:
        raise UnknownStorageError(
            f"{text}: a local path or a bucket URI ({', '.join(BUCKET_SCHEMES)}://...) was expected, not {scheme}://"
        )
    try:
        filesystem, path = pyarrow.fs.FileSystem.from_uri(text)
    except (pyarrow.ArrowInvalid, OSError) as error:
        raise UnknownStorageError(f"{text}: not a bucket URI pyarrow can open ({error})") from None
    query = text[text.index("?") :] if "?" in text else ""
    return Location(path.rstrip("/"), scheme, query, filesystem)


def as_path(where: Location) -> Path | Location:
    """A local location as the `Path` callers have always been given; a bucket's stays a `Location`."""
    return where.local_path if where.is_local else where


def ray_storage(storage: Location) -> dict:
    """The `storage_path` (and `storage_filesystem`, for a bucket) of a Ray `RunConfig` for `storage`."""
    if storage.is_local:
        return {"storage_path": storage.path}
    return {"storage_path": storage.path, "storage_filesystem": storage.filesystem}
