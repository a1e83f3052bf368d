"""Test utilities: ISA paths of this machine, weight transfer to PyTorch, random data."""
import contextlib

import numpy as np

import rnnfast

ISAS = rnnfast.cpu_info()["isas_available"]


@contextlib.contextmanager
def using_isa(isa):
    """Run the kernels of one instruction set, then restore the previous one."""
    before = rnnfast._core.get_isa()
    rnnfast.set_isa(isa)
    try:
        yield
    finally:
        rnnfast.set_isa(before)


def torch_twin(torch, module):
    """The torch.nn module with the same configuration and weights as an rnnfast recurrent module."""
    kind = {"lstm": torch.nn.LSTM, "gru": torch.nn.GRU}.get(module.cell, torch.nn.RNN)
    kwargs = dict(num_layers=module.num_layers, bias=module.bias, batch_first=module.batch_first,
                  bidirectional=module.bidirectional)
    if kind is torch.nn.RNN:
        kwargs["nonlinearity"] = module.nonlinearity
    twin = kind(module.input_size, module.hidden_size, **kwargs)
    twin.load_state_dict({k: torch.from_numpy(v) for k, v in module.state_dict().items()})
    return twin


def randn(rng, *shape, scale=1.0):
    return (rng.standard_normal(shape) * scale).astype(np.float32)
