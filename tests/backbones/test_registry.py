"""The registry, tap listing and the bad-input messages of the backbone commands."""

from __future__ import annotations

import hashlib
import importlib.util
import re
from pathlib import Path

import pytest

from embedkit.backbones import get_backbone, list_backbones, load_backbone
from embedkit.cli import main
from embedkit.errors import MissingDependencyError, UserInputError

BUILT_INS = ["efficientnet_lite0", "efficientnet_lite2", "minilm"]


def test_built_ins_are_registered():
    assert set(BUILT_INS) <= set(list_backbones())


@pytest.mark.parametrize("name", list_backbones())
def test_registry_entry_loads_and_its_default_tap_exists(name):
    spec = get_backbone(name)
    assert spec.modality in ("image", "text")
    backbone = load_backbone(name)
    taps = {row.name: row for row in backbone.tap_table()}
    assert spec.default_tap in taps
    if spec.modality == "image":
        assert backbone.preprocess.kind == "image"
        assert taps["pool"].shape == (1280,)
        assert taps["features"].shape[0] == 1280 and taps["features"].stride == 32


def test_unknown_backbone_lists_the_known_ones():
    with pytest.raises(UserInputError, match="Unknown backbone 'resnet5'; known: "
                       "efficientnet_lite0, efficientnet_lite2, minilm"):  # fmt: skip
        get_backbone("resnet5")


def test_cli_unknown_backbone_exits_2_with_one_line(tmp_path, capsys):
    code = main(["export", "resnet5", "--out", str(tmp_path / "x.onnx")])
    err = capsys.readouterr().err
    assert code == 2
    assert err.count("\n") == 1 and "known: efficientnet_lite0" in err
    assert not (tmp_path / "x.onnx").exists()


def test_unknown_image_tap_lists_valid_taps(lite0):
    with pytest.raises(UserInputError, match=r"Unknown tap 'blocks\.99'.*blocks\.15, features"):
        lite0.resolve("blocks.99")


def test_unknown_text_tap_lists_valid_taps(minilm):
    with pytest.raises(UserInputError, match=r"Unknown tap 'layer\.9'.*layer\.5, last"):
        minilm.resolve("layer.9")


def test_cli_unknown_tap_exits_2(tmp_path, capsys):
    code = main(
        ["export", "efficientnet_lite0", "--tap", "nope", "--out", str(tmp_path / "x.onnx")]
    )
    assert code == 2
    assert "valid: stem, blocks.0" in capsys.readouterr().err


def test_cli_lists_backbones(capsys):
    assert main(["backbones"]) == 0
    out = capsys.readouterr().out
    for name in BUILT_INS:
        assert name in out
    assert "shorter side 256, centre crop 224" in out and "hf:<name-or-path>" in out


def test_cli_taps_lists_shapes_from_a_real_forward(capsys):
    assert main(["taps", "efficientnet_lite0"]) == 0
    out = capsys.readouterr().out
    # tap -> (shape, stride), however the columns are padded
    rows = {m[0]: m[1:] for m in re.findall(r"^(\S+)\s+(\([\d, ]+\))\s+(\S+)", out, re.M)}
    assert rows["blocks.10"] == ("(112, 14, 14)", "16")
    assert rows["pool"] == ("(1280)", "-") and "logits" in rows


@pytest.mark.parametrize("prefix, module", [("timm:", "timm"), ("torchvision:", "torchvision")])
def test_timm_and_torchvision_need_their_extra(prefix, module):
    if importlib.util.find_spec(module) is not None:
        pytest.skip(f"{module} is installed here; the export test below covers it")
    with pytest.raises(MissingDependencyError, match=r"pip install 'embedkit\[timm\]'"):
        get_backbone(prefix + "resnet18").loader()


@pytest.mark.parametrize("prefix, module", [("timm:", "timm"), ("torchvision:", "torchvision")])
def test_timm_and_torchvision_export_where_they_import(prefix, module, tmp_path):
    pytest.importorskip(module)
    from embedkit.backbones import export_backbone

    try:
        report = export_backbone(prefix + "resnet18", tmp_path / "r18.onnx")
    except UserInputError as exc:
        if "pretrained weights" not in str(exc):
            raise
        pytest.skip(f"resnet18 weights are not cached here: {exc}")
    assert report.taps[0].shape == (512,) and report.verify["passed"]


def test_minilm_weights_are_the_published_ones():
    from embedkit.backbones.text import minilm_path

    digest = hashlib.sha256(Path(minilm_path(), "model.safetensors").read_bytes()).hexdigest()
    assert digest == "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"
