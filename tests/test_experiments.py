"""`rnnfast experiment long-range|gradients`: the code runs and prints well-formed, finite tables.

Accuracy is not checked (tiny budgets); the per-step gradient profile is checked against
PyTorch autograd, and the plotting helper against a missing matplotlib.
"""
import math
import re
import sys

import numpy as np
import pytest

from conftest import require_torch
from rnnfast import experiments
from rnnfast.experiments import _model, gradients, plotting, task

TINY_LR = ["--hidden", "8", "--steps", "4", "--seeds", "2", "--batch-size", "8", "--test-size", "16",
           "--distances", "2,12"]
TINY_GRAD = ["--hidden", "8", "--steps", "4", "--seeds", "1", "--batch-size", "8", "--probe", "4",
             "--seq-len", "12"]


def _table_after(text, title_start):
    """Rows (lists of cell strings) of the first |-table after the line starting with title_start."""
    lines = text.splitlines()
    i = next(k for k, line in enumerate(lines) if line.startswith(title_start))
    while not lines[i].startswith("|"):
        i += 1
    rows = []
    while i < len(lines) and lines[i].startswith("|"):
        rows.append([c.strip() for c in lines[i].strip("|").split("|")])
        i += 1
    return rows[0], [r for r in rows[2:]]  # header, body (separator skipped)


def _mean_std(cell):
    m = re.fullmatch(r"(-?[\d.]+) ± ([\d.]+)", cell)
    assert m, f"not 'mean ± std': {cell!r}"
    return float(m.group(1)), float(m.group(2))


def test_long_range_prints_finite_tables(capsys):
    assert experiments.main(["long-range", *TINY_LR, "--no-plot"]) == 0
    out = capsys.readouterr().out
    head, body = _table_after(out, "Test accuracy")
    assert head == ["distance", "chance", "rnn", "lstm", "gru"]
    assert [r[0] for r in body] == ["2", "12"]
    for row in body:
        assert float(row[1]) == pytest.approx(task.CHANCE, abs=1e-3)
        for cell in row[2:]:
            mean, std = _mean_std(cell)
            assert 0.0 <= mean <= 1.0 and math.isfinite(std)
    head, body = _table_after(out, "Final training loss")
    assert head == ["distance", "rnn", "lstm", "gru"] and len(body) == 2
    assert all(math.isfinite(_mean_std(c)[0]) and _mean_std(c)[0] > 0 for r in body for c in r[1:])
    assert "seeds=[0, 1]" in out


def test_gradients_prints_finite_tables(capsys, tmp_path):
    assert experiments.main(["gradients", *TINY_GRAD, "--no-plot"]) == 0
    out = capsys.readouterr().out
    assert "train_distance=11" in out  # default: the measured sequence's own task (T-1)
    head, body = _table_after(out, "log10 ||dL/dh_t||")
    assert head == ["model", "d=0", "d=1", "d=2", "d=5", "d=10", "d=11", "decay/step", "per seed"]
    labels = [r[0] for r in body]
    assert labels == ["rnn init", "rnn trained", "lstm init", "lstm trained", "gru init", "gru trained",
                      "rnn ρ=1.5 init"]
    for row in body:
        assert all(math.isfinite(float(v)) for v in row[1:-2])
        decay, _ = _mean_std(row[-2])
        assert 0 < decay < 100 and float(row[-1]) == pytest.approx(decay, abs=1e-3)  # one seed
    head, body = _table_after(out, "Test accuracy after training")
    assert [r[0] for r in body] == ["rnn", "lstm", "gru"]
    head, body = _table_after(out, "Exploding case")
    assert [(r[0], r[1]) for r in body] == [("sgd", "off"), ("sgd", "1"), ("adam", "off"), ("adam", "1")]
    for row in body:
        before_max, after_max = float(row[3]), float(row[4])
        assert math.isfinite(before_max) and after_max <= before_max + 1e-6
        if row[1] != "off":
            assert after_max <= 1.0 + 1e-4  # clipped
        assert re.fullmatch(r"\d+/1.*", row[9]) and 0 <= float(row[8]) <= 1


def test_profile_matches_torch_autograd():
    """||dL/dh_t|| from the cell-by-cell backward (with its per-step rescaling) equals autograd's."""
    torch = require_torch()
    T, B, H = 30, 5, 6
    x, y = task.test_set(T - 1, B)
    for cell in _model.CELLS:
        model = _model.Classifier(cell, H, seed=3)
        if cell == "rnn":
            gradients.set_spectral_radius(model, 1.3)
        got = gradients.hidden_grad_profile(model, x, y)
        tcell = {"rnn": torch.nn.RNNCell, "lstm": torch.nn.LSTMCell, "gru": torch.nn.GRUCell}[cell](task.VOCAB, H)
        tcell = tcell.double()
        with torch.no_grad():
            for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
                getattr(tcell, name).copy_(torch.from_numpy(getattr(model.rnn, name + "_l0").data.astype(np.float64)))
        hs, state = [], None
        for t in range(T):
            state = tcell(torch.from_numpy(x[t].astype(np.float64)), state)
            h = state[0] if cell == "lstm" else state
            h.retain_grad()
            hs.append(h)
        w = torch.from_numpy(model.head.weight.data.astype(np.float64))
        b = torch.from_numpy(model.head.bias.data.astype(np.float64))
        loss = torch.nn.functional.cross_entropy(hs[-1] @ w.T + b, torch.from_numpy(y))
        loss.backward()
        want_h = np.array([np.log10(hs[t].grad.norm(dim=1).numpy()).mean() for t in reversed(range(T))])
        np.testing.assert_allclose(got, want_h, atol=2e-3, err_msg=cell)


def test_classifier_gradients_match_torch():
    """The many-to-one model the experiments train: loss and every parameter gradient as PyTorch's."""
    torch = require_torch()
    x, y = task.make_batch(np.random.default_rng(1), 6, 15)
    for cell in _model.CELLS:
        model = _model.Classifier(cell, 7, seed=0)
        loss, grad = _model.cross_entropy(model.forward(x), y)
        model.backward(grad)
        layer = {"rnn": torch.nn.RNN, "lstm": torch.nn.LSTM, "gru": torch.nn.GRU}[cell](task.VOCAB, 7).double()
        head = torch.nn.Linear(7, task.NUM_CLASSES).double()
        with torch.no_grad():
            for name, p in list(layer.named_parameters()) + [("head." + n, p) for n, p in head.named_parameters()]:
                src = getattr(model.head, name[5:]) if name.startswith("head.") else getattr(model.rnn, name)
                p.copy_(torch.from_numpy(src.data.astype(np.float64)))
        _, state = layer(torch.from_numpy(x.astype(np.float64)))
        h_n = state[0] if cell == "lstm" else state
        t_loss = torch.nn.functional.cross_entropy(head(h_n[-1]), torch.from_numpy(y))
        t_loss.backward()
        assert loss == pytest.approx(t_loss.item(), rel=1e-5)
        for name, p in layer.named_parameters():
            np.testing.assert_allclose(getattr(model.rnn, name).grad, p.grad.numpy(), rtol=1e-4, atol=1e-6,
                                       err_msg=f"{cell} {name}")
        np.testing.assert_allclose(model.head.weight.grad, head.weight.grad.numpy(), rtol=1e-4, atol=1e-6)


def test_decay_per_step_and_spectral_radius():
    log_norm = np.log10(0.5) * np.arange(11.0) + np.array([0, 1, -1] * 3 + [0, 0]) * 0.1  # ~ 1, 0.5, 0.25, ...
    assert gradients.decay_per_step(log_norm) == pytest.approx(0.5)
    model = _model.Classifier("rnn", 10, seed=0)
    gradients.set_spectral_radius(model, 1.5)
    radius = np.max(np.abs(np.linalg.eigvals(model.rnn.weight_hh_l0.data.astype(np.float64))))
    assert radius == pytest.approx(1.5, rel=1e-5)


def test_task_batch():
    x, y = task.make_batch(np.random.default_rng(0), 7, 5)
    assert x.shape == (6, 7, task.VOCAB) and x.dtype == np.float32 and y.shape == (7,)
    ids = x.argmax(axis=2)
    assert (x.sum(axis=2) == 1).all()
    assert (ids[0] == y).all() and (ids[1:] >= task.NUM_CLASSES).all()


def test_plot_helper_without_matplotlib(monkeypatch, tmp_path, capsys):
    for name in ("matplotlib", "matplotlib.figure"):
        monkeypatch.setitem(sys.modules, name, None)  # `import` now raises ImportError
    path = tmp_path / "p.png"
    assert plotting.save_plot(str(path), lambda ax: pytest.fail("draw must not be called")) is False
    assert not path.exists()
    out = capsys.readouterr().out
    assert out.count("\n") == 1 and "matplotlib is not installed" in out
    # the command still prints its tables
    assert experiments.main(["long-range", *TINY_LR, "--seeds", "1", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "Test accuracy" in out and "skipped the plot" in out
    assert not list(tmp_path.iterdir())


def test_plots_written_with_matplotlib(tmp_path):
    pytest.importorskip("matplotlib")
    assert experiments.main(["gradients", *TINY_GRAD, "--steps", "2", "--train-distance", "3",
                             "--out", str(tmp_path / "d")]) == 0
    for name in ("gradients.png", "exploding.png"):
        assert (tmp_path / "d" / name).read_bytes()[:4] == b"\x89PNG"


def test_command_line_errors(capsys):
    assert experiments.main(["nope"]) == 2
    assert "unknown experiment" in capsys.readouterr().err
    assert experiments.main(["long-range", "--hidden", "0"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--hidden" in err
    assert experiments.main(["gradients", "--seq-len", "abc"]) == 2
    assert experiments.main(["long-range", "--cells", "rnn,tcn"]) == 2
    assert experiments.main(["--help"]) == 0


def test_lstm_forget_bias_option():
    H = 5
    model = _model.Classifier("lstm", H, seed=0, lstm_forget_bias=1.0)
    b_ih, b_hh = model.rnn.bias_ih_l0.data, model.rnn.bias_hh_l0.data
    np.testing.assert_array_equal(b_ih[H:2 * H] + b_hh[H:2 * H], np.ones(H, np.float32))
    default = _model.Classifier("lstm", H, seed=0)
    np.testing.assert_array_equal(b_ih[:H], default.rnn.bias_ih_l0.data[:H])  # other gates untouched
    assert not np.allclose(default.rnn.bias_ih_l0.data[H:2 * H] + default.rnn.bias_hh_l0.data[H:2 * H], 1.0)


def test_reachable_from_the_rnnfast_command(capsys):
    from rnnfast import cli
    assert cli.main(["experiment", "--help"]) == 0
    out = capsys.readouterr().out
    assert "long-range" in out and "gradients" in out


# the published benchmarks: adding, copying, agreement, deep stacks -----------------------------------
from rnnfast.experiments import adding, agreement, copying, deep_stack  # noqa: E402


def test_adding_batch_marks_one_number_per_half_and_sums_them():
    x, target = adding.make_batch(np.random.default_rng(0), 50, 21)
    assert x.shape == (21, 50, 2) and target.shape == (50, 1)
    marks = x[:, :, 1]
    assert (marks.sum(axis=0) == 2).all()
    assert (marks[:10].sum(axis=0) == 1).all() and (marks[10:].sum(axis=0) == 1).all()
    np.testing.assert_allclose(target[:, 0], (x[:, :, 0] * marks).sum(axis=0), rtol=1e-6)
    big = adding.make_batch(np.random.default_rng(1), 20000, 10)[1]
    assert np.mean((big - 1.0) ** 2) == pytest.approx(adding.BASELINE, rel=0.03)  # what "answer 1" scores


def test_copying_batch_and_baseline():
    x, target = copying.make_batch(np.random.default_rng(0), 6, 15)
    assert x.shape == (35, 6, copying.CLASSES) and target.shape == (35, 6)
    ids = x.argmax(axis=2)
    assert ((ids[:10] >= 1) & (ids[:10] <= 8)).all()
    assert (ids[10:24] == 0).all() and (ids[24] == copying.DELIMITER).all() and (ids[25:] == 0).all()
    assert (target[:25] == 0).all() and (target[25:] == ids[:10]).all()
    # the memoryless model: blank until the copy, then uniform over the 8 symbols
    logits = np.full((35, 6, copying.CLASSES), -1e4, np.float32)
    logits[:25, :, 0] = 0
    logits[25:, :, 1:9] = 0
    assert copying.cross_entropy(logits, target)[0] == pytest.approx(copying.baseline(15), rel=1e-5)


def test_agreement_label_is_the_first_nouns_number():
    rng = np.random.default_rng(0)
    d = np.array([3, 12, 60, 1])
    x, labels, lengths = agreement.make_batch(rng, 4, d)
    assert x.shape == (62, 4, agreement.VOCAB) and list(lengths) == list(d + 2)
    ids = x.argmax(axis=2)
    for b in range(4):
        assert ids[0, b] < 2 * agreement.NOUNS and ids[0, b] // agreement.NOUNS == labels[b]
        assert ids[lengths[b] - 1, b] == agreement.READOUT
        assert (x[lengths[b]:, b] == 0).all()
    x, labels, _ = agreement.make_batch(rng, 2000, np.full(2000, 40))
    ids = x.argmax(axis=2)[1:41]
    nouns = ids < 2 * agreement.NOUNS
    assert nouns.mean() == pytest.approx(agreement.ATTRACTOR_P, abs=0.02)
    has = nouns.any(axis=0)
    last = np.array([ids[np.nonzero(nouns[:, b])[0][-1], b] // agreement.NOUNS for b in np.nonzero(has)[0]])
    assert 0.4 < np.mean(last == labels[has]) < 0.6  # the most recent noun does not give the answer


@pytest.mark.parametrize("name, title, columns", [
    ("adding", "Test MSE", ["T", "baseline", "answer 1", "rnn", "irnn", "lstm", "gru"]),
    ("copying", "Test cross-entropy", ["T", "baseline", "rnn", "irnn", "lstm", "gru"]),
    ("agreement", "Test accuracy %", ["cell", "distance", "ours", "tutorial"]),
    ("deep-stack", "Validation cross-entropy", ["layers", "plain", "residual", "layer_norm", "residual+layer_norm"]),
])
def test_benchmark_quick_runs_print_finite_tables(capsys, name, title, columns):
    assert experiments.main([name, "--quick", "--no-plot"]) == 0
    out = capsys.readouterr().out
    head, body = _table_after(out, title)
    assert head == columns and body
    for row in body:
        for cell in row:
            if "±" in cell:
                mean, std = _mean_std(cell.split(" (")[0])
                assert math.isfinite(mean) and math.isfinite(std)


def test_agreement_table_shows_the_tutorials_claims(capsys):
    assert experiments.main(["agreement", "--quick", "--no-plot", "--cells", "rnn,lstm"]) == 0
    _, body = _table_after(capsys.readouterr().out, "Test accuracy %")
    assert [(r[0], r[1], r[3]) for r in body] == [
        ("rnn", "short (<10)", "85"), ("rnn", "medium (10-30)", "65"), ("rnn", "long (>50)", "40"),
        ("lstm", "short (<10)", "87"), ("lstm", "medium (10-30)", "82"), ("lstm", "long (>50)", "78")]


def test_deep_stack_layer_norms_are_per_layer():
    model = deep_stack.CharLM(7, 5, 3, True, seed=0)
    ids = np.random.default_rng(0).integers(0, 7, (2, 6))
    loss, grad = deep_stack.cross_entropy(model.forward(ids[:, :-1]), ids[:, 1:])
    model.backward(grad)
    norms = model.layer_grad_norms()
    assert len(norms) == 3
    want = [np.sqrt(sum(float(np.square(p.grad.astype(np.float64)).sum())
                        for n, p in model.rnn.named_parameters() if n.endswith(f"_l{k}"))) for k in range(3)]
    np.testing.assert_allclose(norms, want, rtol=1e-6)
    assert model.rnn.residual and not deep_stack.CharLM(7, 5, 3, False, seed=0).rnn.residual
    ln = deep_stack.CharLM(7, 5, 3, True, seed=0, layer_norm=True)
    assert ln.rnn.layer_norm and any(n.startswith("ln_") and n.endswith("_l2") for n, _ in ln.rnn.named_parameters())


def test_deep_stack_refuses_unknown_stacks():
    assert experiments.main(["deep-stack", "--quick", "--stacks", "plain,bogus"]) == 2


def test_irnn_starts_at_the_identity():
    from rnnfast.experiments import _seq
    rnn = _seq.make_rnn("irnn", 3, 4, seed=0)
    assert rnn.nonlinearity == "relu"
    np.testing.assert_array_equal(rnn.weight_hh_l0.data, np.eye(4, dtype=np.float32))
    assert not rnn.bias_ih_l0.data.any() and not rnn.bias_hh_l0.data.any()


def test_benchmark_command_line_errors(capsys):
    assert experiments.main(["adding", "--lengths", "1"]) == 2
    assert "--lengths" in capsys.readouterr().err
    assert experiments.main(["copying", "--cells", "tcn"]) == 2
    assert "--cells" in capsys.readouterr().err
    assert experiments.main(["agreement", "--cells", "irnn"]) == 2
    assert experiments.main(["deep-stack", "--layers", "1"]) == 2
    assert experiments.main(["--help"]) == 0
    out = capsys.readouterr().out
    assert all(n in out for n in ("adding", "copying", "agreement", "deep-stack"))
