"""Metrics for sequence models: accuracy, token accuracy, entity-level precision/recall/F1 for BIO
and BIOES tags, edit distance, token error rate and exact match.

Sequences are given as lists of per-sequence lists/arrays (ragged), so padding never counts.

Entity spans follow the rules of the CoNLL shared tasks' ``conlleval`` script: a chunk starts at
B- or S-, or at an I-/E- that follows O, an E-/S-, or a tag of another type; it ends before O,
B-, S-, or a tag of another type, and after E-/S-. An entity is counted as correct only when
type, start and end all match.
"""
from __future__ import annotations

from collections import Counter

import numpy as np

__all__ = ["accuracy", "token_accuracy", "get_entities", "entity_f1", "bio_to_bioes", "edit_distance",
           "token_error_rate", "exact_match"]

_SCHEMES = {"BIO": ("B", "I"), "BIOES": ("B", "I", "E", "S")}


def _pairs(pred, gold, where):
    pred, gold = list(pred), list(gold)
    if len(pred) != len(gold):
        raise ValueError(f"{where}: expected as many predicted as reference sequences, got {len(pred)} and "
                         f"{len(gold)}")
    return pred, gold


def accuracy(pred, target) -> float:
    """Share of equal elements of two same-shaped arrays.

    Parameters
    ----------
    pred, target : array_like, same shape, not empty

    Returns
    -------
    float in [0, 1]
    """
    p, t = np.asarray(pred), np.asarray(target)
    if p.shape != t.shape:
        raise ValueError(f"accuracy: expected equal shapes, got {p.shape} and {t.shape}")
    if p.size == 0:
        raise ValueError("accuracy: empty input")
    return float(np.mean(p == t))


def token_accuracy(pred_seqs, gold_seqs) -> float:
    """Share of correctly tagged tokens over all (ragged) sequences.

    Parameters
    ----------
    pred_seqs, gold_seqs : sequence of sequences
        Predicted and reference tags (or ids), one list or 1-D array per sequence, pairwise of
        equal length.

    Returns
    -------
    float in [0, 1]
    """
    pred, gold = _pairs(pred_seqs, gold_seqs, "token_accuracy")
    right = total = 0
    for i, (p, g) in enumerate(zip(pred, gold)):
        p, g = list(p), list(g)
        if len(p) != len(g):
            raise ValueError(f"token_accuracy: sequence {i}: {len(p)} predicted tags for {len(g)} tokens")
        right += sum(a == b for a, b in zip(p, g))
        total += len(g)
    if total == 0:
        raise ValueError("token_accuracy: no tokens")
    return right / total


def _split(tag, scheme, where):
    if not isinstance(tag, str):
        raise TypeError(f"{where}: tags: expected str tags such as 'B-PER' or 'O', got {type(tag).__name__} {tag!r}")
    if tag == "O":
        return "O", ""
    prefix, sep, kind = tag.partition("-")
    if not sep or prefix not in _SCHEMES[scheme] or not kind:
        allowed = "/".join(_SCHEMES[scheme])
        raise ValueError(f"{where}: tag {tag!r} is not an {scheme} tag (expected 'O' or {allowed}-TYPE)")
    return prefix, kind


def get_entities(tags, scheme: str = "BIO") -> list:
    """The entity spans of one tag sequence (conlleval's chunk rules, see the module docstring).

    Parameters
    ----------
    tags : sequence of str
        Such as 'B-PER', 'I-PER', 'O'.
    scheme : {'BIO', 'BIOES'}, default 'BIO'

    Returns
    -------
    list of (str, int, int)
        ``(type, start, end)`` with ``end`` exclusive.

    Examples
    --------
    >>> from rnnfast.metrics import get_entities
    >>> get_entities(["B-PER", "I-PER", "O", "B-LOC"])
    [('PER', 0, 2), ('LOC', 3, 4)]
    """
    if scheme not in _SCHEMES:
        raise ValueError(f"get_entities: scheme: expected one of {tuple(_SCHEMES)}, got {scheme!r}")
    out = []
    prev_p, prev_k, start = "O", "", None
    for i, tag in enumerate(list(tags) + ["O"]):
        p, k = _split(tag, scheme, "get_entities")
        ends = prev_p in ("E", "S") or (prev_p in ("B", "I") and (p in ("B", "S", "O") or k != prev_k))
        starts = p in ("B", "S") or (p in ("I", "E") and (prev_p in ("E", "S", "O") or k != prev_k))
        if start is not None and ends:
            out.append((prev_k, start, i))
            start = None
        if starts:
            start = i
        prev_p, prev_k = p, k
    return out


def entity_f1(pred_seqs, gold_seqs, scheme: str = "BIO") -> dict:
    """Entity-level micro precision, recall and F1, and the same per entity type.

    An entity counts as correct only when its type, start and end all match.

    Parameters
    ----------
    pred_seqs, gold_seqs : sequence of sequences of str
        Predicted and reference tags, one (ragged) list or 1-D array per sequence, pairwise of
        equal length.
    scheme : {'BIO', 'BIOES'}, default 'BIO'

    Returns
    -------
    dict
        ``{'precision', 'recall', 'f1', 'n_pred', 'n_gold', 'n_correct', 'per_type': {type: {...}}}``.
    """
    pred, gold = _pairs(pred_seqs, gold_seqs, "entity_f1")
    counts = {"pred": Counter(), "gold": Counter(), "correct": Counter()}
    for i, (p, g) in enumerate(zip(pred, gold)):
        p, g = list(p), list(g)
        if len(p) != len(g):
            raise ValueError(f"entity_f1: sequence {i}: {len(p)} predicted tags for {len(g)} tokens")
        ep, eg = set(get_entities(p, scheme)), set(get_entities(g, scheme))
        counts["pred"].update(e[0] for e in ep)
        counts["gold"].update(e[0] for e in eg)
        counts["correct"].update(e[0] for e in ep & eg)

    def prf(c, p, g):
        prec = c / p if p else 0.0
        rec = c / g if g else 0.0
        f1 = 2 * prec * rec / (prec + rec) if prec + rec else 0.0
        return {"precision": prec, "recall": rec, "f1": f1, "n_pred": p, "n_gold": g, "n_correct": c}

    types = sorted(set(counts["pred"]) | set(counts["gold"]))
    out = prf(sum(counts["correct"].values()), sum(counts["pred"].values()), sum(counts["gold"].values()))
    out["per_type"] = {t: prf(counts["correct"][t], counts["pred"][t], counts["gold"][t]) for t in types}
    return out


def bio_to_bioes(tags) -> list:
    """Rewrite a BIO tag sequence as BIOES (the same entities; single tokens as S-, last as E-).

    Parameters
    ----------
    tags : sequence of str

    Returns
    -------
    list of str
    """
    spans = get_entities(tags, "BIO")
    out = ["O"] * len(tags)
    for kind, s, e in spans:
        if e - s == 1:
            out[s] = "S-" + kind
        else:
            out[s] = "B-" + kind
            for j in range(s + 1, e - 1):
                out[j] = "I-" + kind
            out[e - 1] = "E-" + kind
    return out


def edit_distance(a, b) -> int:
    """Levenshtein distance between two token sequences (unit insert, delete, substitute costs).

    Parameters
    ----------
    a, b : sequence
        Tokens compared with ``==``.

    Returns
    -------
    int
    """
    a, b = list(a), list(b)
    prev = np.arange(len(b) + 1)
    for i, x in enumerate(a, 1):
        cur = np.empty_like(prev)
        cur[0] = i
        sub = prev[:-1] + np.array([x != y for y in b], dtype=np.int64)
        # insertions depend on cur[j-1]: one cumulative pass after deletions/substitutions
        cur[1:] = np.minimum(sub, prev[1:] + 1)
        for j in range(1, len(b) + 1):
            if cur[j - 1] + 1 < cur[j]:
                cur[j] = cur[j - 1] + 1
        prev = cur
    return int(prev[-1])


def token_error_rate(pred_seqs, ref_seqs) -> float:
    """Total edit distance divided by the total reference length (word or phone error rate).

    Parameters
    ----------
    pred_seqs, ref_seqs : sequence of sequences
        Predicted and reference token sequences (any lengths).

    Returns
    -------
    float
        >= 0 (can exceed 1 when predictions are long).
    """
    pred, ref = _pairs(pred_seqs, ref_seqs, "token_error_rate")
    total = sum(len(list(r)) for r in ref)
    if total == 0:
        raise ValueError("token_error_rate: the references hold no tokens")
    return sum(edit_distance(p, r) for p, r in zip(pred, ref)) / total


def exact_match(pred_seqs, ref_seqs) -> float:
    """Share of sequences predicted exactly.

    Parameters
    ----------
    pred_seqs, ref_seqs : sequence of sequences

    Returns
    -------
    float in [0, 1]
    """
    pred, ref = _pairs(pred_seqs, ref_seqs, "exact_match")
    if not ref:
        raise ValueError("exact_match: no sequences")
    return sum(list(p) == list(r) for p, r in zip(pred, ref)) / len(ref)
