"""The HDF5 feature store, in rooms (see docs/store-format.md):

- ``format``: every name, version and path rule of a store, and the fingerprint;
- ``files/``: immutable files: shards, column files, their checksums and placement;
- ``read/``: the reader (``FeatureStore``), the checks on open, summary and export;
- ``txn/``: changing a store: the writer lock, journal, commit, compaction, index writing;
- ``maintain/``: verify, repair, recover, upgrade, the version log and vacuum.
"""

from embedkit.store.files.shards import write_shard
from embedkit.store.format import SCHEMA_VERSION, Fingerprint, TapInfo
from embedkit.store.maintain.recover import recover
from embedkit.store.maintain.upgrade import upgrade
from embedkit.store.maintain.verify import verify_store
from embedkit.store.maintain.versions import store_log, vacuum
from embedkit.store.read.reader import FeatureStore, store_summary
from embedkit.store.txn.commit import CommitSummary, commit_shards
from embedkit.store.txn.compact import compact, pack
from embedkit.store.txn.journal import BatchShards, PendingRows
from embedkit.store.txn.lock import WriterLock
from embedkit.store.txn.writer import StoreWriter, set_splits

__all__ = [
    "SCHEMA_VERSION",
    "BatchShards",
    "CommitSummary",
    "FeatureStore",
    "Fingerprint",
    "PendingRows",
    "StoreWriter",
    "TapInfo",
    "WriterLock",
    "commit_shards",
    "compact",
    "pack",
    "recover",
    "set_splits",
    "store_log",
    "store_summary",
    "upgrade",
    "vacuum",
    "verify_store",
    "write_shard",
]
