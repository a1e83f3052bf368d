"""rnnfast.torch: drop-in torch.nn.RNN/LSTM/GRU (and cells) whose forward and backward run in
rnnfast's kernels through torch.autograd. Importing it imports torch; ``import rnnfast`` does not."""
try:
    import torch as _torch  # noqa: F401
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError("rnnfast.torch needs PyTorch (pip install torch); the rest of rnnfast works without it") from exc

from ._openmp import share_torch_threads
from .cells import GRUCell, LSTMCell, RNNCell
from .modules import GRU, LSTM, RNN
from .patch import patch

share_torch_threads()  # long kernel calls on torch's OpenMP threads: see _openmp.py

__all__ = ["RNN", "LSTM", "GRU", "RNNCell", "LSTMCell", "GRUCell", "patch", "share_torch_threads"]
