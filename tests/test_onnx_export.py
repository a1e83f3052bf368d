"""rnnfast.onnx.export: the exported graph in ONNX Runtime against our forward (1e-5)."""
import numpy as np
import pytest

import rnnfast.onnx
from rnnfast import nn
from rnnfast.models import LanguageModel, SequenceClassifier
from onnx_models import EXPORTABLE

pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

TOL = dict(rtol=1e-5, atol=1e-5)


def _session(module, tmp_path):
    path = tmp_path / "m.onnx"
    rnnfast.onnx.export(module, path)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def _states(rng, module, B):
    shape = (module.num_layers * module.num_directions, B, module.hidden_size)
    h0 = rng.standard_normal(shape).astype(np.float32)
    return (h0, rng.standard_normal(shape).astype(np.float32)) if module.cell == "lstm" else h0


@pytest.mark.parametrize("make", EXPORTABLE)
def test_recurrent_layers_ragged(tmp_path, make):
    m = make().eval()
    sess = _session(m, tmp_path)
    rng = np.random.default_rng(0)
    T, B = 6, 4
    x = rng.standard_normal((B, T, 5) if m.batch_first else (T, B, 5)).astype(np.float32)
    lens = np.array([6, 1, 3, 5], np.int32)
    state = _states(rng, m, B)
    y, st = m(x, state, lengths=lens)
    feed = dict(x=x, lengths=lens, h0=state[0] if m.cell == "lstm" else state)
    if m.cell == "lstm":
        feed["c0"] = state[1]
    got = sess.run(None, feed)
    np.testing.assert_allclose(got[0], y, **TOL)
    np.testing.assert_allclose(got[1], st[0] if m.cell == "lstm" else st, **TOL)
    if m.cell == "lstm":
        np.testing.assert_allclose(got[2], st[1], **TOL)


@pytest.mark.parametrize("cell,layers", [("lstm", 2), ("gru", 1), ("rnn_tanh", 3)])
def test_language_model(tmp_path, cell, layers):
    m = LanguageModel(13, 6, 9, num_layers=layers, cell=cell, seed=7).eval()
    sess = _session(m, tmp_path)
    rng = np.random.default_rng(1)
    ids = rng.integers(0, 13, (3, 5))
    lens = np.array([5, 2, 4], np.int32)
    state = _states(rng, m.rnn, 3)
    logits, st = m(ids, state, lens)
    feed = dict(ids=ids.astype(np.int64), lengths=lens, h0=state[0] if cell == "lstm" else state)
    if cell == "lstm":
        feed["c0"] = state[1]
    got = sess.run(None, feed)
    np.testing.assert_allclose(got[0], logits, **TOL)
    np.testing.assert_allclose(got[1], st[0] if cell == "lstm" else st, **TOL)


@pytest.mark.parametrize("kw", [dict(vocab_size=13, embedding_dim=6, pooling="mean", bidirectional=True),
                                dict(vocab_size=13, embedding_dim=6, pooling="last", bidirectional=True,
                                     num_layers=2),
                                dict(input_size=4, pooling="max", num_layers=2, cell="gru"),
                                dict(input_size=4, pooling="max", bidirectional=True, cell="rnn_relu"),
                                dict(input_size=4, pooling="last", task="regression")])
def test_sequence_classifier(tmp_path, kw):
    m = SequenceClassifier(3, 5, seed=8, **kw).eval()
    sess = _session(m, tmp_path)
    rng = np.random.default_rng(2)
    x = rng.integers(0, 13, (4, 6)) if "vocab_size" in kw else rng.standard_normal((4, 6, 4)).astype(np.float32)
    lens = np.array([6, 1, 3, 5], np.int32)
    (got,) = sess.run(None, dict(x=x, lengths=lens))
    np.testing.assert_allclose(got, m(x, lens), **TOL)


def test_refuses_unsupported_module(tmp_path):
    with pytest.raises(TypeError, match="rnnfast.onnx.export: module: expected an nn.RNN.*got Embedding"):
        rnnfast.onnx.export(nn.Embedding(3, 4), tmp_path / "x.onnx")


@pytest.mark.parametrize("weights", ["bfloat16", "int8"])
def test_reduced_inference_weights_are_refused_not_widened(tmp_path, weights):
    import rnnfast
    from rnnfast import nn

    m = nn.LSTM(4, 8).eval().set_inference_weights(weights)
    with pytest.raises(ValueError, match=f"{weights} inference weights"):
        rnnfast.onnx.export(m, tmp_path / "m.onnx")
    rnnfast.export(m, tmp_path / "m.rnnfast")  # the rnnfast file records them (tests/test_deploy.py)
