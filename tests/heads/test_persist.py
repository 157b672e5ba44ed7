"""Saving and loading heads without pickle; tampered or foreign files are refused."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest
import skops.io
from safetensors.numpy import save_file
from sklearn.tree import DecisionTreeClassifier

from embedkit.errors import UserInputError
from embedkit.heads import HEADS, TORCH_HEADS, head_record, load_head, make_head, save_head
from tests.heads.conftest import FAST_TORCH


class Foreign:
    """A type no allow-list knows: loading it would import and run code from here."""

    def __init__(self):
        self.payload = "boom"


@pytest.fixture(scope="module")
def saved(tiny, tmp_path_factory):
    X, y, _, _ = tiny
    labels = np.array(["cat", "dog", "eel"])[y]  # string labels survive the round trip
    out = {}
    for name in HEADS:
        params = dict(FAST_TORCH) if name in TORCH_HEADS else {}
        head = make_head(name, random_state=0, **params).fit(X, labels)
        out[name] = (head, save_head(head, tmp_path_factory.mktemp(name)))
    return out


@pytest.mark.parametrize("name", HEADS)
def test_round_trip_gives_identical_probabilities(name, saved, tiny):
    head, path = saved[name]
    loaded = load_head(path)
    assert type(loaded) is type(head)
    np.testing.assert_array_equal(loaded.classes_, head.classes_)
    np.testing.assert_array_equal(loaded.predict_proba(tiny[2]), head.predict_proba(tiny[2]))
    assert list(loaded.predict(tiny[2][:3])) == list(head.predict(tiny[2][:3]))
    files = sorted(p.name for p in path.iterdir())
    assert files == (
        ["head.json", "weights.safetensors"] if name in TORCH_HEADS else ["head.json", "head.skops"]
    )


@pytest.mark.parametrize("name", HEADS)
def test_partial_fit_after_load_head_continues_from_the_saved_state(name, saved, tiny):
    head, path = saved[name]
    loaded = load_head(path)
    assert hasattr(loaded, "partial_fit") == head_record(name).streams
    if not head_record(name).streams:
        return  # fit_store refuses it by name (test_stream_and_cli.py)
    X, y, Xte, yte = tiny
    labels = np.array(["cat", "dog", "eel"])
    # Small steps: a head that continues stays near its saved predictions, a new one cannot.
    params = dict(FAST_TORCH, lr=1e-4) if name in TORCH_HEADS else {}
    loaded.set_params(**params)
    before = loaded.predict_proba(Xte)
    loaded.partial_fit(X, labels[y])  # no classes=: the loaded head knows them
    after = loaded.predict_proba(Xte)
    fresh = make_head(name, random_state=0, **params).partial_fit(X, labels[y], classes=labels)
    assert not np.array_equal(after, before)  # it trained on the block
    # ... starting from the saved weights, not from a new initialisation
    assert np.abs(after - before).mean() < np.abs(fresh.predict_proba(Xte) - before).mean() / 2
    assert loaded.score(Xte, labels[yte]) > 0.6
    if name in TORCH_HEADS:
        n = len(head.history_)
        assert [h["epoch"] for h in loaded.history_[-2:]] == [n, n + 1]
    with pytest.raises(UserInputError, match="X has 8 features, but .* expecting 16"):
        loaded.partial_fit(X[:, :8], labels[y])


def _reseal(directory):
    """Rewrite head.json's sha256 to match the files, as a forger would: the deeper checks
    (allow-listed types, module shapes) must still refuse what the digest no longer can."""
    config = json.loads((directory / "head.json").read_text())
    config["sha256"] = {
        name: hashlib.sha256((directory / name).read_bytes()).hexdigest()
        for name in config.get("sha256", {})
    }
    (directory / "head.json").write_text(json.dumps(config))


def test_a_flipped_byte_in_the_weights_is_refused_naming_the_file(saved, tmp_path):
    for name in ("logreg", "mlp"):
        _, path = saved[name]
        bad = tmp_path / name
        bad.mkdir()
        for f in path.iterdir():
            data = bytearray(f.read_bytes())
            if f.name != "head.json":
                data[len(data) // 2] ^= 1
            (bad / f.name).write_bytes(bytes(data))
        with pytest.raises(
            UserInputError, match=r"(head.skops|weights.safetensors) does not match the sha256"
        ):
            load_head(bad)


def test_torch_head_saved_with_the_old_validation_data_param_loads(saved, tmp_path, tiny):
    # Heads saved before validation data moved to fit() hold "validation_data": null.
    head, path = saved["mlp"]
    old = tmp_path / "old"
    old.mkdir()
    config = json.loads((path / "head.json").read_text())
    config["params"]["validation_data"] = None
    del config["state"]["solver"]
    (old / "head.json").write_text(json.dumps(config))
    (old / "weights.safetensors").write_bytes((path / "weights.safetensors").read_bytes())
    loaded = load_head(old)
    np.testing.assert_array_equal(loaded.predict_proba(tiny[2]), head.predict_proba(tiny[2]))
    assert "validation_data" not in loaded.get_params() and loaded.solver_ == "adamw"


def test_skops_file_with_a_foreign_type_is_refused(saved, tmp_path):
    _, path = saved["ridge"]
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "head.json").write_text((path / "head.json").read_text())
    skops.io.dump({"head": Foreign()}, bad / "head.skops")
    _reseal(bad)
    with pytest.raises(UserInputError, match="not allowed: .*Foreign"):
        load_head(bad)


def test_skops_file_with_another_estimator_is_refused(saved, tmp_path, tiny):
    _, path = saved["logreg"]
    bad = tmp_path / "swap"
    bad.mkdir()
    (bad / "head.json").write_text((path / "head.json").read_text())
    tree = DecisionTreeClassifier().fit(tiny[0], tiny[1])
    skops.io.dump(tree, bad / "head.skops")
    _reseal(bad)
    with pytest.raises(UserInputError, match="not allowed|holds a DecisionTreeClassifier"):
        load_head(bad)


def test_json_naming_an_unknown_class_is_refused(saved, tmp_path):
    _, path = saved["mlp"]
    config = json.loads((path / "head.json").read_text())
    config["class"] = "os.system"
    bad = tmp_path / "unknown"
    bad.mkdir()
    (bad / "head.json").write_text(json.dumps(config))
    with pytest.raises(UserInputError, match="unknown head class 'os.system'.*known: SGDHead"):
        load_head(bad)


def test_safetensors_with_wrong_shapes_is_refused(saved, tmp_path):
    _, path = saved["linear"]
    bad = tmp_path / "shapes"
    bad.mkdir()
    (bad / "head.json").write_text((path / "head.json").read_text())
    save_file(
        {
            "0.mean": np.zeros(3, np.float32),
            "0.inv_std": np.ones(3, np.float32),
            "1.weight": np.zeros((3, 3), np.float32),
            "1.bias": np.zeros(3, np.float32),
        },
        str(bad / "weights.safetensors"),
    )
    _reseal(bad)
    with pytest.raises(UserInputError, match="weights.safetensors does not match LinearHead"):
        load_head(bad)


def test_garbage_files_are_refused(saved, tmp_path):
    _, path = saved["mlp"]
    bad = tmp_path / "garbage"
    bad.mkdir()
    (bad / "head.json").write_text((path / "head.json").read_text())
    (bad / "weights.safetensors").write_bytes(b"\x00" * 64)
    _reseal(bad)
    with pytest.raises(UserInputError, match="does not match MLPHead"):
        load_head(bad)
    (bad / "head.json").write_text("{not json")
    with pytest.raises(UserInputError, match="not valid JSON"):
        load_head(bad)
    with pytest.raises(UserInputError, match="head.json not found"):
        load_head(tmp_path / "nowhere")


def test_unfitted_or_foreign_heads_are_not_saved(tmp_path, tiny):
    with pytest.raises(UserInputError, match="cannot save DecisionTreeClassifier"):
        save_head(DecisionTreeClassifier().fit(tiny[0], tiny[1]), tmp_path)
    with pytest.raises(Exception, match="not fitted yet"):
        save_head(make_head("ridge"), tmp_path)
