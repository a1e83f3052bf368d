"""`rnnfast bench`: rnnfast's RNN, LSTM and GRU against PyTorch and ONNX Runtime (docs/ARCHITECTURE.md).

Same weights and inputs for every engine, a correctness check before timing, interleaved repetitions,
medians and spreads, GFLOP/s against the physical peak (the core's register-only FMA loop). The peers
are imported lazily and are reported as "not installed" when missing. Layout: configs (shapes, FLOPs,
data, --shape), saved_model (--model), engine_rnnfast, peer_torch, peer_onnx (one file per engine),
compare (the check), timing, report (table, markdown, JSON), memory (child-process probes), scaling
(--scaling); two groups of their own kind, each printed as ratio_rows (ratios next to targets):
realistic (the default environment, idle gaps, other pools, load; lm_script is its child LM
training script) and ragged (batches of unequal lengths); runner (the command).
"""
from .runner import main

__all__ = ["main"]
