"""Optional plots: matplotlib is imported only here, only when a plot is drawn.

Without matplotlib (the optional extra ``rnnfast[plot]``) the experiments still print every
table; the plot is skipped with a one-line note.
"""
from __future__ import annotations

import os


def smoothed(curve, points: int = 50):
    """(steps, values): a training curve as a running mean over ~len/points steps, for plotting."""
    import numpy as np
    w = max(1, len(curve) // points)
    return np.arange(len(curve) - w + 1) + w, np.convolve(curve, np.ones(w) / w, mode="valid")


def save_plot(path: str, draw, *, ncols: int = 1, size=(6.4, 4.2)) -> bool:
    """Call ``draw(axes)`` on a fresh figure with ``ncols`` side-by-side axes and save it as ``path``.

    Returns True when the file was written, False when matplotlib is missing.
    """
    try:
        from matplotlib.figure import Figure  # no pyplot: no global state, no GUI backend
    except ImportError:
        print(f"note: matplotlib is not installed; skipped the plot {path} (pip install 'rnnfast[plot]')")
        return False
    fig = Figure(figsize=(size[0] * ncols, size[1]), layout="constrained")
    axes = fig.subplots(1, ncols)
    draw(axes)
    directory = os.path.dirname(path)
    if directory:
        os.makedirs(directory, exist_ok=True)
    fig.savefig(path, dpi=110)
    print(f"wrote {path}")
    return True
