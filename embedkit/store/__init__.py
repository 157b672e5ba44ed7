"""The HDF5 feature store: schema, shards, commits, reader (see docs/store-format.md)."""

from embedkit.store.commit import CommitSummary, commit_shards, upgrade
from embedkit.store.compact import compact, pack
from embedkit.store.ids import read_ids_file
from embedkit.store.lock import WriterLock
from embedkit.store.reader import FeatureStore
from embedkit.store.recover import recover
from embedkit.store.schema import SCHEMA_VERSION, Fingerprint, TapInfo
from embedkit.store.shards import write_shard
from embedkit.store.summary import store_summary
from embedkit.store.verify import verify_store
from embedkit.store.writer import StoreWriter, set_splits, sha256_bytes

__all__ = [
    "SCHEMA_VERSION",
    "CommitSummary",
    "FeatureStore",
    "Fingerprint",
    "StoreWriter",
    "TapInfo",
    "WriterLock",
    "commit_shards",
    "compact",
    "pack",
    "read_ids_file",
    "recover",
    "set_splits",
    "sha256_bytes",
    "store_summary",
    "upgrade",
    "verify_store",
    "write_shard",
]
