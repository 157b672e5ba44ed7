"""Reading ONNX files (metadata, plain graphs, sidecars) and preprocessing items."""

from __future__ import annotations

import hashlib
import io
import json
from dataclasses import replace

import numpy as np
import pytest
from PIL import Image

from embedkit.errors import UserInputError
from embedkit.extract import ArraySpec, ImageSpec, TextSpec, load_model, parse_preprocess
from embedkit.extract.model import GraphTensor
from embedkit.extract.preprocess import BadItem, ImagePreprocessor, make_preprocessor
from tests.extract.extract_graphs import IMAGE_SPEC


def test_metadata_taps_and_preprocess(models):
    spec = load_model(models["image"])
    assert [t.name for t in spec.taps] == ["pool", "fmap"]
    assert spec.taps[1].shape == (4, 8, 8) and spec.taps[1].stride == 2
    assert spec.taps[0].pooling == "avg"
    assert isinstance(spec.preprocess, ImageSpec) and spec.preprocess.size == (16, 16)
    assert spec.sha256 == hashlib.sha256(models["image"].read_bytes()).hexdigest()
    assert spec.inputs[0].shape == (None, 3, 16, 16)


def test_tap_selection(models):
    assert [t.name for t in load_model(models["image"], taps=["fmap"]).taps] == ["fmap"]
    with pytest.raises(UserInputError, match=r"unknown tap 'nope'; this model has: pool, fmap"):
        load_model(models["image"], taps=["nope"])


def test_plain_onnx_taps_are_outputs_and_sidecar_gives_preprocess(models, tmp_path):
    plain = tmp_path / "plain.onnx"
    plain.write_bytes(models["image_plain"].read_bytes())
    spec = load_model(plain)
    assert [(t.name, t.output, t.shape) for t in spec.taps] == [
        ("fmap", "fmap", (4, 8, 8)),
        ("pool", "pool", (4,)),
    ]
    assert spec.preprocess is None
    (tmp_path / "plain.onnx.json").write_text(json.dumps({"preprocess": IMAGE_SPEC}))
    assert load_model(plain).preprocess == parse_preprocess(IMAGE_SPEC, "x")
    override = {**IMAGE_SPEC, "mean": [0, 0, 0]}
    assert load_model(plain, preprocess=override).preprocess.mean == (0, 0, 0)
    other = tmp_path / "other.json"
    other.write_text(json.dumps({**IMAGE_SPEC, "layout": "NHWC"}))
    assert load_model(plain, preprocess=other).preprocess.layout == "NHWC"


def test_not_onnx_and_missing(tmp_path):
    junk = tmp_path / "model.onnx"
    junk.write_text("this is not a protobuf at all \x00\xff")
    with pytest.raises(UserInputError, match=r"model.onnx: not an ONNX model"):
        load_model(junk)
    with pytest.raises(UserInputError, match="no such model file"):
        load_model(tmp_path / "missing.onnx")


@pytest.mark.parametrize(
    "key, value, message",
    [
        ("embedkit.taps", "[1, 2]", r"'embedkit.taps\[0\]' must be an object, got int"),
        ("embedkit.taps", "[{", "'embedkit.taps' is not valid JSON"),
        ("embedkit.preprocess", "{oops", "'embedkit.preprocess' is not valid JSON"),
    ],
)
def test_bad_contract_metadata_names_the_key(models, tmp_path, key, value, message):
    import onnx

    model = onnx.load(str(models["image"]))
    next(p for p in model.metadata_props if p.key == key).value = value
    onnx.save(model, str(tmp_path / "bad.onnx"))
    with pytest.raises(UserInputError, match=rf"bad.onnx: metadata {message}"):
        load_model(tmp_path / "bad.onnx")


@pytest.mark.parametrize(
    "raw, message",
    [
        ({"kind": "audio"}, "kind 'audio' is not one of: image, text, array"),
        ({"kind": "image", "colour": "RGB"}, "unknown image preprocessing key 'colour'"),
        ({"kind": "image", "layout": "CHW"}, "layout='CHW' is not one of: NCHW, NHWC"),
    ],
)
def test_bad_specs(raw, message):
    with pytest.raises(UserInputError, match=message):
        parse_preprocess(raw, "spec.json")


def _png(pixels: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="PNG")
    return buf.getvalue()


def test_image_resize_normalise_layout(models):
    model = load_model(models["image"])
    pre = make_preprocessor(model, "image", "images")
    pixels = np.random.default_rng(0).integers(0, 256, (20, 30, 3), dtype=np.uint8)
    feed = pre.collate([pre.prepare(_png(pixels)), pre.prepare(pixels)])
    x = feed["pixel_values"]  # (2, 3, 16, 16)
    assert x.shape == (2, 3, 16, 16) and x.dtype == np.float32
    resized = np.asarray(Image.fromarray(pixels).resize((16, 16), Image.BILINEAR), np.float32)
    np.testing.assert_allclose(x[0], ((resized - 127) / 128).transpose(2, 0, 1), atol=1e-6)
    np.testing.assert_array_equal(x[0], x[1])  # bytes and arrays give the same input


def test_image_resize_shorter_center_crop_nhwc(models):
    model = load_model(models["image"])
    spec = ImageSpec(input="pixel_values", size=(16, 16), resize_shorter=20, crop="center",
                     layout="NHWC", color="L")  # fmt: skip
    with pytest.raises(UserInputError, match=r"expects \(3, 16, 16\) per item"):
        ImagePreprocessor(spec, model)  # the graph wants NCHW RGB
    pixels = np.arange(40 * 80, dtype=np.uint32).reshape(40, 80).astype(np.uint8)
    model_nhwc = replace(model, inputs=(GraphTensor("pixel_values", "float32", (None, 16, 16, 1)),))
    pre = ImagePreprocessor(spec, model_nhwc)
    x = pre.collate([pre.prepare(pixels)])["pixel_values"]
    expected = np.asarray(Image.fromarray(pixels).resize((40, 20), Image.BILINEAR))[2:18, 12:28]
    np.testing.assert_array_equal(x[0, :, :, 0], expected.astype(np.float32))


def test_corrupt_image_is_a_bad_item(models):
    pre = make_preprocessor(load_model(models["image"]), "image", "images")
    with pytest.raises(BadItem, match="cannot decode image") as first:
        pre.prepare(b"\x89PNG broken")
    with pytest.raises(BadItem) as second:
        pre.prepare(b"\x89PNG broken")
    assert str(first.value) == str(second.value)  # no buffer address: the store records it
    assert "0x" not in str(first.value)


def test_text_tokenizes_pads_and_truncates(models):
    model = load_model(models["text"])
    assert isinstance(model.preprocess, TextSpec)
    pre = make_preprocessor(model, "text", "t.txt")
    feed = pre.collate(["the cat", "a big red dog ran fast on the mat slow"])
    assert set(feed) == {"input_ids", "attention_mask"}  # token_type_ids is not declared
    assert feed["input_ids"].dtype == np.int64 and feed["input_ids"].shape == (2, 8)
    assert feed["input_ids"][0].tolist() == [2, 3, 0, 0, 0, 0, 0, 0]
    assert feed["attention_mask"].sum(axis=1).tolist() == [2, 8]
    with pytest.raises(BadItem, match="empty text"):
        pre.prepare("   ")


def test_array_preprocess_and_kind_mismatch(models):
    model = load_model(models["array"])
    pre = make_preprocessor(model, "array", "x.npy")
    assert pre.spec == ArraySpec(input="x", dtype="float32")
    assert pre.collate([np.ones(6, np.float64)])["x"].dtype == np.float32
    with pytest.raises(BadItem, match="NaN"):
        pre.prepare(np.array([np.nan] * 6))
    with pytest.raises(UserInputError, match=r"no preprocessing spec for image input"):
        make_preprocessor(model, "image", "images")
    with pytest.raises(UserInputError, match=r"a text source cannot feed image.onnx"):
        make_preprocessor(load_model(models["image"]), "text", "t.txt")


def test_grey_images_resize_before_colour_conversion_gives_same_pixels(models):
    pre = make_preprocessor(load_model(models["image"]), "image", "images")
    grey = np.random.default_rng(3).integers(0, 256, (28, 28), dtype=np.uint8)
    rgb = np.asarray(Image.fromarray(grey).convert("RGB"))
    assert pre.prepare(grey).shape[-1] == 1  # grey stays one channel until collate
    (rgb_feed,) = pre.collate([pre.prepare(rgb)]).values()
    for item in (grey, _png(grey)):
        (feed,) = pre.collate([pre.prepare(item)]).values()
        np.testing.assert_array_equal(feed, rgb_feed)
    (mixed,) = pre.collate([pre.prepare(rgb), pre.prepare(grey)]).values()  # one batch
    np.testing.assert_array_equal(mixed, np.concatenate([rgb_feed, rgb_feed]))
