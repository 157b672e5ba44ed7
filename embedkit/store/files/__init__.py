"""The store's immutable files: shards, column files, their CRC-32 checksums, placement."""
