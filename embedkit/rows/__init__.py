"""Row-level policy on top of the store: label values, the split rule, id files, arrays in.

from embedkit.rows import from_arrays, split_rows, read_ids_file
"""

from embedkit.rows.arrays import from_arrays
from embedkit.rows.ids import check_known_ids, read_ids_file
from embedkit.rows.splits import split_rows, stratified_split

__all__ = ["check_known_ids", "from_arrays", "read_ids_file", "split_rows", "stratified_split"]
