"""rnnfast.torch against torch.nn: outputs, final states and every gradient, on every ISA path."""
import copy
import pickle
import subprocess
import sys

import numpy as np
import pytest

from helpers import ISAS, using_isa

KINDS = ["rnn_tanh", "rnn_relu", "lstm", "gru"]
# (num_layers, bidirectional, batch_first, bias)
CONFIGS = [(1, False, False, True), (2, True, False, True), (3, False, True, False), (2, True, True, True),
           (1, True, False, False)]
INPUTS = ["padded", "packed_sorted", "packed_unsorted"]
LENGTHS = [6, 2, 5, 1]  # ragged and unsorted: T=6, B=4
I, H = 5, 7


def pair(torch, kind, num_layers=1, bidirectional=False, batch_first=False, bias=True, dropout=0.0, seed=0):
    """A torch.nn module and its rnnfast.torch twin with the same weights."""
    import rnnfast.torch as rt
    name = {"lstm": "LSTM", "gru": "GRU"}.get(kind, "RNN")
    kwargs = dict(num_layers=num_layers, bidirectional=bidirectional, batch_first=batch_first, bias=bias,
                  dropout=dropout)
    if name == "RNN":
        kwargs["nonlinearity"] = kind.split("_")[1]
    torch.manual_seed(seed)
    ref = getattr(torch.nn, name)(I, H, **kwargs)
    ours = getattr(rt, name)(I, H, **kwargs)
    ours.load_state_dict(ref.state_dict())
    return ref, ours


def make_input(torch, form, batch_first, lengths=LENGTHS, features=I, seed=1):
    """(model input, leaf tensor whose gradient we compare)."""
    from torch.nn.utils.rnn import pack_padded_sequence
    g = torch.Generator().manual_seed(seed)
    T, B = max(lengths), len(lengths)
    shape = (B, T, features) if batch_first else (T, B, features)
    leaf = torch.randn(shape, generator=g).requires_grad_(True)
    if form == "padded":
        return leaf, leaf
    lens = torch.tensor(lengths)
    if form == "packed_sorted":
        order = torch.argsort(lens, descending=True)
        x = leaf.index_select(0 if batch_first else 1, order)
        return pack_padded_sequence(x, lens[order], batch_first=batch_first, enforce_sorted=True), leaf
    return pack_padded_sequence(leaf, lens, batch_first=batch_first, enforce_sorted=False), leaf


def initial_state(torch, kind, layers_dirs, batch, seed=2):
    g = torch.Generator().manual_seed(seed)
    h = torch.randn(layers_dirs, batch, H, generator=g).requires_grad_(True)
    if kind != "lstm":
        return h, [h]
    c = torch.randn(layers_dirs, batch, H, generator=g).requires_grad_(True)
    return (h, c), [h, c]


def run_and_grad(torch, module, x, leaves, hx, seed=3):
    """Forward, a random linear loss of every output, and the gradients of the leaves and parameters."""
    from torch.nn.utils.rnn import PackedSequence
    module.zero_grad(set_to_none=True)
    for leaf in leaves:
        leaf.grad = None
    out, hidden = module(x, hx)
    data = out.data if isinstance(out, PackedSequence) else out
    states = list(hidden) if isinstance(hidden, tuple) else [hidden]
    g = torch.Generator().manual_seed(seed)
    loss = sum((t * torch.randn(t.shape, generator=g)).sum() for t in [data] + states)
    loss.backward()
    results = {"output": data.detach().clone()}
    results.update((f"state{i}", s.detach().clone()) for i, s in enumerate(states))
    results.update((f"grad_leaf{i}", leaf.grad.clone()) for i, leaf in enumerate(leaves))
    results.update((f"grad_{n}", p.grad.clone()) for n, p in module.named_parameters())
    return results


def assert_same(ref, ours, atol=2e-5):
    assert ref.keys() == ours.keys()
    for key in ref:
        np.testing.assert_allclose(ours[key].numpy(), ref[key].numpy(), rtol=1e-4, atol=atol, err_msg=key)


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("form", INPUTS)
@pytest.mark.parametrize("config", CONFIGS, ids=lambda c: "L{}{}{}{}".format(c[0], "-bi" if c[1] else "",
                                                                         "-bf" if c[2] else "", "" if c[3] else "-nobias"))
@pytest.mark.parametrize("kind", KINDS)
def test_parity_with_torch_nn(torch, kind, config, form, isa):
    layers, bidir, batch_first, bias = config
    ref, ours = pair(torch, kind, layers, bidir, batch_first, bias)
    with_hx = layers != 1 or bidir  # half the configurations start from a given state
    results = []
    for module in (ref, ours):
        x, leaf = make_input(torch, form, batch_first)
        hx, state_leaves = initial_state(torch, kind, layers * (2 if bidir else 1), len(LENGTHS)) if with_hx \
            else (None, [])
        with using_isa(isa):
            results.append(run_and_grad(torch, module, x, [leaf] + state_leaves, hx))
    assert_same(*results)


@pytest.mark.parametrize("kind", KINDS)
def test_unbatched_input_and_state(torch, kind):
    ref, ours = pair(torch, kind, num_layers=2)
    results = []
    for module in (ref, ours):
        x = torch.randn(4, I, generator=torch.Generator().manual_seed(1)).requires_grad_(True)
        g = torch.Generator().manual_seed(2)
        hx = torch.randn(2, H, generator=g).requires_grad_(True)
        state = (hx, torch.randn(2, H, generator=g).requires_grad_(True)) if kind == "lstm" else hx
        leaves = [x] + (list(state) if kind == "lstm" else [state])
        results.append(run_and_grad(torch, module, x, leaves, state))
    assert results[1]["output"].shape == (4, H)
    assert_same(*results)


@pytest.mark.parametrize("form", INPUTS)
@pytest.mark.parametrize("kind", ["lstm", "gru"])
def test_dropout_masks_follow_torch_manual_seed(torch, kind, form):
    """Dropout between layers draws from torch's generator exactly as torch.nn does: the same seed
    gives the same outputs and gradients; eval() switches it off."""
    ref, ours = pair(torch, kind, num_layers=3, bidirectional=True, dropout=0.4)
    results = []
    for module in (ref, ours):
        x, leaf = make_input(torch, form, False)
        torch.manual_seed(123)
        results.append(run_and_grad(torch, module, x, [leaf], None))
    assert_same(*results)
    torch.manual_seed(7)
    a, b = (run_and_grad(torch, ours, x, [leaf], None) for x, leaf in
            (make_input(torch, form, False) for _ in range(2)))
    assert not torch.equal(a["output"], b["output"]), "two training forwards drew the same masks"
    ref.eval(), ours.eval()
    results = []
    for module in (ref, ours):
        x, leaf = make_input(torch, form, False)
        results.append(run_and_grad(torch, module, x, [leaf], None))
    assert_same(*results)


CELL_KINDS = ["RNNCell-tanh", "RNNCell-relu", "LSTMCell", "GRUCell"]


def cell_pair(torch, kind, bias=True):
    import rnnfast.torch as rt
    name, _, act = kind.partition("-")
    kwargs = dict(bias=bias, **({"nonlinearity": act} if act else {}))
    torch.manual_seed(0)
    ref = getattr(torch.nn, name)(I, H, **kwargs)
    ours = getattr(rt, name)(I, H, **kwargs)
    ours.load_state_dict(ref.state_dict())
    return ref, ours


def unroll(torch, cell, steps, batched, with_hx, seed=4):
    """A few steps of a decoder-style loop (state fed back), a loss over every step's state, and the
    gradients of the inputs, the initial state and the parameters."""
    g = torch.Generator().manual_seed(seed)
    lstm = isinstance(cell, torch.nn.LSTMCell)
    lead = (3,) if batched else ()
    xs = [torch.randn(*lead, I, generator=g).requires_grad_(True) for _ in range(steps)]
    leaves = list(xs)
    state = None
    if with_hx:
        state = tuple(torch.randn(*lead, H, generator=g).requires_grad_(True) for _ in range(2 if lstm else 1))
        leaves += list(state)
        state = state if lstm else state[0]
    cell.zero_grad(set_to_none=True)
    loss, outs = 0.0, []
    for x in xs:
        state = cell(x, state)
        h = state[0] if lstm else state
        outs.append(h.detach().clone())
        loss = loss + (h * torch.randn(h.shape, generator=g)).sum()
        if lstm:
            loss = loss + (state[1] * torch.randn(h.shape, generator=g)).sum()
    loss.backward()
    results = {f"out{i}": o for i, o in enumerate(outs)}
    results.update((f"grad_leaf{i}", t.grad.clone()) for i, t in enumerate(leaves))
    results.update((f"grad_{n}", p.grad.clone()) for n, p in cell.named_parameters())
    return results


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("batched,with_hx,bias", [(True, True, True), (True, False, False), (False, True, True)])
@pytest.mark.parametrize("kind", CELL_KINDS)
def test_cells_match_torch_nn(torch, kind, batched, with_hx, bias, isa):
    ref, ours = cell_pair(torch, kind, bias)
    with using_isa(isa):
        results = [unroll(torch, m, 4, batched, with_hx) for m in (ref, ours)]
    assert_same(*results)
    with torch.no_grad(), using_isa(isa):  # the eval path (no activations kept)
        x = torch.randn(3, I)
        np.testing.assert_allclose(_first(ours(x)).numpy(), _first(ref(x)).numpy(), rtol=1e-4, atol=2e-5)


def _first(out):
    return out[0] if isinstance(out, tuple) else out


@pytest.mark.parametrize("kind", KINDS)
def test_no_grad_and_inference_mode_keep_no_graph(torch, kind, monkeypatch):
    """Forwards without a graph match torch.nn's and never enter the autograd Function (the kernels
    then run without saving activations)."""
    from rnnfast.torch import _function
    ref, ours = pair(torch, kind, num_layers=2, bidirectional=True)
    x, _ = make_input(torch, "packed_unsorted", False)
    expected, _ = ref(x)

    def refuse(*args):
        raise AssertionError("a forward without a graph went through the autograd Function")

    monkeypatch.setattr(_function.StackFunction, "apply", refuse)
    for mode in (torch.no_grad, torch.inference_mode):
        with mode():
            got, hidden = ours(x)
        assert got.data.grad_fn is None
        np.testing.assert_allclose(got.data.numpy(), expected.data.detach().numpy(), rtol=1e-4, atol=2e-5)
    ours.requires_grad_(False)  # nothing requires grad: no graph either, also with grad enabled
    ours(torch.randn(3, 2, I))


def test_import_rnnfast_does_not_import_torch():
    code = "import sys, rnnfast, rnnfast.nn; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_clear_errors(torch):
    import rnnfast.torch as rt
    m = rt.GRU(I, H)
    with pytest.raises(TypeError, match=r"input: expected dtype torch.float32, got torch.float64"):
        m(torch.randn(4, 2, I, dtype=torch.float64))
    with pytest.raises(TypeError, match=r"weight_ih_l0: expected dtype torch.float32, got torch.float64"):
        copy.deepcopy(m).double()(torch.randn(4, 2, I, dtype=torch.float64))
    with pytest.raises(ValueError, match="input: expected a CPU tensor, got device meta"):
        m(torch.empty(4, 2, I, device="meta"))
    with pytest.raises(ValueError, match="non-empty"):
        m(torch.randn(0, 2, I))
    ref = torch.nn.GRU(I, H)
    for module in (ref, m):  # torch.nn's own argument checks and messages
        with pytest.raises(RuntimeError, match=r"Expected hidden size \(1, 2, 7\), got \[1, 3, 7\]"):
            module(torch.randn(4, 2, I), torch.zeros(1, 3, H))
        with pytest.raises(RuntimeError, match="input.size\\(-1\\) must be equal to input_size"):
            module(torch.randn(4, 2, I + 1))
    with pytest.raises(TypeError, match=r"hx: expected a tuple \(h_0, c_0\)"):
        rt.LSTM(I, H)(torch.randn(4, 2, I), torch.zeros(1, 2, H))
    with pytest.raises(ValueError, match=r"hx: expected shape \(2, 7\), got \(3, 7\)"):
        rt.GRUCell(I, H)(torch.randn(2, I), torch.zeros(3, H))


@pytest.mark.parametrize("module", ["LSTM", "LSTMCell"])
def test_double_backward_and_second_backward_are_refused(torch, module):
    import rnnfast.torch as rt
    m = getattr(rt, module)(I, H)
    x = torch.randn(4, 2, I) if module == "LSTM" else torch.randn(2, I)
    x.requires_grad_(True)

    def out():
        return _first(m(x))

    with pytest.raises(RuntimeError, match="double backward"):
        torch.autograd.grad(out().sum(), x, create_graph=True)
    y = out()
    y.sum().backward(retain_graph=True)
    with pytest.raises(RuntimeError, match="already ran"):
        y.sum().backward()


def test_input_edited_before_backward_is_caught(torch):
    """As with torch.nn: the saved input's version check fires, no silent wrong gradient."""
    import rnnfast.torch as rt
    m = rt.LSTM(I, H)
    x = torch.randn(4, 2, I, requires_grad=True)
    xc = x * 1.0
    y, _ = m(xc)
    with torch.no_grad():
        xc.add_(1.0)
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        y.sum().backward()


def test_weights_edited_in_place_are_repacked(torch):
    """Optimizer-style in-place edits bump the tensors' versions: the next forward repacks; edits
    through .data need flatten_parameters()."""
    ref, ours = pair(torch, "lstm", num_layers=2)
    x = torch.randn(4, 2, I)
    with torch.no_grad():
        ours(x)  # packs
        for m in (ref, ours):
            m.weight_hh_l1.mul_(0.5)
        np.testing.assert_allclose(ours(x)[0].numpy(), ref(x)[0].numpy(), rtol=1e-4, atol=2e-5)
        for m in (ref, ours):
            m.weight_ih_l0.data.mul_(2.0)
        ours.flatten_parameters()
        np.testing.assert_allclose(ours(x)[0].numpy(), ref(x)[0].numpy(), rtol=1e-4, atol=2e-5)


def test_state_dict_pickle_and_deepcopy(torch):
    import rnnfast.torch as rt
    ref, ours = pair(torch, "gru", num_layers=2, bidirectional=True)
    assert list(ours.state_dict()) == list(ref.state_dict())
    assert [p.shape for p in ours.parameters()] == [p.shape for p in ref.parameters()]
    x = torch.randn(5, 3, I)
    ours(x)[0].sum().backward()  # leaves packed weights and caches in the module's state
    for twin in (copy.deepcopy(ours), pickle.loads(pickle.dumps(ours))):
        assert type(twin) is rt.GRU
        np.testing.assert_array_equal(twin(x)[0].detach().numpy(), ours(x)[0].detach().numpy())
    back = torch.nn.GRU(I, H, num_layers=2, bidirectional=True)
    back.load_state_dict(ours.state_dict())
    np.testing.assert_allclose(back(x)[0].detach().numpy(), ours(x)[0].detach().numpy(), rtol=1e-4, atol=2e-5)


class TinyTagger:
    """embedding -> 2-layer LSTM (dropout between layers) over packed variable-length batches -> linear."""

    @staticmethod
    def build(torch, seed=0):
        torch.manual_seed(seed)
        return torch.nn.ModuleDict(dict(embed=torch.nn.Embedding(20, 6),
                                        rnn=torch.nn.LSTM(6, 8, num_layers=2, dropout=0.25, batch_first=True),
                                        head=torch.nn.Linear(8, 20)))

    @staticmethod
    def loss(torch, model, tokens, lengths):
        from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence
        packed = pack_padded_sequence(model["embed"](tokens[:, :-1]), lengths - 1, batch_first=True,
                                      enforce_sorted=False)
        out, _ = model["rnn"](packed)
        hidden, _ = pad_packed_sequence(out, batch_first=True, total_length=tokens.shape[1] - 1)
        logits = model["head"](hidden)
        mask = torch.arange(tokens.shape[1] - 1)[None, :] < (lengths - 1)[:, None]
        return torch.nn.functional.cross_entropy(logits[mask], tokens[:, 1:][mask])


def train_losses(torch, model, steps=12, patch=False):
    import rnnfast.torch as rt
    opt = torch.optim.Adam(model.parameters(), lr=0.05)
    if patch:
        rt.patch(model)
        assert type(model["rnn"]) is rt.LSTM
    g = torch.Generator().manual_seed(5)
    torch.manual_seed(11)  # the dropout masks
    losses = []
    for _ in range(steps):
        lengths = torch.randint(2, 9, (6,), generator=g)
        tokens = (torch.randint(0, 20, (6, 1), generator=g) + torch.arange(8)) % 20  # learnable: counting
        opt.zero_grad()
        loss = TinyTagger.loss(torch, model, tokens, lengths)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 0.5)
        opt.step()
        losses.append(loss.item())
    return losses


def test_training_loop_matches_torch_nn(torch):
    """Adam, gradient clipping, dropout and packed ragged batches: the same losses step for step,
    with patch() applied after the optimizer's parameters were taken (the same tensors)."""
    expected = train_losses(torch, TinyTagger.build(torch))
    got = train_losses(torch, TinyTagger.build(torch), patch=True)
    np.testing.assert_allclose(got, expected, rtol=1e-4)
    assert got[-1] < 0.9 * got[0]  # and it trains


def test_patch_swaps_in_place_and_skips_what_it_cannot_run(torch):
    import rnnfast.torch as rt

    class CustomLSTM(torch.nn.LSTM):
        pass

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.GRU(I, H), torch.nn.ModuleList([torch.nn.LSTMCell(I, H),
                                torch.nn.RNN(I, H, nonlinearity="relu"), torch.nn.LSTM(I, H, proj_size=3).double(),
                                CustomLSTM(I, H), torch.nn.RNNCell(I, H).double()]))
    params = [id(p) for p in model.parameters()]
    x = torch.randn(4, 2, I)
    before = model[0](x)[0].detach()
    with pytest.warns(RuntimeWarning, match=r"1.2 \(parameters on cpu as torch.float64.*1.4 \(parameters on cpu"):
        assert rt.patch(model) is model
    assert [type(m) for m in (model[0], model[1][0], model[1][1], model[1][2], model[1][3], model[1][4])] == \
        [rt.GRU, rt.LSTMCell, rt.RNN, torch.nn.LSTM, CustomLSTM, torch.nn.RNNCell]
    assert [id(p) for p in model.parameters()] == params
    assert model[1][1].nonlinearity == "relu"
    np.testing.assert_allclose(model[0](x)[0].detach().numpy(), before.numpy(), rtol=1e-4, atol=2e-5)
    assert type(rt.patch(torch.nn.LSTM(I, H))) is rt.LSTM  # the model itself
    with pytest.raises(TypeError, match="model: expected a torch.nn.Module"):
        rt.patch("lstm")


@pytest.mark.parametrize("backend", ["eager", "aot_eager"])
def test_torch_compile_falls_back_around_the_rnn(torch, backend):
    """torch.compile graph-breaks on torch.nn.RNN/LSTM/GRU (and so on their subclasses): the RNN runs
    eagerly on our kernels, the rest compiles; outputs and gradients stay torch.nn's."""
    torch._dynamo.reset()
    results = []
    for patched in (False, True):
        import rnnfast.torch as rt
        torch.manual_seed(0)
        model = torch.nn.Sequential(torch.nn.Linear(I, I), torch.nn.GRU(I, H, batch_first=True))
        if patched:
            rt.patch(model)
        compiled = torch.compile(model, backend=backend)
        x = torch.randn(3, 4, I)
        y, h = compiled(x)
        (y.sum() + h.sum()).backward()
        results.append({"y": y.detach(), "grad": model[0].weight.grad.clone(), "h": h.detach()})
        if backend == "eager":  # fullgraph=True refuses RNN modules, torch.nn's and ours alike
            torch._dynamo.reset()
            with pytest.raises(Exception, match="RNN, GRU, or LSTM"):
                torch.compile(model, backend=backend, fullgraph=True)(x)
    assert_same(*results)


@pytest.mark.parametrize("kind", ["inference", "stream", "train"])
@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_bench_engine_runs_torch_cases_on_our_kernels(torch, cell, kind):
    import rnnfast.torch as rt
    from rnnfast.bench import engine_dropin, peer_torch
    from rnnfast.bench.configs import Spec, make_data, numpy_weights
    spec = Spec(f"{kind}-tiny", kind, kind, 3, 5, 16)
    weights, data = numpy_weights(cell, 16), make_data(spec)
    ours = engine_dropin.make_case(cell, spec, weights, data, 1)
    ref = peer_torch.make_case(cell, spec, weights, data, 1)
    assert ours.engine == "rnnfast.torch" and type(ours.module).__module__.startswith("rnnfast.torch")
    expected, got = ref.outputs(), ours.outputs()
    assert expected.keys() == got.keys()
    for key in expected:
        np.testing.assert_allclose(got[key], expected[key], rtol=1e-4, atol=2e-5, err_msg=key)


def test_frozen_weights_get_no_gradient(torch):
    """requires_grad=False on some weights: they stay without .grad, the rest match torch.nn."""
    ref, ours = pair(torch, "lstm", num_layers=2)
    results = []
    for module in (ref, ours):
        module.weight_hh_l0.requires_grad_(False)
        module.bias_ih_l1.requires_grad_(False)
        x = torch.randn(6, 3, I, generator=torch.Generator().manual_seed(1)).requires_grad_(True)
        y, _ = module(x)
        (y * y).sum().backward()
        assert module.weight_hh_l0.grad is None and module.bias_ih_l1.grad is None
        results.append({"x": x.grad, **{n: p.grad for n, p in module.named_parameters() if p.requires_grad}})
    assert_same(*results)
