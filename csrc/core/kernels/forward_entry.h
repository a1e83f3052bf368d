// The forward entry points of one instruction set's kernels, shared by isa_impl.h and the
// dot-product twins (isa_*_dot.cpp: the same sources with VNNI / AVX512_BF16 enabled, which run
// the layers whose weights were packed for them, PackedView::dot).
#include "core/kernels/gemm_int8.h"
#include "core/kernels/sequence_int8.h"
#if defined(RNNFAST_BF16_DOT)
#include "core/kernels/gemm_bf16.h"
#endif

template <class Cell>
static void forward_any(const ForwardArgs& a, PhaseRunner& phases, long call) {
  const PackedView& w = a.w;
  if (w.wh8)
    forward_sequence_reduced<Cell, Int8Products>(
        a, {w.wx8, w.wh8, w.wx8_comp, w.wh8_comp, w.wx8_scale, w.wh8_scale}, phases, call);
#if defined(RNNFAST_BF16_DOT)
  else if (w.wh16p)
    forward_sequence_reduced<Cell, Bf16Products>(a, {w.wx16p, w.wh16p, nullptr, nullptr, nullptr, nullptr}, phases,
                                                 call);
#endif
  else
    forward_sequence<Cell>(a, phases);
}

// call: a number unique to this team call (the int8 loop's per-thread row caches key on it).
// The cell variants (peephole LSTM, reset-before GRU) only have the float loop (PackedWeights
// refuses int8 for them and packs their bfloat16 for widening).
static void forward_on(const ForwardArgs& a, PhaseRunner& phases, long call) {
  switch (a.cell) {
    case CellKind::lstm:
      return a.L.variant.peephole ? forward_sequence<LstmT<true>>(a, phases) : forward_any<Lstm>(a, phases, call);
    case CellKind::gru:
      return a.L.variant.reset_before ? forward_sequence<GruResetBefore>(a, phases) : forward_any<Gru>(a, phases, call);
    case CellKind::rnn_relu: return forward_any<Rnn<true>>(a, phases, call);
    default: return forward_any<Rnn<false>>(a, phases, call);
  }
}

static long next_call() {
  static std::atomic<long> calls{0};
  return calls.fetch_add(1, std::memory_order_relaxed);
}

// Weights packed for the dot-product twin go there (a stack or pair shares one format).
#if defined(RNNFAST_DOT_TWIN)
#define RNNFAST_TO_TWIN(call) \
  if (const IsaKernels* twin = dot_kernels_for(RNNFAST_DOT_TWIN)) return twin->call
#else
#define RNNFAST_TO_TWIN(call) (void)0
#endif

static void forward(const ForwardArgs* layers, int n, TeamPlan team) {
  if (n > 0 && layers[0].w.dot) RNNFAST_TO_TWIN(forward(layers, n, team));
  const long call = next_call();
  in_team(team, [&](PhaseRunner& phases) {
    for (int k = 0; k < n; ++k) forward_on(layers[k], phases, call);
  });
}

static void forward_pair(const ForwardArgs& a0, const ForwardArgs& a1, TeamPlan team) {
  if (a0.w.dot) RNNFAST_TO_TWIN(forward_pair(a0, a1, team));
  const long call = next_call();
  in_two_teams(team, [&](PhaseRunner& p) { forward_on(a0, p, call); }, [&](PhaseRunner& p) { forward_on(a1, p, call); });
}

// The int8 products of the forward, exposed for tests: C (M x N) = Σ_k q(A)(m, k) q(n, k) exactly,
// where A's rows are quantized as the forward quantizes x and h (a_scale: their scales) and q holds
// already quantized weights (N x K).
static void int8_products(int M, int N, int K, const float* A, const int8_t* q, int32_t* C, float* a_scale) {
  constexpr int MR = 6, NV = 2, PC = NV * W;
  const long kp = int8_row_bytes(K);
  std::vector<uint8_t> aq(static_cast<size_t>(M) * kp);
  for (int m = 0; m < M; ++m) a_scale[m] = quantize_row(A + static_cast<long>(m) * K, K, kp, aq.data() + m * kp);
  const int npanels = ceil_div(N, PC);
  std::vector<int> rows(static_cast<size_t>(npanels) * PC);
  for (int c = 0; c < npanels * PC; ++c) rows[c] = c < N ? c : -1;
  std::vector<int8_t> panels(static_cast<size_t>(npanels) * kp * PC);
  std::vector<int32_t> comp(rows.size());
  pack_int8_panels(K, npanels * PC, PC, q, rows.data(), panels.data(), comp.data());
  for (int p = 0; p < npanels; ++p)
    for (int m0 = 0; m0 < M; m0 += MR) {
      const int mr = M - m0 < MR ? M - m0 : MR;
      vi acc[MR][NV];
      start_s8<MR, NV>(comp.data() + p * PC, acc);
      microkernel_s8_rows<MR, NV>(mr, static_cast<int>(kp / 4), aq.data() + m0 * kp, kp,
                                  panels.data() + p * kp * PC, acc);
      for (int m = 0; m < mr; ++m)
        for (int c = 0; c < PC && p * PC + c < N; ++c) C[static_cast<long>(m0 + m) * N + p * PC + c] = acc[m][c / W][c % W];
    }
}

