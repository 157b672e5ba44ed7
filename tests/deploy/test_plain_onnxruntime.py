"""The deployed model runs in plain onnxruntime, with embedkit (and torch) blocked from import.

The image script is the one docs/deploy.md shows; the text check follows its text paragraph.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from embedkit.cli import main
from embedkit.deploy import deploy, predict
from embedkit.extract import extract

pytest.importorskip("onnxruntime")

DOC = Path(__file__).resolve().parents[2] / "docs" / "deploy.md"
SCRIPT = re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.S)[0]
BLOCKER = (
    "import sys\n"
    "class Block:\n"
    "    def find_spec(self, name, path=None, target=None):\n"
    "        if name.split('.')[0] in ('embedkit', 'torch', 'sklearn', 'h5py'):\n"
    "            raise ModuleNotFoundError(f'No module named {name!r} (blocked)')\n"
    "sys.meta_path.insert(0, Block())\n"
    "sys.path = [p for p in sys.path if p not in ('', '.')]\n"
)


def _run_blocked(code: str, *args, cwd) -> str:
    result = subprocess.run(
        [sys.executable, "-c", BLOCKER + code, *map(str, args)],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout


def test_the_doc_script_is_short():
    assert len([line for line in SCRIPT.splitlines() if line.strip()]) <= 18


@pytest.mark.parametrize("crop", [False, True], ids=["resize", "shorter-side-and-crop"])
def test_doc_script_matches_embedkit_predict(data, crop, tmp_path):
    store = data["image_store"]
    if crop:  # train on features made with the eval crop, so the metadata holds it
        spec = {"kind": "image", "size": [16, 16], "resize_shorter": 19, "crop": "center",
                "mean": [127, 127, 127], "std": [128, 128, 128]}  # fmt: skip
        store = tmp_path / "crop.h5"
        extract(data["image_model"], data["images"], store, preprocess=spec, progress=False)
    assert main(["train", str(store), "--head", "logreg", "--out", str(tmp_path / "h")]) == 0
    deploy(tmp_path / "h", tmp_path / "model.onnx")
    expected = predict(tmp_path / "h", data["new_images"], progress=False)
    images = [data["new_images"] / i for i in expected.ids]
    out = _run_blocked(SCRIPT, tmp_path / "model.onnx", *images, cwd=tmp_path)
    lines = [line.split() for line in out.splitlines()]
    assert [Path(p).relative_to(data["new_images"]).as_posix() for p, _, _ in lines] == list(
        expected.ids
    )
    assert [label for _, label, _ in lines] == list(expected.labels)
    best = expected.probabilities.max(1)
    assert np.abs(np.array([float(p) for _, _, p in lines]) - best).max() <= 1e-4


def test_text_model_runs_with_its_metadata_tokenizer(data, tmp_path):
    pytest.importorskip("tokenizers")
    assert main(["train", str(data["text_store"]), "--head", "centroid",
                 "--out", str(tmp_path / "h")]) == 0  # fmt: skip
    deploy(tmp_path / "h", tmp_path / "model.onnx")
    expected = predict(tmp_path / "h", data["new_texts"], progress=False)
    texts = [line.split(",")[1] for line in data["new_texts"].read_text().splitlines()[1:]]
    code = (
        "import json, sys\n"
        "import numpy as np, onnxruntime as ort, tokenizers\n"
        "session = ort.InferenceSession(sys.argv[1])\n"
        "meta = session.get_modelmeta().custom_metadata_map\n"
        "spec = json.loads(meta['embedkit.preprocess'])\n"
        "tok = tokenizers.Tokenizer.from_str(meta['embedkit.tokenizer'])\n"
        "tok.enable_truncation(max_length=spec['max_length'])\n"
        "names = {i.name for i in session.get_inputs()}\n"
        "for text in json.loads(sys.argv[2]):\n"
        "    e = tok.encode(text)\n"
        "    feed = {'input_ids': [e.ids], 'attention_mask': [e.attention_mask],\n"
        "            'token_type_ids': [e.type_ids]}\n"
        "    feed = {k: np.array(v, np.int64) for k, v in feed.items() if k in names}\n"
        "    proba, label = session.run(['probabilities', 'label'], feed)\n"
        "    print(json.dumps(proba[0].tolist()))\n"
    )
    out = _run_blocked(code, tmp_path / "model.onnx", json.dumps(texts), cwd=tmp_path)
    got = np.array([json.loads(line) for line in out.splitlines()])
    assert got.shape == expected.probabilities.shape
    assert np.abs(got - expected.probabilities).max() < 1e-5
