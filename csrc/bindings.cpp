// The only file that knows Python: converts arguments, validates, releases the GIL, calls the core.
#include <cmath>
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <stdexcept>
#include <string>
#include <vector>

#include "binding_args.h"
#include "core/cpu.h"
#include "core/layer.h"
#include "core/peak.h"
#include "core/precision.h"
#include "core/reference.h"
#include "core/stream.h"

namespace py = pybind11;
using namespace rnnfast;
using namespace rnnfast_py;

namespace {

// Direction d's (B, H) block of an optional (2, B, H) array of a bidirectional pair (s = B*H).
template <class T>
T* direction_rows(T* p, long s, int d) {
  return p ? p + d * s : nullptr;
}

CellKind cell_from_name(py::handle obj) {
  const std::string name = str_arg(obj, "cell");
  if (name == "lstm") return CellKind::lstm;
  if (name == "gru") return CellKind::gru;
  if (name == "rnn_tanh") return CellKind::rnn_tanh;
  if (name == "rnn_relu") return CellKind::rnn_relu;
  throw py::value_error("cell: expected 'rnn_tanh', 'rnn_relu', 'lstm' or 'gru', got '" + name + "'");
}

const char* cell_name(CellKind c) {
  switch (c) {
    case CellKind::lstm: return "lstm";
    case CellKind::gru: return "gru";
    case CellKind::rnn_relu: return "rnn_relu";
    default: return "rnn_tanh";
  }
}

// Polled by long kernel calls about every 20 ms: runs Python's signal handlers (Ctrl-C), which
// only the main thread does. An exception they raise stops the call and is raised by it.
bool python_signal_pending(void* interrupted) {
  py::gil_scoped_acquire gil;
  return *static_cast<bool*>(interrupted) = PyErr_CheckSignals() != 0;
}

// Runs the kernel without the GIL and turns core errors into Python ones (the core throws, it
// never aborts: std::invalid_argument for bad arguments, std::bad_alloc when memory runs out).
template <class F>
void run_released(F&& f) {
  bool interrupted = false;
  try {
    py::gil_scoped_release release;
    CancelScope scope(python_signal_pending, &interrupted);
    f();
  } catch (const Cancelled&) {
  } catch (const std::invalid_argument& e) {
    throw py::value_error(e.what());
  }
  if (interrupted) throw py::error_already_set();
}

PackedWeights& packed_arg(py::handle obj, const char* name) {
  return object_arg<PackedWeights>(obj, name, "PackedWeights");
}

// None (inference) or a TrainCache (training).
TrainCache* cache_arg(py::handle obj, const char* name) {
  return obj.is_none() ? nullptr : &object_arg<TrainCache>(obj, name, "TrainCache or None");
}

// (grad_w_ih, grad_w_hh, grad_b_ih, grad_b_hh[, grad_w_hr or grad_layer_norm]) of one direction,
// as a tuple or list; the fifth exactly when the layer has a projection or layer norm.
py::sequence grads_arg(py::handle obj, const char* name, bool proj, bool ln) {
  const std::string want = proj ? "(grad_w_ih, grad_w_hh, grad_b_ih, grad_b_hh, grad_w_hr)"
                           : ln ? "(grad_w_ih, grad_w_hh, grad_b_ih, grad_b_hh, grad_layer_norm)"
                                : "(grad_w_ih, grad_w_hh, grad_b_ih, grad_b_hh)";
  if (!py::isinstance<py::tuple>(obj) && !py::isinstance<py::list>(obj))
    throw py::type_error(std::string(name) + ": expected a tuple " + want + ", got " + describe(obj));
  py::sequence seq = py::reinterpret_borrow<py::sequence>(obj);
  if (seq.size() != 4 && seq.size() != 5)
    throw py::value_error(std::string(name) + ": expected 4 arrays (grad_w_ih, grad_w_hh, grad_b_ih, grad_b_hh) "
                          "and a peephole LSTM's grad_w_p, got " + std::to_string(seq.size()));
  if ((proj || ln) && seq.size() != 5)
    throw py::value_error(std::string(name) + ": expected 5 arrays " + want + ", got " + std::to_string(seq.size()));
  return seq;
}

// A peephole LSTM's (3, H) peephole gradient (required then), or null for the other cells.
float* peephole_grad_arg(const PackedWeights& w, py::handle obj, std::vector<py::object>& keep) {
  if (!w.variant().peephole) {
    if (!obj.is_none()) throw py::value_error("grad_w_p: only a peephole LSTM has peephole weights");
    return nullptr;
  }
  if (obj.is_none()) throw py::value_error("grad_w_p: a peephole LSTM's backward needs it (got None)");
  return optional_out<float>(obj, "grad_w_p", {3, static_cast<long>(w.hidden_size())}, keep);
}

// The arguments both reference entry points take, checked: one sequence problem in float or double.
template <class R>
struct ReferenceProblem {
  CellKind cell;
  long T, B, I, H, G;
  std::vector<py::object> keep;  // owners of the pointers below
  long P;  // columns of h: the projection's rows (w_hr), else H
  const R *x, *w_ih, *w_hh, *b_ih, *b_hh, *h0, *c0, *w_hr, *ln;
  const int* lengths;

  const R* w_p = nullptr;
  bool reset_before = false;

  ReferenceProblem(py::handle cell_o, py::handle x_o, py::handle lengths_o, py::handle w_ih_o, py::handle w_hh_o,
                   py::handle b_ih_o, py::handle b_hh_o, py::handle h0_o, py::handle c0_o, py::handle peephole_o,
                   py::handle linear_before_reset_o, py::handle w_hr_o, py::handle ln_o)
      : cell(cell_from_name(cell_o)) {
    const std::vector<long> xs = dims_arg(x_o, "x", 3, "(T, B, I)"), whs = dims_arg(w_hh_o, "w_hh", 2, "(G*H, H)");
    T = int_size(xs[0], "x.shape[0]"), B = int_size(xs[1], "x.shape[1]"), I = int_size(xs[2], "x.shape[2]");
    H = int_size(whs[1], "w_hh.shape[1]"), G = gate_count(cell), P = H;
    if (!w_hr_o.is_none()) {  // LSTM projection: w_hr (P, H), w_hh (G*H, P)
      const std::vector<long> wrs = dims_arg(w_hr_o, "w_hr", 2, "(proj_size, H)");
      if (cell != CellKind::lstm) throw py::value_error("w_hr: a projection needs cell 'lstm'");
      P = int_size(wrs[0], "w_hr.shape[0]"), H = int_size(wrs[1], "w_hr.shape[1]");
    }
    x = required(x_o, "x", {T, B, I});
    w_ih = required(w_ih_o, "w_ih", {G * H, I});
    w_hh = required(w_hh_o, "w_hh", {G * H, P});
    w_hr = optional_ptr<R>(w_hr_o, "w_hr", {P, H}, keep);
    if (!ln_o.is_none() && (cell != CellKind::lstm || w_hr))
      throw py::value_error("ln: layer norm needs cell 'lstm' without a projection");
    ln = optional_ptr<R>(ln_o, "ln", {18 * H}, keep);
    b_ih = optional_ptr<R>(b_ih_o, "b_ih", {G * H}, keep);
    b_hh = optional_ptr<R>(b_hh_o, "b_hh", {G * H}, keep);
    h0 = optional_ptr<R>(h0_o, "h0", {B, P}, keep);
    c0 = optional_ptr<R>(c0_o, "c0", {B, H}, keep);
    if (!peephole_o.is_none() && cell != CellKind::lstm) throw py::value_error("peephole: only an LSTM has peepholes");
    w_p = optional_ptr<R>(peephole_o, "peephole", {3, H}, keep);
    reset_before = !bool_arg(linear_before_reset_o, "linear_before_reset");
    if (reset_before && cell != CellKind::gru) throw py::value_error("linear_before_reset: False is a GRU variant");
    auto lens = checked<int>(lengths_o, "lengths", {B});
    keep.push_back(lens);
    lengths = lens.data();
    for (long b = 0; b < B; ++b)
      if (lengths[b] < 1 || lengths[b] > T)
        throw py::value_error("lengths: values must be in [1, T=" + std::to_string(T) + "], got lengths[" +
                              std::to_string(b) + "] = " + std::to_string(lengths[b]));
  }

  const R* required(py::handle obj, const char* name, const std::vector<long>& shape) {
    auto arr = checked<R>(obj, name, shape);
    keep.push_back(arr);
    return arr.data();
  }
};

template <class R>
py::tuple reference_forward_py(py::handle cell_o, py::handle x_o, py::handle lengths_o, bool reverse,
                               py::handle w_ih_o, py::handle w_hh_o, py::handle b_ih_o, py::handle b_hh_o,
                               py::handle h0_o, py::handle c0_o, py::handle peephole_o, py::handle lbr_o,
                               py::handle w_hr_o, py::handle ln_o) {
  ReferenceProblem<R> p(cell_o, x_o, lengths_o, w_ih_o, w_hh_o, b_ih_o, b_hh_o, h0_o, c0_o, peephole_o, lbr_o, w_hr_o,
                        ln_o);
  py::array_t<R> y({p.T, p.B, p.P}), hn({p.B, p.P}), cn({p.B, p.H});
  reference_forward<R>(p.cell, p.T, p.B, p.I, p.H, p.x, p.lengths, reverse, p.w_ih, p.w_hh, p.b_ih, p.b_hh, p.h0,
                       p.c0, y.mutable_data(), hn.mutable_data(), cn.mutable_data(), p.w_p, p.reset_before,
                       static_cast<int>(p.P), p.w_hr, p.ln);
  return py::make_tuple(y, hn, cn);
}

template <class R>
py::dict reference_backward_py(py::handle cell_o, py::handle x_o, py::handle lengths_o, bool reverse,
                               py::handle w_ih_o, py::handle w_hh_o, py::handle b_ih_o, py::handle b_hh_o,
                               py::handle h0_o, py::handle c0_o, py::handle dy_o, py::handle dhn_o, py::handle dcn_o,
                               py::handle peephole_o, py::handle lbr_o, py::handle w_hr_o, py::handle ln_o) {
  ReferenceProblem<R> p(cell_o, x_o, lengths_o, w_ih_o, w_hh_o, b_ih_o, b_hh_o, h0_o, c0_o, peephole_o, lbr_o, w_hr_o,
                        ln_o);
  const long T = p.T, B = p.B, I = p.I, H = p.H, G = p.G, P = p.P;
  const R* dy = p.required(dy_o, "dy", {T, B, P});
  const R* dhn = optional_ptr<R>(dhn_o, "dhn", {B, P}, p.keep);
  const R* dcn = optional_ptr<R>(dcn_o, "dcn", {B, H}, p.keep);
  py::array_t<R> dx({T, B, I}), dh0({B, P}), dc0({B, H}), gwi({G * H, I}), gwh({G * H, P}), gbi({G * H}), gbh({G * H});
  py::array_t<R> gwp({3L, H}), gwr({P, H}), gln({18 * H});
  for (auto* a : {&gwi, &gwh, &gbi, &gbh, &gwp, &gwr, &gln})
    std::fill(a->mutable_data(), a->mutable_data() + a->size(), R(0));
  reference_backward<R>(p.cell, T, B, I, H, p.x, p.lengths, reverse, p.w_ih, p.w_hh, p.b_ih, p.b_hh, p.h0, p.c0, dy,
                        dhn, dcn, dx.mutable_data(), dh0.mutable_data(), dc0.mutable_data(), gwi.mutable_data(),
                        gwh.mutable_data(), gbi.mutable_data(), gbh.mutable_data(), p.w_p, p.reset_before,
                        gwp.mutable_data(), static_cast<int>(P), p.w_hr, gwr.mutable_data(), p.ln, gln.mutable_data());
  py::dict out;
  out["dx"] = dx, out["dh0"] = dh0, out["dc0"] = dc0, out["w_ih"] = gwi, out["w_hh"] = gwh, out["b_ih"] = gbi,
  out["b_hh"] = gbh;
  if (p.w_p) out["w_p"] = gwp;
  if (p.w_hr) out["w_hr"] = gwr;
  if (p.ln) out["ln"] = gln;
  return out;
}

// The reference runs in float64 when x is float64 (by value: a pickled array's dtype is a copy).
bool is_float64(py::handle x) {
  return py::isinstance<py::array>(x) && py::reinterpret_borrow<py::array>(x).dtype().equal(py::dtype::of<double>());
}

}  // namespace

PYBIND11_MODULE(_core, m) {
  m.doc() = "rnnfast C++ kernels";
  m.def("peak_gflops", [](py::handle threads_o, py::handle seconds_o) {
    const int threads = static_cast<int>(int_arg(threads_o, "threads", 1, kMaxKernelThreads));
    const double seconds = float_arg(seconds_o, "seconds", 0.0, 10.0);
    double g = 0.0;
    run_released([&] { g = peak_gflops(threads, seconds); });
    return g;
  }, py::arg("threads"), py::arg("seconds") = 0.05,
  "GFLOP/s of a register-only FMA loop of the active ISA on `threads` threads at once: the physical peak.");
  m.def("cpu_info", [] {
    py::dict info;
    info["isa"] = isa_name(active_isa());
    py::list available;
    for (Isa i : supported_isas()) available.append(isa_name(i));
    info["isas_available"] = available;
    info["num_threads"] = num_threads();
    info["max_threads"] = kMaxKernelThreads;
    const TeamCosts team = team_costs();
    py::dict costs;
    costs["sync_ns"] = team.sync_ns;
    costs["wake_us"] = team.wake_ns / 1000.0;
    costs["spin_us"] = team.spin_ns / 1000.0;
    costs["idle_spin_us"] = idle_spin_ns() / 1000.0;
    costs["measured"] = team.measured;
    costs["host_openmp"] = host_openmp();
    costs["prewake"] = prewake();
    info["team"] = costs;
    const ThreadDefault& d = thread_default();
    py::dict dflt;
    dflt["threads"] = d.threads, dflt["affinity"] = d.affinity, dflt["online"] = d.online;
    dflt["cgroup_quota"] = d.cgroup_quota, dflt["mpi_local_ranks"] = d.mpi_local_ranks;
    info["default_threads"] = dflt;
    const CacheSizes& caches = cache_sizes();
    py::dict cache;
    cache["l1d"] = caches.l1d, cache["l2"] = caches.l2, cache["l3"] = caches.l3, cache["source"] = caches.source;
    info["cache_bytes"] = cache;
    // Which products eval forwards with reduced-precision weights run on the active ISA now.
    const DotFeatures& dots = dot_features();
    py::dict dot;
    dot["avx512_vnni"] = dots.avx512_vnni, dot["avx_vnni"] = dots.avx_vnni, dot["avx512_bf16"] = dots.avx512_bf16;
    dot["enabled"] = dot_products_enabled();
    info["dot_products"] = dot;
    py::dict kernels;
    for (WeightFormat f : {WeightFormat::float32, WeightFormat::bfloat16, WeightFormat::int8})
      kernels[weight_format_name(f)] = weight_kernel_name(active_isa(), f, dot_products_for(active_isa(), f));
    info["weight_kernels"] = kernels;
    return info;
  });
  m.def("set_isa", [](py::handle name_o) {
    const std::string name = str_arg(name_o, "isa");
    Isa isa;
    if (!isa_from_name(name, &isa))
      throw py::value_error("isa: expected one of 'generic', 'avx2', 'avx512', got '" + name + "'");
    try {
      set_isa(isa);
    } catch (const std::invalid_argument& e) {
      throw py::value_error(std::string("isa: ") + e.what());
    }
  });
  m.def("get_isa", [] { return std::string(isa_name(active_isa())); });
  m.def("set_dot_products", [](py::handle on) { set_dot_products(bool_arg(on, "enabled")); },
        "Whether weights packed from now on use the CPU's dot-product instructions (VNNI, AVX512_BF16) "
        "where it has them; False runs the exact integer / widening fallbacks (tests).");
  m.def("get_dot_products", [] { return dot_products_enabled(); });
  m.def("set_num_threads", [](py::handle n) {
    set_num_threads(static_cast<int>(int_arg(n, "num_threads", 1, kMaxKernelThreads)));
  }, "Threads the kernels use, 1 to cpu_info()['max_threads'].");
  m.def("get_num_threads", [] { return num_threads(); });
  m.def("_huge_pages", [](py::handle on) { return set_huge_pages(bool_arg(on, "on")); }, py::arg("on"),
        "Test hook: whether weights packed from now on may use transparent huge pages (default True); returns the "
        "previous setting. csrc/core/layer.h.");
  m.def("_set_thread_cap", [](py::handle cap) { return set_thread_cap(static_cast<int>(int_arg(cap, "cap", 0, 1 << 30))); },
        py::arg("cap"),
        "The calling thread's kernel calls use at most cap threads (0: no cap); returns the previous cap. "
        "rnnfast.torch sets torch.get_num_threads() around its calls. csrc/core/cpu.h.");
  m.def("set_idle_spin", [](py::handle us) {
    const double v = float_arg(us, "microseconds", -HUGE_VAL, HUGE_VAL);
    if (!(v >= 0 && v <= 1e7))
      throw py::value_error("microseconds: expected a number in [0, 1e7] (up to 10 s), got " + std::string(py::str(us)));
    set_idle_spin_ns(static_cast<long>(v * 1000.0));
  }, "How long the kernels' idle worker threads spin after a call before they sleep, in microseconds (0: the "
     "calibrated default, about one wake-up). More keeps them awake for sparse latency-critical calls, at the "
     "price of a busy core for that long after every call. Also RNNFAST_IDLE_SPIN_US.");
  m.def("get_idle_spin", [] { return idle_spin_ns() / 1000.0; }, "The idle spin time in effect, in microseconds.");
  m.def("_default_thread_count", &default_thread_count, py::arg("affinity"), py::arg("online"),
        py::arg("cgroup_quota"), py::arg("mpi_local_ranks"), "The default thread count's rule (for tests).");
  m.def("_parse_cpu_max", &parse_cpu_max, py::arg("text"), "CPUs of a cgroup cpu.max line, 0 for none (for tests).");
  m.def("_simulate_backoff", &simulate_backoff, py::arg("stalled"),
        "The load backoff's choices (1: alone) for team calls that stalled or not (tests; csrc/core/team.h).");
  m.def("_team_stats", [](bool reset) {
    const TeamStats t = team_stats(reset);
    py::dict d;
    d["calls"] = t.calls;
    d["alone"] = t.alone;
    d["host"] = t.host;
    d["joins"] = t.joins;
    d["waits"] = t.waits;
    d["wait_ms"] = t.wait_ns / 1e6;
    d["max_wait_us"] = t.max_wait_ns / 1e3;
    d["wait_hist"] = std::vector<long>(t.wait_hist, t.wait_hist + 6);
    d["join_hist"] = std::vector<long>(t.join_hist, t.join_hist + 6);
    d["prewakes"] = t.prewakes;
    d["prewake_hits"] = t.prewake_hits;
    return d;
  }, py::arg("reset") = false,
        "The thread team's counters (csrc/core/team.h TeamStats), then zeroed if reset. wait_hist counts the "
        "caller's waits at phase starts by length: <1us, <10us, <100us, <1ms, <10ms, longer; join_hist our workers' "
        "joins by their delay after the post, in the same bins.");
  m.def("_set_host_openmp", [](std::uintptr_t parallel, std::uintptr_t thread_num, std::uintptr_t num_threads,
                               std::uintptr_t max_threads) {
    set_host_openmp(reinterpret_cast<void*>(parallel), reinterpret_cast<void*>(thread_num),
                    reinterpret_cast<void*>(num_threads), reinterpret_cast<void*>(max_threads));
  }, py::arg("gomp_parallel"), py::arg("omp_get_thread_num"), py::arg("omp_get_num_threads"),
        py::arg("omp_get_max_threads"),
        "Run long team calls on another library's OpenMP threads, given the addresses of its GOMP_parallel, "
        "omp_get_thread_num, omp_get_num_threads and omp_get_max_threads (rnnfast.torch registers torch's; zeros: "
        "our own team only). csrc/core/team.h.");
  m.def("set_prewake", [](py::handle on) { set_prewake(bool_arg(on, "on")); }, py::arg("on"),
        "Early wake-ups for periodic calls (default True): when kernel calls come at a steady period (2-200 ms, e.g. "
        "a server answering every 20 ms), the idle worker threads wake 1/8 period before the next is due and spin "
        "through it, instead of being woken late by it. About a quarter period of one core per call while the calls "
        "stay periodic; False: never.");
  m.def("get_prewake", [] { return prewake(); }, "Whether early wake-ups for periodic calls are on.");
  m.def("_fail_next_calibrations", &fail_next_calibrations, py::arg("n"),
        "Test hook: the thread team's next n calibrations time no worker (csrc/core/team.h).");
  m.def("_alternate_tile_order", [](py::handle on) { return set_alternate_tile_order(bool_arg(on, "on")); }, py::arg("on"),
        "Test hook: whether time loops reverse their tiles' order every other step (default True; the same tiles, "
        "so the same results). Returns the previous setting. csrc/core/kernels/phases.h.");
  m.def("_team_testing", &set_team_testing, py::arg("force_threads") = 0, py::arg("join_delay_us") = 0,
        py::arg("tile_delay_us") = 0, "Test hooks of the thread team (csrc/core/team.h); all 0 turns them off. Returns the workers' joins so far.");

  py::class_<PackedWeights, std::shared_ptr<PackedWeights>> packed_weights(m, "PackedWeights",
      "One layer direction's weights packed for the active instruction set.");
  checked_tp_new(packed_weights);
  packed_weights.def(py::init([](py::handle cell_o, py::handle w_ih_o, py::handle w_hh_o, py::handle b_ih_o,
                       py::handle b_hh_o, py::handle with_backward_o, py::handle weights_o, py::handle step_o,
                       py::handle peephole_o, py::handle linear_before_reset_o, py::handle w_hr_o,
                       py::handle ln_o) {
             const CellKind cell = cell_from_name(cell_o);
             // With a projection w_hr (P, H) (LSTM proj_size), w_hh is (G*H, P).
             const bool proj = !w_hr_o.is_none();
             const long H = proj ? dims_arg(w_hr_o, "w_hr", 2, "(proj_size, H)")[1]
                                 : dims_arg(w_hh_o, "w_hh", 2, "(G*H, H)")[1];
             const long P = proj ? dims_arg(w_hr_o, "w_hr", 2, "(proj_size, H)")[0] : H;
             const long I = dims_arg(w_ih_o, "w_ih", 2, "(G*H, I)")[1];
             const long G = gate_count(cell);
             if (proj && cell != CellKind::lstm) throw py::value_error("w_hr: a projection needs cell 'lstm'");
             const std::vector<long> whs = dims_arg(w_hh_o, "w_hh", 2, "(G*H, H)");
             if (!proj && cell == CellKind::lstm && whs[0] % G == 0 && whs[0] / G > whs[1])
               throw py::value_error("w_hh: expected shape " + shape_str({G * whs[1], whs[1]}) + ", got " +
                                     shape_str(whs) + " (a projected LSTM's W_hh (G*H, proj_size) needs w_hr)");
             if (proj && (P < 1 || P >= H))
               throw py::value_error("w_hr: expected proj_size (rows) in [1, hidden_size=" + std::to_string(H) +
                                     "), got " + std::to_string(P));
             std::vector<py::object> keep;
             auto wi = checked<float>(w_ih_o, "w_ih", {G * H, I});
             auto wh = checked<float>(w_hh_o, "w_hh", {G * H, P});
             const float* whr = optional_ptr<float>(w_hr_o, "w_hr", {P, H}, keep);
             if (!ln_o.is_none() && (cell != CellKind::lstm || proj))
               throw py::value_error("layer_norm: needs cell 'lstm' without a projection (w_hr)");
             const float* ln = optional_ptr<float>(ln_o, "layer_norm", {18 * H}, keep);
             const float* bi = optional_ptr<float>(b_ih_o, "b_ih", {G * H}, keep);
             const float* bh = optional_ptr<float>(b_hh_o, "b_hh", {G * H}, keep);
             const bool with_backward = bool_arg(with_backward_o, "with_backward"), step = bool_arg(step_o, "step");
             CellVariant variant;
             variant.reset_before = !bool_arg(linear_before_reset_o, "linear_before_reset");
             if (variant.reset_before && cell != CellKind::gru)
               throw py::value_error("linear_before_reset: False is a GRU variant, got cell '" +
                                     std::string(cell_name(cell)) + "'");
             if (!peephole_o.is_none() && cell != CellKind::lstm)
               throw py::value_error("peephole: only an LSTM has peephole weights, got cell '" +
                                     std::string(cell_name(cell)) + "'");
             const float* wp = optional_ptr<float>(peephole_o, "peephole", {3, H}, keep);
             variant.peephole = wp != nullptr;
             const std::string weights = str_arg(weights_o, "weights");
             WeightFormat format;
             if (!weight_format_from_name(weights, &format))
               throw py::value_error("weights: expected 'float32', 'bfloat16' or 'int8', got '" + weights + "'");
             if (ln && format != WeightFormat::float32)
               throw py::value_error("weights: layer_norm needs 'float32'");
             const int Ii = int_size(I, "w_ih.shape[1]"), Hi = int_size(H, "w_hh.shape[1]");
             std::shared_ptr<PackedWeights> p;
             const Isa isa = active_isa();
             run_released([&] {
               p = std::make_shared<PackedWeights>(cell, Ii, Hi, wi.data(), wh.data(), bi, bh, with_backward, isa,
                                                   format, step, variant, wp, proj ? static_cast<int>(P) : 0, whr, ln);
             });
             return p;
           }),
           py::arg("cell"), py::arg("w_ih"), py::arg("w_hh"), py::arg("b_ih"), py::arg("b_hh"),
           py::arg("with_backward") = false, py::arg("weights") = "float32", py::arg("step") = false,
           py::arg("peephole") = py::none(), py::arg("linear_before_reset") = true, py::arg("w_hr") = py::none(),
           py::arg("layer_norm") = py::none())
      .def_property_readonly("peephole", [](const PackedWeights& p) { return p.variant().peephole; })
      .def_property_readonly("linear_before_reset", [](const PackedWeights& p) { return !p.variant().reset_before; })
      .def_property_readonly("weights", [](const PackedWeights& p) { return std::string(weight_format_name(p.format())); })
      .def_property_readonly("kernel", [](const PackedWeights& p) { return weight_kernel_name(p.isa(), p.format(), p.dot_products()); },
                             "Which products the forward runs: e.g. 'avx512 int8 vnni', 'avx2 int8 exact'.")
      .def_property_readonly("step", &PackedWeights::step_weights)
      .def_property_readonly("isa", [](const PackedWeights& p) { return std::string(isa_name(p.isa())); })
      .def_property_readonly("cell", [](const PackedWeights& p) { return std::string(cell_name(p.cell())); })
      .def_property_readonly("input_size", &PackedWeights::input_size)
      .def_property_readonly("hidden_size", &PackedWeights::hidden_size)
      .def_property_readonly("proj_size", &PackedWeights::proj_size)
      .def_property_readonly("layer_norm", &PackedWeights::layer_norm)
      .def_property_readonly("has_backward", &PackedWeights::has_backward);

  // A unique_ptr holder: pybind11 then allocates nothing after the object, so running out of memory
  // while making one is a MemoryError (with a shared_ptr holder it could abort or free twice).
  py::class_<TrainCache> train_cache(m, "TrainCache", "Activations a training forward keeps for its backward.");
  checked_tp_new(train_cache);
  train_cache.def(py::init<>()).def_property_readonly("consumed", [](const TrainCache& c) { return c.consumed; });

  m.def("layer_forward",
        [](py::handle w_o, py::handle x_o, py::handle lengths_o, py::handle reverse_o, py::handle h0_o,
           py::handle c0_o, py::handle y_o, py::handle y_offset_o, py::handle hn_o, py::handle cn_o,
           py::handle cache_o) {
          const PackedWeights& w = packed_arg(w_o, "packed");
          const std::vector<long> xs = dims_arg(x_o, "x", 3, "(T, B, I)");
          const long T = int_size(xs[0], "x.shape[0]"), B = int_size(xs[1], "x.shape[1]"), H = w.hidden_size();
          const long P = w.state_size();  // columns of h and y (proj_size, or H)
          const bool reverse = bool_arg(reverse_o, "reverse");
          TrainCache* cache = cache_arg(cache_o, "cache");
          auto xa = checked<float>(x_o, "x", {T, B, w.input_size()});
          const long ldy = dims_arg(y_o, "y", 3, "(T, B, ldy)")[2];
          const long y_offset = int_arg(y_offset_o, "y_offset", 0, ldy - P);
          auto ya = checked<float>(y_o, "y", {T, B, ldy}, true);
          no_overlap(y_o, "y", x_o, "x");
          std::vector<py::object> keep;
          const int* lens = optional_ptr<int>(lengths_o, "lengths", {B}, keep);
          const float* h0 = optional_ptr<float>(h0_o, "h0", {B, P}, keep);
          const float* c0 = optional_ptr<float>(c0_o, "c0", {B, H}, keep);
          auto hn = checked<float>(hn_o, "hn", {B, P}, true);
          float* cn = optional_out<float>(cn_o, "cn", {B, H}, keep);
          if (w.cell() == CellKind::lstm && !cn) throw py::value_error("cn: required for an LSTM");
          std::unique_ptr<InUse> busy(cache ? new InUse(cache, "cache (a TrainCache)") : nullptr);
          run_released([&] {
            layer_forward(w, T, B, xa.data(), lens, reverse, h0, c0, ya.mutable_data() + y_offset, ldy,
                          hn.mutable_data(), cn, cache);
          });
        },
        py::arg("packed"), py::arg("x"), py::arg("lengths"), py::arg("reverse"), py::arg("h0"), py::arg("c0"),
        py::arg("y"), py::arg("y_offset"), py::arg("hn"), py::arg("cn"), py::arg("cache"));

  m.def("layer_backward",
        [](py::handle w_o, py::handle cache_o, py::handle x_o, py::handle dy_o, py::handle dy_offset_o,
           py::handle dhn_o, py::handle dcn_o, py::handle dx_o, py::handle dx_accumulate_o, py::handle dh0_o,
           py::handle dc0_o, py::handle gwi_o, py::handle gwh_o, py::handle gbi_o, py::handle gbh_o,
           py::handle gwp_o, py::handle gwr_o, py::handle gln_o) {
          const PackedWeights& w = packed_arg(w_o, "packed");
          TrainCache& cache = object_arg<TrainCache>(cache_o, "cache", "TrainCache");
          InUse busy(&cache, "cache (a TrainCache)");
          if (cache.consumed)
            throw py::value_error("backward: no training forward to differentiate (run forward in train mode; "
                                  "backward runs once per forward)");
          const long T = cache.T, B = cache.B, H = w.hidden_size(), I = w.input_size(), G = gate_count(w.cell());
          const long P = w.state_size();
          const bool dx_accumulate = bool_arg(dx_accumulate_o, "dx_accumulate");
          auto x = checked<float>(x_o, "x", {T, B, I});
          const long ldy = dims_arg(dy_o, "dy", 3, "(T, B, ldy)")[2];
          const long dy_offset = int_arg(dy_offset_o, "dy_offset", 0, ldy - P);
          auto dya = checked<float>(dy_o, "dy", {T, B, ldy});
          std::vector<py::object> keep;
          const float* dhn = optional_ptr<float>(dhn_o, "dhn", {B, P}, keep);
          const float* dcn = optional_ptr<float>(dcn_o, "dcn", {B, H}, keep);
          auto dx = checked<float>(dx_o, "dx", {T, B, I}, true);
          no_overlap(dx_o, "dx", dy_o, "dy");
          no_overlap(dx_o, "dx", x_o, "x");
          auto dh0 = checked<float>(dh0_o, "dh0", {B, P}, true);
          float* dc0 = optional_out<float>(dc0_o, "dc0", {B, H}, keep);
          auto gwi = checked<float>(gwi_o, "grad_w_ih", {G * H, I}, true);
          auto gwh = checked<float>(gwh_o, "grad_w_hh", {G * H, P}, true);
          float* gbi = optional_out<float>(gbi_o, "grad_b_ih", {G * H}, keep);
          float* gbh = optional_out<float>(gbh_o, "grad_b_hh", {G * H}, keep);
          float* gwp = peephole_grad_arg(w, gwp_o, keep);
          float* gwr = w.proj_size() ? optional_out<float>(gwr_o, "grad_w_hr", {P, H}, keep) : nullptr;
          if (w.proj_size() && !gwr) throw py::value_error("grad_w_hr: required with a projection (proj_size > 0)");
          float* gln = w.layer_norm() ? optional_out<float>(gln_o, "grad_layer_norm", {18 * H}, keep) : nullptr;
          if (w.layer_norm() && !gln) throw py::value_error("grad_layer_norm: required with layer norm");
          run_released([&] {
            layer_backward(w, cache, x.data(), dya.data() + dy_offset, ldy, dhn, dcn, dx.mutable_data(),
                           dx_accumulate, dh0.mutable_data(), dc0, gwi.mutable_data(), gwh.mutable_data(), gbi, gbh,
                           gwp, gwr, gln);
          });
        },
        py::arg("packed"), py::arg("cache"), py::arg("x"), py::arg("dy"), py::arg("dy_offset"), py::arg("dhn"),
        py::arg("dcn"), py::arg("dx"), py::arg("dx_accumulate"), py::arg("dh0"), py::arg("dc0"),
        py::arg("grad_w_ih"), py::arg("grad_w_hh"), py::arg("grad_b_ih"), py::arg("grad_b_hh"),
        py::arg("grad_w_p") = py::none(), py::arg("grad_w_hr") = py::none(), py::arg("grad_layer_norm") = py::none());

  m.def("layer_forward_pair",
        [](py::handle w0_o, py::handle w1_o, py::handle x_o, py::handle lengths_o, py::handle h0_o,
           py::handle c0_o, py::handle y_o, py::handle hn_o, py::handle cn_o, py::handle cache0_o,
           py::handle cache1_o) {
          const PackedWeights &w0 = packed_arg(w0_o, "packed0"), &w1 = packed_arg(w1_o, "packed1");
          const std::vector<long> xs = dims_arg(x_o, "x", 3, "(T, B, I)");
          const long T = int_size(xs[0], "x.shape[0]"), B = int_size(xs[1], "x.shape[1]"), H = w0.hidden_size();
          const long P = w0.state_size();
          TrainCache *cache0 = cache_arg(cache0_o, "cache0"), *cache1 = cache_arg(cache1_o, "cache1");
          if ((cache0 == nullptr) != (cache1 == nullptr)) throw py::value_error("cache0, cache1: give both or neither");
          if (cache0 && cache0 == cache1) throw py::value_error("cache1: must be another TrainCache than cache0");
          if (w0.cell() != w1.cell()) throw py::value_error("packed1: both directions must use the same cell");
          if (w0.input_size() != w1.input_size() || w0.hidden_size() != w1.hidden_size() ||
              w0.state_size() != w1.state_size())
            throw py::value_error("packed1: both directions must have the same input, hidden and projection sizes");
          auto xa = checked<float>(x_o, "x", {T, B, w0.input_size()});
          auto y = checked<float>(y_o, "y", {T, B, 2 * P}, true);
          no_overlap(y_o, "y", x_o, "x");
          std::vector<py::object> keep;
          const int* lens = optional_ptr<int>(lengths_o, "lengths", {B}, keep);
          const float* h0 = optional_ptr<float>(h0_o, "h0", {2, B, P}, keep);
          const float* c0 = optional_ptr<float>(c0_o, "c0", {2, B, H}, keep);
          auto hn = checked<float>(hn_o, "hn", {2, B, P}, true);
          float* cn = optional_out<float>(cn_o, "cn", {2, B, H}, keep);
          if (w0.cell() == CellKind::lstm && !cn) throw py::value_error("cn: required for an LSTM");
          const long s = B * H, sp = B * P;
          DirectionForward d[2];
          for (int k = 0; k < 2; ++k)
            d[k] = {k ? &w1 : &w0, direction_rows(h0, sp, k), direction_rows(c0, s, k), y.mutable_data() + k * P,
                    direction_rows(hn.mutable_data(), sp, k), direction_rows(cn, s, k), k ? cache1 : cache0};
          std::unique_ptr<InUse> busy0(cache0 ? new InUse(cache0, "cache0 (a TrainCache)") : nullptr);
          std::unique_ptr<InUse> busy1(cache1 ? new InUse(cache1, "cache1 (a TrainCache)") : nullptr);
          run_released([&] { layer_forward_pair(d[0], d[1], T, B, xa.data(), lens, 2 * P); });
        },
        py::arg("packed0"), py::arg("packed1"), py::arg("x"), py::arg("lengths"), py::arg("h0"), py::arg("c0"),
        py::arg("y"), py::arg("hn"), py::arg("cn"), py::arg("cache0"), py::arg("cache1"),
        "Both directions of a bidirectional layer at once: h0, hn are (2, B, P), c0, cn (2, B, H), y is (T, B, 2P)\n"
        "(P: the proj_size, or H).");

  m.def("layer_backward_pair",
        [](py::handle w0_o, py::handle w1_o, py::handle cache0_o, py::handle cache1_o, py::handle x_o,
           py::handle dy_o, py::handle dhn_o, py::handle dcn_o, py::handle dx_o, py::handle dh0_o, py::handle dc0_o,
           py::handle grads0_o, py::handle grads1_o) {
          const PackedWeights &w0 = packed_arg(w0_o, "packed0"), &w1 = packed_arg(w1_o, "packed1");
          TrainCache& cache0 = object_arg<TrainCache>(cache0_o, "cache0", "TrainCache");
          TrainCache& cache1 = object_arg<TrainCache>(cache1_o, "cache1", "TrainCache");
          if (&cache0 == &cache1) throw py::value_error("cache1: must be another TrainCache than cache0");
          InUse busy0(&cache0, "cache0 (a TrainCache)"), busy1(&cache1, "cache1 (a TrainCache)");
          if (cache0.consumed || cache1.consumed)
            throw py::value_error("backward: no training forward to differentiate (run forward in train mode; "
                                  "backward runs once per forward)");
          if (w0.cell() != w1.cell() || w0.input_size() != w1.input_size() || w0.hidden_size() != w1.hidden_size() ||
              w0.state_size() != w1.state_size())
            throw py::value_error("packed1: both directions must have the same cell, input, hidden and projection sizes");
          const long T = cache0.T, B = cache0.B, H = w0.hidden_size(), I = w0.input_size(), G = gate_count(w0.cell());
          const long P = w0.state_size();
          const bool proj = w0.proj_size() != 0, ln = w0.layer_norm();
          if (ln != w1.layer_norm()) throw py::value_error("packed1: both directions must have layer norm or neither");
          auto x = checked<float>(x_o, "x", {T, B, I});
          auto dy = checked<float>(dy_o, "dy", {T, B, 2 * P});
          std::vector<py::object> keep;
          const float* dhn = optional_ptr<float>(dhn_o, "dhn", {2, B, P}, keep);
          const float* dcn = optional_ptr<float>(dcn_o, "dcn", {2, B, H}, keep);
          auto dx = checked<float>(dx_o, "dx", {T, B, I}, true);
          no_overlap(dx_o, "dx", dy_o, "dy");
          no_overlap(dx_o, "dx", x_o, "x");
          auto dh0 = checked<float>(dh0_o, "dh0", {2, B, P}, true);
          float* dc0 = optional_out<float>(dc0_o, "dc0", {2, B, H}, keep);
          float* g[2][6];
          for (int d = 0; d < 2; ++d) {
            py::sequence gd = grads_arg(d ? grads1_o : grads0_o, d ? "grads1" : "grads0", proj, ln);
            const py::object gp = gd.size() == 5 && !proj && !ln ? py::object(gd[4]) : py::object(py::none());
            g[d][5] = peephole_grad_arg(d ? w1 : w0, gp, keep);
            keep.push_back(gd);
            g[d][0] = optional_out<float>(gd[0], "grad_w_ih", {G * H, I}, keep);
            g[d][1] = optional_out<float>(gd[1], "grad_w_hh", {G * H, P}, keep);
            if (!g[d][0] || !g[d][1]) throw py::value_error("grad_w_ih, grad_w_hh: required (got None)");
            g[d][2] = optional_out<float>(gd[2], "grad_b_ih", {G * H}, keep);
            g[d][3] = optional_out<float>(gd[3], "grad_b_hh", {G * H}, keep);
            g[d][4] = proj ? optional_out<float>(gd[4], "grad_w_hr", {P, H}, keep)
                           : ln ? optional_out<float>(gd[4], "grad_layer_norm", {18 * H}, keep) : nullptr;
            if ((proj || ln) && !g[d][4])
              throw py::value_error(std::string(proj ? "grad_w_hr" : "grad_layer_norm") + ": required (got None)");
          }
          const long s = B * H, sp = B * P;
          DirectionBackward d[2];
          for (int k = 0; k < 2; ++k)
            d[k] = {k ? &w1 : &w0, k ? &cache1 : &cache0, dy.data() + k * P, direction_rows(dhn, sp, k),
                    direction_rows(dcn, s, k), direction_rows(dh0.mutable_data(), sp, k), direction_rows(dc0, s, k),
                    g[k][0], g[k][1], g[k][2], g[k][3], g[k][5], proj ? g[k][4] : nullptr, ln ? g[k][4] : nullptr};
          run_released([&] { layer_backward_pair(d[0], d[1], x.data(), 2 * P, dx.mutable_data()); });
        },
        py::arg("packed0"), py::arg("packed1"), py::arg("cache0"), py::arg("cache1"), py::arg("x"), py::arg("dy"),
        py::arg("dhn"), py::arg("dcn"), py::arg("dx"), py::arg("dh0"), py::arg("dc0"), py::arg("grads0"),
        py::arg("grads1"),
        "Backward of layer_forward_pair: dx (T, B, I) is written with both directions' sum; grads are added to.");

  py::class_<Stream> stream(m, "Stream", "Step-by-step inference through a stack of unidirectional layers.");
  checked_tp_new(stream);
  stream.def(py::init([](py::handle layers_o, py::handle batch_o, bool residual) {
             if (!py::isinstance<py::list>(layers_o) && !py::isinstance<py::tuple>(layers_o))
               throw py::type_error("layers: expected a list of PackedWeights, got " + describe(layers_o));
             std::vector<std::shared_ptr<const PackedWeights>> cl;
             for (py::handle l : layers_o) {
               packed_arg(l, "layers[i]");
               cl.push_back(l.cast<std::shared_ptr<PackedWeights>>());
             }
             const int batch = static_cast<int>(int_arg(batch_o, "batch_size", 1, INT_MAX));
             try {
               return new Stream(std::move(cl), batch, residual);
             } catch (const std::invalid_argument& e) {
               throw py::value_error(e.what());
             }
           }),
           py::arg("layers"), py::arg("batch_size"), py::arg("residual") = false)
      .def("step",
           [](Stream& s, py::handle x_o, py::handle out_o) -> py::object {
             const long B = s.batch(), I = s.input_size(), H = s.output_size();
             // Array-likes (lists, tuples) are converted; the converted array lives as long as x does.
             py::array x = py::array::ensure(x_o);
             if (!x)
               throw py::type_error("x: expected a float array of shape " + shape_str({B, I}) + ", got " + describe(x_o));
             const bool unbatched = x.ndim() == 1;
             if (x.dtype().kind() != 'f')
               throw py::type_error("x: expected a floating-point array, got dtype " + std::string(py::str(x.dtype())));
             std::vector<long> want = unbatched ? std::vector<long>{I} : std::vector<long>{B, I};
             std::vector<long> got(x.shape(), x.shape() + x.ndim());
             if (got != want || (unbatched && B != 1))
               throw py::value_error("x: expected shape " + shape_str({B, I}) + (B == 1 ? " or " + shape_str({I}) : "") +
                                     ", got " + shape_str(got));
             auto xa = py::array_t<float, py::array::c_style | py::array::forcecast>::ensure(x);
             if (!xa) throw py::error_already_set();
             py::array_t<float, py::array::c_style> out;
             if (out_o.is_none()) {
               out = unbatched ? py::array_t<float, py::array::c_style>({H}) : py::array_t<float, py::array::c_style>({B, H});
             } else {
               out = checked<float>(out_o, "out", unbatched ? std::vector<long>{H} : std::vector<long>{B, H}, true);
               no_overlap(out, "out", xa, "x");
             }
             const float* xp = xa.data();
             float* op = out.mutable_data();
             InUse busy(&s, "this Stream");
             run_released([&] { s.step(xp, op); });
             return std::move(out);
           },
           py::arg("x"), py::arg("out") = py::none())
      .def("reset", [](Stream& s) {
        InUse busy(&s, "this Stream");
        s.reset();
      })
      .def_property_readonly("batch_size", &Stream::batch)
      .def_property_readonly("num_layers", &Stream::num_layers)
      .def_property_readonly("hidden_size", &Stream::hidden_size)
      .def("get_state", [](const Stream& s) -> py::object {
        InUse busy(&s, "this Stream");
        py::array_t<float> h({(long)s.num_layers(), (long)s.batch(), (long)s.output_size()});
        if (!s.has_cell_state()) {
          s.get_state(h.mutable_data(), nullptr);
          return std::move(h);
        }
        py::array_t<float> c({(long)s.num_layers(), (long)s.batch(), (long)s.hidden_size()});
        s.get_state(h.mutable_data(), c.mutable_data());
        return py::make_tuple(h, c);
      })
      .def("set_state", [](Stream& s, py::handle h_o, py::handle c_o) {
        InUse busy(&s, "this Stream");
        const std::vector<long> shape{s.num_layers(), s.batch(), s.hidden_size()};
        auto h = checked<float>(h_o, "h", {s.num_layers(), s.batch(), s.output_size()});
        std::vector<py::object> keep;
        const float* c = optional_ptr<float>(c_o, "c", shape, keep);
        if (s.has_cell_state() && !c) throw py::value_error("c: an LSTM stream needs the cell state too");
        s.set_state(h.data(), c);
      }, py::arg("h"), py::arg("c") = py::none());

  m.def("gemm", [](py::handle a_o, py::handle b_o, py::handle c_o, py::handle accumulate_o, py::handle b_transposed_o) {
    const std::vector<long> as = dims_arg(a_o, "a", 2, "(M, K)"), bs = dims_arg(b_o, "b", 2, "(K, N) or (N, K)");
    const bool accumulate = bool_arg(accumulate_o, "accumulate"), b_transposed = bool_arg(b_transposed_o, "b_transposed");
    const long M = int_size(as[0], "a.shape[0]"), K = int_size(as[1], "a.shape[1]");
    const long N = int_size(b_transposed ? bs[0] : bs[1], "N");
    auto A = checked<float>(a_o, "a", {M, K});
    auto B = checked<float>(b_o, "b", b_transposed ? std::vector<long>{N, K} : std::vector<long>{K, N});
    auto C = checked<float>(c_o, "c", {M, N}, true);
    no_overlap(c_o, "c", a_o, "a");
    no_overlap(c_o, "c", b_o, "b");
    const IsaKernels& k = kernels_for(active_isa());
    // Small products are not worth waking a second thread for.
    const int threads = static_cast<double>(M) * N * K < 4.0e6 ? 1 : num_threads();
    run_released([&] {
      AlignedBuffer work(k.gemm_work_size(K, N));
      k.gemm(M, N, K, A.data(), K, B.data(), b_transposed ? 1 : N, b_transposed ? K : 1, C.mutable_data(), N,
             accumulate, work.data(), threads);
    });
  }, py::arg("a"), py::arg("b"), py::arg("c"), py::arg("accumulate") = false, py::arg("b_transposed") = false,
  "c (+)= a @ b (or a @ b.T with b_transposed) with the kernels' packed GEMM; deterministic for any thread count.");

  m.def("_int8_products", [](py::handle a_o, py::handle q_o) {
    const std::vector<long> as = dims_arg(a_o, "a", 2, "(M, K)"), qs = dims_arg(q_o, "q", 2, "(N, K)");
    const long M = int_size(as[0], "a.shape[0]"), K = int_size(as[1], "a.shape[1]"), N = int_size(qs[0], "q.shape[0]");
    if (K > kInt8MaxK) throw py::value_error("a: expected at most " + std::to_string(kInt8MaxK) + " columns, got " + std::to_string(K));
    auto A = checked<float>(a_o, "a", {M, K});
    auto Q = checked<int8_t>(q_o, "q", {N, K});
    py::array_t<int32_t> C({M, N});
    py::array_t<float> scale(M);
    const Isa isa = active_isa();
    const IsaKernels* k = dot_products_for(isa, WeightFormat::int8) ? dot_kernels_for(isa) : &kernels_for(isa);
    run_released([&] { k->int8_products(static_cast<int>(M), static_cast<int>(N), static_cast<int>(K), A.data(), Q.data(),
                                        C.mutable_data(), scale.mutable_data()); });
    return py::make_tuple(C, scale);
  }, py::arg("a"), py::arg("q"),
  "Test hook: the int8 forward's exact products on the active ISA (its dot-product twin when enabled): "
  "(Σ_k q(a)(m, k) q(n, k) as int32 (M, N), a's row scales), a quantized per row as the forward does.");

  m.def("reference_forward", [](py::handle cell, py::handle x, py::handle lengths, py::handle reverse_o,
                                py::handle w_ih, py::handle w_hh, py::handle b_ih, py::handle b_hh, py::handle h0,
                                py::handle c0, py::handle peephole, py::handle lbr, py::handle w_hr, py::handle ln) {
    const bool reverse = bool_arg(reverse_o, "reverse");
    if (is_float64(x))
      return reference_forward_py<double>(cell, x, lengths, reverse, w_ih, w_hh, b_ih, b_hh, h0, c0, peephole, lbr,
                                          w_hr, ln);
    return reference_forward_py<float>(cell, x, lengths, reverse, w_ih, w_hh, b_ih, b_hh, h0, c0, peephole, lbr, w_hr,
                                       ln);
  }, py::arg("cell"), py::arg("x"), py::arg("lengths"), py::arg("reverse"), py::arg("w_ih"), py::arg("w_hh"),
  py::arg("b_ih"), py::arg("b_hh"), py::arg("h0"), py::arg("c0"), py::arg("peephole") = py::none(),
  py::arg("linear_before_reset") = true, py::arg("w_hr") = py::none(), py::arg("ln") = py::none(),
  "Scalar reference forward (float32 or float64): returns (y, h_n, c_n). peephole: an LSTM's (3, H) p_i, p_f, "
  "p_o; linear_before_reset=False: Cho et al.'s GRU; w_hr: the LSTM projection; ln (18H): the layer-normalised "
  "LSTM's gains and biases.");
  m.def("reference_backward", [](py::handle cell, py::handle x, py::handle lengths, py::handle reverse_o,
                                 py::handle w_ih, py::handle w_hh, py::handle b_ih, py::handle b_hh, py::handle h0,
                                 py::handle c0, py::handle dy, py::handle dhn, py::handle dcn, py::handle peephole,
                                 py::handle lbr, py::handle w_hr, py::handle ln) {
    const bool reverse = bool_arg(reverse_o, "reverse");
    if (is_float64(x))
      return reference_backward_py<double>(cell, x, lengths, reverse, w_ih, w_hh, b_ih, b_hh, h0, c0, dy, dhn, dcn,
                                           peephole, lbr, w_hr, ln);
    return reference_backward_py<float>(cell, x, lengths, reverse, w_ih, w_hh, b_ih, b_hh, h0, c0, dy, dhn, dcn,
                                        peephole, lbr, w_hr, ln);
  }, py::arg("cell"), py::arg("x"), py::arg("lengths"), py::arg("reverse"), py::arg("w_ih"), py::arg("w_hh"),
  py::arg("b_ih"), py::arg("b_hh"), py::arg("h0"), py::arg("c0"), py::arg("dy"), py::arg("dhn"), py::arg("dcn"),
  py::arg("peephole") = py::none(), py::arg("linear_before_reset") = true, py::arg("w_hr") = py::none(),
  py::arg("ln") = py::none(),
  "Scalar reference backward: dict of dx, dh0, dc0 and parameter gradients (w_p for peepholes, w_hr and ln for "
  "those options).");
}
