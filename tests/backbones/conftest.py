"""Backbone fixtures: each real model is loaded once and exported once per session.

Loading EfficientNet-Lite0 takes about a second and exporting MiniLM several, so the
tests share these and use tiny inputs; the exports are the session's ``exported`` files.
"""

from __future__ import annotations

import numpy as np
import pytest


@pytest.fixture(scope="session", autouse=True)
def _one_torch_thread():
    """Measured here: with the 2 cores busy (xdist, other jobs) a Lite0 forward takes
    4-6 s on 2 torch threads and 0.15 s on one, so these tests use one thread."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def lite0():
    from embedkit.backbones import load_backbone

    return load_backbone("efficientnet_lite0")


@pytest.fixture(scope="session")
def minilm():
    from embedkit.backbones import load_backbone

    return load_backbone("minilm")


@pytest.fixture(scope="session")
def lite2():
    from embedkit.backbones import load_backbone

    return load_backbone("efficientnet_lite2")


@pytest.fixture(scope="session")
def lite0_onnx(exported):
    """The session's Lite0 export (taps pool, logits, blocks.10), made by `embedkit export`."""
    return exported("efficientnet_lite0")


@pytest.fixture(scope="session")
def minilm_onnx(exported):
    """MiniLM as `embedkit export minilm` writes it: fused, mean pooled, L2-normed."""
    return exported("minilm")


def ort_session(path):
    import onnxruntime as ort

    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def encode_texts(texts, meta) -> dict[str, np.ndarray]:
    """Tokenise with the tokenizer stored in the ONNX metadata, as extract does."""
    from tokenizers import Tokenizer

    tok = Tokenizer.from_str(meta["embedkit.tokenizer"])
    tok.enable_padding()
    enc = tok.encode_batch(texts)
    feeds = {
        "input_ids": np.array([e.ids for e in enc], np.int64),
        "attention_mask": np.array([e.attention_mask for e in enc], np.int64),
        "token_type_ids": np.array([e.type_ids for e in enc], np.int64),
    }
    return {k: feeds[k] for k in meta["embedkit.preprocess"]["inputs"]}
