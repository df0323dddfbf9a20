"""The knowledge store: append-only Parquet files in `<run>/knowledge/`.

Every `append` writes one new file, `step_NNNNNNNN-<writer>-<random>.parquet`, to a temporary
name and renames it into place (`distmeta.atomic`; in a bucket, one upload: `distmeta.storage`):
readers see whole files or none, and any
number of writers (workers, two runs' `kb build`) never touch each other's files, so they
cannot corrupt the store. Nothing is ever rewritten or deleted. Each file carries its
`StoreHeader` (run, config hash, the meta-parameters' step...) in its metadata: a file of
another config is refused, and records of an older step are recognisable as stale.

A file that cannot be read (truncated, corrupt, no header) raises `KnowledgeBaseError`
naming it; the other files are not touched.
"""

from __future__ import annotations

import os
import re
import socket
import uuid
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch

from distmeta.errors import KnowledgeBaseError
from distmeta.knowledge.records import METRIC_COLUMNS, StoreHeader, TaskRecords
from distmeta.storage import Location, as_path, location

STORE_FOLDER = "knowledge"
HEADER_KEY = b"distmeta.knowledge.header"
FILE_NAME = re.compile(r"^step_(\d{8})-.+\.parquet$")


def default_writer() -> str:
    """This process, as a file-name-safe string: host and pid."""
    return re.sub(r"[^A-Za-z0-9_.]", "_", f"{socket.gethostname()}-{os.getpid()}")


class KnowledgeStore:
    """The knowledge files of one run folder (local, or in a bucket)."""

    def __init__(self, run_dir: str | Path | Location):
        self.folder = as_path(location(run_dir) / STORE_FOLDER)

    def append(self, header: StoreHeader, records: TaskRecords) -> Path | Location:
        """Write `records` as one new file and return its path."""
        if len(records) == 0:
            raise KnowledgeBaseError(self.folder, "no records to append")
        if records.embedding.shape[1] != header.embedding_size:
            raise KnowledgeBaseError(
                self.folder, f"embeddings of size {records.embedding.shape[1]}, the header says {header.embedding_size}"
            )
        table = to_table(header, records)
        writer = re.sub(r"[^A-Za-z0-9_.]", "_", header.writer or default_writer())
        target = location(self.folder) / f"step_{header.step:08d}-{writer}-{uuid.uuid4().hex[:8]}.parquet"
        target.write_with(lambda file: pq.write_table(table, file))
        return as_path(target)

    def files(self) -> list[Path | Location]:
        """The store's files, oldest step first (temporary files of writers at work excluded)."""
        names = sorted(path.name for path in location(self.folder).children() if FILE_NAME.match(path.name))
        return [self.folder / name for name in names]

    def read(self, config_hash: str | None = None) -> list[tuple[StoreHeader, TaskRecords]]:
        """Every file's header and records; with `config_hash`, a file of another config is refused."""
        paths = self.files()
        parts = [read_file(path) for path in paths]
        if config_hash is not None:
            for path, (header, _) in zip(paths, parts):
                if header.config_hash != config_hash:
                    raise KnowledgeBaseError(
                        path,
                        f"was written for config hash {header.config_hash} "
                        f"(run {header.run}), not this run's {config_hash}: "
                        f"its embeddings live in another space; move it out of "
                        f"{self.folder}",
                    )
        return parts

    def steps(self, config_hash: str | None = None) -> list[int]:
        return sorted({header.step for header, _ in self.read(config_hash)})

    def load(self, config_hash: str, step: int) -> tuple[StoreHeader, TaskRecords]:
        """All records computed at the meta-parameters of `step`, as one `TaskRecords`."""
        parts = self.read(config_hash)
        chosen = [(header, records) for header, records in parts if header.step == step]
        if not chosen:
            found = sorted({header.step for header, _ in parts})
            built = (
                f"it holds records of steps {found} (stale: computed with older meta-parameters)"
                if found
                else "it holds no records"
            )
            raise KnowledgeBaseError(
                self.folder, f"no records of step {step}: {built}; fill it with `distmeta kb build RUN --tasks N`"
            )
        first = chosen[0][0]
        for path_header, _ in chosen[1:]:
            if not first.same_space(path_header):
                raise KnowledgeBaseError(
                    self.folder,
                    f"files of step {step} disagree on the embedding "
                    f"({first.embedding_kind}/{first.embedding_size} vs "
                    f"{path_header.embedding_kind}/{path_header.embedding_size})"
                    f" or the adapted parameters",
                )
        return first, TaskRecords.concat([records for _, records in chosen])


def to_table(header: StoreHeader, records: TaskRecords) -> pa.Table:
    rows = len(records)
    columns = {
        "task_index": pa.array(records.task_index, pa.int64()),
        "task_seed": pa.array(records.task_seed, pa.uint64()),
        "split": pa.array(records.split, pa.string()),
        "family": pa.array(records.family, pa.string()),
        "step": pa.array([header.step] * rows, pa.int64()),
        "run": pa.array([header.run] * rows, pa.string()),
        "config_hash": pa.array([header.config_hash] * rows, pa.string()),
        "embedding": fixed_rows(records.embedding.float().numpy(), pa.float32()),
        "adapted_delta": pa.array(list(records.adapted_delta.to(torch.float16).numpy()), pa.list_(pa.float16())),
    }
    for name in METRIC_COLUMNS:
        columns[name] = pa.array(records.metrics[name].double().numpy(), pa.float64())
    table = pa.table(columns)
    return table.replace_schema_metadata({HEADER_KEY: header.to_json().encode()})


def fixed_rows(matrix: np.ndarray, kind: pa.DataType) -> pa.FixedSizeListArray:
    return pa.FixedSizeListArray.from_arrays(pa.array(matrix.reshape(-1), kind), matrix.shape[1])


def read_file(path: Path | Location) -> tuple[StoreHeader, TaskRecords]:
    """One file's header and records; `KnowledgeBaseError` naming it if it cannot be read."""
    path = location(path)
    try:
        table = pq.read_table(path.path, filesystem=path.filesystem)
    except (pa.ArrowException, OSError) as error:
        raise KnowledgeBaseError(
            path,
            f"unreadable knowledge file (truncated or corrupt: {error}); "
            f"the store's other files are untouched: move this one away",
        ) from error
    metadata = table.schema.metadata or {}
    if HEADER_KEY not in metadata:
        raise KnowledgeBaseError(path, "is not a distmeta knowledge file: no header in its metadata")
    header = StoreHeader.from_json(metadata[HEADER_KEY].decode())
    return header, from_table(header, table)


def from_table(header: StoreHeader, table: pa.Table) -> TaskRecords:
    rows = table.num_rows
    embedding = table.column("embedding").combine_chunks().flatten().to_numpy(zero_copy_only=False)
    delta = table.column("adapted_delta").combine_chunks().flatten().to_numpy(zero_copy_only=False)
    return TaskRecords(
        task_index=table.column("task_index").to_pylist(),
        task_seed=table.column("task_seed").to_pylist(),
        split=table.column("split").to_pylist(),
        family=table.column("family").to_pylist(),
        embedding=torch.from_numpy(embedding.reshape(rows, header.embedding_size).astype(np.float32)),
        adapted_delta=torch.from_numpy(delta.reshape(rows, header.delta_size).astype(np.float16)),
        metrics={name: torch.from_numpy(table.column(name).to_numpy().copy()) for name in METRIC_COLUMNS},
    )
