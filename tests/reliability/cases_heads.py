"""The battery's head cases: tampered head directories, bad parameters, mismatched stores.

Seeds (conftest.py): ``lab`` (a labelled 60 x 3 store with a split), ``wide`` (its 5-wide
twin) and ``head_logreg`` / ``head_mlp`` trained on ``lab``. A case copies a head into
its folder, changes one thing (a setup function), and runs ``predict`` or ``train``.
"""

# ruff: noqa: E501 - the tables read best one case per line
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np

from tests.reliability.harness import Case

PREDICT = ("predict", "{d}/head", "{d}/lab.h5", "--out", "{d}/p.csv")
WEIGHTS = {"logreg": "head.skops", "mlp": "weights.safetensors"}


def _flip(rel: str, at: float = 0.5):
    def setup(folder: Path, assets) -> None:
        path = folder / rel
        data = bytearray(path.read_bytes())
        data[int(len(data) * at)] ^= 0x01
        path.write_bytes(bytes(data))

    return setup


def _write(rel: str, content: bytes | str):
    def setup(folder: Path, assets) -> None:
        path = folder / rel
        path.write_bytes(content.encode() if isinstance(content, str) else content)

    return setup


def _remove(rel: str):
    def setup(folder: Path, assets) -> None:
        (folder / rel).unlink()

    return setup


def _edit_json(rel: str, change):
    """Apply ``change(config)`` (it edits in place) to a JSON file of the head."""

    def setup(folder: Path, assets) -> None:
        path = folder / rel
        config = json.loads(path.read_text())
        change(config)
        path.write_text(json.dumps(config))

    return setup


def _set(keys: tuple, value):
    def change(config: dict) -> None:
        target = config
        for key in keys[:-1]:
            target = target.setdefault(key, {})
        target[keys[-1]] = value

    return change


def _nan_weights(head: str):
    """Weights that are all NaN, with head.json's sha256 updated to match (a real save of them)."""

    def setup(folder: Path, assets) -> None:
        path = folder / "head" / WEIGHTS[head]
        if head == "mlp":
            from safetensors.torch import load_file, save_file

            state = {k: v.float().fill_(float("nan")) for k, v in load_file(str(path)).items()}
            save_file(state, str(path))
        else:
            import skops.io

            from embedkit.heads._persist import SKOPS_TRUSTED

            model = skops.io.load(path, trusted=list(skops.io.get_untrusted_types(file=path)))
            assert all(
                t in SKOPS_TRUSTED or t.startswith(("sklearn.", "numpy."))
                for t in skops.io.get_untrusted_types(file=path)
            )
            model.estimator_.coef_[:] = np.nan
            skops.io.dump(model, path)
        _edit_json(
            "head/head.json",
            _set(("sha256", path.name), hashlib.sha256(path.read_bytes()).hexdigest()),
        )(folder, assets)

    return setup


def _head_case(name, head, setup, names, argv=PREDICT, code=2) -> Case:
    seeds = {"head": f"head_{head}", "lab.h5": "lab"}
    if "{d}/wide.h5" in argv:
        seeds["wide.h5"] = "wide"
    return Case(f"head_{head}_{name}", argv, code, names, {}, seeds, None, setup)


def _files_cases(head: str) -> list[Case]:
    w = WEIGHTS[head]
    return [
        _head_case("weights_flipped_byte", head, _flip(f"head/{w}"), (w, "sha256")),
        _head_case("weights_flipped_last_byte", head, _flip(f"head/{w}", 0.999), (w, "sha256")),
        _head_case("weights_truncated", head, _write(f"head/{w}", b"PK\x03\x04"), (w,)),
        _head_case("weights_empty", head, _write(f"head/{w}", b""), (w,)),
        _head_case("weights_missing", head, _remove(f"head/{w}"), (w, "not found")),
        _head_case("weights_nan", head, _nan_weights(head), (w, "NaN")),
        _head_case("json_missing", head, _remove("head/head.json"), ("head.json",)),
        _head_case("json_not_json", head, _write("head/head.json", "{not json"), ("head.json",)),
        _head_case(
            "json_latin1", head, _write("head/head.json", b'{"format": "\xe9"}'), ("head.json",)
        ),
        _head_case("json_a_list", head, _write("head/head.json", "[1, 2]"), ("head.json",)),
        _head_case(
            "json_format",
            head,
            _edit_json("head/head.json", _set(("format",), "other")),
            ("head.json", "format"),
        ),
        _head_case(
            "json_version",
            head,
            _edit_json("head/head.json", _set(("version",), 99)),
            ("head.json", "version"),
        ),
        _head_case(
            "json_class",
            head,
            _edit_json("head/head.json", _set(("class",), "os.system")),
            ("head.json", "os.system"),
        ),
        _head_case(
            "json_kind",
            head,
            _edit_json("head/head.json", _set(("kind",), "pickle")),
            ("head.json", "pickle"),
        ),
        _head_case(
            "json_sha_wrong",
            head,
            _edit_json("head/head.json", _set(("sha256", w), "0" * 64)),
            (w, "sha256"),
        ),
        _head_case(
            "json_sha_not_dict",
            head,
            _edit_json("head/head.json", _set(("sha256",), "abc")),
            ("head.json", "sha256"),
        ),
        _head_case(
            "json_sha_unknown_file",
            head,
            _edit_json("head/head.json", _set(("sha256",), {"../x": "0"})),
            ("head.json", "../x"),
        ),
        _head_case("train_json_bad", head, _write("head/train.json", "{oops"), ("train.json",)),
        _head_case(
            "wider_store",
            head,
            None,
            ("wide.h5",),
            ("predict", "{d}/head", "{d}/wide.h5", "--out", "{d}/p.csv"),
        ),
        _head_case(
            "wider_store_force",
            head,
            None,
            ("wide.h5", "5 features", "3"),
            ("predict", "{d}/head", "{d}/wide.h5", "--force", "--out", "{d}/p.csv"),
        ),
        _head_case(
            "store_missing",
            head,
            None,
            ("nothing.h5",),
            ("predict", "{d}/head", "{d}/nothing.h5", "--out", "{d}/p.csv"),
        ),
        _head_case(
            "head_missing",
            head,
            None,
            ("nohead",),
            ("predict", "{d}/nohead", "{d}/lab.h5", "--out", "{d}/p.csv"),
        ),
    ]


def _json_param(name: str, value, names: tuple) -> Case:
    setup = _edit_json("head/head.json", _set(("params", name), value))
    return _head_case(f"json_param_{name}_{str(value)[:12]}", "mlp", setup, ("head.json", *names))


# torch heads keep their parameters in head.json: each must be checked on load.
JSON_PARAMS = [
    ("hidden", 2**40, ("hidden",)),
    ("hidden", 0, ("hidden",)),
    ("hidden", "wide", ("hidden",)),
    ("depth", 10**6, ("depth",)),
    ("dropout", 2.0, ("dropout",)),
    ("lr", -1.0, ("lr",)),
    ("batch_size", 0, ("batch_size",)),
    ("device", "tpu:0", ("device",)),
    ("schedule", "exp", ("schedule",)),
    ("random_state", -3, ("random_state",)),
    ("n_threads", 0, ("n_threads",)),
    ("early_stopping", "sometimes", ("early_stopping",)),
]


def _state_cases() -> list[Case]:
    out = [_json_param(*args) for args in JSON_PARAMS]
    edits = {
        "params_not_dict": (_set(("params",), 3), ("head.json",)),
        "params_unknown": (_set(("params", "exec"), "rm"), ("head.json", "exec")),
        "state_missing": (lambda c: c.pop("state"), ("head.json", "state")),
        "classes_dtype": (_set(("state", "classes", "dtype"), "<c16"), ("head.json",)),
        "n_features_wrong": (_set(("state", "n_features_in"), 8), ("weights.safetensors",)),
        "feature_shape_bad": (_set(("state", "feature_shape"), "x"), ("head.json",)),
    }
    for name, (change, names) in edits.items():
        out.append(_head_case(name, "mlp", _edit_json("head/head.json", change), names))
    return out


TRAIN = ("train", "{d}/lab.h5", "--out", "{d}/h", "--head")

# (head, --param values, words the error must hold): bad values from the CLI
PARAMS = [
    ("mlp", ["hidden=1099511627776"], ("hidden",)),
    ("mlp", ["hidden=0"], ("hidden",)),
    ("mlp", ["hidden=1.5"], ("hidden",)),
    ("mlp", ["hidden=abc"], ("hidden",)),
    ("mlp", ["hidden=16384", "depth=16"], ("weights",)),
    ("mlp", ["depth=0"], ("depth",)),
    ("mlp", ["dropout=1"], ("dropout",)),
    ("mlp", ["dropout=-0.1"], ("dropout",)),
    ("mlp", ["lr=0"], ("lr",)),
    ("mlp", ["lr=NaN"], ("lr",)),
    ("mlp", ["lr=Infinity"], ("lr",)),
    ("mlp", ["batch_size=0"], ("batch_size",)),
    ("mlp", ["max_epochs=0"], ("max_epochs",)),
    ("mlp", ["patience=0"], ("patience",)),
    ("mlp", ["schedule=foo"], ("schedule",)),
    ("mlp", ["early_stopping=maybe"], ("early_stopping",)),
    ("mlp", ["standardize=2"], ("standardize",)),
    ("mlp", ["device=tpu"], ("device",)),
    ("mlp", ["label_smoothing=1"], ("label_smoothing",)),
    ("mlp", ["validation_fraction=0"], ("validation_fraction",)),
    ("mlp", ["class_weight=weird"], ("class_weight",)),
    ("mlp", ["n_threads=0"], ("n_threads",)),
    ("mlp", ["weight_decay=-1"], ("weight_decay",)),
    ("mlp", ["min_steps=-1"], ("min_steps",)),
    ("mlp", ["mixed_precision=yes"], ("mixed_precision",)),
    ("mlp", ["balanced_sampler=1"], ("balanced_sampler",)),
    ("linear", ["solver=newton"], ("solver",)),
    ("linear", ["l2=-1"], ("l2",)),
    ("linear", ["lr=[1,2]"], ("lr",)),
    ("attnpool", ["heads=0"], ("heads",)),
    ("attnpool", ["dim=1073741824"], ("dim",)),
    ("attnpool", ["heads=2", "dim=7"], ("dim", "heads")),
    ("sgd", ["loss=foo"], ("loss",)),
    ("sgd", ["alpha=0"], ("alpha",)),
    ("sgd", ["max_iter=0"], ("max_iter",)),
    ("sgd", ["validation_fraction=1"], ("validation_fraction",)),
    ("sgd", ["n_iter_no_change=0"], ("n_iter_no_change",)),
    ("sgd", ["tol=-1"], ("tol",)),
    ("sgd", ["early_stopping=1"], ("early_stopping",)),
    ("logreg", ["C=0"], ("C",)),
    ("logreg", ["C=-1"], ("C",)),
    ("logreg", ["max_iter=0"], ("max_iter",)),
    ("logreg", ["class_weight=foo"], ("class_weight",)),
    ("svm", ["C=Infinity"], ("C",)),
    ("ridge", ["alpha=-1"], ("alpha",)),
    ("knn", ["n_neighbors=0"], ("n_neighbors",)),
    ("knn", ["weights=foo"], ("weights",)),
    ("knn", ["metric=foo"], ("metric",)),
    ("knn", ["n_jobs=0"], ("n_jobs",)),
    ("centroid", ["metric=manhattan"], ("metric",)),
    ("centroid", ["random_state=-1"], ("random_state",)),
    ("logreg", ["foo=1"], ("foo",)),
    ("logreg", ["C"], ("--param", "KEY=VALUE")),
    ("logreg", ["=1"], ("--param",)),
]


def _param_cases() -> list[Case]:
    cases = []
    for i, (head, params, names) in enumerate(PARAMS):
        argv = TRAIN + (head,) + tuple(a for p in params for a in ("--param", p))
        cases.append(
            Case(
                f"param_{i:02d}_{head}_{params[0].split('=')[0] or 'empty'}",
                argv,
                2,
                names,
                {},
                {"lab.h5": "lab"},
            )
        )
    return cases


def head_cases() -> list[Case]:
    return _files_cases("logreg") + _files_cases("mlp") + _state_cases() + _param_cases()
