"""Shared pieces of the ready models (teacher-forcing shift, shared cells, length checks) and the
finite-difference helper the other test_models_* files import."""
import numpy as np

from rnnfast.nn import no_grad
import pytest

from rnnfast.models._common import check_lengths, make_rnn, shared_cells, shift_for_teacher_forcing


def fd_check(model, loss_fn, rng, eps=1e-2, rtol=2e-3, atol=1e-4, skip=()):
    """Compare every parameter's accumulated ``.grad`` with a central difference of ``loss_fn()``
    along one random unit direction per parameter. ``loss_fn`` must compute in eval-equivalent
    (dropout-free) training mode and return a float. The kernels are float32, so the loss is
    summed in float64 and the tolerance is that of a ~1e-5 accurate difference quotient."""
    analytic = {name: p.grad.astype(np.float64) for name, p in model.named_parameters()}
    checked = 0
    for name, p in model.named_parameters():
        if name in skip:
            continue
        d = rng.standard_normal(p.shape)
        d /= np.linalg.norm(d)
        orig = p.data.copy()
        with no_grad():  # the probes need no backward
            p.data = orig + eps * d
            up = loss_fn()
            p.data = orig - eps * d
            down = loss_fn()
        p.data = orig
        fd = (up - down) / (2 * eps)
        an = float(np.sum(analytic[name] * d))
        assert abs(fd - an) <= rtol * np.linalg.norm(analytic[name]) + atol, (name, fd, an)
        checked += 1
    assert checked > 0
    return analytic


def test_shift_for_teacher_forcing_adds_bos_and_eos():
    inp, tgt, lens = shift_for_teacher_forcing([[5, 6, 7], [8]], bos_id=2, eos_id=3, pad_id=0)
    np.testing.assert_array_equal(inp, [[2, 5, 6, 7], [2, 8, 0, 0]])
    np.testing.assert_array_equal(tgt, [[5, 6, 7, 3], [8, 3, 0, 0]])
    np.testing.assert_array_equal(lens, [4, 2])
    inp, tgt, lens = shift_for_teacher_forcing([[]], 2, 3)  # an empty target still predicts <eos>
    np.testing.assert_array_equal(inp, [[2]])
    np.testing.assert_array_equal(tgt, [[3]])


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn_relu"])
def test_shared_cells_step_equals_the_layer_and_share_gradients(cell):
    rng = np.random.default_rng(0)
    rnn = make_rnn(cell, 3, 4, 2, 0.0, False, seed=1)
    cells = shared_cells(rnn)
    assert cells[0].weight_ih is rnn.weight_ih_l0 and cells[1].weight_hh is rnn.weight_hh_l1
    x = rng.standard_normal((2, 5, 3)).astype(np.float32)
    out, _ = rnn(x)
    states = [None, None]
    for t in range(5):
        inp = x[:, t]
        for k, c in enumerate(cells):
            states[k] = c(inp, states[k])
            inp = states[k][0] if cell == "lstm" else states[k]
        np.testing.assert_allclose(inp, out[:, t], rtol=1e-5, atol=1e-6)
    # one backward per step, newest first: the gradients land in the layer's parameters
    rnn.zero_grad()
    g = [np.zeros((2, 4), np.float32), np.zeros((2, 4), np.float32)]
    gc = [None, None]
    for t in reversed(range(5)):
        top = np.ones((2, 4), np.float32) if t == 4 else np.zeros((2, 4), np.float32)
        dx = cells[1].backward(g[1] + top, gc[1])
        g[1], gc[1] = (cells[1].grad_hx if cell == "lstm" else (cells[1].grad_hx, None))
        cells[0].backward(g[0] + dx, gc[0])
        g[0], gc[0] = (cells[0].grad_hx if cell == "lstm" else (cells[0].grad_hx, None))
    step_grads = {n: p.grad.copy() for n, p in rnn.named_parameters()}
    rnn.zero_grad()
    rnn(x)
    go = np.zeros((2, 5, 4), np.float32)
    go[:, 4] = 1.0
    rnn.backward(go)
    for n, p in rnn.named_parameters():
        np.testing.assert_allclose(step_grads[n], p.grad, rtol=1e-4, atol=1e-5, err_msg=n)


def test_check_lengths_messages():
    with pytest.raises(ValueError, match="empty"):
        check_lengths([3, 0], 2, 3, "m")
    with pytest.raises(ValueError, match="0 time steps"):
        check_lengths(None, 2, 0, "m")
    with pytest.raises(ValueError, match="only 3 steps"):
        check_lengths([4, 1], 2, 3, "m")
    with pytest.raises(TypeError, match="integer"):
        check_lengths([1.0, 2.0], 2, 3, "m")
