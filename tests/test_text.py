"""rnnfast.text: tokenizers, Vocab (order, limits, round trips, atomic save), one-hot, padding, masks, read_text."""
import json
import os
import sys
import types

import numpy as np
import pytest

from rnnfast import text as T
from rnnfast.text import (CharTokenizer, Vocab, WordTokenizer, length_mask, one_hot, pad_sequences,
                          read_text, tokenizer_from_dict)
from helpers import fail_half_write

ZH = "我爱北京天安门。今天天气很好！"


# ---------------------------------------------------------------------------- tokenizers
def test_char_tokenizer_chinese_one_token_per_character():
    tok = CharTokenizer()
    toks = tok.tokenize(ZH)
    assert len(toks) == len(ZH) == 15
    assert toks[:4] == ["我", "爱", "北", "京"]
    assert tok.detokenize(toks) == ZH


def test_char_tokenizer_emoji_and_astral_plane_are_single_code_points():
    s = "a😀b𠀋"  # U+1F600 and a CJK extension-B character: both outside the BMP
    toks = CharTokenizer()(s)
    assert toks == ["a", "😀", "b", "𠀋"]
    assert all(len(t) == 1 for t in toks)
    assert CharTokenizer().detokenize(toks) == s


def test_char_tokenizer_rejects_bytes():
    with pytest.raises(TypeError, match="text"):
        CharTokenizer().tokenize(b"abc")


def test_word_tokenizer_english_punctuation_and_numbers():
    toks = WordTokenizer().tokenize("Hello, world! I don't have 3.14 apples (yet).")
    assert toks == ["Hello", ",", "world", "!", "I", "don't", "have", "3.14", "apples", "(", "yet", ")", "."]


def test_word_tokenizer_lower_and_no_punct_split():
    assert WordTokenizer(lower=True).tokenize("The CAT sat.") == ["the", "cat", "sat", "."]
    assert WordTokenizer(split_punct=False).tokenize("Hi, you there!  ok") == ["Hi,", "you", "there!", "ok"]


def test_word_tokenizer_mixed_english_chinese():
    toks = WordTokenizer().tokenize("我爱Python编程, it's fun！")
    assert toks == ["我", "爱", "Python", "编", "程", ",", "it's", "fun", "！"]
    # without CJK splitting a run of Han characters is one word
    assert WordTokenizer(split_cjk=False).tokenize("我爱 Python") == ["我爱", "Python"]
    # without punctuation splitting Han characters still come out one by one
    assert WordTokenizer(split_punct=False).tokenize("我爱Python!") == ["我", "爱", "Python!"]


def test_word_tokenizer_keeps_combining_marks_and_emoji_sequences_whole():
    tok = WordTokenizer()
    assert tok.tokenize("हिन्दी cafe\u0301") == ["हिन्दी", "cafe\u0301"]  # marks stay in their word
    toks = tok.tokenize("ok 👍🏽 ❤️ 👨‍👩‍👧 🇨🇳😀")
    assert toks == ["ok", "👍🏽", "❤️", "👨\u200d👩\u200d👧", "🇨🇳", "😀"]


def test_word_tokenizer_detokenize():
    tok = WordTokenizer()
    s = "Hello, world! (yes) 我爱北京。"
    assert tok.detokenize(tok.tokenize(s)) == s


def test_word_tokenizer_jieba_missing_gives_clear_import_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "jieba", None)  # makes `import jieba` fail even if installed
    with pytest.raises(ImportError, match=r"pip install jieba.*use_jieba=False"):
        WordTokenizer(use_jieba=True)


def test_word_tokenizer_uses_jieba_for_han_runs(monkeypatch):
    calls = []

    def lcut(s):  # fake segmenter: pairs of characters
        calls.append(s)
        return [s[i:i + 2] for i in range(0, len(s), 2)]

    monkeypatch.setitem(sys.modules, "jieba", types.SimpleNamespace(lcut=lcut))
    tok = WordTokenizer(use_jieba=True)
    assert tok.tokenize("我爱北京天安门, hello 你好") == ["我爱", "北京", "天安", "门", ",", "hello", "你好"]
    assert calls == ["我爱北京天安门", "你好"]  # only Han runs go to jieba
    assert tok.to_dict()["use_jieba"] is True


def test_word_tokenizer_argument_types():
    with pytest.raises(TypeError, match="lower"):
        WordTokenizer(lower="yes")
    with pytest.raises(TypeError, match="text"):
        WordTokenizer().tokenize(None)


def test_tokenizer_dict_round_trip():
    w = WordTokenizer(lower=True, split_punct=False)
    w2 = tokenizer_from_dict(json.loads(json.dumps(w.to_dict())))
    assert isinstance(w2, WordTokenizer) and w2.to_dict() == w.to_dict()
    assert isinstance(tokenizer_from_dict(CharTokenizer().to_dict()), CharTokenizer)
    with pytest.raises(ValueError, match="type"):
        tokenizer_from_dict({"type": "bpe"})


# ---------------------------------------------------------------------------- Vocab
def test_vocab_order_frequency_then_first_appearance():
    v = Vocab.build(["b", "a", "c", "a", "d", "c", "e"])
    # a,c: 2 each (a first); then b,d,e: 1 each in order of appearance
    assert v.itos == ("<pad>", "<unk>", "<bos>", "<eos>", "a", "c", "b", "d", "e")
    assert (v.pad_id, v.unk_id, v.bos_id, v.eos_id) == (0, 1, 2, 3)
    assert v.stoi["c"] == 5 and len(v) == 9
    assert "a" in v and "z" not in v
    # ties follow first appearance, not alphabetical order
    assert Vocab.build(["z", "q", "y", "q", "z", "x", "w"], specials=()).itos == ("z", "q", "y", "x", "w")


def test_vocab_build_from_token_lists_equals_flat():
    docs = [["x", "y"], ["y", "z", "y"], []]
    assert Vocab.build(docs) == Vocab.build(["x", "y", "y", "z", "y"])
    assert Vocab.build(docs).itos[4] == "y"


def test_vocab_min_freq_and_max_size():
    toks = list("aaaabbbccd")
    assert Vocab.build(toks, min_freq=2).itos[4:] == ("a", "b", "c")
    v = Vocab.build(toks, max_size=6)  # size includes the 4 specials
    assert len(v) == 6 and v.itos[4:] == ("a", "b")
    assert Vocab.build(toks, max_size=4).itos == ("<pad>", "<unk>", "<bos>", "<eos>")


def test_vocab_custom_specials_and_corpus_specials_not_duplicated():
    v = Vocab.build(["<unk>", "x", "x"], specials=("<pad>", "<unk>"))
    assert v.itos == ("<pad>", "<unk>", "x")
    assert v.bos_id is None and v.eos_id is None
    v2 = Vocab.build("abc", specials=())
    assert v2.pad_id is None and v2.unk_id is None and v2.itos == ("a", "b", "c")


def test_vocab_encode_decode_round_trip_and_unknown():
    tok = WordTokenizer()
    text = "the cat sat on the mat 猫坐在垫子上"
    v = Vocab.build(tok(text))
    ids = v.encode(tok(text))
    assert ids.dtype == np.int64 and ids.shape == (len(tok(text)),)
    assert v.decode(ids) == tok(text)
    assert v.decode(v.encode(["the", "dog"])) == ["the", "<unk>"]
    assert v["dog"] == v.unk_id and v["cat"] == v.stoi["cat"]
    assert v.decode([0, 2, v.stoi["cat"], 3], skip_specials=True) == ["cat"]
    assert v.encode([]).shape == (0,) and v.decode([]) == []


def test_vocab_encode_str_is_characters_fast_path_matches_list_path():
    text = "Hello, 世界! 😀\nxyz"
    v = Vocab.build(text[:10])
    fast = v.encode(text)
    slow = v.encode(list(text))
    np.testing.assert_array_equal(fast, slow)
    assert (fast == v.unk_id).sum() == sum(c not in v for c in text)
    assert "".join(v.decode(v.encode(text[:10]))) == text[:10]


def test_vocab_without_unk_raises_key_error_naming_token():
    v = Vocab.build("abc", specials=("<pad>",))
    assert v.unk_id is None
    with pytest.raises(KeyError, match="'z'"):
        v.encode(["a", "z"])
    with pytest.raises(KeyError, match="'z'"):
        v.encode("az")  # vectorised character path too
    with pytest.raises(KeyError, match="'q'"):
        v["q"]


def test_vocab_decode_validates_ids():
    v = Vocab.build("ab")
    with pytest.raises(ValueError, match=r"ids: expected ids in \[0, 5\].*got 6"):
        v.decode([0, 6])
    with pytest.raises(ValueError, match="got -1"):
        v.decode(np.array([-1]))
    with pytest.raises(TypeError, match="integer"):
        v.decode([0.5])


def test_vocab_build_errors():
    with pytest.raises(ValueError, match="min_freq"):
        Vocab.build("a", min_freq=0)
    with pytest.raises(ValueError, match="max_size.*4 specials"):
        Vocab.build("a", max_size=3)
    with pytest.raises(TypeError, match="tokens"):
        Vocab.build([["a", 1]])
    with pytest.raises(TypeError, match="tokens"):
        Vocab.build([3])
    with pytest.raises(ValueError, match="pad token"):
        Vocab.build("a", specials=("<unk>", "<pad>"))
    with pytest.raises(ValueError, match="distinct"):
        Vocab.build("a", specials=("<pad>", "<pad>"))


def test_vocab_save_load_round_trip(tmp_path):
    v = Vocab.build(WordTokenizer()("今天 天气 很好 good good 😀"), specials=("<pad>", "<unk>", "<eos>"))
    p = tmp_path / "vocab.json"
    v.save(p)
    w = Vocab.load(p)
    assert w == v and w.itos == v.itos and w.eos_id == v.eos_id and w.bos_id is None
    assert "\"天\"" in p.read_text(encoding="utf-8")  # human-readable UTF-8, not \u escapes
    assert [f for f in os.listdir(tmp_path)] == ["vocab.json"]  # no temp files left behind
    # embedded in other JSON (checkpoint metadata)
    assert Vocab.from_dict(json.loads(json.dumps({"v": v.to_dict()}))["v"]) == v


@pytest.mark.parametrize("target", ["json_dumps_write", "os_replace", "fsync"])
def test_vocab_save_is_atomic(tmp_path, monkeypatch, target):
    p = tmp_path / "vocab.json"
    old = Vocab.build("abc")
    old.save(p)
    before = p.read_bytes()
    new = Vocab.build("xyz" * 3)

    def boom(*a, **k):
        raise OSError("simulated crash")

    if target == "os_replace":
        monkeypatch.setattr(T.os, "replace", boom)
    elif target == "fsync":
        monkeypatch.setattr(T.os, "fsync", boom)
    else:
        fail_half_write(monkeypatch)  # the temp file dies half-written
    with pytest.raises(OSError, match="simulated crash"):
        new.save(p)
    monkeypatch.undo()
    assert p.read_bytes() == before
    assert Vocab.load(p) == old
    assert sorted(os.listdir(tmp_path)) == ["vocab.json"]


def test_vocab_load_errors(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("{not json", encoding="utf-8")
    with pytest.raises(ValueError, match="not a vocab JSON"):
        Vocab.load(bad)
    other = tmp_path / "other.json"
    other.write_text(json.dumps({"format": "something"}), encoding="utf-8")
    with pytest.raises(ValueError, match="format"):
        Vocab.load(other)
    with pytest.raises(FileNotFoundError):
        Vocab.load(tmp_path / "missing.json")
    d = Vocab.build("ab").to_dict()
    d["itos"] = d["itos"] + ["a"]
    with pytest.raises(ValueError, match="twice"):
        Vocab.from_dict(d)


def test_vocab_stoi_itos_are_read_only():
    v = Vocab.build("ab")
    with pytest.raises(TypeError):
        v.stoi["c"] = 9
    assert isinstance(v.itos, tuple)


# ---------------------------------------------------------------------------- arrays
def test_one_hot_values_shape_dtype():
    ids = np.array([[0, 2], [1, 1]])
    oh = one_hot(ids, 3)
    assert oh.shape == (2, 2, 3) and oh.dtype == np.float32
    np.testing.assert_array_equal(oh.argmax(-1), ids)
    np.testing.assert_array_equal(oh.sum(-1), np.ones((2, 2)))
    assert one_hot([], 4).shape == (0, 4)


def test_one_hot_errors():
    with pytest.raises(ValueError, match=r"ids: expected values in \[0, 2\].*got 3"):
        one_hot([0, 3], 3)
    with pytest.raises(ValueError, match="got -1"):
        one_hot([-1], 3)
    with pytest.raises(TypeError, match="ids"):
        one_hot([0.0, 1.0], 3)
    with pytest.raises(ValueError, match="num_classes"):
        one_hot([0], 0)


def test_pad_sequences_and_lengths():
    ids, lengths = pad_sequences([[5, 6, 7], [8], []], pad_id=0)
    np.testing.assert_array_equal(ids, [[5, 6, 7], [8, 0, 0], [0, 0, 0]])
    np.testing.assert_array_equal(lengths, [3, 1, 0])
    assert ids.dtype == np.int64 and lengths.dtype == np.int64
    ids, lengths = pad_sequences([np.arange(5), np.arange(2)], pad_id=-1, max_len=3)
    np.testing.assert_array_equal(ids, [[0, 1, 2], [0, 1, -1]])
    np.testing.assert_array_equal(lengths, [3, 2])
    feats, lengths = pad_sequences([np.ones((2, 4)), np.ones((3, 4))], dtype=np.float32)
    assert feats.shape == (2, 3, 4) and feats.dtype == np.float32 and feats[0, 2].sum() == 0
    empty, lengths = pad_sequences([])
    assert empty.shape == (0, 0) and lengths.shape == (0,)


def test_pad_sequences_errors():
    with pytest.raises(TypeError, match=r"seqs\[1\].*float"):
        pad_sequences([[1], [0.5]])
    with pytest.raises(ValueError, match=r"seqs\[1\].*per-step shape"):
        pad_sequences([np.zeros((2, 3)), np.zeros((2, 4))], dtype=np.float32)
    with pytest.raises(ValueError, match=r"seqs\[0\].*scalar"):
        pad_sequences([3])
    with pytest.raises(ValueError, match="max_len"):
        pad_sequences([[1]], max_len=-1)


def test_length_mask_matches_padding():
    seqs = [[1, 2, 3], [4], [5, 6]]
    ids, lengths = pad_sequences(seqs)
    mask = length_mask(lengths)
    assert mask.dtype == np.bool_ and mask.shape == (3, 3)
    np.testing.assert_array_equal(mask, ids != 0)
    assert length_mask(lengths, max_len=5).shape == (3, 5)
    with pytest.raises(ValueError, match="max_len.*longest length 3"):
        length_mask(lengths, max_len=2)
    with pytest.raises(ValueError, match="lengths.*>= 0"):
        length_mask([1, -1])
    with pytest.raises(ValueError, match="1-D"):
        length_mask([[1]])
    with pytest.raises(TypeError, match="lengths"):
        length_mask([1.5])


# ---------------------------------------------------------------------------- read_text
def test_read_text_utf8_bom_and_newlines(tmp_path):
    p = tmp_path / "c.txt"
    p.write_bytes(b"\xef\xbb\xbfline1\r\n\xe4\xbd\xa0\xe5\xa5\xbd\rend")
    assert read_text(p) == "line1\n你好\nend"


def test_read_text_errors(tmp_path):
    empty = tmp_path / "empty.txt"
    empty.write_bytes(b"")
    with pytest.raises(ValueError, match="empty.txt: the file is empty"):
        read_text(empty)
    blank = tmp_path / "blank.txt"
    blank.write_bytes(b" \n\t\n")
    with pytest.raises(ValueError, match="only whitespace"):
        read_text(blank)
    binary = tmp_path / "img.bin"
    binary.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR")
    with pytest.raises(ValueError, match=r"binary file \(NUL byte at offset 8\).*UTF-8 text"):
        read_text(binary)
    latin = tmp_path / "latin.txt"
    latin.write_bytes("café".encode("latin-1"))
    with pytest.raises(ValueError, match=r"not valid utf-8 \(byte 0xe9 at offset 3\).*iconv"):
        read_text(latin)
    assert read_text(latin, encoding="latin-1") == "café"
    with pytest.raises(FileNotFoundError):
        read_text(tmp_path / "nope.txt")
