"""Text → numbers: tokenizers, a vocabulary, one-hot, padding and masks, and a careful file reader.

Everything here is plain Python + numpy; token ids are int64, one-hot rows and masks are the
float32 / bool arrays the layers take.
"""
from __future__ import annotations

import functools
import json
import os
import re
import unicodedata
from collections import Counter
from types import MappingProxyType
from typing import Iterable, Mapping, Sequence

import numpy as np

from .nn._checks import check_int
from ._atomic import atomic_write

__all__ = [
    "Vocab",
    "CharTokenizer",
    "WordTokenizer",
    "tokenizer_from_dict",
    "one_hot",
    "pad_sequences",
    "length_mask",
    "read_text",
]

DEFAULT_SPECIALS = ("<pad>", "<unk>", "<bos>", "<eos>")
_VOCAB_FORMAT = "rnnfast.vocab"
_VOCAB_VERSION = 1


# ----------------------------------------------------------------------------------------
# small checks shared by the functions below
# ----------------------------------------------------------------------------------------
def _check_int(name: str, value, minimum: int | None = None, allow_none: bool = False):
    return check_int(value, name, minimum, allow_none=allow_none)


# ----------------------------------------------------------------------------------------
# Vocab
# ----------------------------------------------------------------------------------------
class Vocab:
    """A token <-> id map. Specials come first (``<pad>`` is id 0), then tokens by frequency.

    Build one with :meth:`Vocab.build`; construct it directly from a complete token list when
    the order is already decided (e.g. when loading).

    Parameters
    ----------
    itos : sequence of str
        Every token in id order, the specials first; no duplicates.
    specials : sequence of str, default ('<pad>', '<unk>', '<bos>', '<eos>')
        The special tokens (the pad token, if any, first so that zero-padding means padding).
    pad_token, unk_token, bos_token, eos_token : str or None
        Which special plays which role (defaults '<pad>', '<unk>', '<bos>', '<eos>'); a role whose
        token is not among the specials has id None. Without an unknown token, encoding an
        unknown token raises KeyError.

    Examples
    --------
    >>> from rnnfast.text import Vocab
    >>> v = Vocab.build(["a b a".split()], specials=("<pad>", "<unk>"), bos_token=None, eos_token=None)
    >>> v.itos, v.encode(["a", "c"]).tolist()
    (('<pad>', '<unk>', 'a', 'b'), [2, 1])
    """

    def __init__(
        self,
        itos: Sequence[str],
        specials: Sequence[str] = DEFAULT_SPECIALS,
        *,
        pad_token: str | None = "<pad>",
        unk_token: str | None = "<unk>",
        bos_token: str | None = "<bos>",
        eos_token: str | None = "<eos>",
    ) -> None:
        itos = list(itos)
        specials = list(specials)
        for i, tok in enumerate(itos):
            if not isinstance(tok, str):
                raise TypeError(f"itos: expected str tokens, got {type(tok).__name__} {tok!r} at index {i}")
        stoi: dict[str, int] = {}
        for i, tok in enumerate(itos):
            if tok in stoi:
                raise ValueError(f"itos: token {tok!r} appears twice (ids {stoi[tok]} and {i})")
            stoi[tok] = i
        if itos[: len(specials)] != specials:
            raise ValueError(f"itos: expected the specials {specials} first, got {itos[:len(specials)]}")
        roles = {"pad_token": pad_token, "unk_token": unk_token, "bos_token": bos_token, "eos_token": eos_token}
        for role, tok in roles.items():
            if tok is not None and not isinstance(tok, str):
                raise TypeError(f"{role}: expected a str or None, got {type(tok).__name__} {tok!r}")
        if pad_token is not None and pad_token in specials and stoi[pad_token] != 0:
            raise ValueError(
                f"specials: the pad token {pad_token!r} must be first (id 0) so zero-padding means padding; "
                f"got it at id {stoi[pad_token]}"
            )
        self._itos = tuple(itos)
        self._stoi = stoi
        self._specials = tuple(specials)
        # a role counts only when its token is one of the specials (a corpus "<unk>" is just text)
        self._roles = {role: (tok if tok in specials else None) for role, tok in roles.items()}
        self._char_table = None  # lazily built lookup for encode(str)

    # construction ---------------------------------------------------------------------
    @classmethod
    def build(
        cls,
        tokens: Iterable,
        min_freq: int = 1,
        max_size: int | None = None,
        specials: Sequence[str] = DEFAULT_SPECIALS,
        *,
        pad_token: str | None = "<pad>",
        unk_token: str | None = "<unk>",
        bos_token: str | None = "<bos>",
        eos_token: str | None = "<eos>",
    ) -> "Vocab":
        """Count ``tokens`` and keep the frequent ones.

        Order: ``specials`` (pad first), then frequency descending, ties by first appearance.

        Parameters
        ----------
        tokens : str, or iterable of str or of token lists
            A plain string counts as a sequence of characters.
        min_freq : int, default 1
            Drop tokens seen fewer times.
        max_size : int, optional
            Cap on the total size, specials included.
        specials : sequence of str, default ('<pad>', '<unk>', '<bos>', '<eos>')
        pad_token, unk_token, bos_token, eos_token : str or None
            Which special plays which role (defaults '<pad>', '<unk>', '<bos>', '<eos>'); a role whose
            token is not among the specials has id None. Without an unknown token, encoding an
            unknown token raises KeyError.

        Returns
        -------
        Vocab
        """
        min_freq = _check_int("min_freq", min_freq, 1)
        max_size = _check_int("max_size", max_size, 1, allow_none=True)
        if isinstance(specials, str):
            raise TypeError(f"specials: expected a sequence of str, got the str {specials!r}")
        specials = list(specials)
        for s in specials:
            if not isinstance(s, str):
                raise TypeError(f"specials: expected str tokens, got {type(s).__name__} {s!r}")
        if len(set(specials)) != len(specials):
            raise ValueError(f"specials: expected distinct tokens, got {specials}")
        if pad_token is not None and pad_token in specials and specials[0] != pad_token:
            raise ValueError(
                f"specials: the pad token {pad_token!r} must come first (id 0), got {specials}"
            )
        if max_size is not None and max_size < len(specials):
            raise ValueError(
                f"max_size: expected at least the {len(specials)} specials {specials}, got {max_size}"
            )

        counts: Counter = Counter()  # insertion order = first appearance, kept by Counter
        if isinstance(tokens, str):
            counts.update(tokens)  # a text: its characters (Counter counts in C)
        else:
            for item in tokens:
                if isinstance(item, str):
                    counts[item] += 1
                    continue
                try:
                    counts.update(iter(item))
                except TypeError:
                    raise TypeError(
                        f"tokens: expected str tokens or lists of str, got {type(item).__name__} {item!r}"
                    ) from None
        for tok in counts:  # check once per distinct token, not once per occurrence
            if not isinstance(tok, str):
                raise TypeError(f"tokens: expected str tokens, got {type(tok).__name__} {tok!r}")
        special_set = set(specials)
        first = {tok: i for i, tok in enumerate(counts)}
        kept = [t for t, c in counts.items() if c >= min_freq and t not in special_set]
        kept.sort(key=lambda t: (-counts[t], first[t]))
        if max_size is not None:
            kept = kept[: max_size - len(specials)]
        return cls(
            specials + kept,
            specials,
            pad_token=pad_token,
            unk_token=unk_token,
            bos_token=bos_token,
            eos_token=eos_token,
        )

    # lookup ---------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self._itos)

    def __contains__(self, token) -> bool:
        return token in self._stoi

    def __iter__(self):
        return iter(self._itos)

    def __getitem__(self, token: str) -> int:
        """The id of ``token`` (``<unk>``'s id when unknown and the vocab has one)."""
        return self._lookup(token)

    def __eq__(self, other) -> bool:
        return isinstance(other, Vocab) and self.to_dict() == other.to_dict()

    def __hash__(self):
        return hash(self._itos)

    def __repr__(self) -> str:
        head = ", ".join(repr(t) for t in self._itos[:8])
        return f"Vocab(size={len(self)}, tokens=[{head}{', ...' if len(self) > 8 else ''}])"

    @property
    def stoi(self) -> Mapping[str, int]:
        """Read-only token → id mapping."""
        return MappingProxyType(self._stoi)

    @property
    def itos(self) -> tuple:
        """id → token, as a tuple."""
        return self._itos

    @property
    def specials(self) -> tuple:
        return self._specials

    @property
    def pad_id(self) -> int | None:
        return self._role_id("pad_token")

    @property
    def unk_id(self) -> int | None:
        return self._role_id("unk_token")

    @property
    def bos_id(self) -> int | None:
        return self._role_id("bos_token")

    @property
    def eos_id(self) -> int | None:
        return self._role_id("eos_token")

    def _role_id(self, role: str) -> int | None:
        tok = self._roles[role]
        return None if tok is None else self._stoi[tok]

    def _lookup(self, token) -> int:
        i = self._stoi.get(token)
        if i is not None:
            return i
        unk = self.unk_id
        if unk is None:
            raise KeyError(f"token {token!r} is not in the vocabulary (which has no unknown token)")
        return unk

    # encode / decode ------------------------------------------------------------------
    def encode(self, tokens) -> np.ndarray:
        """Token ids.

        Parameters
        ----------
        tokens : str or sequence of str
            A str is taken as a sequence of characters (vectorised, for megabytes of text).

        Returns
        -------
        ndarray of int64, shape (len(tokens),)

        Raises
        ------
        KeyError
            An unknown token when the vocabulary has no unknown token.
        """
        if isinstance(tokens, str):
            return self._encode_chars(tokens)
        if isinstance(tokens, np.ndarray) and tokens.dtype.kind not in "UO":
            raise TypeError(f"tokens: expected str tokens, got an array of dtype {tokens.dtype}")
        stoi = self._stoi
        unk = self.unk_id
        out = []
        for tok in tokens:
            i = stoi.get(tok) if isinstance(tok, str) else None
            if i is None:
                if not isinstance(tok, str):
                    raise TypeError(f"tokens: expected str tokens, got {type(tok).__name__} {tok!r}")
                if unk is None:
                    raise KeyError(f"token {tok!r} is not in the vocabulary (which has no unknown token)")
                i = unk
            out.append(i)
        return np.array(out, dtype=np.int64)

    def _encode_chars(self, text: str) -> np.ndarray:
        # Vectorised path for character corpora (megabytes of text): code points index a
        # table of the vocab's one-character tokens, with no Python loop per character.
        if self._char_table is None:
            chars = {ord(t): i for t, i in self._stoi.items() if len(t) == 1}
            table = np.full(max(chars, default=-1) + 1, -1, dtype=np.int64)
            table[list(chars)] = list(chars.values())
            self._char_table = table
        table = self._char_table
        cps = np.frombuffer(text.encode("utf-32-le", "surrogatepass"), dtype="<u4")
        inside = cps < table.size
        out = np.full(cps.shape, -1, dtype=np.int64)
        out[inside] = table[cps[inside]]
        unknown = out < 0
        if unknown.any():
            unk = self.unk_id
            if unk is None:
                bad = chr(int(cps[np.argmax(unknown)]))
                raise KeyError(f"token {bad!r} is not in the vocabulary (which has no unknown token)")
            out[unknown] = unk
        return out

    def decode(self, ids, skip_specials: bool = False) -> list:
        """Tokens for ids.

        Parameters
        ----------
        ids : sequence of int or 1-D integer ndarray
            Values in [0, len(self)).
        skip_specials : bool, default False
            Drop the special tokens.

        Returns
        -------
        list of str
        """
        arr = np.asarray(ids)
        if arr.size == 0:
            return []
        if arr.ndim != 1:
            raise ValueError(f"ids: expected a 1-D sequence of ids, got shape {arr.shape}")
        if arr.dtype.kind not in "iu":
            raise TypeError(f"ids: expected integer ids, got dtype {arr.dtype}")
        lo, hi = int(arr.min()), int(arr.max())
        if lo < 0 or hi >= len(self):
            bad = lo if lo < 0 else hi
            raise ValueError(f"ids: expected ids in [0, {len(self) - 1}] for this vocab of {len(self)}, got {bad}")
        itos = self._itos
        if skip_specials:
            skip = set(self._specials)
            return [itos[i] for i in arr.tolist() if itos[i] not in skip]
        return [itos[i] for i in arr.tolist()]

    # persistence ----------------------------------------------------------------------
    def to_dict(self) -> dict:
        """A JSON-ready dict (for checkpoint metadata); inverse of :meth:`from_dict`.

        Returns
        -------
        dict
            ``format``, ``version``, ``itos``, ``specials`` and the four role tokens.
        """
        d = {"format": _VOCAB_FORMAT, "version": _VOCAB_VERSION, "itos": list(self._itos),
             "specials": list(self._specials)}
        d.update(self._roles)
        return d

    @classmethod
    def from_dict(cls, d: Mapping) -> "Vocab":
        """Rebuild a vocabulary from :meth:`to_dict`'s output.

        Parameters
        ----------
        d : dict

        Returns
        -------
        Vocab

        Raises
        ------
        TypeError, ValueError
            Not a saved vocabulary, or another format version.
        """
        if not isinstance(d, Mapping):
            raise TypeError(f"d: expected a dict from Vocab.to_dict(), got {type(d).__name__}")
        if d.get("format") != _VOCAB_FORMAT:
            raise ValueError(f"d: expected format {_VOCAB_FORMAT!r}, got {d.get('format')!r} (not a saved Vocab)")
        if d.get("version") != _VOCAB_VERSION:
            raise ValueError(f"d: expected vocab version {_VOCAB_VERSION}, got {d.get('version')!r}")
        for key in ("itos", "specials"):
            if not isinstance(d.get(key), list):
                raise ValueError(f"d[{key!r}]: expected a list, got {type(d.get(key)).__name__}")
        roles = {k: d.get(k) for k in ("pad_token", "unk_token", "bos_token", "eos_token")}
        return cls(d["itos"], d["specials"], **roles)

    def save(self, path) -> None:
        """Write the vocabulary as UTF-8 JSON, atomically (an interrupted save keeps the old file).

        Parameters
        ----------
        path : str or os.PathLike
        """
        text = json.dumps(self.to_dict(), ensure_ascii=False, indent=1)
        atomic_write(path, text + "\n")

    @classmethod
    def load(cls, path) -> "Vocab":
        """Read a vocabulary written by :meth:`save`.

        Parameters
        ----------
        path : str or os.PathLike

        Returns
        -------
        Vocab

        Raises
        ------
        ValueError
            Not a vocabulary JSON file.
        """
        with open(path, "rb") as f:
            raw = f.read()
        try:
            d = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ValueError(f"{os.fspath(path)}: not a vocab JSON file ({exc}); save one with Vocab.save") from None
        try:
            return cls.from_dict(d)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{os.fspath(path)}: {exc}") from None


# ----------------------------------------------------------------------------------------
# Tokenizers
# ----------------------------------------------------------------------------------------
class CharTokenizer:
    """One token per Unicode code point (so Chinese and emoji work; no UTF-16 surrogates).

    Calling the tokenizer is :meth:`tokenize`.
    """

    def tokenize(self, text: str) -> list:
        """Split ``text`` into characters.

        Parameters
        ----------
        text : str

        Returns
        -------
        list of str
        """
        if not isinstance(text, str):
            raise TypeError(f"text: expected a str, got {type(text).__name__}")
        return list(text)

    __call__ = tokenize

    def detokenize(self, tokens: Iterable[str]) -> str:
        """Join the characters back into a string.

        Parameters
        ----------
        tokens : iterable of str

        Returns
        -------
        str
        """
        return "".join(tokens)

    def to_dict(self) -> dict:
        """JSON-ready settings for :func:`tokenizer_from_dict`.

        Returns
        -------
        dict
        """
        return {"type": "char"}

    def __repr__(self) -> str:
        return "CharTokenizer()"


# Han ideographs: URO, extension A, compatibility, and the supplementary-plane extensions.
_CJK = (
    "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
    "\U00020000-\U0002a6df\U0002a700-\U0002ebef\U0002f800-\U0002fa1f\U00030000-\U0003134f"
)


@functools.lru_cache(maxsize=1)
def _mark_class() -> str:
    """Char-class body of every combining mark (Mn/Mc/Me).

    Python's ``re`` counts marks as non-word characters, which would cut "हिन्दी" or a
    decomposed "é" apart; words and symbols absorb the marks that follow them instead.
    Built once (~15 ms) from unicodedata so it follows the interpreter's Unicode version.
    """
    cat = unicodedata.category
    cps = [c for c in range(0x20000) if cat(chr(c))[0] == "M"]
    cps += [c for c in range(0xE0000, 0xE0200) if cat(chr(c))[0] == "M"]
    parts, start, prev = [], cps[0], cps[0]
    for c in cps[1:] + [None]:
        if c is not None and c == prev + 1:
            prev = c
            continue
        parts.append(re.escape(chr(start)) if start == prev else f"{re.escape(chr(start))}-{re.escape(chr(prev))}")
        if c is not None:
            start = prev = c
    return "".join(parts)


@functools.lru_cache(maxsize=None)
def _word_pattern(split_punct: bool, split_cjk: bool, cjk_runs: bool) -> "re.Pattern":
    m = _mark_class()
    cjk_tok = f"[{_CJK}]+" if cjk_runs else f"[{_CJK}]"
    no_cjk = _CJK if (split_cjk or cjk_runs) else ""
    if not split_punct:
        # whitespace-separated chunks, except that Han characters still come out on their own
        chunk = f"[^\\s{no_cjk}]+"
        alts = [cjk_tok, chunk] if no_cjk else [chunk]
        return re.compile("|".join(alts))
    letter = f"[^\\W{no_cjk}]"
    word_part = f"{letter}(?:{letter}|[{m}])*"
    word = f"{word_part}(?:['\u2019]{word_part})*"  # keep "don't" and "it’s" together
    number = r"\d+(?:[.,]\d+)+"  # 3.14, 1,000
    mod = f"[{m}\U0001f3fb-\U0001f3ff]"  # marks, variation selectors, skin tones
    symbol = f"[^\\w\\s]{mod}*(?:\u200d[^\\w\\s]{mod}*)*"  # one emoji incl. ZWJ sequences
    flag = "[\U0001f1e6-\U0001f1ff]{2}"
    alts = ([cjk_tok] if no_cjk else []) + [number, word, flag, symbol, f"[{m}]+"]
    return re.compile("|".join(alts))


_CLOSE = set(".,!?;:%)]}»”’…") | set("，。！？；：、）》」』】")
_OPEN = set("([{«“") | set("（《「『【")


class WordTokenizer:
    """Regex word tokenizer.

    Calling the tokenizer is :meth:`tokenize`.

    Parameters
    ----------
    lower : bool, default False
        Lowercase the text first.
    split_punct : bool, default True
        Punctuation and symbols become their own tokens (else only whitespace splits). Words
        keep inner apostrophes ("don't"); decimal numbers stay whole ("3.14"); an emoji with its
        modifiers or ZWJ sequence is one token.
    split_cjk : bool, default True
        Han characters are tokens one by one (Chinese has no spaces between words).
    use_jieba : bool, default False
        Segment runs of Han characters into words with ``jieba`` (which must be installed);
        takes precedence over ``split_cjk``.
    """

    def __init__(self, lower: bool = False, split_punct: bool = True, split_cjk: bool = True,
                 use_jieba: bool = False) -> None:
        for name, v in (("lower", lower), ("split_punct", split_punct), ("split_cjk", split_cjk),
                        ("use_jieba", use_jieba)):
            if not isinstance(v, (bool, np.bool_)):
                raise TypeError(f"{name}: expected a bool, got {type(v).__name__} {v!r}")
        self.lower = bool(lower)
        self.split_punct = bool(split_punct)
        self.split_cjk = bool(split_cjk)
        self.use_jieba = bool(use_jieba)
        self._jieba = None
        if self.use_jieba:
            try:
                import jieba  # optional dependency, only for Chinese word segmentation
            except ImportError as exc:
                raise ImportError(
                    "WordTokenizer(use_jieba=True) needs the 'jieba' package for Chinese word "
                    "segmentation, and it is not installed: run `pip install jieba`, or use "
                    "use_jieba=False to split Chinese characters one by one"
                ) from exc
            self._jieba = jieba
        self._pattern = _word_pattern(self.split_punct, self.split_cjk, self.use_jieba)
        self._cjk_run = re.compile(f"[{_CJK}]+")

    def tokenize(self, text: str) -> list:
        """Split ``text`` into words (and punctuation, Han characters, ...).

        Parameters
        ----------
        text : str

        Returns
        -------
        list of str
        """
        if not isinstance(text, str):
            raise TypeError(f"text: expected a str, got {type(text).__name__}")
        if self.lower:
            text = text.lower()
        tokens = self._pattern.findall(text)
        if self._jieba is None:
            return tokens
        out = []
        for tok in tokens:
            if self._cjk_run.fullmatch(tok):
                out.extend(w for w in self._jieba.lcut(tok) if w.strip())
            else:
                out.append(tok)
        return out

    __call__ = tokenize

    def detokenize(self, tokens: Iterable[str]) -> str:
        """Best-effort inverse of :meth:`tokenize`: spaces between words, none inside Han text or
        before closing marks.

        Parameters
        ----------
        tokens : iterable of str

        Returns
        -------
        str
        """
        out: list = []
        prev = ""
        for tok in tokens:
            if out and not (tok[:1] in _CLOSE or prev[-1:] in _OPEN or (_tight(prev[-1:]) and _tight(tok[:1]))):
                out.append(" ")
            out.append(tok)
            prev = tok
        return "".join(out)

    def to_dict(self) -> dict:
        """JSON-ready settings for :func:`tokenizer_from_dict`.

        Returns
        -------
        dict
        """
        return {"type": "word", "lower": self.lower, "split_punct": self.split_punct,
                "split_cjk": self.split_cjk, "use_jieba": self.use_jieba}

    def __repr__(self) -> str:
        return (f"WordTokenizer(lower={self.lower}, split_punct={self.split_punct}, "
                f"split_cjk={self.split_cjk}, use_jieba={self.use_jieba})")


_TIGHT = re.compile(f"[{_CJK}\u3000-\u303f\uff00-\uffef]")


def _tight(ch: str) -> bool:
    """Han characters and full-width punctuation are written without spaces between them."""
    return bool(ch) and _TIGHT.match(ch) is not None


def tokenizer_from_dict(d: Mapping):
    """Rebuild a tokenizer from its ``to_dict()`` (e.g. stored in a checkpoint).

    Parameters
    ----------
    d : dict
        With ``type`` 'char' or 'word' (and a WordTokenizer's settings).

    Returns
    -------
    CharTokenizer or WordTokenizer
    """
    if not isinstance(d, Mapping) or d.get("type") not in ("char", "word"):
        raise ValueError(f"d: expected a tokenizer dict with type 'char' or 'word', got {d!r}")
    if d["type"] == "char":
        return CharTokenizer()
    kw = {k: d[k] for k in ("lower", "split_punct", "split_cjk", "use_jieba") if k in d}
    return WordTokenizer(**kw)


# ----------------------------------------------------------------------------------------
# arrays: one-hot, padding, masks
# ----------------------------------------------------------------------------------------
def one_hot(ids, num_classes: int) -> np.ndarray:
    """One-hot encode integer ids.

    Parameters
    ----------
    ids : array_like of int, any shape
        Values in [0, num_classes).
    num_classes : int

    Returns
    -------
    ndarray of float32, shape ``ids.shape + (num_classes,)``
        1 at each id, 0 elsewhere.
    """
    num_classes = _check_int("num_classes", num_classes, 1)
    arr = np.asarray(ids)
    if arr.size == 0:  # [] arrives as float64; nothing to check
        arr = arr.astype(np.int64)
    if arr.dtype.kind not in "iu":
        raise TypeError(f"ids: expected integer ids, got dtype {arr.dtype}")
    if arr.size:
        lo, hi = int(arr.min()), int(arr.max())
        if lo < 0 or hi >= num_classes:
            raise ValueError(f"ids: expected values in [0, {num_classes - 1}] (num_classes={num_classes}), "
                             f"got {lo if lo < 0 else hi}")
    out = _allocate(lambda: np.zeros(arr.shape + (num_classes,), dtype=np.float32), "num_classes", num_classes)
    np.put_along_axis(out, arr[..., None].astype(np.intp), 1.0, axis=-1)
    return out


def pad_sequences(seqs, pad_id=0, max_len: int | None = None, dtype=np.int64):
    """Stack variable-length sequences into one padded array.

    Parameters
    ----------
    seqs : sequence of array_like, each (T_i,) or (T_i, F...)
        Token ids, or per-step feature arrays (same trailing shape in all).
    pad_id : scalar, default 0
        Fill value past each sequence's end.
    max_len : int, optional
        T of the result (longer sequences are cut to their first ``max_len`` steps); default the
        longest length.
    dtype : numpy dtype, default int64
        Of the result; the values must be castable without change of kind.

    Returns
    -------
    padded : ndarray of ``dtype``, shape (B, T) or (B, T, F...)
    lengths : ndarray of int64, shape (B,)
        The kept length of each sequence.

    Examples
    --------
    >>> from rnnfast.text import pad_sequences
    >>> ids, lengths = pad_sequences([[5, 6, 7], [8]])
    >>> ids.tolist(), lengths.tolist()
    ([[5, 6, 7], [8, 0, 0]], [3, 1])
    """
    max_len = _check_int("max_len", max_len, 0, allow_none=True)
    dtype = np.dtype(dtype)
    if isinstance(seqs, np.ndarray) and seqs.dtype != object:
        seqs = list(seqs)
    arrays = []
    for i, s in enumerate(seqs):
        a = np.asarray(s)
        if a.ndim == 0:
            raise ValueError(f"seqs[{i}]: expected a sequence, got the scalar {s!r}")
        if a.size and not np.can_cast(a.dtype, dtype, casting="same_kind"):
            raise TypeError(f"seqs[{i}]: cannot store dtype {a.dtype} as {dtype} without changing values")
        if arrays and a.shape[1:] != arrays[0].shape[1:]:
            raise ValueError(f"seqs[{i}]: expected per-step shape {arrays[0].shape[1:]} like seqs[0], "
                             f"got {a.shape[1:]}")
        arrays.append(a)
    lengths = np.array([len(a) for a in arrays], dtype=np.int64)
    if max_len is not None:
        lengths = np.minimum(lengths, max_len)
    T = max_len if max_len is not None else (int(lengths.max()) if len(arrays) else 0)
    feat = arrays[0].shape[1:] if arrays else ()
    out = np.full((len(arrays), T) + feat, pad_id, dtype=dtype)
    for b, a in enumerate(arrays):
        out[b, : lengths[b]] = a[: lengths[b]]
    return out, lengths


def check_lengths(lengths, dim: str = "B") -> np.ndarray:
    """``lengths`` as a 1-D integer array of values >= 0 (``dim`` names its axis in errors)."""
    lengths = np.asarray(lengths)
    if lengths.ndim != 1:
        raise ValueError(f"lengths: expected a 1-D array ({dim},), got shape {lengths.shape}")
    if lengths.size and lengths.dtype.kind not in "iu":
        raise TypeError(f"lengths: expected integers, got dtype {lengths.dtype}")
    if lengths.size and int(lengths.min()) < 0:
        raise ValueError(f"lengths: expected values >= 0, got {int(lengths.min())}")
    return lengths


def length_mask(lengths, max_len: int | None = None) -> np.ndarray:
    """The valid-step mask of a padded batch.

    Parameters
    ----------
    lengths : array_like of int, shape (B,)
        Values >= 0.
    max_len : int, optional
        T of the mask (at least the longest length); default the longest length.

    Returns
    -------
    ndarray of bool, shape (B, T)
        ``mask[b, t]`` is True for ``t < lengths[b]``.
    """
    lengths = check_lengths(lengths)
    longest = int(lengths.max()) if lengths.size else 0
    max_len = _check_int("max_len", max_len, 0, allow_none=True)
    if max_len is None:
        max_len = longest
    elif max_len < longest:
        raise ValueError(f"max_len: expected at least the longest length {longest}, got {max_len}")
    return _allocate(lambda: np.arange(max_len)[None, :] < lengths[:, None], "max_len", max_len)


def _allocate(make, name: str, value):
    """make() for an output sized by argument ``name``; numpy's "array is too big" names no argument."""
    try:
        return make()
    except ValueError:
        raise ValueError(f"{name}: {value} makes the result larger than an array can be") from None


# ----------------------------------------------------------------------------------------
# reading a corpus
# ----------------------------------------------------------------------------------------
def read_text(path, encoding: str = "utf-8") -> str:
    """The text of a file, with a one-line ValueError for the usual mistakes.

    Empty or whitespace-only files, binary files (NUL bytes) and bytes that are not valid in
    ``encoding`` are rejected with what is wrong and how to fix it. A UTF-8 byte-order mark is
    dropped and newlines are normalised to "\\n" as Python's text mode does.

    Parameters
    ----------
    path : str or os.PathLike
    encoding : str, default 'utf-8'

    Returns
    -------
    str

    Raises
    ------
    FileNotFoundError
        As usual for a missing file.
    ValueError
        Empty, binary or wrongly encoded content.
    """
    name = os.fspath(path)
    with open(path, "rb") as f:
        raw = f.read()
    if not raw:
        raise ValueError(f"{name}: the file is empty; give a file that contains text")
    nul = raw.find(b"\x00")
    if nul >= 0 and encoding.lower().replace("_", "-") in ("utf-8", "utf8", "utf-8-sig"):
        raise ValueError(
            f"{name}: looks like a binary file (NUL byte at offset {nul}), not text; "
            f"give a UTF-8 text file"
        )
    if encoding.lower().replace("_", "-") in ("utf-8", "utf8") and raw.startswith(b"\xef\xbb\xbf"):
        raw = raw[3:]
    try:
        text = raw.decode(encoding)
    except UnicodeDecodeError as exc:
        raise ValueError(
            f"{name}: is not valid {encoding} (byte {exc.object[exc.start]:#04x} at offset {exc.start}); "
            f"convert it first, e.g. `iconv -f latin1 -t utf-8 {name} > fixed.txt`"
        ) from None
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    if not text.strip():
        raise ValueError(f"{name}: the file contains only whitespace; give a file that contains text")
    return text
