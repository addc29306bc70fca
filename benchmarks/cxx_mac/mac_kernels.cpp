// Vendor-typed multiply-accumulate loops: the C++ peer of benchmarks/bench_mac.py.
//
// Each entry point takes operands as raw bit patterns (uint64, the C-sim bridge convention: no
// rounding at the boundary), converts them to the vendor types outside the timed region, runs
// the MAC loop `repeats` times on one thread and returns the best wall time in seconds
// (steady_clock); the results of the last run are written as raw accumulator bit patterns.
//
// The types come from the fxemu formats (`fmt.hls_type`, passed by bench_mac.py as -D macros);
// the defaults below are the benchmarked ones.
//   fixed:  FXEMU_FX_IN operands, FXEMU_FX_ACC accumulator; `acc += a * b` (the product is exact;
//           the sum is assigned, i.e. quantized and overflow-handled, into acc every step).
//   float:  FXEMU_FL_IN operands, widened exactly to the accumulator type FXEMU_FL_ACC1 or
//           FXEMU_FL_ACC2 before timing; every step is `acc = a.fma<AC_RND_CONV,false>(b, acc)`
//           (exact product, one rounding per addition, subnormals kept).
//
// Orders: chunk == 0 is sequential (k = 0..K-1); chunk = N sums chunks of N sequentially into a
// zero partial sum and adds each partial sum to the accumulator (also rounded), as fx.Mac's
// "chunk:N". conv2d is valid, stride 1, NCHW x FCKhKw, k = (c*Kh + kh)*Kw + kw.

#include <ap_fixed.h>
#include <ac_std_float.h>

#include <chrono>
#include <cstdint>
#include <vector>

#ifndef FXEMU_FX_IN
#define FXEMU_FX_IN ap_fixed<16, 8, AP_TRN, AP_WRAP, 0>
#endif
#ifndef FXEMU_FX_ACC
#define FXEMU_FX_ACC ap_fixed<32, 16, AP_TRN, AP_SAT, 0>
#endif
#ifndef FXEMU_FL_IN
#define FXEMU_FL_IN ac_std_float<16, 5>
#endif
#ifndef FXEMU_FL_ACC1
#define FXEMU_FL_ACC1 ac_std_float<16, 5>
#endif
#ifndef FXEMU_FL_ACC2
#define FXEMU_FL_ACC2 ac_std_float<32, 8>
#endif

namespace {

inline std::uint64_t low_bits(std::uint64_t v, int w) {
  return w >= 64 ? v : v & ((std::uint64_t(1) << w) - 1);
}

struct FixedOp {
  typedef FXEMU_FX_IN in_t;
  typedef FXEMU_FX_ACC acc_t;
  static in_t from_code(std::uint64_t c) {
    in_t v;
    v.range(in_t::width - 1, 0) = c;
    return v;
  }
  static acc_t zero() { return acc_t(0); }
  static void mac(acc_t &acc, const in_t &a, const in_t &b) { acc += a * b; }
  static acc_t add(const acc_t &x, const acc_t &y) { return acc_t(x + y); }
  static std::uint64_t code(const acc_t &v) {
    return low_bits(v.range(acc_t::width - 1, 0).to_uint64(), acc_t::width);
  }
};

template <class Acc>
struct FloatOp {
  typedef Acc in_t;  // operands widened (exactly) to the accumulator type
  typedef Acc acc_t;
  typedef FXEMU_FL_IN src_t;
  static in_t from_code(std::uint64_t c) {
    src_t h;
    h.set_data(ac_int<src_t::width, true>((long long)c));
    return in_t(h);
  }
  static acc_t zero() {
    acc_t z;
    z.set_data(ac_int<acc_t::width, true>(0));
    return z;
  }
  static void mac(acc_t &acc, const in_t &a, const in_t &b) {
    acc = a.template fma<AC_RND_CONV, false>(b, acc);
  }
  static acc_t add(const acc_t &x, const acc_t &y) { return x.template add<AC_RND_CONV, false>(y); }
  static std::uint64_t code(const acc_t &v) {
    return low_bits((std::uint64_t)v.data().to_int64(), acc_t::width);
  }
};

// One reduction: sequential, or chunked (partial sums of `chunk` products).
template <class Op, bool Chunked>
struct Reduce {
  typedef typename Op::acc_t acc_t;
  acc_t acc, part;
  int k, chunk;
  explicit Reduce(int c) : acc(Op::zero()), part(Op::zero()), k(0), chunk(c) {}
  inline void push(const typename Op::in_t &a, const typename Op::in_t &b) {
    if (!Chunked) {
      Op::mac(acc, a, b);
      return;
    }
    if (k == chunk) {
      acc = Op::add(acc, part);
      part = Op::zero();
      k = 0;
    }
    Op::mac(part, a, b);
    ++k;
  }
  inline acc_t finish(int kk) {
    if (Chunked && kk > 0) acc = Op::add(acc, part);
    return acc;
  }
};

template <class Op>
std::vector<typename Op::in_t> convert(const std::uint64_t *c, long n) {
  std::vector<typename Op::in_t> v(n);
  for (long i = 0; i < n; ++i) v[i] = Op::from_code(c[i]);
  return v;
}

// a: (M, K), bt: (N, K) -- B transposed so that both operands are read contiguously.
template <class Op, bool Chunked>
void matmul(const typename Op::in_t *a, const typename Op::in_t *bt, std::uint64_t *out, int m,
            int n, int kk, int chunk) {
  for (int i = 0; i < m; ++i)
    for (int j = 0; j < n; ++j) {
      Reduce<Op, Chunked> r(chunk);
      const typename Op::in_t *ai = a + (long)i * kk, *bj = bt + (long)j * kk;
      for (int k = 0; k < kk; ++k) r.push(ai[k], bj[k]);
      out[(long)i * n + j] = Op::code(r.finish(kk));
    }
}

// x: (N, C, H, W), w: (F, C, Kh, Kw); out: (N, F, H-Kh+1, W-Kw+1).
template <class Op, bool Chunked>
void conv2d(const typename Op::in_t *x, const typename Op::in_t *w, std::uint64_t *out, int nb,
            int c, int h, int wd, int f, int kh, int kw, int chunk) {
  const int ho = h - kh + 1, wo = wd - kw + 1, kk = c * kh * kw;
  for (int n = 0; n < nb; ++n)
    for (int o = 0; o < f; ++o) {
      const typename Op::in_t *wf = w + (long)o * kk;
      for (int y = 0; y < ho; ++y)
        for (int z = 0; z < wo; ++z) {
          Reduce<Op, Chunked> r(chunk);
          for (int ci = 0; ci < c; ++ci) {
            const typename Op::in_t *xc = x + ((long)n * c + ci) * h * wd;
            for (int i = 0; i < kh; ++i)
              for (int j = 0; j < kw; ++j)
                r.push(xc[(long)(y + i) * wd + z + j], wf[(ci * kh + i) * kw + j]);
          }
          out[(((long)n * f + o) * ho + y) * wo + z] = Op::code(r.finish(kk));
        }
    }
}

template <class F>
double best_of(int repeats, F fn) {
  double best = 1e300;
  for (int r = 0; r < (repeats < 1 ? 1 : repeats); ++r) {
    auto t0 = std::chrono::steady_clock::now();
    fn();
    double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (s < best) best = s;
  }
  return best;
}

template <class Op>
double run_matmul(const std::uint64_t *a, const std::uint64_t *bt, std::uint64_t *out, int m,
                  int n, int kk, int chunk, int repeats) {
  auto av = convert<Op>(a, (long)m * kk), bv = convert<Op>(bt, (long)n * kk);
  return best_of(repeats, [&] {
    if (chunk > 0)
      matmul<Op, true>(av.data(), bv.data(), out, m, n, kk, chunk);
    else
      matmul<Op, false>(av.data(), bv.data(), out, m, n, kk, 0);
  });
}

template <class Op>
double run_conv2d(const std::uint64_t *x, const std::uint64_t *w, std::uint64_t *out, int nb,
                  int c, int h, int wd, int f, int kh, int kw, int chunk, int repeats) {
  auto xv = convert<Op>(x, (long)nb * c * h * wd), wv = convert<Op>(w, (long)f * c * kh * kw);
  return best_of(repeats, [&] {
    if (chunk > 0)
      conv2d<Op, true>(xv.data(), wv.data(), out, nb, c, h, wd, f, kh, kw, chunk);
    else
      conv2d<Op, false>(xv.data(), wv.data(), out, nb, c, h, wd, f, kh, kw, 0);
  });
}

typedef FloatOp<FXEMU_FL_ACC1> FloatOp1;
typedef FloatOp<FXEMU_FL_ACC2> FloatOp2;

}  // namespace

// acc: 0 = FXEMU_FX_ACC (fixed operands), 1 = FXEMU_FL_ACC1, 2 = FXEMU_FL_ACC2 (float operands).
// Returns the best time in seconds, or -1 for an unknown acc.
extern "C" double fxemu_bench_matmul(int acc, const std::uint64_t *a, const std::uint64_t *bt,
                                     std::uint64_t *out, int m, int n, int kk, int chunk,
                                     int repeats) {
  switch (acc) {
    case 0: return run_matmul<FixedOp>(a, bt, out, m, n, kk, chunk, repeats);
    case 1: return run_matmul<FloatOp1>(a, bt, out, m, n, kk, chunk, repeats);
    case 2: return run_matmul<FloatOp2>(a, bt, out, m, n, kk, chunk, repeats);
    default: return -1.0;
  }
}

extern "C" double fxemu_bench_conv2d(int acc, const std::uint64_t *x, const std::uint64_t *w,
                                     std::uint64_t *out, int nb, int c, int h, int wd, int f,
                                     int kh, int kw, int chunk, int repeats) {
  switch (acc) {
    case 0: return run_conv2d<FixedOp>(x, w, out, nb, c, h, wd, f, kh, kw, chunk, repeats);
    case 1: return run_conv2d<FloatOp1>(x, w, out, nb, c, h, wd, f, kh, kw, chunk, repeats);
    case 2: return run_conv2d<FloatOp2>(x, w, out, nb, c, h, wd, f, kh, kw, chunk, repeats);
    default: return -1.0;
  }
}
