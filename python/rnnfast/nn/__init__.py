"""Layers with explicit forward/backward; module.py states how training forwards and backwards pair."""
from .module import Context, Module, Parameter, no_grad
from .recurrent import GRU, LSTM, RNN, RNNBase
from .cells import GRUCell, LSTMCell, RNNCell
from .stream import Stream
from .layers import Dropout, Embedding, LayerNorm, Linear, Sequential, WordVectorReport

__all__ = ["Context", "Module", "Parameter", "no_grad", "RNN", "LSTM", "GRU", "RNNBase", "RNNCell", "LSTMCell", "GRUCell", "Stream"]
__all__ += ["Linear", "Embedding", "Dropout", "LayerNorm", "Sequential", "WordVectorReport"]
