"""Layers with explicit forward/backward (DESIGN.md §4)."""
from .module import Module, Parameter
from .recurrent import GRU, LSTM, RNN, RNNBase
from .cells import GRUCell, LSTMCell, RNNCell
from .stream import Stream
from .layers import Dropout, Embedding, LayerNorm, Linear, Sequential, WordVectorReport

__all__ = ["Module", "Parameter", "RNN", "LSTM", "GRU", "RNNBase", "RNNCell", "LSTMCell", "GRUCell", "Stream"]
__all__ += ["Linear", "Embedding", "Dropout", "LayerNorm", "Sequential", "WordVectorReport"]
