"""embedkit: transfer learning on cached embeddings.

Run a frozen backbone once (export → extract), keep its features in an HDF5
feature store, and train and compare heads in seconds.
"""

import os
import sys
import warnings

# No network attempt, ever. onnxruntime 1.32 carries a telemetry client that resolves a
# Microsoft host name from a background thread once scipy, sklearn or torch load after
# onnxruntime (disable_telemetry_events() does not stop it). ORT reads the variable when it
# is imported, so importing embedkit first guarantees it; subprocesses inherit it. Imported
# after onnxruntime, embedkit cannot stop the client and says so (docs/architecture.md).
if "ORT_DISABLE_TELEMETRY" not in os.environ and "onnxruntime" in sys.modules:
    warnings.warn(
        "onnxruntime was imported before embedkit without ORT_DISABLE_TELEMETRY=1, so its "
        "telemetry may look up a Microsoft host name; import embedkit first or export "
        "ORT_DISABLE_TELEMETRY=1",
        RuntimeWarning,
        stacklevel=2,
    )
os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")

__version__ = "0.1.0"
