"""The backbone registry: names → loaders that build a torch model ready to export.

    embedkit backbones                 # lists what is registered here
    embedkit taps efficientnet_lite0   # lists one backbone's tappable layers

Built-in names are registered by :mod:`embedkit.backbones.vision` and
:mod:`embedkit.backbones.text`. Three prefixes resolve to backbones on the fly:
``hf:<name-or-path>`` (a Hugging Face text encoder), ``timm:<name>`` and
``torchvision:<name>`` (only where those packages import).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from embedkit.errors import UserInputError


@dataclass(frozen=True)
class BackboneSpec:
    """What ``embedkit backbones`` shows about a registered backbone, and how to load it.

    Examples
    --------
    >>> from embedkit.backbones import get_backbone
    >>> get_backbone("efficientnet_lite0").modality
    'image'
    """

    name: str  # the registry name, e.g. "efficientnet_lite0"
    modality: str  # "image" | "text": which preprocessing kind its graph expects
    input_spec: str  # a one-line summary of the input, e.g. "RGB 224x224, (x-127)/128"
    default_tap: str  # exported when --tap is not given
    description: str  # one line about the model and where its weights come from
    loader: Callable[..., Any]  # loader(**options) -> a backbone with tap_table(), traceable()


_REGISTRY: dict[str, BackboneSpec] = {}
_PREFIXES: dict[str, tuple[Callable[..., Any], dict]] = {}  # "hf:" -> (loader, spec fields)


def register_prefix(prefix: str, loader: Callable[..., Any], **fields: str) -> None:
    """Let ``get_backbone(prefix + rest)`` load with ``loader(rest, **options)`` (text.py:
    ``hf:``); ``fields`` are the :class:`BackboneSpec` fields but name and loader."""
    _PREFIXES[prefix] = (loader, fields)


def register_backbone(
    name: str, *, modality: str, input_spec: str, default_tap: str, description: str = ""
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Register a loader function under ``name``.

    Parameters
    ----------
    name : str
        The registry name.
    modality, input_spec, default_tap, description : str
        See :class:`BackboneSpec`.

    Returns
    -------
    callable
        A decorator that registers the loader and returns it unchanged.

    Examples
    --------
    >>> from embedkit.backbones import register_backbone, list_backbones
    >>> @register_backbone("toy_linear", modality="image", input_spec="RGB 8x8",
    ...                    default_tap="output")
    ... def _load_toy(**options):
    ...     raise NotImplementedError
    >>> "toy_linear" in list_backbones()
    True
    >>> unregister_backbone("toy_linear")
    """

    def decorator(loader: Callable[..., Any]) -> Callable[..., Any]:
        if name in _REGISTRY:
            raise UserInputError(f"backbone {name!r} is already registered; pick another name")
        _REGISTRY[name] = BackboneSpec(name, modality, input_spec, default_tap, description, loader)
        return loader

    return decorator


def unregister_backbone(name: str) -> None:
    """Remove ``name`` from the registry (for tests and plugins); unknown names are ignored."""
    _REGISTRY.pop(name, None)


def list_backbones() -> list[str]:
    """Return the registered backbone names, sorted.

    Examples
    --------
    >>> from embedkit.backbones import list_backbones
    >>> list_backbones()[:2]
    ['efficientnet_lite0', 'efficientnet_lite2']
    """
    return sorted(_REGISTRY)


def get_backbone(name: str) -> BackboneSpec:
    """Return the :class:`BackboneSpec` registered as ``name``.

    Raises
    ------
    UserInputError
        For an unknown name; the message lists the known ones.

    Examples
    --------
    >>> from embedkit.backbones import get_backbone
    >>> get_backbone("minilm").default_tap
    'last'
    """
    if name in _REGISTRY:
        return _REGISTRY[name]
    prefix = next((p for p in _PREFIXES if name.startswith(p)), None)
    if prefix is not None:
        (loader, fields), rest = _PREFIXES[prefix], name[len(prefix) :]
        if not rest:
            raise UserInputError(f"backbone {prefix!r} needs a model name after the colon")
        return BackboneSpec(name, loader=lambda **options: loader(rest, **options), **fields)
    known = ", ".join(list_backbones())
    raise UserInputError(
        f"Unknown backbone {name!r}; known: {known} "
        "(or hf:<name-or-path>, timm:<name>, torchvision:<name>)"
    )
