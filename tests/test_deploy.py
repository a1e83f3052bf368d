"""rnnfast.export: the deployment file's metadata and arrays, and the round trip through load_export."""
import json

import numpy as np
import pytest

import rnnfast
from rnnfast import nn
from rnnfast.deploy import FORMAT, read
from rnnfast.models import LanguageModel, SequenceClassifier

pytest.importorskip("safetensors")

RECURRENT = [
    lambda: nn.LSTM(5, 7, num_layers=2, seed=1),
    lambda: nn.GRU(5, 6, num_layers=3, bidirectional=True, seed=2),
    lambda: nn.RNN(5, 4, nonlinearity="relu", bidirectional=True, seed=3),
    lambda: nn.RNN(5, 4, bias=False, seed=4),
]


def _ids(rng, B, T, V):
    return rng.integers(0, V, (B, T))


@pytest.mark.parametrize("make", RECURRENT)
def test_recurrent_round_trip(tmp_path, make):
    m = make().eval()
    path = tmp_path / "m.rnnfast"
    rnnfast.export(m, path)
    meta, arrays = read(path)
    assert meta["format"] == FORMAT and meta["format_version"] == "1" and meta["precision"] == "float32"
    assert meta["model"] == "rnn" and meta["cell"] == m.cell
    assert int(meta["num_layers"]) == m.num_layers and meta["bidirectional"] == str(int(m.bidirectional))
    assert int(meta["output_size"]) == m.num_directions * m.hidden_size
    for name, p in m.named_parameters():
        np.testing.assert_array_equal(arrays["rnn." + name], p.data)
    if not m.bias:
        assert not arrays["rnn.bias_ih_l0"].any()
    back = rnnfast.load_export(path)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((6, 3, 5)).astype(np.float32)
    lens = np.array([6, 2, 4])
    np.testing.assert_array_equal(back(x, lengths=lens)[0], m(x, lengths=lens)[0])


VARIANTS = [
    lambda: nn.LSTM(5, 7, num_layers=2, peepholes=True, seed=1),
    lambda: nn.GRU(5, 6, num_layers=2, bidirectional=True, linear_before_reset=False, seed=2),
    lambda: nn.LSTM(5, 4, direction="reverse", peepholes=True, seed=3),
    lambda: nn.RNN(5, 4, direction="reverse", bias=False, seed=4),
]


@pytest.mark.parametrize("make", VARIANTS)
def test_variant_round_trip_is_format_version_2(tmp_path, make):
    m = make().eval()
    path = tmp_path / "m.rnnfast"
    rnnfast.export(m, path)
    meta, arrays = read(path)
    assert meta["format_version"] == "2" and meta["direction"] == m.direction
    assert meta["peepholes"] == str(int(m.peepholes))
    assert meta["linear_before_reset"] == str(int(m.linear_before_reset))
    for name, p in m.named_parameters():
        np.testing.assert_array_equal(arrays["rnn." + name], p.data)
    back = rnnfast.load_export(path)
    assert (back.direction, back.peepholes, back.linear_before_reset) == \
        (m.direction, m.peepholes, m.linear_before_reset)
    x = np.random.default_rng(0).standard_normal((6, 3, 5)).astype(np.float32)
    lens = np.array([6, 2, 4])
    np.testing.assert_array_equal(back(x, lengths=lens)[0], m(x, lengths=lens)[0])


@pytest.mark.parametrize("cell,tie", [("lstm", False), ("gru", True), ("rnn_relu", False)])
def test_language_model_round_trip(tmp_path, cell, tie):
    m = LanguageModel(11, 8, 8, num_layers=2, cell=cell, tie_weights=tie, seed=5).eval()
    path = tmp_path / "lm.rnnfast"
    rnnfast.export(m, path)
    meta, arrays = read(path)
    assert meta["model"] == "language_model" and meta["vocab_size"] == "11" and meta["output_size"] == "11"
    assert json.loads(meta["config"]) == m.config
    np.testing.assert_array_equal(arrays["head.weight"], m.decoder.weight.data)
    np.testing.assert_array_equal(arrays["embedding.weight"], m.embedding.weight.data)
    back = rnnfast.load_export(path)
    ids = _ids(np.random.default_rng(1), 3, 5, 11)
    np.testing.assert_array_equal(back(ids)[0], m(ids)[0])


@pytest.mark.parametrize("kw", [dict(vocab_size=13, embedding_dim=6, pooling="mean", bidirectional=True),
                                dict(input_size=4, pooling="max", num_layers=2, cell="gru"),
                                dict(vocab_size=13, embedding_dim=6, pooling="last", cell="rnn")])
def test_classifier_round_trip(tmp_path, kw):
    m = SequenceClassifier(3, 5, seed=6, **kw).eval()
    path = tmp_path / "c.rnnfast"
    rnnfast.export(m, path)
    meta, _ = read(path)
    assert meta["model"] == "sequence_classifier" and meta["pooling"] == kw["pooling"]
    assert meta["vocab_size"] == str(kw.get("vocab_size", 0)) and meta["output_size"] == "3"
    back = rnnfast.load_export(path)
    rng = np.random.default_rng(2)
    x = _ids(rng, 4, 6, 13) if "vocab_size" in kw else rng.standard_normal((4, 6, 4)).astype(np.float32)
    lens = np.array([6, 1, 3, 5])
    np.testing.assert_array_equal(back(x, lens), m(x, lens))


def test_refuses_unsupported_module(tmp_path):
    with pytest.raises(TypeError, match="export: module: expected an nn.RNN.*got Linear"):
        rnnfast.export(nn.Linear(3, 4), tmp_path / "x")


def test_refuses_non_finite_weights(tmp_path):
    m = nn.GRU(3, 4, seed=0)
    m.weight_hh_l0.data[0, 0] = np.nan
    with pytest.raises(ValueError, match="weight_hh_l0 holds NaN"):
        rnnfast.export(m, tmp_path / "x")
    assert not (tmp_path / "x").exists()


def test_load_checks_format_and_version(tmp_path):
    from safetensors.numpy import save_file
    bad = tmp_path / "bad"
    bad.write_bytes(b"not a model at all")
    with pytest.raises(ValueError, match="not a safetensors file"):
        rnnfast.load_export(bad)
    ck = tmp_path / "ck"
    save_file({"a": np.zeros(2, np.float32)}, str(ck), metadata={"format": "rnnfast.checkpoint"})
    with pytest.raises(ValueError, match="expected format 'rnnfast.model', got 'rnnfast.checkpoint'"):
        rnnfast.load_export(ck)
    future = tmp_path / "future"
    save_file({"a": np.zeros(2, np.float32)}, str(future), metadata={"format": FORMAT, "format_version": "99"})
    with pytest.raises(ValueError, match="format_version '99' is not supported .this rnnfast reads 1 to 2."):
        rnnfast.load_export(future)


def test_vocab_is_stored_as_json_tokens(tmp_path):
    from rnnfast.text import Vocab
    v = Vocab.build("héllo wörld")
    m = LanguageModel(len(v.itos), 4, 4, num_layers=1, seed=0)
    rnnfast.export(m, tmp_path / "lm", vocab=v)
    meta, _ = read(tmp_path / "lm")
    assert json.loads(meta["vocab"]) == list(v.itos) and "é" in v.itos
    with pytest.raises(ValueError, match="expected 3 tokens"):
        rnnfast.export(LanguageModel(3, 4, 4, seed=0), tmp_path / "x", vocab=["a", "b"])
    with pytest.raises(ValueError, match="only for models that take token ids"):
        rnnfast.export(nn.GRU(3, 4, seed=0), tmp_path / "x", vocab=["a"])


@pytest.mark.parametrize("weights", ["float32", "bfloat16", "int8"])
def test_export_records_the_inference_weights(tmp_path, weights):
    """The file keeps float32 arrays and says which format the model computes in; load() restores it."""
    from rnnfast.deploy import read

    m = nn.GRU(5, 12, num_layers=2, seed=3).eval().set_inference_weights(weights)
    rnnfast.export(m, tmp_path / "m.rnnfast")
    meta, arrays = read(tmp_path / "m.rnnfast")
    assert meta["inference_weights"] == weights and meta["precision"] == "float32"
    assert all(a.dtype == np.float32 for a in arrays.values())
    back = rnnfast.load_export(tmp_path / "m.rnnfast")
    assert back.inference_weights == weights
    x = np.random.default_rng(0).standard_normal((6, 2, 5)).astype(np.float32)
    np.testing.assert_array_equal(back(x)[0], m(x)[0])
