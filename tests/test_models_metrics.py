"""rnnfast.metrics: conlleval-style entity spans (BIO and BIOES), F1, token accuracy, edit distance."""
import itertools

import numpy as np
import pytest

from rnnfast.metrics import (accuracy, bio_to_bioes, edit_distance, entity_f1, exact_match, get_entities,
                             token_accuracy, token_error_rate)


def test_bio_spans_follow_conlleval():
    tags = ["B-PER", "I-PER", "O", "I-LOC", "I-LOC", "B-LOC", "B-LOC", "I-ORG", "O", "B-PER"]
    assert get_entities(tags) == [("PER", 0, 2), ("LOC", 3, 5), ("LOC", 5, 6), ("LOC", 6, 7), ("ORG", 7, 8),
                                  ("PER", 9, 10)]
    assert get_entities(["O", "O"]) == []


def test_bioes_spans():
    tags = ["S-PER", "B-LOC", "I-LOC", "E-LOC", "E-LOC", "B-ORG", "E-ORG", "S-ORG", "I-PER", "O"]
    assert get_entities(tags, "BIOES") == [("PER", 0, 1), ("LOC", 1, 4), ("LOC", 4, 5), ("ORG", 5, 7),
                                           ("ORG", 7, 8), ("PER", 8, 9)]


def test_bio_to_bioes_keeps_the_entities():
    rng = np.random.default_rng(0)
    pool = ["O", "B-A", "I-A", "B-B", "I-B"]
    for _ in range(200):
        tags = [pool[i] for i in rng.integers(0, 5, rng.integers(1, 9))]
        assert get_entities(bio_to_bioes(tags), "BIOES") == get_entities(tags, "BIO")


def test_entity_f1_counts_exact_spans_only():
    gold = [["B-PER", "I-PER", "O", "B-LOC"], ["B-ORG", "O"]]
    pred = [["B-PER", "O", "O", "B-LOC"], ["B-ORG", "O"]]
    r = entity_f1(pred, gold)
    assert (r["n_gold"], r["n_pred"], r["n_correct"]) == (3, 3, 2)
    assert r["precision"] == pytest.approx(2 / 3) and r["recall"] == pytest.approx(2 / 3)
    assert r["f1"] == pytest.approx(2 / 3)
    assert r["per_type"]["PER"]["f1"] == 0.0 and r["per_type"]["LOC"]["f1"] == 1.0
    assert entity_f1(gold, gold)["f1"] == 1.0


def test_bad_tags_and_lengths_are_reported():
    with pytest.raises(ValueError, match="not an BIO tag"):
        get_entities(["S-PER"], "BIO")
    with pytest.raises(ValueError, match="not an BIOES tag"):
        get_entities(["PER"], "BIOES")
    with pytest.raises(ValueError, match="scheme"):
        get_entities(["O"], "IOB3")
    with pytest.raises(ValueError, match="sequence 0"):
        entity_f1([["O"]], [["O", "O"]])
    with pytest.raises(ValueError, match="as many"):
        token_accuracy([[1]], [])


def test_edit_distance_matches_a_plain_dynamic_program():
    def slow(a, b):
        d = [[i + j if i * j == 0 else 0 for j in range(len(b) + 1)] for i in range(len(a) + 1)]
        for i, j in itertools.product(range(1, len(a) + 1), range(1, len(b) + 1)):
            d[i][j] = min(d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + (a[i - 1] != b[j - 1]))
        return d[-1][-1]
    rng = np.random.default_rng(1)
    for _ in range(300):
        a = list(rng.integers(0, 3, rng.integers(0, 7)))
        b = list(rng.integers(0, 3, rng.integers(0, 7)))
        assert edit_distance(a, b) == slow(a, b)


def test_error_rate_exact_match_and_accuracies():
    ref = [[1, 2, 3], [4, 5]]
    assert token_error_rate([[1, 2, 3], [4]], ref) == pytest.approx(1 / 5)
    assert exact_match([[1, 2, 3], [4]], ref) == 0.5
    assert token_accuracy([[1, 2, 0], [4, 5]], ref) == pytest.approx(4 / 5)
    assert accuracy(np.array([1, 2]), np.array([1, 3])) == 0.5
