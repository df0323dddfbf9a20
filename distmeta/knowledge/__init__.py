"""A knowledge base of learned tasks: embeddings, an append-only Parquet store, exact search, warm starts.

Pure torch and pyarrow: Ray serving lives in `distmeta.runtime.knowledge`.
"""

from distmeta.knowledge.base import KnowledgeBase, SimilarTask
from distmeta.knowledge.build import build_header, build_records, shard
from distmeta.knowledge.embeddings import DEFAULT_KIND, DEFAULT_SIZE, EMBEDDING_KINDS, EmbeddingSpec, task_embedding
from distmeta.knowledge.records import StoreHeader, TaskRecords
from distmeta.knowledge.search import METRICS, ExactIndex, Neighbours
from distmeta.knowledge.store import KnowledgeStore

__all__ = [
    "DEFAULT_KIND",
    "DEFAULT_SIZE",
    "EMBEDDING_KINDS",
    "METRICS",
    "EmbeddingSpec",
    "ExactIndex",
    "KnowledgeBase",
    "KnowledgeStore",
    "Neighbours",
    "SimilarTask",
    "StoreHeader",
    "TaskRecords",
    "build_header",
    "build_records",
    "shard",
    "task_embedding",
]
