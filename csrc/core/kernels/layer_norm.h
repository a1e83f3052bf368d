// The layer-normalised LSTM (kernel_api.h, Ba, Kiros & Hinton 2016), per ISA. LN needs whole rows,
// so a step is two phases: the recurrent GEMM of (hidden block, batch rows) tiles into `rec`, then
// one tile per row: LN of its recurrent part over the 4H gates, the gates, c', LN of c' and h'.
// The input part is normalised for all of a chunk's rows at once, after its projection GEMM.
// Each row's sums run inside one tile in a fixed order, and the parameter gradients are column
// sums over the rows in row order, so results do not depend on the thread count.
#pragma once

static_assert(Lstm::U == 1, "the layer-norm kernels take one vector per gate and hidden block");

// 1 in the lanes of the units < H of the block starting at unit j0, 0 in the padding.
static inline vf unit_mask(int j0, int H) {
  if (j0 + W <= H) return splat(1.0f);  // every block but the last
  vf m = splat(0.0f);
  for (int l = 0; l < W && j0 + l < H; ++l) m[l] = 1.0f;
  return m;
}

static inline float lane_sum(vf v) {
  float s = 0.0f;
  for (int l = 0; l < W; ++l) s += v[l];
  return s;
}

// Mean and 1/std over the real units of a row of NG vectors per hidden block (NG = 4: a gate
// row, [block][gate][unit]; NG = 1: a state row).
template <int NG>
static inline void ln_stats(const float* v, int H, int nblk, float& mean, float& rstd) {
  vf s = splat(0.0f);
  for (int jb = 0; jb < nblk; ++jb) {
    const vf m = unit_mask(jb * W, H);
    for (int q = 0; q < NG; ++q) s += load(v + (jb * NG + q) * W) * m;
  }
  mean = lane_sum(s) / static_cast<float>(NG * H);
  vf s2 = splat(0.0f);
  for (int jb = 0; jb < nblk; ++jb) {
    const vf m = unit_mask(jb * W, H);
    for (int q = 0; q < NG; ++q) {
      const vf d = (load(v + (jb * NG + q) * W) - mean) * m;
      s2 += d * d;
    }
  }
  rstd = 1.0f / __builtin_sqrtf(lane_sum(s2) / static_cast<float>(NG * H) + static_cast<float>(kLayerNormEps));
}

// Backward of y = hat * gain + bias over a row (NG vectors per block): dv = rstd (dhat - mean(dhat)
// - hat mean(dhat hat)) with dhat = dy * gain; dv may be dy.
template <int NG>
static inline void ln_row_backward(const float* dy, const float* gain, const float* hat, float rstd, int H, int nblk,
                                   float* dv) {
  vf s1 = splat(0.0f), s2 = splat(0.0f);
  for (int c = 0; c < nblk * NG * W; c += W) {
    const vf dhat = load(dy + c) * load(gain + c);
    s1 += dhat;
    s2 += dhat * load(hat + c);
  }
  const float n = static_cast<float>(NG * H), md = lane_sum(s1) / n, mdh = lane_sum(s2) / n;
  for (int jb = 0; jb < nblk; ++jb) {
    const vf m = unit_mask(jb * W, H);
    for (int q = 0; q < NG; ++q) {
      const int c = (jb * NG + q) * W;
      store(dv + c, rstd * (load(dy + c) * load(gain + c) - md - load(hat + c) * mdh) * m);
    }
  }
}

constexpr int kLnRowsPerTile = 8;

// The input part of a chunk's nrows valid rows (gates, raw x W_ihᵀ): LN over the 4H gates, its
// gain and bias, and b_ih. Training keeps the normalised values and 1/std (row row_lo on).
static void ln_input_rows(const ForwardArgs& a, float* gates, long nrows, long row_lo, PhaseRunner& phases) {
  const int H = a.H, GHp = a.L.GHp, nblk = a.L.Hp / W;
  const float *gain = a.w.ln, *bias = a.w.ln + GHp;
  phases.run((nrows + kLnRowsPerTile - 1) / kLnRowsPerTile, [&](long tile) {
    const long r_end = (tile + 1) * kLnRowsPerTile < nrows ? (tile + 1) * kLnRowsPerTile : nrows;
    for (long r = tile * kLnRowsPerTile; r < r_end; ++r) {
      float* g = gates + r * GHp;
      float mean, rstd;
      ln_stats<4>(g, H, nblk, mean, rstd);
      float* hat = a.training ? a.ln.xhat + (row_lo + r) * GHp : nullptr;
      for (int jb = 0; jb < nblk; ++jb) {
        const vf m = unit_mask(jb * W, H);
        for (int q = 0; q < 4; ++q) {
          const int c = (jb * 4 + q) * W;
          const vf h = (load(g + c) - mean) * rstd * m;
          if (hat) store(hat + c, h);
          store(g + c, h * load(gain + c) + load(bias + c) + load(a.w.bx + c));
        }
      }
      if (a.training) a.ln.rstd[(row_lo + r) * 3] = rstd;
    }
  });
}

// One forward step of the n rows running at time t (hnext, cnext: where their new states go).
template <class BT>
static void ln_forward_step(const ForwardArgs& a, const BT* wh, int t, int n, const float* hprev, const float* cprev,
                            const StateTarget<float>& hnext, const StateTarget<float>& cnext, float* gates_t,
                            PhaseRunner& phases) {
  constexpr int NV = 4, MR = Lstm::MR;
  const int H = a.H, Hp = a.L.Hp, GHp = a.L.GHp, nblk = Hp / W, nmb = ceil_div(n, MR);
  const long h_panel = static_cast<long>(a.L.P) * NV * W;
  phases.run(static_cast<long>(nblk) * nmb, [&](long tile) {
    const int jb = static_cast<int>(tile / nmb), m0 = static_cast<int>(tile % nmb) * MR;
    const int mr = n - m0 < MR ? n - m0 : MR;
    vf acc[MR][NV];
    for (int m = 0; m < MR; ++m)
      for (int v = 0; v < NV; ++v) acc[m][v] = splat(0.0f);
    microkernel_rows<MR, NV, BT>(mr, H, hprev + static_cast<long>(m0) * Hp, Hp, wh + jb * h_panel, acc);
    for (int m = 0; m < mr; ++m)
      for (int v = 0; v < NV; ++v) store(a.ln.rec + static_cast<long>(m0 + m) * GHp + (jb * NV + v) * W, acc[m][v]);
  }, reverse_tiles(t, nmb, a.first_slot));
  const float *gh = a.w.ln + 2 * GHp, *bh = a.w.ln + 3 * GHp, *gc = a.w.ln + 4 * GHp, *bc = gc + Hp;
  const long row_t = a.training ? a.rows.first(t) : 0;
  phases.run(n, [&](long pl) {
    const int p = static_cast<int>(pl);
    const long row = row_t + p;
    const float* rec = a.ln.rec + static_cast<long>(p) * GHp;
    float* g = gates_t + static_cast<long>(p) * GHp;
    const float* cp = cprev + static_cast<long>(p) * Hp;
    float* cn = cnext.row(p);
    float* hhat = a.training ? a.ln.hhat + row * GHp : nullptr;
    float mean, rstd;
    ln_stats<4>(rec, H, nblk, mean, rstd);
    for (int jb = 0; jb < nblk; ++jb) {
      const vf m = unit_mask(jb * W, H);
      vf pre[4];
      for (int q = 0; q < 4; ++q) {
        const int c = (jb * 4 + q) * W;
        const vf h = (load(rec + c) - mean) * rstd * m;
        if (hhat) store(hhat + c, h);
        pre[q] = load(g + c) + h * load(gh + c) + load(bh + c) + load(a.w.bh + c);
      }
      const vf i = vsigmoid(pre[0]), f = vsigmoid(pre[1]), gg = vtanh(pre[2]), o = vsigmoid(pre[3]);
      store(cn + jb * W, (f * load(cp + jb * W) + i * gg) * m);
      const vf act[4] = {i, f, gg, o};
      for (int q = 0; q < 4; ++q) store(g + (jb * 4 + q) * W, act[q]);  // inference reads o below
    }
    float cmean, crstd;
    ln_stats<1>(cn, H, nblk, cmean, crstd);
    float* chat = a.training ? a.ln.chat + row * Hp : nullptr;
    float* hout = hnext.row(p);
    for (int jb = 0; jb < nblk; ++jb) {
      const int j0 = jb * W;
      const vf m = unit_mask(j0, H), ch = (load(cn + j0) - cmean) * crstd * m;
      if (chat) store(chat + j0, ch);
      store(hout + j0, load(g + (jb * 4 + 3) * W) * vtanh(ch * load(gc + j0) + load(bc + j0)) * m);
    }
    copy_out(a.y + (static_cast<long>(t) * a.B + a.rows.user(p)) * a.ldy, hout, H);
    if (a.training) {
      a.ln.rstd[row * 3 + 1] = rstd;
      a.ln.rstd[row * 3 + 2] = crstd;
    }
  });
}

// One backward step (as the plain LSTM's, kernels/sequence.h): first dh_pass += dG_next W_hh for
// the rows that ran at the step processed before (for a row not running at t, that completes
// dh0); then, per running row: through LN(c), the gates (dG, the gradient of the pre-activations,
// into gates) and LN of the recurrent part (its raw gradient into dgh).
static void ln_backward_step(const BackwardArgs& a, int t, int n, int nn, const float* dgh_next, long row0,
                             PhaseRunner& phases) {
  constexpr int Q = Lstm::BWD_Q, MR = Lstm::MR_BWD;
  const int H = a.H, Hp = a.L.Hp, GHp = a.L.GHp, nblk = Hp / W, nmb = ceil_div(nn, MR);
  const long dh_panel = static_cast<long>(GHp) * Q * W;
  if (nn > 0)
    phases.run(static_cast<long>(ceil_div(nblk, Q)) * nmb, [&](long tile) {
      const int sb = static_cast<int>(tile / nmb), m0 = static_cast<int>(tile % nmb) * MR;
      const int mr = nn - m0 < MR ? nn - m0 : MR;
      vf acc[MR][Q];
      recurrent_grad<MR, Q>(mr, m0, nn, GHp, dgh_next, a.w.wh_bwd + sb * dh_panel, acc);
      for (int m = 0; m < mr; ++m)
        for (int q = 0; q < Q && sb * Q + q < nblk; ++q) {
          float* pass = a.dh_pass + static_cast<long>(m0 + m) * Hp + (sb * Q + q) * W;
          store(pass, load(pass) + acc[m][q]);
        }
    }, reverse_tiles(t, nmb));
  if (n == 0) return;
  const float *gh = a.w.ln + 2 * GHp, *gc = a.w.ln + 4 * GHp, *bc = gc + Hp;
  phases.run(n, [&](long pl) {
    const int p = static_cast<int>(pl);
    const long row = row0 + p;
    float* g = a.gates + row * GHp;
    const float *hhat = a.ln.hhat + row * GHp, *chat = a.ln.chat + row * Hp, *cp = a.cs + row * Hp;
    float *dn = a.ln.dn + row * Hp, *pass = a.dh_pass + static_cast<long>(p) * Hp, *dc = a.dc + static_cast<long>(p) * Hp;
    const float* dyrow = a.dy + (static_cast<long>(t) * a.B + a.rows.user(p)) * a.ldy;
    // h = o tanh(n), n = LN(c): dn (kept for the cell gain's gradient), and do (in pass for now)
    for (int jb = 0; jb < nblk; ++jb) {
      const int j0 = jb * W, nc = H - j0 < W ? H - j0 : W;
      const vf dh = load(pass + j0) + (nc == W ? load(dyrow + j0) : load_partial(dyrow + j0, nc));
      const vf o = load(g + (jb * 4 + 3) * W), tn = vtanh(load(chat + j0) * load(gc + j0) + load(bc + j0));
      store(dn + j0, dh * o * (1.0f - tn * tn) * unit_mask(j0, H));
      store(pass + j0, dh * tn);
    }
    ln_row_backward<1>(dn, gc, chat, a.ln.rstd[row * 3 + 2], H, nblk, a.ln.rec + static_cast<long>(p) * GHp);
    const float* dcl = a.ln.rec + static_cast<long>(p) * GHp;  // c's gradient through h (scratch row)
    for (int jb = 0; jb < nblk; ++jb) {
      const int j0 = jb * W, base = jb * 4 * W;
      const vf m = unit_mask(j0, H), dct = load(dc + j0) + load(dcl + j0);
      const vf i = load(g + base), f = load(g + base + W), gg = load(g + base + 2 * W), o = load(g + base + 3 * W);
      const vf da[4] = {dct * gg * i * (1.0f - i), dct * load(cp + j0) * f * (1.0f - f), dct * i * (1.0f - gg * gg),
                        load(pass + j0) * o * (1.0f - o)};
      for (int q = 0; q < 4; ++q) store(g + base + q * W, da[q] * m);
      store(dc + j0, dct * f * m);
      store(pass + j0, splat(0.0f));  // an LSTM's h reaches the previous step only through W_hh
    }
    ln_row_backward<4>(g, gh, hhat, a.ln.rstd[row * 3 + 1], H, nblk, a.dgh + row * GHp);
  });
}

// After the backward loop: the LN gains' and biases' gradients and b_ih's, b_hh's (column sums of
// dG, dG * xhat, dG * hhat, dn * chat and dn over the rows, in row order), then xhat := the raw
// input part's gradient (LN backward per row), which the input GEMMs then read as their dG.
static void ln_after_backward(PhaseRunner& phases, int rows, const BackwardArgs& a) {
  constexpr int kCols = 64;
  const int H = a.H, GHp = a.L.GHp, Hp = a.L.Hp, nblk = Hp / W, H4 = 4 * H;
  const int gate_tiles = ceil_div(GHp, kCols), state_tiles = ceil_div(Hp, kCols);
  phases.run(gate_tiles + state_tiles, [&](long tile) {
    const bool gate = tile < gate_tiles;
    const int width = gate ? GHp : Hp, c_lo = static_cast<int>(gate ? tile : tile - gate_tiles) * kCols;
    const int c_hi = c_lo + kCols < width ? c_lo + kCols : width;
    float s0[kCols] = {}, s1[kCols] = {}, s2[kCols] = {};
    for (long r = 0; r < rows; ++r) {
      const float *d = gate ? a.gates + r * GHp : a.ln.dn + r * Hp, *h1 = gate ? a.ln.xhat + r * GHp : a.ln.chat + r * Hp;
      const float* h2 = a.ln.hhat + r * GHp;
      for (int c = c_lo; c < c_hi; ++c) {
        s0[c - c_lo] += d[c];
        s1[c - c_lo] += d[c] * h1[c];
        if (gate) s2[c - c_lo] += d[c] * h2[c];
      }
    }
    for (int c = c_lo; c < c_hi; ++c) {
      const float sum = s0[c - c_lo], dot1 = s1[c - c_lo], dot2 = s2[c - c_lo];
      if (!gate) {
        if (c < H) a.gln[4 * H4 + c] += dot1, a.gln[4 * H4 + H + c] += sum;
        continue;
      }
      const int row = torch_row(c, 4, W, H);
      if (row < 0) continue;
      a.gln[row] += dot1, a.gln[H4 + row] += sum, a.gln[2 * H4 + row] += dot2, a.gln[3 * H4 + row] += sum;
      if (a.gb_ih) a.gb_ih[row] += sum;
      if (a.gb_hh) a.gb_hh[row] += sum;
    }
  });
  phases.run((rows + kLnRowsPerTile - 1) / kLnRowsPerTile, [&](long tile) {
    const long r_end = (tile + 1) * kLnRowsPerTile < rows ? (tile + 1) * kLnRowsPerTile : rows;
    for (long r = tile * kLnRowsPerTile; r < r_end; ++r)
      ln_row_backward<4>(a.gates + r * GHp, a.w.ln, a.ln.xhat + r * GHp, a.ln.rstd[r * 3], H, nblk,
                         a.ln.xhat + r * GHp);
  });
}
