"""cross_entropy and mse_loss: values and gradients against PyTorch and finite differences."""
import numpy as np
import pytest

from rnnfast.losses import CrossEntropyLoss, MSELoss, cross_entropy, mse_loss


def _torch_ce(torch, logits, target, **kw):
    """PyTorch's loss on class-last logits (it wants the class axis second, so flatten)."""
    c = logits.shape[-1]
    tl = torch.tensor(logits.reshape(-1, c), requires_grad=True)
    out = torch.nn.functional.cross_entropy(tl, torch.from_numpy(target.reshape(-1)), **kw)
    (out.sum() if kw.get("reduction") == "none" else out).backward()
    value = out.detach().numpy()
    if kw.get("reduction") == "none":
        value = value.reshape(target.shape)
    return value, tl.grad.numpy().reshape(logits.shape)


@pytest.mark.parametrize("shape", [(7, 5), (3, 4, 6)])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("smoothing", [0.0, 0.2])
@pytest.mark.parametrize("ignore", [None, 2])
def test_cross_entropy_matches_torch(torch, shape, reduction, smoothing, ignore):
    rng = np.random.default_rng(0)
    logits = (rng.standard_normal(shape) * 3).astype(np.float32)
    target = rng.integers(0, shape[-1], size=shape[:-1])
    kw = dict(reduction=reduction, label_smoothing=smoothing)
    if ignore is not None:
        target.reshape(-1)[::3] = ignore  # ignore_index may also be a valid class id
        kw["ignore_index"] = ignore
    loss, grad = cross_entropy(logits, target, **kw)
    ref_loss, ref_grad = _torch_ce(torch, logits, target, **kw)
    assert grad.dtype == np.float32 and grad.shape == logits.shape
    if reduction == "none":
        assert loss.shape == target.shape
    else:
        assert isinstance(loss, float)
    np.testing.assert_allclose(loss, ref_loss, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(grad, ref_grad, rtol=1e-5, atol=1e-7)


def test_cross_entropy_large_logits_stay_finite(torch):
    rng = np.random.default_rng(1)
    logits = (rng.standard_normal((4, 6, 10)) * 1e4).astype(np.float32)
    logits[0, 0] = 1e4  # ties at the maximum
    target = rng.integers(0, 10, size=(4, 6))
    for smoothing in (0.0, 0.1):
        loss, grad = cross_entropy(logits, target, label_smoothing=smoothing)
        assert np.isfinite(loss) and np.isfinite(grad).all()
        ref_loss, ref_grad = _torch_ce(torch, logits, target, label_smoothing=smoothing)
        np.testing.assert_allclose(loss, ref_loss, rtol=1e-5)
        np.testing.assert_allclose(grad, ref_grad, rtol=1e-5, atol=1e-7)


def test_cross_entropy_finite_differences():
    rng = np.random.default_rng(2)
    logits = rng.standard_normal((3, 4, 5))
    target = rng.integers(0, 5, size=(3, 4))
    mask = rng.random((3, 4))  # float weights
    mask[0, 0] = 0
    target[0, 0] = -7  # masked out: any value is allowed there
    kw = dict(label_smoothing=0.15, mask=mask)
    _, grad = cross_entropy(logits, target, **kw)
    numeric = np.zeros_like(logits)
    eps = 1e-6
    for i in range(logits.size):
        x = logits.copy()
        x.reshape(-1)[i] += eps
        fp = cross_entropy(x, target, **kw)[0]
        x.reshape(-1)[i] -= 2 * eps
        fm = cross_entropy(x, target, **kw)[0]
        numeric.reshape(-1)[i] = (fp - fm) / (2 * eps)
    assert grad.dtype == np.float64
    np.testing.assert_allclose(grad, numeric, rtol=1e-6, atol=1e-9)


def test_cross_entropy_mask_equivalences():
    rng = np.random.default_rng(3)
    logits = rng.standard_normal((4, 5, 6)).astype(np.float32)
    target = rng.integers(0, 6, size=(4, 5))
    lengths = np.array([5, 3, 1, 4])
    mask = np.arange(5)[None, :] < lengths[:, None]
    padded = np.where(mask, target, -100)
    for red in ("mean", "sum"):
        a = cross_entropy(logits, target, mask=mask, reduction=red)
        b = cross_entropy(logits, padded, reduction=red)
        np.testing.assert_allclose(a[0], b[0], rtol=1e-6)
        np.testing.assert_allclose(a[1], b[1], rtol=1e-6)
    # float mask = weighted mean of the per-element losses
    w = rng.random((4, 5))
    per, _ = cross_entropy(logits, target, reduction="none")
    loss, _ = cross_entropy(logits, target, mask=w)
    np.testing.assert_allclose(loss, np.sum(per * w) / w.sum(), rtol=1e-5)
    # per-timestep losses summed over time then averaged over the batch
    s, gs = cross_entropy(logits, target, reduction="sum")
    np.testing.assert_allclose(s / 4, per.sum(axis=1).mean(), rtol=1e-5)


def test_cross_entropy_all_ignored_like_torch(torch):
    logits = np.zeros((3, 4), np.float32)
    target = np.full(3, -100)
    loss, grad = cross_entropy(logits, target)
    ref_loss, ref_grad = _torch_ce(torch, logits, target)
    assert np.isnan(loss) and np.isnan(ref_loss)
    np.testing.assert_array_equal(grad, ref_grad)
    assert cross_entropy(logits, target, reduction="sum")[0] == 0.0


def test_cross_entropy_bad_input():
    logits = np.zeros((2, 3, 4), np.float32)
    target = np.zeros((2, 3), np.int64)
    with pytest.raises(ValueError, match=r"target.*\[0, 4\).*got 4"):
        cross_entropy(logits, np.full((2, 3), 4))
    with pytest.raises(ValueError, match="target.*-1"):
        cross_entropy(logits, np.full((2, 3), -1))
    with pytest.raises(TypeError, match="target"):
        cross_entropy(logits, target.astype(np.float32))
    with pytest.raises(ValueError, match="target.*shape"):
        cross_entropy(logits, np.zeros((3, 2), np.int64))
    with pytest.raises(ValueError, match="logits"):
        cross_entropy(np.zeros(4, np.float32), np.zeros((), np.int64))
    with pytest.raises(TypeError, match="logits"):
        cross_entropy(logits.astype(np.int32), target)
    with pytest.raises(ValueError, match="reduction"):
        cross_entropy(logits, target, reduction="avg")
    with pytest.raises(ValueError, match="label_smoothing"):
        cross_entropy(logits, target, label_smoothing=1.5)
    with pytest.raises(ValueError, match="mask"):
        cross_entropy(logits, target, mask=np.ones((2, 4), bool))


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_mse_matches_torch(torch, reduction):
    rng = np.random.default_rng(4)
    pred = rng.standard_normal((3, 4, 2)).astype(np.float32)
    target = rng.standard_normal((3, 4, 2)).astype(np.float32)
    loss, grad = mse_loss(pred, target, reduction)
    tp = torch.tensor(pred, requires_grad=True)
    out = torch.nn.functional.mse_loss(tp, torch.from_numpy(target), reduction=reduction)
    (out.sum() if reduction == "none" else out).backward()
    np.testing.assert_allclose(loss, out.detach().numpy(), rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(grad, tp.grad.numpy(), rtol=1e-5, atol=1e-7)
    assert grad.dtype == np.float32


def test_mse_bad_input():
    with pytest.raises(ValueError, match="target"):
        mse_loss(np.zeros((3, 1), np.float32), np.zeros(3, np.float32))
    with pytest.raises(TypeError, match="pred"):
        mse_loss(np.zeros(3, np.int64), np.zeros(3, np.float32))
    with pytest.raises(ValueError, match="reduction"):
        mse_loss(np.zeros(3, np.float32), np.zeros(3, np.float32), reduction="max")


def test_loss_classes():
    rng = np.random.default_rng(5)
    logits = rng.standard_normal((2, 3, 4)).astype(np.float32)
    target = rng.integers(0, 4, size=(2, 3))
    crit = CrossEntropyLoss(label_smoothing=0.1, ignore_index=0)
    loss = crit(logits, target)
    ref_loss, ref_grad = cross_entropy(logits, target, ignore_index=0, label_smoothing=0.1)
    assert loss == ref_loss
    np.testing.assert_array_equal(crit.backward(), ref_grad)
    with pytest.raises(RuntimeError, match="before backward"):
        crit.backward()
    crit(logits, target)
    np.testing.assert_allclose(crit.backward(2.0), 2 * ref_grad)
    none = CrossEntropyLoss(reduction="none")
    none(logits, target)
    up = rng.random((2, 3)).astype(np.float32)
    _, g = cross_entropy(logits, target, reduction="none")
    np.testing.assert_allclose(none.backward(up), g * up[..., None], rtol=1e-6)
    mse = MSELoss()
    pred, tgt = logits, logits + 1
    assert abs(mse(pred, tgt) - 1.0) < 1e-6
    np.testing.assert_allclose(mse.backward(), np.full(pred.shape, -2 / pred.size), rtol=1e-6)
    with pytest.raises(ValueError, match="reduction"):
        MSELoss(reduction="bad")
