"""rnnfast.data: seeded batches, length bucketing, splits, LM streams for TBPTT, forecasting windows."""
import numpy as np
import pytest

from rnnfast.data import (BucketBatcher, LMStream, batches, padding_fraction, sliding_windows, standardize,
                          train_val_test_split, unstandardize)


# ---------------------------------------------------------------------------- batches
def test_batches_indices_cover_everything_once():
    out = list(batches(10, 3, seed=0))
    assert [len(b) for b in out] == [3, 3, 3, 1]
    assert all(b.dtype == np.int64 for b in out)
    assert sorted(np.concatenate(out).tolist()) == list(range(10))
    assert not np.array_equal(np.concatenate(out), np.arange(10))  # actually shuffled
    assert len(batches(10, 3)) == 4 and len(batches(10, 3, drop_last=True)) == 3
    assert [len(b) for b in batches(10, 3, drop_last=True)] == [3, 3, 3]


def test_batches_deterministic_with_seed_and_new_order_each_pass():
    a = [b.tolist() for b in batches(20, 4, seed=123)]
    b = [b.tolist() for b in batches(20, 4, seed=123)]
    c = [b.tolist() for b in batches(20, 4, seed=124)]
    assert a == b and a != c
    loader = batches(20, 4, seed=5)
    epoch1 = [x.tolist() for x in loader]
    epoch2 = [x.tolist() for x in loader]
    assert epoch1 != epoch2  # a new permutation per pass...
    again = batches(20, 4, seed=5)
    assert [x.tolist() for x in again] == epoch1 and [x.tolist() for x in again] == epoch2  # ...fixed by seed
    rng = np.random.default_rng(7)
    assert [x.tolist() for x in batches(20, 4, seed=rng)] == [x.tolist() for x in
                                                             batches(20, 4, seed=np.random.default_rng(7))]


def test_batches_over_arrays_keeps_rows_aligned():
    X = np.arange(14, dtype=np.float32).reshape(7, 2)
    y = np.arange(7) * 10
    seen = []
    for xb, yb in batches((X, y), 3, seed=1):
        np.testing.assert_array_equal(xb[:, 0] * 5, yb)  # row i of X is [2i, 2i+1], y[i] = 10 i
        seen += yb.tolist()
    assert sorted(seen) == (np.arange(7) * 10).tolist()
    single = list(batches(X, 4, shuffle=False))
    np.testing.assert_array_equal(single[0], X[:4])
    np.testing.assert_array_equal(single[1], X[4:])


def test_batches_errors():
    with pytest.raises(ValueError, match="batch_size: expected an int >= 1, got 0"):
        batches(10, 0)
    with pytest.raises(TypeError, match="batch_size"):
        batches(10, 2.0)
    with pytest.raises(ValueError, match=r"n_or_arrays\[1\]: expected 3 samples.*got 2"):
        batches((np.zeros(3), np.zeros(2)), 1)
    with pytest.raises(TypeError, match="seed"):
        batches(10, 2, seed="x")
    with pytest.raises(TypeError, match="n_or_arrays"):
        batches("abc", 2)
    with pytest.raises(ValueError, match="n_or_arrays"):
        batches(-1, 2)


# ---------------------------------------------------------------------------- bucketing
def test_bucket_batcher_cuts_padding():
    rng = np.random.default_rng(0)
    lengths = rng.integers(1, 200, size=2000)
    bs = 32
    random_frac = padding_fraction(lengths, batches(len(lengths), bs, seed=0))
    bucket = BucketBatcher(lengths, bs, seed=0, bucket_size_multiplier=50)
    bucket_frac = padding_fraction(lengths, bucket)
    sorted_frac = padding_fraction(lengths, BucketBatcher(lengths, bs, shuffle=False))
    print(f"\npadding: random batches {random_frac:.1%}, bucketed {bucket_frac:.1%}, "
          f"fully sorted {sorted_frac:.1%} (saved {random_frac - bucket_frac:.1%} of all cells)")
    assert random_frac > 0.3
    assert bucket_frac < 0.1 * random_frac
    assert sorted_frac <= bucket_frac


def test_bucket_batcher_covers_all_and_is_seeded():
    lengths = np.random.default_rng(1).integers(0, 50, size=103)
    out = list(BucketBatcher(lengths, 10, seed=3, bucket_size_multiplier=3))
    assert sorted(np.concatenate(out).tolist()) == list(range(103))
    assert len(out) == len(BucketBatcher(lengths, 10)) == 11
    assert sum(len(b) < 10 for b in out) == 1
    same = list(BucketBatcher(lengths, 10, seed=3, bucket_size_multiplier=3))
    assert [b.tolist() for b in out] == [b.tolist() for b in same]
    other = list(BucketBatcher(lengths, 10, seed=4, bucket_size_multiplier=3))
    assert [b.tolist() for b in out] != [b.tolist() for b in other]
    dropped = list(BucketBatcher(lengths, 10, seed=3, drop_last=True))
    assert len(dropped) == 10 and all(len(b) == 10 for b in dropped)
    ordered = list(BucketBatcher(lengths, 10, shuffle=False))
    flat = lengths[np.concatenate(ordered)]
    assert np.all(np.diff(flat) >= 0)


def test_bucket_batcher_errors():
    with pytest.raises(ValueError, match="batch_size"):
        BucketBatcher([1, 2], 0)
    with pytest.raises(ValueError, match="lengths.*>= 0"):
        BucketBatcher([1, -2], 1)
    with pytest.raises(ValueError, match="lengths.*1-D"):
        BucketBatcher([[1, 2]], 1)
    with pytest.raises(TypeError, match="lengths"):
        BucketBatcher([1.5], 1)
    with pytest.raises(ValueError, match="bucket_size_multiplier"):
        BucketBatcher([1], 1, bucket_size_multiplier=0)


# ---------------------------------------------------------------------------- splits
def test_train_val_test_split_sizes_disjoint_seeded():
    tr, va, te = train_val_test_split(100, val=0.1, test=0.2, seed=0)
    assert (len(tr), len(va), len(te)) == (70, 10, 20)
    assert sorted(np.concatenate([tr, va, te]).tolist()) == list(range(100))
    tr2, va2, te2 = train_val_test_split(100, val=0.1, test=0.2, seed=0)
    assert np.array_equal(tr, tr2) and np.array_equal(va, va2) and np.array_equal(te, te2)
    assert not np.array_equal(tr, train_val_test_split(100, val=0.1, test=0.2, seed=1)[0])
    # counts, and a small non-zero fraction still yields one sample
    tr, va, te = train_val_test_split(7, val=2, test=0.01)
    assert (len(tr), len(va), len(te)) == (4, 2, 1)


def test_train_val_test_split_arrays_and_contiguous():
    X = np.arange(20).reshape(10, 2)
    y = np.arange(10)
    (Xtr, ytr), (Xva, yva), (Xte, yte) = train_val_test_split((X, y), val=0.2, test=0.2, seed=3)
    np.testing.assert_array_equal(Xtr[:, 0] // 2, ytr)
    np.testing.assert_array_equal(Xte[:, 0] // 2, yte)
    tr, va, te = train_val_test_split(np.arange(10), val=0.2, test=0.1, shuffle=False)
    np.testing.assert_array_equal(tr, np.arange(7))
    np.testing.assert_array_equal(va, [7, 8])
    np.testing.assert_array_equal(te, [9])


def test_train_val_test_split_errors():
    with pytest.raises(ValueError, match="leave no training samples out of 2"):
        train_val_test_split(2, val=0.1, test=0.1)
    with pytest.raises(ValueError, match=r"val: expected a fraction in \[0, 1\), got 1.5"):
        train_val_test_split(10, val=1.5)
    with pytest.raises(ValueError, match="test: expected a count >= 0"):
        train_val_test_split(10, test=-1)
    with pytest.raises(TypeError, match="val"):
        train_val_test_split(10, val="10%")


# ---------------------------------------------------------------------------- LMStream
def test_lm_stream_shapes_targets_and_length():
    ids = np.arange(103)
    s = LMStream(ids, batch_size=4, seq_len=5)
    assert len(s) == 5  # (103 - 1) // 20
    assert s.stream_len == 25
    batches_ = list(s)
    assert len(batches_) == 5
    for x, y in batches_:
        assert x.shape == y.shape == (4, 5) and x.dtype == np.int64
        np.testing.assert_array_equal(y, x + 1)  # ids are consecutive: y is the next token
    # stream b is the contiguous segment [b*25, (b+1)*25)
    x0, _ = batches_[0]
    np.testing.assert_array_equal(x0[:, 0], [0, 25, 50, 75])


def test_lm_stream_continuity_across_batches():
    rng = np.random.default_rng(0)
    ids = rng.integers(0, 50, size=1000)
    B, T = 3, 7
    s = LMStream(ids, B, T)
    got = list(s)
    L = s.stream_len
    for k in range(len(got) - 1):
        (xk, yk), (xn, _) = got[k], got[k + 1]
        for b in range(B):
            last = b * L + (k + 1) * T - 1  # corpus position of x[b, -1] in batch k
            assert xk[b, -1] == ids[last] and xn[b, 0] == ids[last + 1]
            assert yk[b, -1] == xn[b, 0]  # target of the last step is the next batch's first input
    # concatenating each row over the batches rebuilds the stream exactly
    rows = np.concatenate([x for x, _ in got], axis=1)
    np.testing.assert_array_equal(rows.reshape(-1), ids[: B * L])
    ys = np.concatenate([y for _, y in got], axis=1)
    np.testing.assert_array_equal(ys.reshape(-1), ids[1: B * L + 1])


def test_lm_stream_time_major_reset_and_indexing():
    ids = np.arange(41)
    tm = LMStream(ids, batch_size=2, seq_len=4, batch_first=False)
    bf = LMStream(ids, batch_size=2, seq_len=4)
    x_tm, y_tm = next(tm)
    x_bf, y_bf = next(bf)
    assert x_tm.shape == (4, 2) and x_tm.flags.c_contiguous
    np.testing.assert_array_equal(x_tm, x_bf.T)
    np.testing.assert_array_equal(y_tm, y_bf.T)
    assert tm.position == 1
    next(tm)
    tm.reset()
    assert tm.position == 0
    np.testing.assert_array_equal(next(tm)[0], x_tm)
    np.testing.assert_array_equal(bf[-1][0], bf[len(bf) - 1][0])
    with pytest.raises(IndexError, match="batch index"):
        bf[len(bf)]


def test_lm_stream_rewinds_after_a_pass():
    s = LMStream(np.arange(50), batch_size=2, seq_len=3)
    first = [x.tolist() for x, _ in s]
    second = [x.tolist() for x, _ in s]
    assert first == second and len(first) == len(s) == 8


def test_lm_stream_errors():
    with pytest.raises(ValueError, match=r"corpus has 20 tokens.*needs at least 21"):
        LMStream(np.arange(20), batch_size=4, seq_len=5)
    LMStream(np.arange(21), batch_size=4, seq_len=5)  # exactly enough
    with pytest.raises(ValueError, match="batch_size: expected an int >= 1, got 0"):
        LMStream(np.arange(100), batch_size=0, seq_len=5)
    with pytest.raises(ValueError, match="seq_len"):
        LMStream(np.arange(100), batch_size=2, seq_len=0)
    with pytest.raises(TypeError, match="ids"):
        LMStream(np.linspace(0, 1, 100), 2, 3)
    with pytest.raises(ValueError, match="ids: expected a 1-D"):
        LMStream(np.zeros((10, 10), dtype=int), 2, 3)


# ---------------------------------------------------------------------------- forecasting
def test_sliding_windows_values_1d():
    series = np.arange(10, dtype=np.float64) ** 2
    X, Y = sliding_windows(series, input_len=3, horizon=2, stride=2)
    assert X.shape == (3, 3, 1) and Y.shape == (3, 2, 1)  # starts 0, 2, 4 (4+5 <= 10)
    assert X.dtype == Y.dtype == np.float32
    for i, s in enumerate([0, 2, 4]):
        np.testing.assert_array_equal(X[i, :, 0], series[s:s + 3])
        np.testing.assert_array_equal(Y[i, :, 0], series[s + 3:s + 5])


def test_sliding_windows_2d_and_target_cols():
    series = np.stack([np.arange(8), 100 + np.arange(8)], axis=1)
    X, Y = sliding_windows(series, input_len=4, horizon=1)
    assert X.shape == (4, 4, 2) and Y.shape == (4, 1, 2)
    np.testing.assert_array_equal(X[3], series[3:7])
    np.testing.assert_array_equal(Y[3, 0], series[7])
    _, Y1 = sliding_windows(series, 4, 2, target_cols=[1])
    assert Y1.shape == (3, 2, 1)
    np.testing.assert_array_equal(Y1[0, :, 0], [104, 105])
    X, Y = sliding_windows(series, 6, 2)  # exactly one window
    assert X.shape[0] == 1


def test_sliding_windows_errors():
    with pytest.raises(ValueError, match=r"series: has 5 steps but one window needs input_len \+ horizon = 4 \+ 2 = 6"):
        sliding_windows(np.arange(5.0), 4, 2)
    with pytest.raises(ValueError, match="horizon"):
        sliding_windows(np.arange(5.0), 2, 0)
    with pytest.raises(ValueError, match="stride"):
        sliding_windows(np.arange(5.0), 2, 1, stride=0)
    with pytest.raises(ValueError, match=r"series: expected shape \(T,\) or \(T, F\)"):
        sliding_windows(np.zeros((4, 2, 2)), 1, 1)
    with pytest.raises(ValueError, match="NaN or inf at step 2"):
        sliding_windows([1.0, 2.0, np.nan, 4.0], 1, 1)
    with pytest.raises(TypeError, match="series"):
        sliding_windows(["a", "b"], 1, 1)
    with pytest.raises(ValueError, match="target_cols"):
        sliding_windows(np.zeros((5, 2)), 2, 1, target_cols=[2])


def test_standardize_round_trip_and_reuse():
    rng = np.random.default_rng(0)
    train = rng.normal(5.0, 3.0, size=(500, 3)).astype(np.float32)
    train[:, 2] = 7.0  # a constant column
    z, mean, std = standardize(train)
    assert z.dtype == np.float32 and mean.shape == std.shape == (3,)
    np.testing.assert_allclose(z[:, :2].mean(0), 0, atol=1e-5)
    np.testing.assert_allclose(z[:, :2].std(0), 1, atol=1e-4)
    assert std[2] == 1.0 and np.all(z[:, 2] == 0)
    np.testing.assert_allclose(unstandardize(z, mean, std), train, rtol=1e-5, atol=1e-5)
    test = train[:10] + 1.0
    zt, m2, s2 = standardize(test, mean, std)
    np.testing.assert_allclose(zt, (test - mean) / std, rtol=1e-6)
    assert m2 is not None and np.array_equal(m2, mean)


def test_standardize_errors():
    with pytest.raises(ValueError, match="pass both"):
        standardize(np.zeros((3, 2)), mean=np.zeros(2))
    with pytest.raises(ValueError, match=r"expected shape \(2,\)"):
        standardize(np.zeros((3, 2)), mean=np.zeros(3), std=np.ones(3))
    with pytest.raises(ValueError, match="std: expected positive"):
        standardize(np.zeros((3, 2)), mean=np.zeros(2), std=np.zeros(2))
    with pytest.raises(ValueError, match="at least one step"):
        standardize(np.zeros((0, 2)))
