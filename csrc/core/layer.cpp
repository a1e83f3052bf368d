#include "layer.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <new>
#include <stdexcept>
#include <string>

#ifdef __linux__
#include <sys/mman.h>
#endif

#include "precision.h"
#include "quantize.h"

namespace rnnfast {

namespace {
std::atomic<bool> g_huge_pages{true};
constexpr size_t kHugePage = size_t{2} << 20;
}  // namespace

bool set_huge_pages(bool on) { return g_huge_pages.exchange(on); }

AlignedBuffer::AlignedBuffer(size_t n, bool zero, bool huge) : n_(n) {
  if (n == 0) return;
  if (n > (SIZE_MAX - kHugePage) / sizeof(float)) throw std::bad_alloc();  // the byte count would wrap around
  size_t bytes = (n * sizeof(float) + 63) / 64 * 64;
#ifdef __linux__
  huge = huge && bytes >= kHugeMinBytes && g_huge_pages.load(std::memory_order_relaxed);
#else
  huge = false;
#endif
  if (huge) bytes = (bytes + kHugePage - 1) / kHugePage * kHugePage;
  float* p = static_cast<float*>(std::aligned_alloc(huge ? kHugePage : 64, bytes));
  if (!p) throw std::bad_alloc();
#ifdef __linux__
  if (huge) madvise(p, bytes, MADV_HUGEPAGE);  // a hint: without THP the pages stay 4 KiB
#endif
  if (zero) std::memset(p, 0, bytes);
  p_.reset(p);
}

void AlignedBuffer::Free::operator()(float* p) const { std::free(p); }

void ensure_size(AlignedBuffer& b, size_t n) {
  if (b.size() < n) b = AlignedBuffer(n);
}

namespace {

// Round-to-nearest-even float -> bfloat16 (NaN stays NaN).
std::vector<uint16_t> to_bf16(const float* src, size_t n) {
  std::vector<uint16_t> out(n);
  for (size_t i = 0; i < n; ++i) out[i] = to_bf16_bits(src[i]);
  return out;
}

}  // namespace

PackedWeights::PackedWeights(CellKind cell, int input_size, int hidden_size, const float* w_ih, const float* w_hh,
                             const float* b_ih, const float* b_hh, bool with_backward, Isa isa, WeightFormat format,
                             bool step_weights, CellVariant variant, const float* w_p, int proj_size,
                             const float* w_hr, const float* layer_norm)
    : cell_(cell), isa_(isa), I_(input_size), H_(hidden_size), with_backward_(with_backward),
      step_weights_(step_weights), format_(format) {
  if (format != WeightFormat::float32 && with_backward)
    throw std::invalid_argument("bfloat16 and int8 weights are for inference only (training keeps float32)");
  if (format == WeightFormat::int8 && (input_size > kInt8MaxK || hidden_size > kInt8MaxK))
    throw std::invalid_argument("int8 weights: input_size and hidden_size must be <= " + std::to_string(kInt8MaxK) +
                                " (exact int32 sums), got " + std::to_string(input_size) + " and " +
                                std::to_string(hidden_size));
  if (format == WeightFormat::int8 && (variant.peephole || variant.reset_before))
    throw std::invalid_argument("int8 weights: not available for peephole LSTMs or GRU(linear_before_reset=False) "
                                "(the int8 loop runs the default cells); use float32 or bfloat16");
  if (input_size < 1 || hidden_size < 1)
    throw std::invalid_argument("input_size and hidden_size must be >= 1, got " + std::to_string(input_size) +
                                " and " + std::to_string(hidden_size));
  if (variant.peephole && (cell != CellKind::lstm || !w_p))
    throw std::invalid_argument("peepholes are an LSTM variant and need their weights (3, H)");
  if (variant.reset_before && cell != CellKind::gru)
    throw std::invalid_argument("reset_before (linear_before_reset=False) is a GRU variant");
  if (proj_size != 0 && (cell != CellKind::lstm || proj_size < 0 || proj_size >= hidden_size || !w_hr))
    throw std::invalid_argument("proj_size: needs an LSTM, 0 < proj_size < hidden_size (" +
                                std::to_string(hidden_size) + ") and w_hr; got " + std::to_string(proj_size));
  if (proj_size != 0 && format != WeightFormat::float32)
    throw std::invalid_argument("proj_size: only float32 weights are supported with a projection");
  if (layer_norm && (cell != CellKind::lstm || proj_size != 0 || format != WeightFormat::float32))
    throw std::invalid_argument("layer_norm: needs an LSTM without proj_size and with float32 weights");
  if ((proj_size != 0 || layer_norm) && variant.peephole)
    throw std::invalid_argument("proj_size, layer_norm: not with peepholes (not built yet)");
  const IsaKernels& k = kernels_for(isa);
  L_ = k.layout(cell, variant, I_, H_, proj_size);
  wx_ = AlignedBuffer(L_.wx, false, true);
  wh_ = AlignedBuffer(L_.wh, false, true);
  if (with_backward) {
    wx_bwd_ = AlignedBuffer(L_.wx_bwd, false, true);
    wh_bwd_ = AlignedBuffer(L_.wh_bwd, false, true);
  }
  if (step_weights) wx_step_ = AlignedBuffer(L_.wx_step, false, true);  // empty when wx already is per block
  if (with_backward && L_.wh_n_bwd) wh_n_bwd_ = AlignedBuffer(L_.wh_n_bwd);
  if (variant.peephole) peep_ = AlignedBuffer(3L * L_.Hp);
  bx_ = AlignedBuffer(L_.GHp);
  bh_ = AlignedBuffer(L_.GHp);
  if (L_.whr) whr_ = AlignedBuffer(L_.whr);
  if (L_.whr && with_backward) whr_bwd_ = AlignedBuffer(L_.whr_bwd);
  if (layer_norm) {
    ln_ = AlignedBuffer(4 * static_cast<size_t>(L_.GHp) + 2 * static_cast<size_t>(L_.Hp));
    k.pack_ln(L_, H_, layer_norm, ln_.data());
  }
  k.pack(cell, L_, I_, H_, w_ih, w_hh, b_ih, b_hh, w_p, w_hr, with_backward, wx_.data(), wh_.data(), wx_bwd_.data(),
         wh_bwd_.data(), wx_step_.data(), wh_n_bwd_.data(), bx_.data(), bh_.data(), peep_.data(), whr_.data(),
         whr_bwd_.data());
  // The dot-product loop (kernels/sequence_int8.h) runs the default cells; the variants keep the
  // float loop (bfloat16 widened; int8 is refused above).
  dot_ = dot_products_for(isa, format) && !variant.peephole && !variant.reset_before && !L_.whr && !layer_norm;
  if (format == WeightFormat::int8) {
    pack_int8(w_ih, w_hh);
    wx_ = AlignedBuffer();
    wh_ = AlignedBuffer();
    wx_step_ = AlignedBuffer();
  }
  if (format == WeightFormat::bfloat16 && dot_) {
    pack_bf16_pairs(w_ih, w_hh);
    wx_ = AlignedBuffer();
    wh_ = AlignedBuffer();
    wx_step_ = AlignedBuffer();
  } else if (format == WeightFormat::bfloat16) {  // the same panels, narrowed; the float copies are not needed any more
    wx16_ = to_bf16(wx_.data(), L_.wx);
    wh16_ = to_bf16(wh_.data(), L_.wh);
    if (wx_step_.data()) wx16_step_ = to_bf16(wx_step_.data(), L_.wx_step);
    wx_ = AlignedBuffer();
    wh_ = AlignedBuffer();
    wx_step_ = AlignedBuffer();
  }
}

void PackedWeights::pack_bf16_pairs(const float* w_ih, const float* w_hh) {
  std::vector<int> rows(L_.GHp);
  for (int c = 0; c < L_.GHp; ++c) rows[c] = torch_row(c, L_.G, L_.NB, H_);
  wx16p_.assign(static_cast<size_t>(bf16_pair_row_bytes(I_) / 2) * L_.GHp, 0);
  wh16p_.assign(static_cast<size_t>(bf16_pair_row_bytes(H_) / 2) * L_.GHp, 0);
  pack_bf16_pair_panels(I_, L_.GHp, L_.G * L_.NB, w_ih, rows.data(), wx16p_.data());
  pack_bf16_pair_panels(H_, L_.GHp, L_.G * L_.NB, w_hh, rows.data(), wh16p_.data());
}

void PackedWeights::pack_int8(const float* w_ih, const float* w_hh) {
  const int G = L_.G, GH = G * H_, panel_cols = G * L_.NB;
  std::vector<int> rows(L_.GHp);
  for (int c = 0; c < L_.GHp; ++c) rows[c] = torch_row(c, G, L_.NB, H_);
  auto one = [&](const float* w, int K, std::vector<int8_t>& panels, std::vector<float>& scale,
                 std::vector<int32_t>& comp) {
    std::vector<int8_t> q(static_cast<size_t>(GH) * K);
    std::vector<float> row_scale(GH);
    quantize_weight_rows(GH, K, w, q.data(), row_scale.data());
    panels.assign(static_cast<size_t>(int8_row_bytes(K)) * L_.GHp, 0);
    comp.assign(L_.GHp, 0);
    pack_int8_panels(K, L_.GHp, panel_cols, q.data(), rows.data(), panels.data(), comp.data());
    scale.assign(L_.GHp, 0.0f);
    for (int c = 0; c < L_.GHp; ++c) scale[c] = rows[c] >= 0 ? row_scale[rows[c]] : 0.0f;
  };
  one(w_ih, I_, wx8_, wx8_scale_, wx8_comp_);
  one(w_hh, H_, wh8_, wh8_scale_, wh8_comp_);
}

void Int8Scratch::attach(ForwardArgs& a, long x_rows) {
  if (!a.w.wh8 && !a.w.wh16p) return;
  const long nbytes = x_rows * std::max(int8_row_bytes(a.I), bf16_pair_row_bytes(a.I));
  ensure_size(bytes, static_cast<size_t>((nbytes + 3) / 4));
  ensure_size(scales, static_cast<size_t>(x_rows));
  a.xq = reinterpret_cast<uint8_t*>(bytes.data());
  a.xq_scale = scales.data();
}

PackedView PackedWeights::view() const {
  PackedView v{wx_.data(), wh_.data(), wx_bwd_.data(), wh_bwd_.data(), bx_.data(), bh_.data(),
               wx16_.empty() ? nullptr : wx16_.data(), wh16_.empty() ? nullptr : wh16_.data(), nullptr, nullptr,
               wh_n_bwd_.data(), peep_.data(), nullptr, nullptr, nullptr, nullptr, nullptr, nullptr,
               wx16p_.empty() ? nullptr : wx16p_.data(), wh16p_.empty() ? nullptr : wh16p_.data(), dot_,
               whr_.data(), whr_bwd_.data(), ln_.data()};
  if (format_ == WeightFormat::int8) {
    v.wx8 = wx8_.data();
    v.wh8 = wh8_.data();
    v.wx8_scale = wx8_scale_.data();
    v.wh8_scale = wh8_scale_.data();
    v.wx8_comp = wx8_comp_.data();
    v.wh8_comp = wh8_comp_.data();
    return v;
  }
  if (step_weights_ && !wx16_.empty())
    v.wx16_step = L_.wx_step ? wx16_step_.data() : v.wx16;
  else if (step_weights_)
    v.wx_step = L_.wx_step ? wx_step_.data() : v.wx;
  return v;
}

namespace {

// Multiply-adds per nanosecond of one thread on this ISA's kernels, timed once per ISA on a
// product of about one recurrent step's size (a tenth of a millisecond).
double macs_per_ns(Isa isa) {
  static std::atomic<double> rates[3] = {};
  std::atomic<double>& rate = rates[static_cast<int>(isa)];
  if (const double r = rate.load(std::memory_order_relaxed); r > 0) return r;
  const IsaKernels& k = kernels_for(isa);
  const int M = 64, N = 256, K = 256;
  AlignedBuffer a(static_cast<size_t>(M) * K), b(static_cast<size_t>(K) * N), c(static_cast<size_t>(M) * N),
      work(k.gemm_work_size(K, N));
  std::fill(a.data(), a.data() + a.size(), 0.5f);
  std::fill(b.data(), b.data() + b.size(), 0.25f);
  double best = 1e30;
  for (int rep = 0; rep < 3; ++rep) {
    const auto t0 = std::chrono::steady_clock::now();
    k.gemm(M, N, K, a.data(), K, b.data(), N, 1, c.data(), N, false, work.data(), 1);
    best = std::min(best, std::chrono::duration<double, std::nano>(std::chrono::steady_clock::now() - t0).count());
  }
  const double r = static_cast<double>(M) * N * K / std::max(best, 1.0);
  rate.store(r, std::memory_order_relaxed);
  return r;
}

double step_macs(const PackedWeights& w, int B) {
  const Layout& L = w.layout();
  const double proj = w.proj_size() ? static_cast<double>(L.P) * w.hidden_size() : 0.0;
  return static_cast<double>(B) * (static_cast<double>(L.GHp) * (w.input_size() + L.P) + proj);
}

long step_tiles(const PackedWeights& w, int B) { return static_cast<long>(w.layout().Hp / w.layout().NB) * B; }

}  // namespace

TeamPlan team_for(const PackedWeights& w, int B, long steps) {
  return plan_team(step_macs(w, B) / macs_per_ns(w.isa()), steps, step_tiles(w, B));
}

TeamPlan team_for_stack(const std::vector<const PackedWeights*>& layers, int B) {
  double macs = 0;
  long tiles = 1;
  for (const PackedWeights* w : layers) {
    macs += step_macs(*w, B);
    tiles = std::max(tiles, step_tiles(*w, B));
  }
  return plan_team(macs / macs_per_ns(layers.front()->isa()), 1, tiles);
}

namespace {

// Copy the caller's (B, H) rows into padded state rows, sorted row p at dst + row_of(p)*Hp;
// zeros where src is null or in the padding.
template <class RowOf>
void load_state(const float* src, const RowPlan& R, int H, int Hp, float* dst, RowOf row_of) {
  for (int p = 0; p < R.B; ++p) {
    float* d = dst + row_of(p) * Hp;
    if (src)
      std::memcpy(d, src + static_cast<long>(R.user(p)) * H, sizeof(float) * H);
    else
      std::memset(d, 0, sizeof(float) * H);
    std::memset(d + H, 0, sizeof(float) * (Hp - H));
  }
}

template <class RowOf>
void save_state(const float* src, const RowPlan& R, int H, int Hp, float* dst, RowOf row_of) {
  for (int p = 0; p < R.B; ++p)
    std::memcpy(dst + static_cast<long>(R.user(p)) * H, src + row_of(p) * Hp, sizeof(float) * H);
}

std::vector<int> checked_lengths(const int* lengths, int T, int B) {
  std::vector<int> out(B, T);
  if (!lengths) return out;
  for (int b = 0; b < B; ++b) {
    if (lengths[b] < 1 || lengths[b] > T)
      throw std::invalid_argument("lengths[" + std::to_string(b) + "] must be in [1, " + std::to_string(T) +
                                  "], got " + std::to_string(lengths[b]));
    out[b] = lengths[b];
  }
  return out;
}

// The rows sorted by length, longest first (stable: equal lengths keep their order), and where
// each step's valid rows start (RowPlan); both left empty when every row runs all T steps.
void sort_rows(const std::vector<int>& lens, int T, std::vector<int>& order, std::vector<long>& start) {
  const int B = static_cast<int>(lens.size());
  order.clear();
  start.clear();
  if (std::all_of(lens.begin(), lens.end(), [T](int n) { return n == T; })) return;
  order.resize(B);
  for (int b = 0; b < B; ++b) order[b] = b;
  std::stable_sort(order.begin(), order.end(), [&](int i, int j) { return lens[i] > lens[j]; });
  std::vector<int> ending(T + 1, 0);  // rows whose last step is t - 1
  for (int n : lens) ++ending[n];
  start.assign(T + 1, 0);
  for (int t = 0, running = B; t < T; ++t) {
    start[t + 1] = start[t] + running;
    running -= ending[t + 1];
  }
}

}  // namespace

ForwardArgs forward_args(const PackedWeights& w, int T, int B, const float* x, float* y, long ldy) {
  ForwardArgs a{};
  a.cell = w.cell();
  a.L = w.layout();
  a.w = w.view();
  a.T = T;
  a.B = B;
  a.I = w.input_size();
  a.H = w.hidden_size();
  a.x = x;
  a.rows = RowPlan{T, B, nullptr, nullptr};
  a.y = y;
  a.ldy = ldy;
  a.team = team_for(w, B, T);
  return a;
}

namespace {

// One direction's forward: its kernel arguments and, in inference, its own scratch (inference
// calls may run concurrently, so nothing of theirs is shared).
struct ForwardCall {
  ForwardArgs a{};
  Isa isa = Isa::generic;
  std::vector<int> lens, order;  // lens: the caller's rows
  std::vector<long> row_start;
  AlignedBuffer gates, hs, cs, aux, xg, ln_rec;
  Int8Scratch int8;
};

void begin_forward(ForwardCall& c, const PackedWeights& w, int T, int B, const float* x, const int* lengths,
                   bool reverse, const float* h0, const float* c0, float* y, long ldy, TrainCache* cache) {
  if (T < 1 || B < 1) throw std::invalid_argument("sequence length and batch size must be >= 1");
  const Layout& L = w.layout();
  const int H = w.hidden_size(), P = L.P, Hp = L.Hp;
  const bool lstm = w.cell() == CellKind::lstm, training = cache != nullptr;
  const bool proj = w.proj_size() != 0, keep_aux = w.cell() == CellKind::gru ? training : proj;
  c.lens = checked_lengths(lengths, T, B);
  c.isa = w.isa();
  sort_rows(c.lens, T, c.order, c.row_start);

  ForwardArgs& a = c.a;
  a = forward_args(w, T, B, x, y, ldy);
  const RowPlan R{T, B, c.order.empty() ? nullptr : c.order.data(),
                  c.row_start.empty() ? nullptr : c.row_start.data()};
  a.rows = R;
  a.reverse = reverse;
  a.training = training;

  // Training keeps every valid row's state and the final states (RowPlan).
  const long state_rows = training ? R.total() + B : 2L * B, act_rows = R.total();
  // Inference projects the input a chunk of steps at a time, about twice the L2 of gates (2 MB
  // where it was tuned, on 1 MiB of L2): memory O(B*H), not O(T*B*H).
  const long chunk_floats = 2 * cache_sizes().l2 / static_cast<long>(sizeof(float));
  a.chunk = training ? T : std::max(1, std::min<int>(T, static_cast<int>(chunk_floats / (static_cast<long>(B) * L.GHp))));
  const long gate_rows = training ? act_rows : static_cast<long>(a.chunk) * B;
  AlignedBuffer& gates = training ? cache->gates : c.gates;
  AlignedBuffer& hs = training ? cache->hs : c.hs;
  AlignedBuffer& cs = training ? cache->cs : c.cs;
  AlignedBuffer& aux = training ? cache->aux : c.aux;
  AlignedBuffer& xg = training ? cache->xg : c.xg;
  if (training) cache->consumed = true;  // until this forward completes
  ensure_size(gates, static_cast<size_t>(gate_rows) * L.GHp);
  ensure_size(hs, state_rows * Hp);
  if (lstm) ensure_size(cs, state_rows * Hp);
  const bool reset_before = w.variant().reset_before;  // needs r⊙h per step, also in inference
  if (keep_aux) ensure_size(aux, static_cast<size_t>(training ? act_rows : B) * Hp);
  if (!training && reset_before) ensure_size(aux, static_cast<size_t>(B) * Hp);
  if (!R.dense()) ensure_size(xg, static_cast<size_t>(gate_rows) * w.input_size());
  a.gates = gates.data();
  a.hs = hs.data();
  a.cs = lstm ? cs.data() : nullptr;
  a.aux = keep_aux || reset_before ? aux.data() : nullptr;
  a.xg = R.dense() ? nullptr : xg.data();
  c.int8.attach(a, gate_rows);
  if (w.layer_norm()) {  // LnBuffers: the step's raw recurrent part; training keeps LN's values
    AlignedBuffer& rec = training ? cache->ln_rec : c.ln_rec;
    ensure_size(rec, static_cast<size_t>(B) * L.GHp);
    a.ln.rec = rec.data();
    if (training) {
      ensure_size(cache->ln_xhat, static_cast<size_t>(act_rows) * L.GHp);
      ensure_size(cache->ln_hhat, static_cast<size_t>(act_rows) * L.GHp);
      ensure_size(cache->ln_chat, static_cast<size_t>(act_rows) * Hp);
      ensure_size(cache->ln_rstd, static_cast<size_t>(act_rows) * 3);
      a.ln.xhat = cache->ln_xhat.data(), a.ln.hhat = cache->ln_hhat.data(), a.ln.chat = cache->ln_chat.data();
      a.ln.rstd = cache->ln_rstd.data();
    }
  }

  // Where each row's initial state goes: training, at the state its first step starts from (the
  // reverse direction starts at each row's last valid step); inference, in slot 0, and in a
  // ragged reverse pass also in slot 1 (a row begins on either, and nothing writes it before).
  auto initial = [&](int p) {
    return training ? R.first(reverse ? c.lens[R.user(p)] - 1 : 0) + p : static_cast<long>(p);
  };
  auto other_slot = [&](int p) { return B + static_cast<long>(p); };
  load_state(h0, R, P, Hp, a.hs, initial);
  if (lstm) load_state(c0, R, H, Hp, a.cs, initial);
  if (!training && reverse && !R.dense()) {
    load_state(h0, R, P, Hp, a.hs, other_slot);
    if (lstm) load_state(c0, R, H, Hp, a.cs, other_slot);
  }
}

void end_forward(ForwardCall& c, float* hn, float* cn, TrainCache* cache) {
  const ForwardArgs& a = c.a;
  const RowPlan& R = a.rows;
  // Row of each final state: training keeps them after the valid rows; inference leaves a row's
  // state in the slot its last step wrote (no later step writes that row).
  auto last = [&](int p) {
    if (a.training) return R.total() + p;
    const int steps = a.reverse ? a.T : c.lens[R.user(p)];
    return static_cast<long>(steps & 1) * a.B + p;
  };
  save_state(a.hs, R, a.L.P, a.L.Hp, hn, last);
  if (a.cs && cn) save_state(a.cs, R, a.H, a.L.Hp, cn, last);
  if (cache) {
    cache->T = a.T;
    cache->B = a.B;
    cache->reverse = a.reverse;
    cache->cell = a.cell;
    cache->variant = a.L.variant;
    cache->isa = c.isa;
    cache->I = a.I;
    cache->H = a.H;
    cache->P = a.L.P;
    cache->ln = a.w.ln != nullptr;
    cache->consumed = false;
    cache->order = std::move(c.order);
    cache->row_start = std::move(c.row_start);
  }
}

// The team for two directions at once: what one would use, for each (within the user's limit).
TeamPlan pair_team(const PackedWeights& w0, const PackedWeights& w1, int B, int T) {
  if (w0.isa() != w1.isa() || w0.format() != w1.format() || w0.dot_products() != w1.dot_products())
    throw std::invalid_argument("both directions must be packed for the same ISA and weight format");
  if (w0.input_size() != w1.input_size() || w0.hidden_size() != w1.hidden_size() ||
      w0.state_size() != w1.state_size())
    throw std::invalid_argument("both directions must have the same input, hidden and projection sizes");
  TeamPlan plan = team_for(w0, B, T);
  plan.threads = std::min(num_threads(), 2 * plan.threads);
  return plan;
}

}  // namespace

void layer_forward(const PackedWeights& w, int T, int B, const float* x, const int* lengths, bool reverse,
                   const float* h0, const float* c0, float* y, long ldy, float* hn, float* cn, TrainCache* cache) {
  ForwardCall c;
  begin_forward(c, w, T, B, x, lengths, reverse, h0, c0, y, ldy, cache);
  kernels_for(w.isa()).forward(&c.a, 1, c.a.team);
  end_forward(c, hn, cn, cache);
}

void layer_forward_pair(const DirectionForward& d0, const DirectionForward& d1, int T, int B, const float* x,
                        const int* lengths, long ldy) {
  const TeamPlan team = pair_team(*d0.w, *d1.w, B, T);
  ForwardCall c0, c1;
  begin_forward(c0, *d0.w, T, B, x, lengths, false, d0.h0, d0.c0, d0.y, ldy, d0.cache);
  begin_forward(c1, *d1.w, T, B, x, lengths, true, d1.h0, d1.c0, d1.y, ldy, d1.cache);
  kernels_for(d0.w->isa()).forward_pair(c0.a, c1.a, team);
  end_forward(c0, d0.hn, d0.cn, d0.cache);
  end_forward(c1, d1.hn, d1.cn, d1.cache);
}

namespace {

// Arguments of one direction's backward; marks the cache consumed (its gates become gradients).
BackwardArgs begin_backward(const PackedWeights& w, TrainCache& cache, const float* x, const float* dy, long ldy,
                            const float* dhn, const float* dcn, float* dx, bool dx_accumulate, float* dh0,
                            float* dc0, float* gw_ih, float* gw_hh, float* gb_ih, float* gb_hh, float* gw_p,
                            float* gw_hr, float* gln) {
  if (cache.consumed)
    throw std::invalid_argument("backward needs a training forward first, and runs once per forward");
  if (!w.has_backward()) throw std::invalid_argument("weights were packed without backward support");
  if (w.cell() != cache.cell || w.isa() != cache.isa || w.input_size() != cache.I || w.hidden_size() != cache.H ||
      w.state_size() != cache.P || w.layer_norm() != cache.ln)
    throw std::invalid_argument(
        "the weights differ from the forward's (cell, ISA, input, hidden or projection size, layer norm)");
  const CellVariant v = w.variant();
  if (v.peephole != cache.variant.peephole || v.reset_before != cache.variant.reset_before)
    throw std::invalid_argument("the weights differ from the forward's (cell variant)");
  if (v.peephole && !gw_p) throw std::invalid_argument("a peephole LSTM's backward needs the peephole gradient");
  if (w.layer_norm() && !gln) throw std::invalid_argument("gln: required with layer norm");
  const bool proj = w.proj_size() != 0;
  if (proj && !gw_hr) throw std::invalid_argument("gw_hr: required with a projection (proj_size > 0)");
  const Layout& L = w.layout();
  const int T = cache.T, B = cache.B, I = w.input_size(), H = w.hidden_size(), P = L.P, Hp = L.Hp;
  const bool lstm = w.cell() == CellKind::lstm;

  BackwardArgs a{};
  a.cell = w.cell();
  a.L = L;
  a.w = w.view();
  a.T = T;
  a.B = B;
  a.I = I;
  a.H = H;
  a.rows = cache.rows();
  a.x = a.rows.dense() ? x : cache.xg.data();  // the forward gathered the valid rows
  a.dx_rows = a.rows.dense() ? nullptr : cache.xg.data();  // free once the weight gradient read it
  a.reverse = cache.reverse;
  a.dy = dy;
  a.ldy = ldy;
  a.dx = dx;
  a.dx_accumulate = dx_accumulate;
  a.dh0 = dh0;
  a.dc0 = lstm ? dc0 : nullptr;
  a.gw_ih = gw_ih;
  a.gw_hh = gw_hh;
  a.gb_ih = gb_ih;
  a.gb_hh = gb_hh;
  a.gw_p = v.peephole ? gw_p : nullptr;
  a.gw_hr = proj ? gw_hr : nullptr;
  if (proj) ensure_size(cache.dh_rows, static_cast<size_t>(a.rows.total()) * Hp);
  a.dh_rows = proj ? cache.dh_rows.data() : nullptr;
  a.gates = cache.gates.data();
  // GRU and layer norm: the recurrent pre-activations' gradient differs from the input part's.
  const bool own_dgh = w.cell() == CellKind::gru || w.layer_norm();
  if (own_dgh) ensure_size(cache.dgh, static_cast<size_t>(a.rows.total()) * L.GHp);
  a.dgh = own_dgh ? cache.dgh.data() : a.gates;
  if (w.layer_norm()) {
    ensure_size(cache.dh_rows, static_cast<size_t>(a.rows.total()) * Hp);  // dn: LN(c)'s output gradient
    a.ln = {cache.ln_rec.data(), cache.ln_xhat.data(), cache.ln_hhat.data(), cache.ln_chat.data(),
            cache.ln_rstd.data(), cache.dh_rows.data()};
    a.gln = gln;
  }
  a.hs = cache.hs.data();
  a.cs = lstm ? cache.cs.data() : nullptr;
  a.aux = w.cell() == CellKind::gru || proj ? cache.aux.data() : nullptr;
  const size_t panels_width = static_cast<size_t>((L.GHp + L.NR - 1) / L.NR) * L.NR;
  ensure_size(cache.dh_pass, static_cast<size_t>(B) * Hp);
  ensure_size(cache.dc, static_cast<size_t>(B) * Hp);
  // LSTM and RNN read the same dG for W_ih's and W_hh's gradients (their input and recurrent
  // pre-activation gradients are equal): one packing pass serves both GEMMs, while both
  // accumulator blocks, re-read at every block of rows, fit in twice the L2 (LSTM B=256 H=256 and
  // RNN training 1.02-1.05x faster; LSTM H=512, 8 MB of them, 0.98-0.99x).
  const long both_bytes = static_cast<long>(I + L.P) * L.GHp * static_cast<long>(sizeof(float));
  a.one_pass_wgrad = !own_dgh && both_bytes <= 2 * cache_sizes().l2;
  ensure_size(cache.wgrad, static_cast<size_t>((a.one_pass_wgrad ? I : 0) + std::max(I, H)) * L.GHp);
  // The projection's gradient packs blocks of m (H columns) in bpack, like dG's (GHp >= H).
  ensure_size(cache.bpack, kBackwardPackRows * panels_width);
  ensure_size(cache.colsum, panels_width);
  a.dh_pass = cache.dh_pass.data();
  a.dc = cache.dc.data();
  if (v.reset_before) ensure_size(cache.dn, static_cast<size_t>(B) * Hp);
  a.dn = v.reset_before ? cache.dn.data() : nullptr;
  auto same = [](int p) { return static_cast<long>(p); };
  load_state(dhn, a.rows, P, Hp, a.dh_pass, same);
  load_state(lstm ? dcn : nullptr, a.rows, H, Hp, a.dc, same);
  a.wgrad = cache.wgrad.data();
  a.bpack = cache.bpack.data();
  a.colsum = cache.colsum.data();
  a.team = team_for(w, B, T);

  cache.consumed = true;  // gates are overwritten with gradients by the kernel
  return a;
}

}  // namespace

void layer_backward(const PackedWeights& w, TrainCache& cache, const float* x, const float* dy, long ldy,
                    const float* dhn, const float* dcn, float* dx, bool dx_accumulate, float* dh0, float* dc0,
                    float* gw_ih, float* gw_hh, float* gb_ih, float* gb_hh, float* gw_p, float* gw_hr,
                    float* gln) {
  const BackwardArgs a = begin_backward(w, cache, x, dy, ldy, dhn, dcn, dx, dx_accumulate, dh0, dc0, gw_ih, gw_hh,
                                        gb_ih, gb_hh, gw_p, gw_hr, gln);
  kernels_for(w.isa()).backward(a);
}

void layer_backward_pair(const DirectionBackward& d0, const DirectionBackward& d1, const float* x, long ldy,
                         float* dx) {
  TrainCache &c0 = *d0.cache, &c1 = *d1.cache;
  if (c0.consumed || c1.consumed)
    throw std::invalid_argument("backward needs a training forward first, and runs once per forward");
  if (c0.T != c1.T || c0.B != c1.B || c0.reverse || !c1.reverse)
    throw std::invalid_argument("the two caches must come from one layer_forward_pair");
  const TeamPlan team = pair_team(*d0.w, *d1.w, c0.B, c0.T);
  // Both directions write dx: the second into its own buffer, added once both are done.
  const size_t n = static_cast<size_t>(c0.T) * c0.B * d0.w->input_size();
  ensure_size(c1.dx_other, n);
  const BackwardArgs a0 = begin_backward(*d0.w, c0, x, d0.dy, ldy, d0.dhn, d0.dcn, dx, false, d0.dh0, d0.dc0,
                                         d0.gw_ih, d0.gw_hh, d0.gb_ih, d0.gb_hh, d0.gw_p, d0.gw_hr, d0.gln);
  const BackwardArgs a1 = begin_backward(*d1.w, c1, x, d1.dy, ldy, d1.dhn, d1.dcn, c1.dx_other.data(), false,
                                         d1.dh0, d1.dc0, d1.gw_ih, d1.gw_hh, d1.gb_ih, d1.gb_hh, d1.gw_p, d1.gw_hr,
                                         d1.gln);
  kernels_for(d0.w->isa()).backward_pair(a0, a1, team);
  const float* other = c1.dx_other.data();
  for (size_t i = 0; i < n; ++i) dx[i] += other[i];
}

}  // namespace rnnfast
