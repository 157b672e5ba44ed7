"""embedkit: transfer learning on cached embeddings.

Run a frozen backbone once (export → extract), keep its features in an HDF5
feature store, and train and compare heads in seconds.
"""

__version__ = "0.1.0"
