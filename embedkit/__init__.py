"""embedkit: transfer learning on cached embeddings.

Run a frozen backbone once (export → extract), keep its features in an HDF5
feature store, and train and compare heads in seconds.
"""

import os

# No network attempt, ever. onnxruntime 1.32 carries a telemetry client that resolves a
# Microsoft host name from a background thread once a session runs with scipy, sklearn or
# torch loaded after onnxruntime (disable_telemetry_events() does not stop it). The
# variable must be in the environment before onnxruntime is imported, which importing
# embedkit first guarantees; subprocesses inherit it (docs/architecture.md, Offline).
os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")

__version__ = "0.1.0"
