"""The long-range recall task: the class of a sequence is its first token.

A sequence of length ``distance + 1`` starts with one of ``NUM_CLASSES`` key tokens and goes on
with ``distance`` distractor tokens drawn uniformly from ``NUM_DISTRACTORS`` others. The model
reads it all and must name the key from its final hidden state, so the only useful information
sits exactly ``distance`` steps before the readout (chance level: 1 / NUM_CLASSES). Tokens are
one-hot vectors, so the recurrent layer's ``weight_ih`` plays the embedding.
"""
from __future__ import annotations

import numpy as np

NUM_CLASSES = 4
NUM_DISTRACTORS = 8
VOCAB = NUM_CLASSES + NUM_DISTRACTORS
CHANCE = 1.0 / NUM_CLASSES


def make_batch(rng: np.random.Generator, batch: int, distance: int):
    """One batch: one-hot inputs (distance + 1, batch, VOCAB) float32, time-major; labels (batch,) int64."""
    if distance < 0:
        raise ValueError(f"distance: expected an int >= 0, got {distance}")
    labels = rng.integers(0, NUM_CLASSES, batch)
    tokens = np.empty((distance + 1, batch), np.int64)
    tokens[0] = labels
    tokens[1:] = NUM_CLASSES + rng.integers(0, NUM_DISTRACTORS, (distance, batch))
    x = np.zeros((distance + 1, batch, VOCAB), np.float32)
    np.put_along_axis(x, tokens[:, :, None], 1.0, axis=2)
    return x, labels


def test_set(distance: int, size: int):
    """A fixed held-out set per distance (same for every cell and seed; fresh data is used for training)."""
    return make_batch(np.random.default_rng([7919, distance]), size, distance)
