"""The deployment file (``rnnfast.export``, ``rnnfast.load_export``): one model's weights and
configuration, for the C API and other runtimes.

``export(module, path)`` writes one safetensors file (a JSON header plus raw little-endian
arrays, no pickle). The header's ``__metadata__`` holds flat strings, so a reader in any
language needs only the safetensors header:

- ``format`` = ``"rnnfast.model"``, ``format_version`` = ``"1"`` (``"2"`` when an option below
  needs it: a reader of version 1 refuses what it would misread), ``precision`` = ``"float32"``
- ``model``: ``"rnn"`` (a bare nn.RNN/LSTM/GRU), ``"language_model"`` or ``"sequence_classifier"``
- ``cell`` (``rnn_tanh``, ``rnn_relu``, ``lstm``, ``gru``), ``input_size`` (features entering the
  recurrent stack), ``hidden_size``, ``num_layers``, ``bidirectional`` (``0``/``1``)
- ``residual`` (``"1"``, version 2 only): layers after the first add their input to their output
- ``vocab_size`` (0 without an embedding), ``output_size`` (features, logits or classes per
  step or per sequence), ``pooling`` (classifiers: ``last``/``mean``/``max``; else empty)
- ``config``: the Python model's constructor arguments as JSON (for :func:`load`)
- ``vocab`` (optional): the token strings by id as a JSON array, for applications that read or
  write text (``rnnfast_model_vocab_token`` in the C API)
- ``inference_weights``: ``float32``, ``bfloat16`` or ``int8``, the format the recurrent weights
  compute in (the module's ``set_inference_weights``); the arrays stay float32, so a reader may
  choose another (``rnnfast_model_set_inference_weights``). Absent (older files): ``float32``.

Arrays (float32): ``rnn.weight_ih_l{k}[_reverse]``, ``rnn.weight_hh_l{k}[_reverse]``,
``rnn.bias_ih_l{k}[_reverse]``, ``rnn.bias_hh_l{k}[_reverse]`` in PyTorch layout and gate order
(biases are written as zeros for ``bias=False``), ``embedding.weight`` (V, E) and ``head.weight``
(O, F), ``head.bias`` (O) for the models. Later options (projection, int8) add
metadata keys and bump ``format_version``. ``model.save`` stays the training checkpoint.

Format version 2 (written only for the cell variants, so other files stay readable by version-1
readers) adds the metadata ``direction`` (``forward``, ``reverse`` or ``bidirectional``; a
reverse-only stack's arrays carry ``_reverse``), ``peepholes`` (``0``/``1``; then arrays
``rnn.weight_p_l{k}[_reverse]`` (3, H), rows p_i, p_f, p_o) and ``linear_before_reset``
(``1``, or ``0`` for Cho et al.'s GRU). A version-1 file means forward or bidirectional (as
``bidirectional`` says), no peepholes, linear_before_reset 1.
"""
from __future__ import annotations

import json
import os

import numpy as np

from ._atomic import atomic_write
from .checkpoint import _safetensors_numpy

__all__ = ["export", "load", "FORMAT", "FORMAT_VERSION"]

FORMAT = "rnnfast.model"
FORMAT_VERSION = 2  # the newest written and read; plain models are still written as version 1
_READS = tuple(str(v) for v in range(1, FORMAT_VERSION + 1))  # every version up to the newest


def _recurrent_arrays(rnn) -> dict:
    arrays = {}
    G = rnn._layer_params[0][0][0].data.shape[0]
    for k in range(rnn.num_layers):
        for d in range(rnn.num_directions):
            sfx = f"_l{k}" + ("_reverse" if rnn._runs_reverse(d) else "")
            w_ih, w_hh, b_ih, b_hh = rnn._layer_params[k][d]
            if rnn.peepholes:
                arrays[f"rnn.weight_p{sfx}"] = rnn._peep_params[k][d].data
            arrays[f"rnn.weight_ih{sfx}"] = w_ih.data
            arrays[f"rnn.weight_hh{sfx}"] = w_hh.data
            arrays[f"rnn.bias_ih{sfx}"] = b_ih.data if b_ih is not None else np.zeros(G, np.float32)
            arrays[f"rnn.bias_hh{sfx}"] = b_hh.data if b_hh is not None else np.zeros(G, np.float32)
    return arrays


def _linear_arrays(linear) -> dict:
    bias = linear.bias.data if linear.bias is not None else np.zeros(linear.out_features, np.float32)
    return {"head.weight": linear.weight.data, "head.bias": bias}


def _describe(module):
    """(metadata fields, arrays) of a supported module, or a TypeError naming what is supported."""
    from .models import LanguageModel, SequenceClassifier
    from .nn.recurrent import RNNBase

    if isinstance(module, RNNBase):
        rnn, arrays, vocab, out, pooling, kind = module, {}, 0, module.num_directions * module.hidden_size, "", "rnn"
        config = dict(cls=type(module).__name__, input_size=rnn.input_size, hidden_size=rnn.hidden_size,
                      num_layers=rnn.num_layers, bias=rnn.bias, bidirectional=rnn.bidirectional,
                      batch_first=rnn.batch_first)
        if rnn.residual:
            config["residual"] = True
        if type(module).__name__ == "RNN":
            config["nonlinearity"] = "relu" if rnn.cell == "rnn_relu" else "tanh"
        config.update(_variant_config(rnn))
    elif isinstance(module, LanguageModel):
        rnn, kind, pooling, config = module.rnn, "language_model", "", module.config
        arrays = {"embedding.weight": module.embedding.weight.data, **_linear_arrays(module.decoder)}
        vocab, out = module.vocab_size, module.vocab_size
    elif isinstance(module, SequenceClassifier):
        rnn, kind, pooling, config = module.rnn, "sequence_classifier", module.pooling, module.config
        emb = module.encoder_input.embedding
        arrays = {} if emb is None else {"embedding.weight": emb.weight.data}
        arrays.update(_linear_arrays(module.head))
        vocab, out = (0 if emb is None else emb.num_embeddings), module.num_outputs
    else:
        raise TypeError("export: module: expected an nn.RNN, nn.LSTM, nn.GRU, models.LanguageModel or "
                        f"models.SequenceClassifier, got {type(module).__name__}")
    check_no_projection(rnn, "export", "the rnnfast model file and the C API have neither yet")
    arrays.update(_recurrent_arrays(rnn))
    meta = dict(format=FORMAT, format_version="1", precision="float32", model=kind,
                inference_weights=getattr(rnn, "inference_weights", "float32"),
                cell=rnn.cell, input_size=str(rnn.input_size), hidden_size=str(rnn.hidden_size),
                num_layers=str(rnn.num_layers), bidirectional=str(int(rnn.bidirectional)),
                vocab_size=str(vocab), output_size=str(out), pooling=pooling, config=json.dumps(config))
    if _variant_config(rnn):
        meta.update(format_version="2", direction=rnn.direction, peepholes=str(int(rnn.peepholes)),
                    linear_before_reset=str(int(rnn.linear_before_reset)))
    if rnn.residual:
        meta.update(format_version="2", residual="1")
    return meta, arrays


def _variant_config(rnn) -> dict:
    """The constructor arguments of a recurrent stack's cell variant and direction; {} for the default cells."""
    config = {}
    if rnn.direction == "reverse":
        config["direction"] = "reverse"
    if rnn.peepholes:
        config["peepholes"] = True
    if not rnn.linear_before_reset:
        config["linear_before_reset"] = False
    return config


def check_no_projection(rnn, where: str, why: str) -> None:
    """A projected (proj_size) or layer-normalised LSTM has no place in a deployment format yet:
    refused, naming why."""
    if getattr(rnn, "proj_size", 0):
        raise ValueError(f"{where}: module: an LSTM with proj_size={rnn.proj_size} cannot be exported: {why}")
    if getattr(rnn, "layer_norm", False):
        raise ValueError(f"{where}: module: an LSTM with layer_norm=True cannot be exported: {why}")


def check_float32_weights(rnn, where: str) -> None:
    """ONNX holds float32 weights only: a model set to bfloat16 or int8 inference weights would compute
    differently once exported, so it is refused rather than silently widened."""
    if getattr(rnn, "inference_weights", "float32") != "float32":
        raise ValueError(f"{where}: module: uses {rnn.inference_weights} inference weights, which the ONNX "
                         "export does not have; call set_inference_weights('float32') before exporting (the "
                         "rnnfast deployment file, rnnfast.export, records them)")


def _vocab_field(vocab, vocab_size: int) -> str:
    tokens = list(getattr(vocab, "itos", vocab))
    if not all(isinstance(t, str) for t in tokens):
        raise TypeError("export: vocab: expected a text.Vocab or a sequence of str tokens")
    if len(tokens) != vocab_size:
        raise ValueError(f"export: vocab: expected {vocab_size} tokens (the model's vocab_size), got {len(tokens)}")
    return json.dumps(tokens, ensure_ascii=False)


def export(module, path, vocab=None) -> None:
    """Write ``module``'s deployment file to ``path`` (atomically; see the module docstring).

    ``module`` is an ``nn.RNN``/``nn.LSTM``/``nn.GRU`` (any layers, uni- or bidirectional) or a
    ``models.LanguageModel`` / ``models.SequenceClassifier``. ``vocab`` (a ``text.Vocab`` or the
    token strings by id) is stored for models with an embedding. The file is what the C API
    (``rnnfast_model_load``) reads; :func:`load` rebuilds the Python module from it.
    """
    stn = _safetensors_numpy()
    meta, arrays = _describe(module)
    if vocab is not None:
        if meta["vocab_size"] == "0":
            raise ValueError("export: vocab: only for models that take token ids (this one takes features)")
        meta["vocab"] = _vocab_field(vocab, int(meta["vocab_size"]))
    arrays = {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in arrays.items()}
    for name, a in arrays.items():
        if not np.isfinite(a).all():
            raise ValueError(f"export: module: parameter {name} holds NaN or Inf; a deployment file needs "
                             "finite weights")
    atomic_write(os.fspath(path), stn.save(arrays, metadata=meta))


def read(path) -> tuple[dict, dict]:
    """(metadata, arrays) of a deployment file, after checking its format and version."""
    path = os.fspath(path)
    _safetensors_numpy()
    from safetensors import SafetensorError, safe_open
    try:
        with safe_open(path, framework="numpy") as f:
            meta = f.metadata() or {}
            arrays = {k: f.get_tensor(k) for k in f.keys()}
    except (OSError, ValueError, RuntimeError, SafetensorError) as e:
        raise ValueError(f"load: {path}: not a safetensors file ({e})") from None
    if meta.get("format") != FORMAT:
        raise ValueError(f"load: {path}: expected format {FORMAT!r}, got {meta.get('format')!r}")
    if meta.get("format_version") not in _READS:
        raise ValueError(f"load: {path}: format_version {meta.get('format_version')!r} is not supported "
                         f"(this rnnfast reads {_READS[0]} to {_READS[-1]})")
    return meta, arrays


def load(path):
    """The Python module a deployment file was exported from (eval mode), rebuilt with its weights."""
    from . import nn
    from .models import LanguageModel, SequenceClassifier

    meta, arrays = read(path)
    config = json.loads(meta["config"])
    kind = meta["model"]
    if kind == "rnn":
        cls = getattr(nn, config.pop("cls"))
        module, prefix = cls(**config), {"rnn.": ""}
    elif kind == "language_model":
        module, prefix = LanguageModel(**config), {"rnn.": "rnn.", "head.": "decoder.", "embedding.": "embedding."}
    elif kind == "sequence_classifier":
        module = SequenceClassifier(**config)
        prefix = {"rnn.": "rnn.", "head.": "head.", "embedding.": "encoder_input.embedding."}
    else:
        raise ValueError(f"load: {path}: unknown model kind {kind!r}")
    own = dict(module.named_parameters())
    state = {}
    for name, a in arrays.items():
        head, rest = name.split(".", 1)
        target = prefix[head + "."] + rest
        if target in own:  # bias=False layers have no bias parameter (the file holds zeros)
            state[target] = a
    module.load_state_dict(state)
    rnn = module if kind == "rnn" else module.rnn
    rnn.set_inference_weights(meta.get("inference_weights", "float32"))
    return module.eval()
