"""Deploy: predict on raw inputs, and backbone + head as one ONNX model.

This package sits beside bench and audit: it uses both ``extract`` (to run the recorded
backbone over raw inputs) and ``heads`` (to apply and convert the trained head).

    embedkit predict head/ new_images/ --out preds.csv --top-k 3
    embedkit deploy head/ --out model.onnx
    embedkit predict model.onnx new_images/ --out preds.csv

>>> from embedkit.deploy import deploy, predict
>>> p = predict("head/", "new_images/")  # doctest: +SKIP
>>> deploy("head/", "model.onnx").classes  # doctest: +SKIP
('cat', 'dog')
"""

from embedkit.deploy.compose import Deployed, deploy
from embedkit.deploy.head_graph import head_to_onnx
from embedkit.deploy.predict import Predictions, predict

__all__ = ["Deployed", "Predictions", "deploy", "head_to_onnx", "predict"]
