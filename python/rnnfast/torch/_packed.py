"""PackedSequence <-> a padded time-major batch with per-sample lengths (rnnfast's ragged form)."""
from __future__ import annotations

import numpy as np
import torch


class Layout:
    """Where the rows of a PackedSequence go in a (T, B) grid in the original batch order.

    ``rows`` (N,): for packed row n (time t, sorted position j), the index t * B + b of its
    sample b = sorted_indices[j]; ``lengths`` (B,) int32 in the original order."""

    __slots__ = ("T", "B", "rows", "rows_t", "lengths")

    def __init__(self, batch_sizes: torch.Tensor, sorted_indices):
        bs = batch_sizes.numpy().astype(np.int64)
        self.T, self.B = len(bs), int(bs[0])
        n = int(bs.sum())
        t_of = np.repeat(np.arange(self.T), bs)
        j_of = np.arange(n) - np.repeat(np.cumsum(bs) - bs, bs)
        order = None if sorted_indices is None else sorted_indices.numpy()
        b_of = j_of if order is None else order[j_of]
        self.rows = t_of * self.B + b_of
        self.rows_t = torch.from_numpy(self.rows)
        sorted_lengths = (bs[None, :] > np.arange(self.B)[:, None]).sum(1).astype(np.int32)
        self.lengths = np.empty(self.B, np.int32)
        self.lengths[np.arange(self.B) if order is None else order] = sorted_lengths

    def pad(self, data: torch.Tensor) -> torch.Tensor:
        """(N, F) packed rows -> (T, B, F) time-major, zeros past each length (differentiable)."""
        out = data.new_zeros(self.T * self.B, data.shape[1])
        return out.index_copy(0, self.rows_t, data).view(self.T, self.B, data.shape[1])

    def pack(self, padded: torch.Tensor) -> torch.Tensor:
        """(T, B, F) time-major -> the (N, F) packed rows (differentiable)."""
        return padded.reshape(self.T * self.B, padded.shape[2]).index_select(0, self.rows_t)
