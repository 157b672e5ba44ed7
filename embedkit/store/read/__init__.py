"""Reading a store: the reader, the checks on open, the summary and the export."""
