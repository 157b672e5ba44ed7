"""Run any ONNX graph over a dataset with ONNX Runtime, into the feature store.

    embedkit extract lite0.onnx images/ --out feats.h5
    embedkit extract minilm.onnx fortunes.jsonl --out text.h5 --label-column topic

>>> from embedkit.extract import extract
>>> summary = extract("lite0.onnx", "images/", "feats.h5", batch_size=64)  # doctest: +SKIP

This package imports without torch and never imports ``embedkit.backbones``: the ONNX
file and its ``embedkit.*`` metadata are the contract (docs/architecture.md).
"""

from embedkit.contract import ArraySpec, ImageSpec, Tap, TextSpec, parse_preprocess
from embedkit.extract.config import ExtractConfig, ExtractSummary
from embedkit.extract.model import ModelSpec, load_model
from embedkit.extract.opening import open_source
from embedkit.extract.pipeline import extract
from embedkit.extract.providers import Runner, select_providers
from embedkit.extract.sources import Listing, Source

__all__ = [
    "ArraySpec",
    "ExtractConfig",
    "ExtractSummary",
    "ImageSpec",
    "Listing",
    "ModelSpec",
    "Runner",
    "Source",
    "Tap",
    "TextSpec",
    "extract",
    "load_model",
    "open_source",
    "parse_preprocess",
    "select_providers",
]
