// train_step.cpp -- one SGD step of the reference CNN on a batch, in the policy's formats.
//
// Network: conv 12x3x3 valid (+bias) -> ReLU -> maxpool 2x2 (ties: the first maximum in
// row-major order) -> dense 2028->10 (+bias). Softmax and the cross-entropy gradient run on
// the host in float64 (fxemu.nn.softmax_xent), as in every fxemu backend; dlogits arrive
// rounded into the backward grad format.
//
// Roundings, exactly those of fxemu's emulated backend (fxemu/backends/emulated.py):
//   forward   wq = R_fw.weight(W); z = Mac_conv(x, wq); z1 = R_activation(z + b)
//             a1 = max(z1, 0); h = maxpool(a1); logits = R_activation(Mac_dense(h, wq) + b)
//   backward  g = dlogits (grad); dh = R_grad(Mac_dense_dx over c = 0..9 of g * R_bw.weight(W))
//             dW = R_grad(Mac_dense_dw over the batch n = 0..N-1 of g * h); db likewise of g * 1
//             dz = ReLU'(z1) * maxpool_backward(dh)   (selection: no rounding)
//             dWc = R_grad(Mac_conv_dw over (n, i, j) row-major of dz * x); dbc of dz * 1
//   update    W = R_master(W - lr * dW): product and difference exact, one rounding
// Every reduction runs in the order of its Mac (Reducer: sequential, pairwise, chunk:N).
// The gradients use the weights before the update (dense dX runs before the dense update).
#include "train_step.hpp"

#include <string.h>

#include "fxemu_policy.h"

using namespace fxemu;

typedef Reducer<conv_mac_t, FXEMU_CONV_ORDER, FXEMU_CONV_CHUNK> conv_red_t;
typedef Reducer<dense_mac_t, FXEMU_DENSE_ORDER, FXEMU_DENSE_CHUNK> dense_red_t;
typedef Reducer<dense_dw_mac_t, FXEMU_DENSE_DW_ORDER, FXEMU_DENSE_DW_CHUNK> dense_dw_red_t;
typedef Reducer<dense_dx_mac_t, FXEMU_DENSE_DX_ORDER, FXEMU_DENSE_DX_CHUNK> dense_dx_red_t;
typedef Reducer<conv_dw_mac_t, FXEMU_CONV_DW_ORDER, FXEMU_CONV_DW_CHUNK> conv_dw_red_t;

// Operands as each Mac reads them (widened once: see FloatMac::operand).
typedef conv_mac_t::operand<in_t>::type conv_x_t;
typedef conv_mac_t::operand<fw_t>::type conv_w_t;
typedef dense_mac_t::operand<act_t>::type dense_h_t;
typedef dense_mac_t::operand<fw_t>::type dense_w_t;
typedef dense_dx_mac_t::operand<grad_t>::type dx_g_t;
typedef dense_dx_mac_t::operand<bw_t>::type dx_w_t;
typedef dense_dw_mac_t::operand<grad_t>::type dw_g_t;
typedef dense_dw_mac_t::operand<act_t>::type dw_h_t;
typedef conv_dw_mac_t::operand<grad_t>::type cdw_g_t;
typedef conv_dw_mac_t::operand<in_t>::type cdw_x_t;

static const int NW = FXEMU_FILTERS * FXEMU_KERNEL * FXEMU_KERNEL;  // 108
static const int NZ = FXEMU_FILTERS * FXEMU_CONV_OUT * FXEMU_CONV_OUT;  // 8112

// The first maximum of each 2x2 window of relu(z1) in row-major order (a NaN counts as the
// maximum, the first NaN wins, as numpy.argmax decides); writes h and the index 0..3.
static void pool(const act_t z1[NZ], act_t h[FXEMU_FLAT], int arg[FXEMU_FLAT]) {
POOL:
  for (int o = 0; o < FXEMU_FLAT; ++o) {
#pragma HLS PIPELINE II = 1
    const int f = o / (FXEMU_POOLED * FXEMU_POOLED), y = (o / FXEMU_POOLED) % FXEMU_POOLED,
              x = o % FXEMU_POOLED;
    const int base = (f * FXEMU_CONV_OUT + 2 * y) * FXEMU_CONV_OUT + 2 * x;
    act_t best = relu(z1[base]);
    int bi = 0;
    for (int k = 1; k < 4; ++k) {
      act_t v = relu(z1[base + (k / 2) * FXEMU_CONV_OUT + (k % 2)]);
      if ((v > best) || (is_nan(v) && !is_nan(best))) {
        best = v;
        bi = k;
      }
    }
    h[o] = best;
    arg[o] = bi;
  }
}

static void forward(uint32_t n, const uint64_t *x, const uint64_t *params, uint64_t *logits,
                    uint64_t *cache) {
  static conv_w_t cw[NW];
  static dense_w_t dw[FXEMU_CLASSES * FXEMU_FLAT];
  static fw_t cb[FXEMU_FILTERS], db[FXEMU_CLASSES];
  static conv_x_t xs[FXEMU_IMAGE_WORDS];
  static dense_h_t hw[FXEMU_FLAT];
  static act_t z1[NZ], h[FXEMU_FLAT];
  static int arg[FXEMU_FLAT];
WEIGHTS:
  for (int i = 0; i < NW; ++i)
    cw[i] = conv_mac_t::widen(convert<fw_t>(load<master_t>(params, FXEMU_CONV_W_OFFSET + i)));
  for (int i = 0; i < FXEMU_FILTERS; ++i)
    cb[i] = convert<fw_t>(load<master_t>(params, FXEMU_CONV_B_OFFSET + i));
  for (int i = 0; i < FXEMU_CLASSES * FXEMU_FLAT; ++i) {
#pragma HLS PIPELINE II = 1
    dw[i] = dense_mac_t::widen(convert<fw_t>(load<master_t>(params, FXEMU_DENSE_W_OFFSET + i)));
  }
  for (int i = 0; i < FXEMU_CLASSES; ++i)
    db[i] = convert<fw_t>(load<master_t>(params, FXEMU_DENSE_B_OFFSET + i));

SAMPLES:
  for (uint32_t s = 0; s < n; ++s) {
#pragma HLS LOOP_TRIPCOUNT min = 1 max = 256
    uint64_t *c = cache + (long)s * FXEMU_CACHE_WORDS_PER_SAMPLE;
  READ_X:
    for (int i = 0; i < FXEMU_IMAGE_WORDS; ++i) {
#pragma HLS PIPELINE II = 1
      const uint64_t code = x[(long)s * FXEMU_IMAGE_WORDS + i];
      c[FXEMU_CACHE_X_OFFSET + i] = code;
      xs[i] = conv_mac_t::widen(load<in_t>(x, (long)s * FXEMU_IMAGE_WORDS + i));
    }
  CONV:
    for (int o = 0; o < NZ; ++o) {
      const int f = o / (FXEMU_CONV_OUT * FXEMU_CONV_OUT);
      const int i = (o / FXEMU_CONV_OUT) % FXEMU_CONV_OUT, j = o % FXEMU_CONV_OUT;
      conv_red_t r;
      r.reset();
    CONV_K:  // k = kh * 3 + kw (one input channel)
      for (int k = 0; k < FXEMU_KERNEL * FXEMU_KERNEL; ++k) {
#pragma HLS PIPELINE II = 1
        const int kh = k / FXEMU_KERNEL, kw = k % FXEMU_KERNEL;
        r.push(conv_mac_t::product(xs[(i + kh) * FXEMU_IMAGE + j + kw], cw[f * 9 + k]));
      }
      z1[o] = sum_round<act_t>(conv_mac_t::out(r.result()), cb[f]);
      c[FXEMU_CACHE_Z1_OFFSET + o] = to_code(z1[o]);
    }
    pool(z1, h, arg);
    for (int k = 0; k < FXEMU_FLAT; ++k) {
      c[FXEMU_CACHE_H_OFFSET + k] = to_code(h[k]);
      hw[k] = dense_mac_t::widen(h[k]);
    }
  DENSE:
    for (int cl = 0; cl < FXEMU_CLASSES; ++cl) {
      dense_red_t r;
      r.reset();
    DENSE_K:
      for (int k = 0; k < FXEMU_FLAT; ++k) {
#pragma HLS PIPELINE II = 1
        r.push(dense_mac_t::product(hw[k], dw[cl * FXEMU_FLAT + k]));
      }
      logits[(long)s * FXEMU_CLASSES + cl] =
          to_code(sum_round<act_t>(dense_mac_t::out(r.result()), db[cl]));
    }
  }
}

static void store_update(uint64_t *params, long at, const grad_t &d, const lr_t &lr) {
  const master_t w = load<master_t>(params, at);
  params[at] = to_code(sgd_update(w, d, lr));
}

static void backward_update(uint32_t n, const lr_t &lr, uint64_t *params,
                            const uint64_t *dlogits, uint64_t *cache) {
  static dx_g_t gx[FXEMU_BATCH_MAX * FXEMU_CLASSES];
  static dw_g_t gw[FXEMU_BATCH_MAX * FXEMU_CLASSES];
  static dx_w_t wb[FXEMU_CLASSES * FXEMU_FLAT];
  static dw_h_t hk[FXEMU_BATCH_MAX];
  static act_t z1[NZ], h[FXEMU_FLAT];
  static grad_t dh[FXEMU_FLAT];
  static cdw_x_t xs[FXEMU_IMAGE_WORDS];
  static int arg[FXEMU_FLAT];
  static conv_dw_red_t rw[NW], rb[FXEMU_FILTERS];
  for (long i = 0; i < (long)n * FXEMU_CLASSES; ++i) {
    const grad_t g = load<grad_t>(dlogits, i);
    gx[i] = dense_dx_mac_t::widen(g);
    gw[i] = dense_dw_mac_t::widen(g);
  }
  for (int i = 0; i < FXEMU_CLASSES * FXEMU_FLAT; ++i) {
#pragma HLS PIPELINE II = 1
    wb[i] = dense_dx_mac_t::widen(convert<bw_t>(load<master_t>(params, FXEMU_DENSE_W_OFFSET + i)));
  }

DENSE_DX:  // dh[s][k] = R_grad(sum over c = 0..9 of g[s][c] * W[c][k]), before the update
  for (uint32_t s = 0; s < n; ++s) {
#pragma HLS LOOP_TRIPCOUNT min = 1 max = 256
    uint64_t *c = cache + (long)s * FXEMU_CACHE_WORDS_PER_SAMPLE;
    for (int k = 0; k < FXEMU_FLAT; ++k) {
      dense_dx_red_t r;
      r.reset();
      for (int cl = 0; cl < FXEMU_CLASSES; ++cl) {
#pragma HLS PIPELINE II = 1
        r.push(dense_dx_mac_t::product(gx[s * FXEMU_CLASSES + cl], wb[cl * FXEMU_FLAT + k]));
      }
      c[FXEMU_CACHE_DH_OFFSET + k] = to_code(convert<grad_t>(dense_dx_mac_t::out(r.result())));
    }
  }

DENSE_DW:  // dW[c][k] = R_grad(sum over s of g[s][c] * h[s][k]); W[c][k] updated at once
  for (int k = 0; k < FXEMU_FLAT; ++k) {
    for (uint32_t s = 0; s < n; ++s) {
#pragma HLS LOOP_TRIPCOUNT min = 1 max = 256
      hk[s] = dense_dw_mac_t::widen(
          load<act_t>(cache, (long)s * FXEMU_CACHE_WORDS_PER_SAMPLE + FXEMU_CACHE_H_OFFSET + k));
    }
    for (int cl = 0; cl < FXEMU_CLASSES; ++cl) {
      dense_dw_red_t r;
      r.reset();
      for (uint32_t s = 0; s < n; ++s) {
#pragma HLS LOOP_TRIPCOUNT min = 1 max = 256
#pragma HLS PIPELINE II = 1
        r.push(dense_dw_mac_t::product(gw[s * FXEMU_CLASSES + cl], hk[s]));
      }
      store_update(params, FXEMU_DENSE_W_OFFSET + cl * FXEMU_FLAT + k,
                   convert<grad_t>(dense_dw_mac_t::out(r.result())), lr);
    }
  }
DENSE_DB:
  for (int cl = 0; cl < FXEMU_CLASSES; ++cl) {
    dense_dw_red_t r;
    r.reset();
    for (uint32_t s = 0; s < n; ++s) {
#pragma HLS LOOP_TRIPCOUNT min = 1 max = 256
      r.push(dense_dw_mac_t::product(gw[s * FXEMU_CLASSES + cl], dense_dw_mac_t::one()));
    }
    store_update(params, FXEMU_DENSE_B_OFFSET + cl,
                 convert<grad_t>(dense_dw_mac_t::out(r.result())), lr);
  }

CONV_DW:  // 108 + 12 reductions over k = (s * 26 + i) * 26 + j, side by side
  for (int q = 0; q < NW; ++q) rw[q].reset();
  for (int q = 0; q < FXEMU_FILTERS; ++q) rb[q].reset();
  for (uint32_t s = 0; s < n; ++s) {
#pragma HLS LOOP_TRIPCOUNT min = 1 max = 256
    const uint64_t *c = cache + (long)s * FXEMU_CACHE_WORDS_PER_SAMPLE;
    for (int i = 0; i < FXEMU_IMAGE_WORDS; ++i)
      xs[i] = conv_dw_mac_t::widen(load<in_t>(c, FXEMU_CACHE_X_OFFSET + i));
    for (int o = 0; o < NZ; ++o) from_code(z1[o], c[FXEMU_CACHE_Z1_OFFSET + o]);
    for (int k = 0; k < FXEMU_FLAT; ++k) from_code(dh[k], c[FXEMU_CACHE_DH_OFFSET + k]);
    pool(z1, h, arg);
  CONV_DW_Z:
    for (int o = 0; o < NZ; ++o) {
      const int f = o / (FXEMU_CONV_OUT * FXEMU_CONV_OUT);
      const int i = (o / FXEMU_CONV_OUT) % FXEMU_CONV_OUT, j = o % FXEMU_CONV_OUT;
      const int p = (f * FXEMU_POOLED + i / 2) * FXEMU_POOLED + j / 2;
      // maxpool backward (to the window's argmax) and ReLU'(z1) (0 at z1 <= 0): selection
      const cdw_g_t dz = conv_dw_mac_t::widen(
          (positive(z1[o]) && arg[p] == (i % 2) * 2 + (j % 2)) ? dh[p] : zero_value<grad_t>());
      for (int k = 0; k < FXEMU_KERNEL * FXEMU_KERNEL; ++k) {
#pragma HLS UNROLL
        const int kh = k / FXEMU_KERNEL, kw = k % FXEMU_KERNEL;
        rw[f * 9 + k].push(conv_dw_mac_t::product(dz, xs[(i + kh) * FXEMU_IMAGE + j + kw]));
      }
      rb[f].push(conv_dw_mac_t::product(dz, conv_dw_mac_t::one()));
    }
  }
  for (int q = 0; q < NW; ++q)
    store_update(params, FXEMU_CONV_W_OFFSET + q, convert<grad_t>(conv_dw_mac_t::out(rw[q].result())),
                 lr);
  for (int q = 0; q < FXEMU_FILTERS; ++q)
    store_update(params, FXEMU_CONV_B_OFFSET + q, convert<grad_t>(conv_dw_mac_t::out(rb[q].result())),
                 lr);
}

void fxemu_train_step(uint32_t op, uint32_t n, uint64_t lr_bits, const uint64_t *x,
                      uint64_t *params, uint64_t *logits, const uint64_t *dlogits,
                      uint64_t *cache) {
#pragma HLS INTERFACE m_axi port = x offset = slave bundle = gmem0 depth = 200704
#pragma HLS INTERFACE m_axi port = params offset = slave bundle = gmem1 depth = 20410
#pragma HLS INTERFACE m_axi port = logits offset = slave bundle = gmem2 depth = 2560
#pragma HLS INTERFACE m_axi port = dlogits offset = slave bundle = gmem2 depth = 2560
#pragma HLS INTERFACE m_axi port = cache offset = slave bundle = gmem3 depth = 3315712
#pragma HLS INTERFACE s_axilite port = op bundle = control
#pragma HLS INTERFACE s_axilite port = n bundle = control
#pragma HLS INTERFACE s_axilite port = lr_bits bundle = control
#pragma HLS INTERFACE s_axilite port = x bundle = control
#pragma HLS INTERFACE s_axilite port = params bundle = control
#pragma HLS INTERFACE s_axilite port = logits bundle = control
#pragma HLS INTERFACE s_axilite port = dlogits bundle = control
#pragma HLS INTERFACE s_axilite port = cache bundle = control
#pragma HLS INTERFACE s_axilite port = return bundle = control
#pragma HLS INTERFACE ap_ctrl_hs port = return
  if (n < 1 || n > FXEMU_BATCH_MAX) return;
  if (op == FXEMU_OP_FORWARD) {
    forward(n, x, params, logits, cache);
  } else if (op == FXEMU_OP_BACKWARD_UPDATE) {
    double lr_d;
    memcpy(&lr_d, &lr_bits, sizeof lr_d);
    const lr_t lr = lr_d;  // exact for lr in [2^-64, 2^8) (the host checks)
    backward_update(n, lr, params, dlogits, cache);
  }
}
