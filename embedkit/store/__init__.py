"""The HDF5 feature store: schema, crash-safe writer and reader (see docs/store-format.md)."""

from embedkit.store.ids import read_ids_file
from embedkit.store.reader import FeatureStore
from embedkit.store.schema import SCHEMA_VERSION, Fingerprint, TapInfo
from embedkit.store.writer import CommitSummary, StoreWriter, set_splits, sha256_bytes

__all__ = [
    "SCHEMA_VERSION",
    "CommitSummary",
    "FeatureStore",
    "Fingerprint",
    "StoreWriter",
    "TapInfo",
    "read_ids_file",
    "set_splits",
    "sha256_bytes",
]
