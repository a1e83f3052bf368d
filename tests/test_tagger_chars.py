"""SequenceTagger(char_vocab_size=...): character BiLSTM word features (Lample et al. 2016).

Finite differences of the whole tagger (char embedding and char LSTM included), the char encoder
against a per-word loop, a synthetic task where a fifth of the test words are unseen and only
their suffix tells the tag, save/load, and bad input."""
import numpy as np
import pytest

from rnnfast.models import SequenceTagger
from rnnfast.models.char_words import encode_chars
from rnnfast.optim import Adam
from test_models_common import fd_check

LENS = np.array([5, 2, 1, 4])


def _chars(rng, B, T, W, V):
    """Random words of 1..W characters (ids 1..V-1), 0-padded."""
    c = np.zeros((B, T, W), np.int64)
    for b in range(B):
        for t in range(T):
            n = rng.integers(1, W + 1)
            c[b, t, :n] = rng.integers(1, V, n)
    return c


@pytest.mark.parametrize("crf", [False, True])
def test_gradients_match_finite_differences(crf):
    rng = np.random.default_rng(2)
    m = SequenceTagger(3, 4, vocab_size=9, embedding_dim=3, crf=crf, char_vocab_size=7, char_embedding_dim=3,
                       char_hidden_size=2, seed=4)
    x, chars = rng.integers(1, 9, (4, 5)), _chars(rng, 4, 5, 4, 7)
    tags = rng.integers(0, 3, (4, 5))
    m.zero_grad()
    _, g = m.loss(m(x, LENS, chars), tags, LENS)
    m.backward(g)
    analytic = fd_check(m, lambda: m.loss(m(x, LENS, chars), tags, LENS)[0], rng)
    assert any(name.startswith("chars.rnn.") for name in analytic)
    assert np.abs(analytic["chars.embedding.weight"][0]).max() == 0  # the padding character learns nothing


def test_char_features_are_each_words_final_states():
    """The batched ragged call equals running the char BiLSTM on each word alone; padding words are zero."""
    rng = np.random.default_rng(3)
    m = SequenceTagger(2, 3, vocab_size=5, embedding_dim=2, char_vocab_size=6, char_embedding_dim=3,
                       char_hidden_size=4, seed=0).eval()
    chars = _chars(rng, 3, 4, 5, 6)
    lens = np.array([4, 1, 3])
    feats = m.chars(chars, lens)
    for b in range(3):
        for t in range(4):
            if t >= lens[b]:
                assert not feats[b, t].any()
                continue
            word = chars[b, t][chars[b, t] > 0]
            _, (h, _) = m.chars.rnn(m.chars.embedding(word[None]))
            np.testing.assert_allclose(feats[b, t], np.concatenate([h[0, 0], h[1, 0]]), rtol=1e-5, atol=1e-6)


SUFFIXES = ["ing", "ed", "ly", "ion"]  # the tag of a word is its suffix's index


def _suffix_task(rng, n_sent, stems, T=6):
    words = [[stems[rng.integers(len(stems))] + SUFFIXES[k] for k in rng.integers(0, 4, T)] for _ in range(n_sent)]
    tags = np.array([[SUFFIXES.index(next(s for s in SUFFIXES if w.endswith(s))) for w in sent] for sent in words])
    return words, tags


def test_char_features_tag_unseen_words_by_their_suffix(tmp_path):
    """A fifth of the test words are unseen (UNK for the word embedding) and only their suffix says
    the tag: the word-only tagger cannot do better than guessing on them, the char tagger can."""
    rng = np.random.default_rng(0)
    letters = "bcdfghkmnprstvz"
    stems = []
    while len(stems) < 60:  # distinct stems: an unseen word is never a seen one
        stem = "".join(rng.choice(list(letters), rng.integers(2, 5)))
        stems += [stem] if stem not in stems else []
    seen, unseen = stems[:40], stems[40:]
    train_words, train_tags = _suffix_task(rng, 200, seen)
    test_words, test_tags = _suffix_task(rng, 100, seen)
    new_words, new_tags = _suffix_task(rng, 100, unseen)
    mix = rng.random(test_tags.shape) < 0.2  # a fifth of the test words are unseen
    test_words = [[new_words[b][t] if mix[b, t] else w for t, w in enumerate(s)] for b, s in enumerate(test_words)]
    test_tags = np.where(mix, new_tags, test_tags)
    vocab = {w: i + 2 for i, w in enumerate(sorted({w for s in train_words for w in s}))}  # 0 pad, 1 unknown
    char_index = {ch: i + 2 for i, ch in enumerate(sorted(set(letters + "".join(SUFFIXES))))}
    ids = lambda sents: np.array([[vocab.get(w, 1) for w in s] for s in sents])
    x_train, x_test = ids(train_words), ids(test_words)
    assert (x_test[mix] == 1).all() and not (x_test[~mix] == 1).any()
    c_train, c_test = encode_chars(train_words, char_index), encode_chars(test_words, char_index)

    def fit(char_vocab):
        m = SequenceTagger(4, 16, vocab_size=len(vocab) + 2, embedding_dim=8, seed=1, char_vocab_size=char_vocab,
                           char_embedding_dim=8, char_hidden_size=12)
        opt = Adam(m.parameters(), lr=0.02)
        for step in range(60):
            batch = slice((step * 40) % 200, (step * 40) % 200 + 40)
            m.zero_grad()
            m.train_step(x_train[batch], train_tags[batch], chars=c_train[batch] if char_vocab else None)
            opt.step()
        return m

    def unseen_accuracy(m, chars):
        pred = np.array(m.decode(x_test, chars=chars))
        return float((pred == test_tags)[mix].mean()), float((pred == test_tags)[~mix].mean())

    words_only = fit(None)
    with_chars = fit(len(char_index) + 2)
    acc_words, seen_words = unseen_accuracy(words_only, None)
    acc_chars, seen_chars = unseen_accuracy(with_chars, c_test)
    assert seen_words > 0.95 and seen_chars > 0.95
    assert acc_words < 0.5 and acc_chars > 0.9, (acc_words, acc_chars)

    with_chars.save(tmp_path / "t.ckpt")
    back = SequenceTagger.load(tmp_path / "t.ckpt")
    assert back.config["char_vocab_size"] == len(char_index) + 2
    assert all(np.array_equal(a, b) for a, b in zip(back.decode(x_test, chars=c_test),
                                                    with_chars.decode(x_test, chars=c_test)))


def test_encode_chars():
    c = encode_chars([["ab", "c"], ["abcd"]], {"a": 2, "b": 3, "c": 4}, max_word_len=3)
    np.testing.assert_array_equal(c, [[[2, 3, 0], [4, 0, 0]], [[2, 3, 4], [0, 0, 0]]])
    assert encode_chars([["xy"]], {"x": 2})[0, 0].tolist() == [2, 1]  # unknown characters get 1


def test_bad_char_input_is_reported():
    m = SequenceTagger(2, 3, vocab_size=5, embedding_dim=2, char_vocab_size=6, seed=0)
    x = np.ones((2, 3), np.int64)
    with pytest.raises(ValueError, match="chars: this model has character features"):
        m(x)
    with pytest.raises(ValueError, match=r"chars: expected shape \(2, 3, W\)"):
        m(x, chars=np.ones((2, 4, 2), np.int64))
    with pytest.raises(ValueError, match=r"chars: id 6 is outside \[0, char_vocab_size=6\)"):
        m(x, chars=np.full((2, 3, 2), 6))
    with pytest.raises(TypeError, match="chars: expected integer character ids"):
        m(x, chars=np.ones((2, 3, 2)))
    plain = SequenceTagger(2, 3, vocab_size=5, embedding_dim=2, seed=0)
    with pytest.raises(ValueError, match="chars: this model has no character features"):
        plain(x, chars=np.ones((2, 3, 2), np.int64))
    with pytest.raises(ValueError, match="char_vocab_size"):
        SequenceTagger(2, 3, vocab_size=5, embedding_dim=2, char_vocab_size=1)
    assert "char_vocab_size" not in plain.config  # configs of char-less models are unchanged
