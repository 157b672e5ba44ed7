"""Save and load heads without pickle.

A head directory holds ``head.json`` (format, class, parameters, fitted state, and the
sha256 of the weight file) and either ``weights.safetensors`` (torch heads) or
``head.skops`` (scikit-learn heads, loaded with an explicit allow-list of types). Loading
a foreign, corrupted or tampered directory (a weight file whose sha256 differs, weights
that are NaN or infinite, parameters out of range) raises
:class:`~embedkit.errors.UserInputError` naming the file and runs no code from it.

    embedkit train feats.h5 --head mlp --out head/   # writes head/head.json + weights
    embedkit predict head/ feats.h5
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from embedkit import __version__
from embedkit.errors import UserInputError
from embedkit.files import atomic_file, json_plain, sha256_file, write_bytes_atomic
from embedkit.heads._validation import check_fitted
from embedkit.heads.registry import RECORDS, head_class

FORMAT = "embedkit.head"
VERSION = 1
CONFIG, WEIGHTS, SKOPS = "head.json", "weights.safetensors", "head.skops"
_CLASSES = {r.cls: r for r in RECORDS}  # the classes that save and load: the registry's
# Types a head.skops may hold beyond skops' defaults (scikit-learn and numpy types).
SKOPS_TRUSTED = tuple(f"{r.module}.{r.cls}" for r in RECORDS if not r.torch)
_LABEL_KINDS = "biufUO"


def save_head(head, directory: str | Path) -> Path:
    """Save a fitted head into ``directory`` (created if needed); return the directory.

    Examples
    --------
    >>> import tempfile
    >>> from sklearn.datasets import make_classification
    >>> from embedkit.heads import make_head
    >>> X, y = make_classification(100, 4, random_state=0)
    >>> path = save_head(make_head("ridge").fit(X, y), tempfile.mkdtemp())
    >>> sorted(p.name for p in path.iterdir())
    ['head.json', 'head.skops']
    """
    name = type(head).__name__
    if name not in _CLASSES:
        raise UserInputError(
            f"cannot save {name}; save_head takes embedkit heads: {', '.join(_CLASSES)}"
        )
    check_fitted(head)
    directory = Path(directory)
    _check_finite(head, directory)
    directory.mkdir(parents=True, exist_ok=True)
    config = {"format": FORMAT, "version": VERSION, "embedkit": __version__, "class": name}
    weights = directory / (WEIGHTS if _CLASSES[name].torch else SKOPS)
    if _CLASSES[name].torch:
        from safetensors.torch import save_file

        params = _jsonable(head.get_params(), "params")
        config |= {"kind": "torch", "params": params, "state": _torch_state(head)}
        state = {k: v.detach().cpu().contiguous() for k, v in head.module_.state_dict().items()}
        with atomic_file(weights) as tmp:
            save_file(state, str(tmp))
    else:
        config |= {"kind": "skops"}
        with atomic_file(weights) as tmp:
            _skops_io().dump(head, tmp)
    config["sha256"] = {weights.name: sha256_file(weights)}
    write_bytes_atomic(directory / CONFIG, json.dumps(config, indent=1).encode())  # last
    return directory


def load_head(directory: str | Path):
    """Load a head saved by :func:`save_head`; foreign or tampered files raise errors.

    Examples
    --------
    >>> import tempfile
    >>> from sklearn.datasets import make_classification
    >>> from embedkit.heads import make_head
    >>> X, y = make_classification(100, 4, random_state=0)
    >>> path = save_head(make_head("centroid").fit(X, y), tempfile.mkdtemp())
    >>> load_head(path).predict(X[:3]).shape
    (3,)
    """
    directory = Path(directory)
    config_path = directory / CONFIG
    if not config_path.is_file():
        raise UserInputError(
            f"{config_path} not found; pass a directory written by save_head or embedkit train"
        )
    try:
        config = json.loads(config_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise UserInputError(f"{config_path} is not valid JSON ({exc}); re-save the head") from exc
    if not isinstance(config, dict) or config.get("format") != FORMAT:
        raise UserInputError(f"{config_path} is not an embedkit head (format must be {FORMAT!r})")
    if config.get("version") != VERSION:
        raise UserInputError(
            f"{config_path} has head format version {config.get('version')!r}; this embedkit "
            f"reads version {VERSION}; re-train or upgrade embedkit"
        )
    record = _CLASSES.get(config.get("class"))
    kind = config.get("kind")
    if record is not None and kind == ("torch" if record.torch else "skops"):
        _verify_digests(directory, config)
        head = (_load_torch if record.torch else _load_skops)(directory, record, config)
        _check_finite(head, directory / (WEIGHTS if record.torch else SKOPS))
        return head
    raise UserInputError(
        f"{config_path} names unknown head class {config.get('class')!r} (kind {kind!r}); "
        f"known: {', '.join(_CLASSES)}"
    )


def _verify_digests(directory: Path, config: dict) -> None:
    """Compare each file's sha256 with head.json's (older heads have none: not checked)."""
    digests = config.get("sha256", {})
    if not isinstance(digests, dict):
        raise UserInputError(f"{directory / CONFIG}: 'sha256' must map file names to digests")
    for name, expected in digests.items():
        path = directory / str(name)
        if name not in (WEIGHTS, SKOPS):
            raise UserInputError(f"{directory / CONFIG}: 'sha256' names unknown file {name!r}")
        if not path.is_file():
            raise UserInputError(f"{path} not found; the head directory is incomplete")
        if sha256_file(path) != expected:
            raise UserInputError(
                f"{path} does not match the sha256 in head.json (corrupted or modified); "
                "re-save or re-train the head"
            )


def _check_finite(head, path: Path) -> None:
    """Refuse weights that are NaN or infinite: such a head predicts garbage silently."""
    if hasattr(head, "module_"):
        arrays = {k: v.detach().cpu().numpy() for k, v in head.module_.state_dict().items()}
    else:
        parts = {**vars(head), **getattr(getattr(head, "estimator_", None), "__dict__", {})}
        floats = (float, np.floating, np.ndarray)
        arrays = {k: v for k, v in parts.items() if k.endswith("_") and isinstance(v, floats)}
    for name, value in arrays.items():
        value = np.asarray(value)
        if value.dtype.kind == "f" and not np.isfinite(value).all():
            raise UserInputError(
                f"{path}: weight {name!r} holds NaN or infinite values; re-train the head"
            )


_TORCH_ADAPTER = "sklearn.externals.array_api_compat.torch"  # skipped by _skops_io


def _skops_io():
    """``skops.io``, imported without importing torch (about 2 s of CPU to save or load a
    scikit-learn head): skops lists the trusted types by importing every sklearn package, which
    imports torch through sklearn's torch array adapter (no estimator in it); the walk skips a
    package whose import fails, so the adapter's import is made to fail meanwhile.
    """
    import sys

    if "skops.io" not in sys.modules and _TORCH_ADAPTER not in sys.modules:
        sys.modules[_TORCH_ADAPTER] = None  # None in sys.modules: its import raises ImportError
        try:
            import skops.io
        finally:
            del sys.modules[_TORCH_ADAPTER]
    import skops.io

    return skops.io


def _load_skops(directory: Path, record, config: dict):
    skops_io = _skops_io()
    path = directory / SKOPS
    if not path.is_file():
        raise UserInputError(f"{path} not found; the head directory is incomplete, re-save it")
    try:
        untrusted = skops_io.get_untrusted_types(file=path)
    except Exception as exc:  # a corrupt archive: zip or schema errors of any kind
        raise UserInputError(f"{path} is not a readable skops file ({exc}); re-save it") from exc
    foreign = sorted(set(untrusted) - set(SKOPS_TRUSTED))
    if foreign:
        raise UserInputError(
            f"{path} holds types that are not allowed: {', '.join(foreign)}; "
            "only embedkit heads load, re-save the head with save_head"
        )
    try:
        head = skops_io.load(path, trusted=list(untrusted))
    except Exception as exc:
        raise UserInputError(f"{path} could not be loaded ({exc}); re-save it") from exc
    if type(head).__name__ != record.cls:
        raise UserInputError(
            f"{path} holds a {type(head).__name__}, but head.json says {record.cls}; re-save "
            "the head"
        )
    return head


def _load_torch(directory: Path, record, config: dict):
    """Rebuild the head through ``initialize`` (as fit does), then load weights and history."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    name, path = record.cls, directory / WEIGHTS
    try:
        params = dict(config["params"])
        params.pop("validation_data", None)  # older heads saved it (always null)
        head = head_class(record.name)(**params)
        state = config["state"]
        head.classes_ = _decode_classes(state["classes"])
        head.n_features_in_ = int(state["n_features_in"])
        head.feature_shape_ = tuple(int(s) for s in state["feature_shape"])
        head.device = "cpu" if head.device == "auto" else head.device
        head.initialize()  # checks params; a device this machine lacks is named with head.json
        head.history_ = list(state["history"])
        head.best_epoch_ = state["best_epoch"]
        head.solver_ = str(state.get("solver", "adamw"))
        head.n_iter_ = len(head.history_)
    except (KeyError, TypeError, ValueError) as exc:
        raise UserInputError(
            f"{directory / CONFIG} has invalid params or state ({type(exc).__name__}: {exc}); "
            "re-save the head"
        ) from exc
    try:
        head.module_.load_state_dict(load_file(str(path)), strict=True)
    except FileNotFoundError as exc:
        raise UserInputError(f"{path} not found; the head directory is incomplete") from exc
    except (SafetensorError, RuntimeError, OSError) as exc:
        first = str(exc).strip().splitlines()[:2]
        raise UserInputError(
            f"{path} does not match {name} as configured in head.json ({' '.join(first)}); "
            "re-save the head"
        ) from exc
    head.module_.eval()
    return head


def _torch_state(head) -> dict:
    return {
        "classes": {
            "dtype": head.classes_.dtype.str if head.classes_.dtype.kind != "O" else "object",
            "values": _jsonable(head.classes_.tolist(), "classes_"),
        },
        "n_features_in": int(head.n_features_in_),
        "feature_shape": list(head.feature_shape_),
        "history": _jsonable(head.history_, "history_"),
        "best_epoch": head.best_epoch_,
        "solver": head.solver_,
    }


def _decode_classes(spec: dict) -> np.ndarray:
    dtype = np.dtype(spec["dtype"])
    if dtype.kind not in _LABEL_KINDS:
        raise ValueError(f"classes dtype {spec['dtype']!r} is not a label type")
    return np.array(spec["values"], dtype=dtype)


def _jsonable(value, what: str):
    """Return ``value`` with numpy scalars as Python ones; refuse what JSON cannot hold."""
    try:
        return json.loads(json.dumps(value, default=json_plain))
    except TypeError as exc:
        raise UserInputError(
            f"cannot save {what}: {exc}; use plain numbers, strings, lists and dicts"
        ) from exc
