"""Read a sentence-transformers model folder: max length, pooling, Dense head, norm, prompt.

    embedkit export hf:/models/multilingual-e5-small --out e5.onnx    # "query: " prefix
    embedkit export hf:/models/embeddinggemma-300m --out gemma.onnx   # mean, 2 Dense, norm

Every file is optional (a plain Hugging Face folder has none); docs/backbones.md, "Text
encoders from a folder", lists what each one sets.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from torch import nn

from embedkit.errors import UserInputError

_POOLING_MODES = {  # 1_Pooling/config.json key -> embedkit pooling
    "pooling_mode_mean_tokens": "mean",
    "pooling_mode_cls_token": "cls",
    "pooling_mode_lasttoken": "lasttoken",
}
_ACTIVATIONS = {
    "torch.nn.modules.linear.Identity": nn.Identity,
    "torch.nn.modules.activation.Tanh": nn.Tanh,
    "torch.nn.modules.activation.GELU": nn.GELU,
    "torch.nn.modules.activation.ReLU": nn.ReLU,
}


@dataclass(frozen=True)
class SentenceConfig:
    """What a sentence-transformers folder says about turning tokens into one vector."""

    max_length: int | None = None  # sentence_bert_config.json max_seq_length
    pooling: str | None = None  # mean | cls | lasttoken; None: no Pooling module
    normalize: bool = False  # a Normalize module follows
    dense: nn.Module | None = None  # the Dense modules in order, on the final embedding
    prompt: str = ""  # the default prompt, prepended to every text


def read_sentence_config(folder: str | Path, prompt_name: str | None = None) -> SentenceConfig:
    """Read the sentence-transformers files of a local folder (nothing there: defaults).

    Parameters
    ----------
    folder : str or Path
        A local model folder.
    prompt_name : str, optional
        A key of ``prompts`` in ``config_sentence_transformers.json``; default its
        ``default_prompt_name``, else ``query`` for E5 folders (see :func:`default_prompt`).

    Examples
    --------
    >>> from embedkit.backbones.text import minilm_path
    >>> cfg = read_sentence_config(minilm_path())
    >>> cfg.max_length, cfg.pooling, cfg.normalize, cfg.dense, cfg.prompt
    (256, 'mean', True, None, '')
    """
    folder = Path(folder)
    if not folder.is_dir():
        return SentenceConfig()
    sbert = _json(folder / "sentence_bert_config.json") or {}
    modules = _json(folder / "modules.json") or []
    pooling, normalize, dense = None, False, []
    for module in modules:
        kind = str(module.get("type", "")).rsplit(".", 1)[-1]
        path = folder / module.get("path", "")
        if kind == "Pooling":
            pooling = _pooling(path / "config.json")
        elif kind == "Dense":
            dense.append(_dense(path))
        elif kind == "Normalize":
            normalize = True
    max_length = sbert.get("max_seq_length")
    return SentenceConfig(
        max_length=int(max_length) if max_length else None,
        pooling=pooling,
        normalize=normalize,
        dense=nn.Sequential(*dense).eval() if dense else None,
        prompt=default_prompt(folder, prompt_name),
    )


def default_prompt(folder: Path, prompt_name: str | None = None) -> str:
    """The text put before every input: the folder's default prompt, if it names one.

    E5 models (``intfloat/*e5*``) expect ``"query: "`` but their folders often carry no
    prompts; a folder whose config names an E5 model gets ``"query: "`` unless its
    ``config_sentence_transformers.json`` says otherwise.
    """
    st = _json(folder / "config_sentence_transformers.json") or {}
    prompts = st.get("prompts") or {}
    name = prompt_name or st.get("default_prompt_name")
    if prompt_name and prompt_name not in prompts:
        raise UserInputError(
            f"prompt {prompt_name!r} is not in {folder}/config_sentence_transformers.json; "
            f"valid: {', '.join(prompts) or 'none'}"
        )
    if name and name in prompts:
        return str(prompts[name])
    origin = str((_json(folder / "config.json") or {}).get("_name_or_path", ""))
    return "query: " if not prompts and "e5" in origin.lower().split("/")[-1] else ""


def _pooling(path: Path) -> str:
    cfg = _json(path) or {}
    on = [key for key, value in cfg.items() if key.startswith("pooling_mode") and value]
    modes = [_POOLING_MODES[k] for k in on if k in _POOLING_MODES]
    if len(on) != 1 or not modes:
        raise UserInputError(
            f"{path}: pooling {', '.join(on) or 'none'} is not supported; embedkit pools "
            f"with one of {', '.join(_POOLING_MODES)} (or pass --pool mean|cls|lasttoken)"
        )
    return modes[0]


def _dense(path: Path) -> nn.Module:
    cfg = _json(path / "config.json")
    weights = path / "model.safetensors"
    if cfg is None or not weights.is_file():
        raise UserInputError(
            f"{path}: a Dense module needs config.json and model.safetensors (embedkit "
            "loads no pickled pytorch_model.bin); convert it with safetensors"
        )
    act = cfg.get("activation_function", "torch.nn.modules.linear.Identity")
    if act not in _ACTIVATIONS:
        raise UserInputError(
            f"{path}: activation {act} is not supported; valid: {', '.join(_ACTIVATIONS)}"
        )
    from safetensors.torch import load_file

    n_in, n_out = int(cfg["in_features"]), int(cfg["out_features"])
    linear = nn.Linear(n_in, n_out, bias=cfg.get("bias", True))
    state = load_file(str(weights))
    linear.load_state_dict({k.removeprefix("linear."): v for k, v in state.items()})
    return nn.Sequential(linear, _ACTIVATIONS[act]())


def _json(path: Path):
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise UserInputError(f"{path} is not valid JSON: {exc}") from exc
