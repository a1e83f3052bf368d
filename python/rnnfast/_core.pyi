"""Type stubs for rnnfast._core, the C++ kernels (csrc/bindings.cpp).

Arrays are numpy float32 and C-contiguous unless stated (the bindings check dtype, shape and
layout and raise ValueError/TypeError naming the argument). Shapes: T steps, B batch, I input
size, H hidden size, G gates (RNN 1, LSTM 4, GRU 3). Arguments typed ``... | None`` accept None.
Output arguments (``y``, ``hn``, ``dx``, ``grad_*``, ...) are written in place.
"""
from typing import Optional, Sequence, Tuple, TypedDict, Union

import numpy as np
import numpy.typing as npt

F32 = npt.NDArray[np.float32]
Int32 = npt.NDArray[np.int32]
Real = Union[npt.NDArray[np.float32], npt.NDArray[np.float64]]
Cell = str  # 'rnn_tanh', 'rnn_relu', 'lstm' or 'gru' (checked at run time)
Isa = str   # 'generic', 'avx2' or 'avx512' (checked at run time)

class CpuInfo(TypedDict):
    isa: str
    isas_available: list[str]
    num_threads: int
    max_threads: int
    team: dict[str, Union[float, bool]]  # sync_ns, wake_us, spin_us, idle_spin_us, measured, host_openmp, prewake
    default_threads: dict[str, Union[int, float]]  # threads, affinity, online, cgroup_quota, mpi_local_ranks
    cache_bytes: dict[str, Union[int, str]]  # l1d, l2, l3, source
    dot_products: dict[str, bool]  # avx512_vnni, avx_vnni, avx512_bf16 (this CPU), enabled
    weight_kernels: dict[str, str]  # per inference weight format: what its forward runs now

def cpu_info() -> CpuInfo:
    """The instruction set in use, the ones this CPU runs, the thread count (and its maximum), the thread team's measured
    costs, what the default thread count came from, and the per-core cache sizes."""
def set_isa(name: Isa, /) -> None:
    """Use this instruction set's kernels (ValueError if unknown or not supported by this CPU)."""
def get_isa() -> str: ...
def set_dot_products(enabled: bool, /) -> None:
    """Whether weights packed from now on use the CPU's dot-product instructions (VNNI, AVX512_BF16) where it
    has them; False runs the exact integer / widening fallbacks (tests)."""
def get_dot_products() -> bool: ...
def set_num_threads(n: int, /) -> None:
    """Kernel threads, 1 to cpu_info()['max_threads'] (else ValueError; TypeError for a non-integer)."""
def get_num_threads() -> int: ...
def set_idle_spin(microseconds: float, /) -> None:
    """Idle workers' spin time after a call (0: calibrated default); also RNNFAST_IDLE_SPIN_US."""
def get_idle_spin() -> float: ...
def set_prewake(on: bool) -> None: ...
def get_prewake() -> bool: ...
def peak_gflops(threads: int, seconds: float = 0.05) -> float:
    """GFLOP/s of a register-only FMA loop of the active ISA on ``threads`` threads at once, for about
    ``seconds``: the physical peak (threads 1..64 and seconds in (0, 10], else ValueError)."""

class PackedWeights:
    """One layer direction's weights packed for the active instruction set."""

    def __init__(self, cell: Cell, w_ih: F32, w_hh: F32, b_ih: Optional[F32], b_hh: Optional[F32],
                 with_backward: bool = False, weights: str = "float32",
                 step: bool = False, peephole: Optional[F32] = None, linear_before_reset: bool = True,
                 w_hr: Optional[F32] = None, layer_norm: Optional[F32] = None) -> None:
        """w_ih (G*H, I), w_hh (G*H, H), b_ih and b_hh (G*H,) or None; weights 'float32', 'bfloat16' or
        'int8' (the last two inference only). ``with_backward`` also packs
        what backward needs; ``step`` packs for one-step forwards (streams, cells). ``peephole``:
        a peephole LSTM's (3, H) p_i, p_f, p_o; ``linear_before_reset=False``: Cho et al.'s GRU. ``w_hr``
        (P, H): an LSTM's projection (torch's proj_size P < H); w_hh is then (G*H, P). ``layer_norm``
        (18H): the layer-normalised LSTM's gains and biases (input LN, recurrent LN: gain and bias
        of 4H each; cell LN: gain and bias of H each)."""
    @property
    def peephole(self) -> bool: ...
    @property
    def linear_before_reset(self) -> bool: ...
    @property
    def weights(self) -> str: ...
    @property
    def kernel(self) -> str:
        """Which products the forward runs: e.g. 'avx512 int8 vnni', 'avx2 int8 exact'."""
    @property
    def step(self) -> bool: ...
    @property
    def isa(self) -> str: ...
    @property
    def cell(self) -> str: ...
    @property
    def input_size(self) -> int: ...
    @property
    def proj_size(self) -> int: ...
    @property
    def layer_norm(self) -> bool: ...
    @property
    def hidden_size(self) -> int: ...
    @property
    def has_backward(self) -> bool: ...

class TrainCache:
    """Activations a training forward keeps for its backward (consumed by the backward)."""

    def __init__(self) -> None: ...
    @property
    def consumed(self) -> bool: ...

def layer_forward(packed: PackedWeights, x: F32, lengths: Optional[Int32], reverse: bool, h0: Optional[F32],
                  c0: Optional[F32], y: F32, y_offset: int, hn: F32, cn: Optional[F32],
                  cache: Optional[TrainCache]) -> None:
    """One direction of one layer. x (T, B, I); lengths (B,) in [1, T]; h0, hn (B, P), c0, cn (B, H)
    (cn required for an LSTM; P is the proj_size, else H); writes columns [y_offset, y_offset + P)
    of y (T, B, ldy). With a cache (train mode) it keeps what layer_backward needs."""
def layer_backward(packed: PackedWeights, cache: TrainCache, x: F32, dy: F32, dy_offset: int, dhn: Optional[F32],
                   dcn: Optional[F32], dx: F32, dx_accumulate: bool, dh0: F32, dc0: Optional[F32], grad_w_ih: F32,
                   grad_w_hh: F32, grad_b_ih: Optional[F32], grad_b_hh: Optional[F32],
                   grad_w_p: Optional[F32] = None, grad_w_hr: Optional[F32] = None,
                   grad_layer_norm: Optional[F32] = None) -> None:
    """Backward of layer_forward: dy (T, B, ldy) read from column dy_offset; writes (or with
    dx_accumulate adds to) dx (T, B, I); writes dh0 (B, P), dc0 (B, H); adds to the grad_* arrays
    (grad_w_p (3, H): required for a peephole LSTM; grad_w_hr (P, H) with a projection,
    grad_layer_norm (18H) with layer norm)."""
def layer_forward_pair(packed0: PackedWeights, packed1: PackedWeights, x: F32, lengths: Optional[Int32],
                       h0: Optional[F32], c0: Optional[F32], y: F32, hn: F32, cn: Optional[F32],
                       cache0: Optional[TrainCache], cache1: Optional[TrainCache]) -> None:
    """Both directions of a bidirectional layer at once: h0, hn are (2, B, P), c0, cn (2, B, H), y is (T, B, 2P)
    (P: the proj_size, or H)."""
def layer_backward_pair(packed0: PackedWeights, packed1: PackedWeights, cache0: TrainCache, cache1: TrainCache,
                        x: F32, dy: F32, dhn: Optional[F32], dcn: Optional[F32], dx: F32, dh0: F32,
                        dc0: Optional[F32], grads0: Tuple[Optional[F32], ...],
                        grads1: Tuple[Optional[F32], ...]) -> None:
    """Backward of layer_forward_pair: dx (T, B, I) is written with both directions' sum; grads
    (grad_w_ih, grad_w_hh, grad_b_ih, grad_b_hh[, the fifth]) per direction are added to (the fifth:
    grad_w_p for a peephole LSTM, grad_w_hr with a projection, grad_layer_norm with layer norm)."""

class Stream:
    """Step-by-step inference through a stack of unidirectional layers."""

    def __init__(self, layers: Sequence[PackedWeights], batch_size: int, residual: bool = False) -> None:
        """residual: every layer after the first adds its input to its output."""
    def step(self, x: npt.ArrayLike, out: Optional[F32] = None) -> F32:
        """One step: x (B, I), or (I,) when batch_size is 1, any float dtype; returns (B, H) or (H,)
        (``out`` when given)."""
    def reset(self) -> None:
        """Zero the state of every layer."""
    @property
    def batch_size(self) -> int: ...
    @property
    def num_layers(self) -> int: ...
    @property
    def hidden_size(self) -> int: ...
    def get_state(self) -> Union[F32, Tuple[F32, F32]]:
        """h (L, B, H), or (h, c) for an LSTM stack: copies."""
    def set_state(self, h: F32, c: Optional[F32] = None) -> None:
        """h and c (L, B, H); c is required for an LSTM stack."""

def gemm(a: F32, b: F32, c: F32, accumulate: bool = False, b_transposed: bool = False) -> None:
    """c (+)= a @ b (or a @ b.T with b_transposed) with the kernels' packed GEMM; deterministic for any
    thread count. a (M, K), b (K, N) or (N, K), c (M, N)."""
def reference_forward(cell: Cell, x: Real, lengths: Int32, reverse: bool, w_ih: Real, w_hh: Real,
                      b_ih: Optional[Real], b_hh: Optional[Real], h0: Optional[Real], c0: Optional[Real],
                      peephole: Optional[Real] = None, linear_before_reset: bool = True, w_hr: Optional[Real] = None,
                      ln: Optional[Real] = None) -> Tuple[Real, Real, Real]:
    """Scalar reference forward in x's precision (float32 or float64): (y (T, B, P), h_n (B, P), c_n (B, H)).
    peephole: a peephole LSTM's (3, H) p_i, p_f, p_o; linear_before_reset=False: Cho et al.'s GRU;
    P = H, or w_hr's rows (an LSTM's projection, w_hh then (G*H, P)); ln (18H): the layer-normalised LSTM."""

class _PeepholeGrad(TypedDict, total=False):
    w_p: Real  # with peephole

class ReferenceGrads(_PeepholeGrad):
    dx: Real
    dh0: Real
    dc0: Real
    w_ih: Real
    w_hh: Real
    b_ih: Real
    b_hh: Real
    w_hr: Real  # with a projection only
    ln: Real  # with layer norm only

def reference_backward(cell: Cell, x: Real, lengths: Int32, reverse: bool, w_ih: Real, w_hh: Real,
                       b_ih: Optional[Real], b_hh: Optional[Real], h0: Optional[Real], c0: Optional[Real],
                       dy: Real, dhn: Optional[Real], dcn: Optional[Real], peephole: Optional[Real] = None,
                       linear_before_reset: bool = True, w_hr: Optional[Real] = None,
                       ln: Optional[Real] = None) -> ReferenceGrads:
    """Scalar reference backward: dx, dh0, dc0 and the parameter gradients (w_p with peephole)."""
