"""Where models come from: a registry of named backbones and ONNX export with layer taps.

    embedkit backbones
    embedkit taps efficientnet_lite0
    embedkit export efficientnet_lite0 --out models/lite0.onnx

Python:

>>> from embedkit.backbones import list_backbones
>>> list_backbones()
['efficientnet_lite0', 'efficientnet_lite2', 'minilm', 'mpnet']

This package imports torch; nothing but the CLI imports it (docs/architecture.md).
"""

from embedkit.backbones import text, vision  # noqa: F401  (registers the built-ins)
from embedkit.backbones.export import (
    PRECISIONS,
    ExportOptions,
    ExportReport,
    export,
    export_backbone,
    load_backbone,
)
from embedkit.backbones.registry import (
    BackboneSpec,
    get_backbone,
    list_backbones,
    register_backbone,
    unregister_backbone,
)
from embedkit.backbones.taps import TappableLayer, TapPoint, pool
from embedkit.contract import POOLINGS, read_metadata

__all__ = [
    "POOLINGS",
    "PRECISIONS",
    "BackboneSpec",
    "ExportOptions",
    "ExportReport",
    "TapPoint",
    "TappableLayer",
    "export",
    "export_backbone",
    "get_backbone",
    "list_backbones",
    "load_backbone",
    "pool",
    "read_metadata",
    "register_backbone",
    "unregister_backbone",
]
