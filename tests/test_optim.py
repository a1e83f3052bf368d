"""Optimizers, schedules and clipping against torch.optim / torch.nn.utils, plus state and bad input."""
import json
import math
import warnings

import numpy as np
import pytest

from rnnfast import optim
from rnnfast.nn import Linear, Parameter, Sequential

SHAPES = [(3, 4), (5,), (2, 3, 2), (41,)]
STEPS = 5


def _params(seed=0):
    rng = np.random.default_rng(seed)
    return [Parameter(rng.standard_normal(s)) for s in SHAPES]


def _grads(seed=1):
    rng = np.random.default_rng(seed)
    return [[rng.standard_normal(s).astype(np.float32) for s in SHAPES] for _ in range(STEPS)]


CONFIGS = [
    ("SGD", dict(lr=0.1)),
    ("SGD", dict(lr=0.1, momentum=0.9)),
    ("SGD", dict(lr=0.05, momentum=0.8, dampening=0.3, weight_decay=0.01)),
    ("SGD", dict(lr=0.1, momentum=0.9, nesterov=True, weight_decay=0.1)),
    ("Adam", dict()),
    ("Adam", dict(lr=0.01, betas=(0.8, 0.95), eps=1e-6, weight_decay=0.1)),
    ("Adam", dict(lr=0.01, amsgrad=True)),
    ("Adam", dict(lr=0.01, amsgrad=True, weight_decay=0.05)),
    ("AdamW", dict()),
    ("AdamW", dict(lr=0.02, weight_decay=0.1, amsgrad=True)),
    ("RMSprop", dict()),
    ("RMSprop", dict(lr=0.01, momentum=0.9)),
    ("RMSprop", dict(lr=0.01, centered=True)),
    ("RMSprop", dict(lr=0.01, alpha=0.9, centered=True, momentum=0.5, weight_decay=0.1, eps=1e-6)),
    ("Adagrad", dict()),
    ("Adagrad", dict(lr=0.1, lr_decay=0.1, weight_decay=0.1, initial_accumulator_value=0.5, eps=1e-6)),
]


@pytest.mark.parametrize("chunk", [optim._CHUNK, 7])  # 7 splits every parameter into chunks
@pytest.mark.parametrize("name, kw", CONFIGS, ids=[f"{n}-{i}" for i, (n, _) in enumerate(CONFIGS)])
def test_matches_torch_optimizer(torch, monkeypatch, name, kw, chunk):
    monkeypatch.setattr(optim, "_CHUNK", chunk)
    params = _params()
    tparams = [torch.tensor(p.data.copy(), requires_grad=True) for p in params]
    opt = getattr(optim, name)(params, **kw)
    topt = getattr(torch.optim, name)(tparams, **kw)
    for grads in _grads():
        for p, tp, g in zip(params, tparams, grads):
            p.grad[...] = g
            tp.grad = torch.from_numpy(g.copy())
        versions = [p.version for p in params]
        opt.step()
        topt.step()
        assert all(p.version > v for p, v in zip(params, versions))
        for p, tp in zip(params, tparams):
            np.testing.assert_allclose(p.data, tp.detach().numpy(), rtol=1e-5, atol=1e-6)
    # the state has PyTorch's names and values
    for st, tp in zip(opt.state, tparams):
        tst = topt.state[tp]
        for k, v in st.items():
            np.testing.assert_allclose(v, tst[k].numpy(), rtol=1e-5, atol=1e-6, err_msg=k)


def test_defaults_match_torch(torch):
    import inspect

    for name in ("SGD", "Adam", "AdamW", "RMSprop", "Adagrad"):
        ours = inspect.signature(getattr(optim, name)).parameters
        theirs = inspect.signature(getattr(torch.optim, name)).parameters
        for k, p in ours.items():
            if k != "params":
                assert theirs[k].default == p.default or tuple(theirs[k].default) == p.default, (name, k)


def test_params_from_module_named_and_zero_grad():
    model = Sequential(Linear(3, 2, seed=0))
    opt = optim.SGD(model, lr=1.0)
    assert opt.params == model.parameters()
    assert optim.Adam(model.named_parameters()).params == model.parameters()
    for p in model.parameters():
        p.grad[...] = 1.0
    opt.zero_grad()
    assert not any(p.grad.any() for p in model.parameters())
    assert opt.step(closure=lambda: 3.5) == 3.5


@pytest.mark.parametrize("name, kw", [("SGD", dict(lr=0.1, momentum=0.9)), ("Adam", dict(amsgrad=True)),
                                      ("RMSprop", dict(centered=True, momentum=0.5)), ("Adagrad", {})])
def test_state_dict_resume_is_exact(name, kw):
    grads = _grads()
    straight = _params()
    opt = getattr(optim, name)(straight, **kw)
    for gs in grads:
        for p, g in zip(straight, gs):
            p.grad[...] = g
        opt.step()

    first = _params()
    opt1 = getattr(optim, name)(first, **kw)
    for gs in grads[:2]:
        for p, g in zip(first, gs):
            p.grad[...] = g
        opt1.step()
    sd = opt1.state_dict()
    # JSON for everything but the arrays, float32 arrays for the state
    json.dumps({k: v for k, v in sd.items() if k != "state"})
    assert all(v.dtype == np.float32 for st in sd["state"] for v in st.values())
    assert sd["type"] == name and sd["step"] == 2
    resumed = [Parameter(p.data) for p in first]
    opt2 = getattr(optim, name)(resumed, **kw)
    opt2.load_state_dict(sd)
    opt1.step()  # the saved dict is a copy: later steps must not change it
    for gs in grads[2:]:
        for p, g in zip(resumed, gs):
            p.grad[...] = g
        opt2.step()
    for a, b in zip(straight, resumed):
        np.testing.assert_array_equal(a.data, b.data)


def test_load_state_dict_validates_before_changing():
    params = _params()
    opt = optim.Adam(params, lr=0.01)
    for p in params:
        p.grad[...] = 1.0
    opt.step()
    good = opt.state_dict()
    before = opt.state_dict()

    def broken(**change):
        sd = {**good, **change}
        return sd

    bad_shape = [dict(st) for st in good["state"]]
    bad_shape[-1]["exp_avg"] = np.zeros(3, np.float32)
    bad_key = [dict(st) for st in good["state"]]
    del bad_key[0]["exp_avg_sq"]
    cases = [
        (broken(type="SGD"), "type"),
        (broken(state=good["state"][:-1]), "state for 4 parameters, got 3"),
        (broken(state=bad_shape), r"state'\]\[3\]\['exp_avg'\].*shape"),
        (broken(state=bad_key), "keys"),
        (broken(hyper={**good["hyper"], "momentum": 0.9}), "hyper"),
        (broken(hyper={**good["hyper"], "lr": -1.0}), "lr"),
        (broken(step=-1), "step"),
        ({k: v for k, v in good.items() if k != "step"}, "missing"),
    ]
    for sd, msg in cases:
        with pytest.raises(ValueError, match=msg):
            opt.load_state_dict(sd)
        after = opt.state_dict()
        assert after["hyper"] == before["hyper"] and after["step"] == before["step"]
        for a, b in zip(after["state"], before["state"]):
            for k in a:
                np.testing.assert_array_equal(a[k], b[k])


def test_bad_hyperparameters_and_params():
    params = _params()
    with pytest.raises(ValueError, match="lr"):
        optim.SGD(params, lr=-0.1)
    with pytest.raises(TypeError, match="lr"):
        optim.Adam(params, lr="fast")
    with pytest.raises(ValueError, match=r"betas\[1\]"):
        optim.Adam(params, betas=(0.9, 1.0))
    with pytest.raises(ValueError, match="betas"):
        optim.AdamW(params, betas=0.9)
    with pytest.raises(ValueError, match="nesterov"):
        optim.SGD(params, lr=0.1, nesterov=True)
    with pytest.raises(ValueError, match="weight_decay"):
        optim.RMSprop(params, weight_decay=-1)
    with pytest.raises(ValueError, match="eps"):
        optim.Adagrad(params, eps=math.nan)
    with pytest.raises(ValueError, match="params.*empty"):
        optim.Adam([])
    with pytest.raises(TypeError, match="params.*ndarray"):
        optim.Adam([np.zeros(3, np.float32)])
    with pytest.raises(ValueError, match="params.*more than once"):
        optim.Adam([params[0], params[0]])
    opt = optim.SGD(params, lr=0.1)
    with pytest.raises(ValueError, match="lr"):
        opt.lr = -1
    params[0].grad = np.zeros(7, np.float32)
    with pytest.raises(ValueError, match=r"params\[0\]\.grad"):
        opt.step()


# schedules ----------------------------------------------------------------------------------------
def _pair(torch, lr=0.5):
    ours = optim.SGD(_params(), lr=lr)
    theirs = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=lr)
    return ours, theirs


@pytest.mark.parametrize("kind", ["step", "exp"])
def test_step_and_exponential_lr_match_torch(torch, kind):
    ours, theirs = _pair(torch)
    if kind == "step":
        sched, tsched = optim.StepLR(ours, 3, gamma=0.5), torch.optim.lr_scheduler.StepLR(theirs, 3, gamma=0.5)
    else:
        sched, tsched = optim.ExponentialLR(ours, 0.9), torch.optim.lr_scheduler.ExponentialLR(theirs, 0.9)
    assert sched.get_last_lr() == pytest.approx(tsched.get_last_lr())
    for i in range(10):
        if i == 4:  # save, rebuild, load: continues identically
            sd = json.loads(json.dumps(sched.state_dict()))
            ours2 = optim.SGD(_params(), lr=ours.lr)
            sched = (optim.StepLR(ours2, 1) if kind == "step" else optim.ExponentialLR(ours2, 0.1))
            sched.load_state_dict(sd)
            ours = ours2
        theirs.step()
        sched.step()
        tsched.step()
        assert ours.lr == pytest.approx(theirs.param_groups[0]["lr"], rel=1e-12)
        assert sched.get_last_lr() == pytest.approx(tsched.get_last_lr(), rel=1e-12)


PLATEAU = [
    dict(),
    dict(mode="max", factor=0.5, patience=2, threshold=0.1, threshold_mode="abs"),
    dict(factor=0.5, patience=1, cooldown=2, min_lr=0.01),
    dict(mode="max", patience=0, threshold_mode="rel", threshold=0.05, factor=0.3),
]


@pytest.mark.parametrize("kw", PLATEAU)
def test_reduce_on_plateau_matches_torch(torch, kw):
    rng = np.random.default_rng(0)
    metrics = list(np.round(rng.random(40) + np.linspace(1, 0, 40) * (1 if kw.get("mode") != "max" else -1), 2))
    metrics[5:15] = [metrics[5]] * 10  # a flat stretch
    ours, theirs = _pair(torch)
    sched = optim.ReduceLROnPlateau(ours, **kw)
    tsched = torch.optim.lr_scheduler.ReduceLROnPlateau(theirs, **kw)
    for i, m in enumerate(metrics):
        if i == 20:
            sd = json.loads(json.dumps(sched.state_dict()))
            sched = optim.ReduceLROnPlateau(ours)
            sched.load_state_dict(sd)
        sched.step(m)
        tsched.step(m)
        assert ours.lr == pytest.approx(theirs.param_groups[0]["lr"], rel=1e-12), i
    assert ours.lr < 0.5  # the sequence did trigger reductions


def test_schedule_bad_input(torch):
    opt = optim.SGD(_params(), lr=0.1)
    with pytest.raises(ValueError, match="step_size"):
        optim.StepLR(opt, 0)
    with pytest.raises(ValueError, match="factor"):
        optim.ReduceLROnPlateau(opt, factor=1.0)
    with pytest.raises(ValueError, match="mode"):
        optim.ReduceLROnPlateau(opt, mode="up")
    with pytest.raises(TypeError, match="optimizer"):
        optim.ExponentialLR(torch.optim.SGD([torch.zeros(1, requires_grad=True)]), 0.9)
    with pytest.raises(TypeError, match="metric"):
        optim.ReduceLROnPlateau(opt).step("low")
    with pytest.raises(ValueError, match="type"):
        optim.StepLR(opt, 2).load_state_dict(optim.ExponentialLR(opt, 0.9).state_dict())


# clipping -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("norm_type", [2.0, 1.0, 3.0, math.inf])
@pytest.mark.parametrize("max_norm", [0.5, 1e3])
def test_clip_grad_norm_matches_torch(torch, norm_type, max_norm):
    params = _params()
    grads = _grads()[0]
    tparams = [torch.zeros(s, requires_grad=True) for s in SHAPES]
    for p, tp, g in zip(params, tparams, grads):
        p.grad[...] = g
        tp.grad = torch.from_numpy(g.copy())
    total = optim.clip_grad_norm(params, max_norm, norm_type=norm_type)
    ttotal = torch.nn.utils.clip_grad_norm_(tparams, max_norm, norm_type=norm_type)
    assert isinstance(total, float)
    assert total == pytest.approx(float(ttotal), rel=1e-5)
    for p, tp in zip(params, tparams):
        np.testing.assert_allclose(p.grad, tp.grad.numpy(), rtol=1e-5, atol=1e-7)


def test_clip_grad_norm_nonfinite_leaves_grads():
    for bad in (math.inf, math.nan):
        params = _params()
        for p in params:
            p.grad[...] = 1.0
        params[1].grad[2] = bad
        snapshot = [p.grad.copy() for p in params]
        with pytest.warns(RuntimeWarning, match="left unchanged"):
            total = optim.clip_grad_norm(params, 1.0)
        assert not math.isfinite(total)
        for p, s in zip(params, snapshot):
            np.testing.assert_array_equal(p.grad, s)
        with pytest.raises(RuntimeError, match="norm"):
            optim.clip_grad_norm(params, 1.0, error_if_nonfinite=True)
        for p, s in zip(params, snapshot):
            np.testing.assert_array_equal(p.grad, s)


def test_clip_grad_norm_no_overflow_and_edges():
    p = Parameter(np.zeros(4))
    p.grad[...] = 3e20  # squares overflow float32, the norm itself does not
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        total = optim.clip_grad_norm(p, 1.0)
    assert total == pytest.approx(6e20, rel=1e-6)
    np.testing.assert_allclose(p.grad, 0.5, rtol=1e-5)
    assert optim.clip_grad_norm([], 1.0) == 0.0
    with pytest.raises(ValueError, match="max_norm"):
        optim.clip_grad_norm(p, -1.0)
    with pytest.raises(ValueError, match="norm_type"):
        optim.clip_grad_norm(p, 1.0, norm_type=0)
    with pytest.raises(TypeError, match="params"):
        optim.clip_grad_norm(np.zeros(3), 1.0)


def test_clip_grad_value_matches_torch(torch):
    params = _params()
    tparams = [torch.zeros(s, requires_grad=True) for s in SHAPES]
    for p, tp, g in zip(params, tparams, _grads()[0]):
        p.grad[...] = g
        tp.grad = torch.from_numpy(g.copy())
    optim.clip_grad_value(params, 0.7)
    torch.nn.utils.clip_grad_value_(tparams, 0.7)
    for p, tp in zip(params, tparams):
        np.testing.assert_array_equal(p.grad, tp.grad.numpy())
    with pytest.raises(ValueError, match="clip_value"):
        optim.clip_grad_value(params, -1)
