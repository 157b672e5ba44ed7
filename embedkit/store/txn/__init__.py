"""Changing a store: the writer lock, the extract journal, commits, compaction."""
