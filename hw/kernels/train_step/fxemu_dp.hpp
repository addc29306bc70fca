// fxemu_dp.hpp -- the datapath building blocks of the training-step kernel.
//
// Included by the header generated from a precision policy (fxemu_policy.h, see
// fxemu/hw/codegen.py), after it has defined which vendor libraries it needs:
//   FXEMU_USE_AP     ap_fixed (Vitis HLS)      FXEMU_USE_AC   ac_fixed (Catapult)
//   FXEMU_USE_FLOAT  ac_std_float (IEEE layout: binary16/32/..., subnormals, inf, NaN)
// Everything here rounds exactly as fxemu's emulator documents (fxemu.arith, fxemu.policy):
//   * fixed point: the exact result of an operation assigned into the target type;
//   * float: one correct rounding (AC_RND_CONV = round to nearest even) into the target;
//   * a Mac: products rounded into MUL (or kept exact), every addition rounded into ACC,
//     the result rounded into OUT; the order of the additions is the Reducer's.
#ifndef FXEMU_DP_HPP
#define FXEMU_DP_HPP

#include <stdint.h>

#ifdef FXEMU_USE_AP
#include <ap_fixed.h>
#endif
#if defined(FXEMU_USE_AC) || defined(FXEMU_USE_FLOAT)
#include <ac_fixed.h>
#endif
#ifdef FXEMU_USE_FLOAT
#include <ac_std_float.h>
#endif

namespace fxemu {

template <bool C, class A, class B>
struct pick {
  typedef A type;
};
template <class A, class B>
struct pick<false, A, B> {
  typedef B type;
};

template <int W>
inline uint64_t low_bits(uint64_t v) { return W >= 64 ? v : v & ((uint64_t(1) << (W % 64)) - 1); }

// ---- codes: a type's raw W-bit pattern in the low bits of a 64-bit word ----------------------
#ifdef FXEMU_USE_AP
template <int W, int I, ap_q_mode Q, ap_o_mode O, int N>
inline void from_code(ap_fixed<W, I, Q, O, N> &v, uint64_t c) { v.range(W - 1, 0) = c; }
template <int W, int I, ap_q_mode Q, ap_o_mode O, int N>
inline void from_code(ap_ufixed<W, I, Q, O, N> &v, uint64_t c) { v.range(W - 1, 0) = c; }
template <int W, int I, ap_q_mode Q, ap_o_mode O, int N>
inline uint64_t to_code(const ap_fixed<W, I, Q, O, N> &v) { return v.range(W - 1, 0).to_uint64(); }
template <int W, int I, ap_q_mode Q, ap_o_mode O, int N>
inline uint64_t to_code(const ap_ufixed<W, I, Q, O, N> &v) { return v.range(W - 1, 0).to_uint64(); }
template <int W, int I, ap_q_mode Q, ap_o_mode O, int N>
inline bool is_nan(const ap_fixed<W, I, Q, O, N> &) { return false; }
template <int W, int I, ap_q_mode Q, ap_o_mode O, int N>
inline bool is_nan(const ap_ufixed<W, I, Q, O, N> &) { return false; }
#endif

#ifdef FXEMU_USE_AC
template <int W, int I, bool S, ac_q_mode Q, ac_o_mode O>
inline void from_code(ac_fixed<W, I, S, Q, O> &v, uint64_t c) {
  v.set_slc(0, ac_int<64, false>(c).template slc<W>(0));
}
template <int W, int I, bool S, ac_q_mode Q, ac_o_mode O>
inline uint64_t to_code(const ac_fixed<W, I, S, Q, O> &v) {
  return low_bits<W>((uint64_t)v.template slc<W>(0).to_int64());
}
template <int W, int I, bool S, ac_q_mode Q, ac_o_mode O>
inline bool is_nan(const ac_fixed<W, I, S, Q, O> &) { return false; }
#endif

// The learning rate, held exactly: every double in [2^-64, 2^8); the constant 1 (bias
// gradients are g * 1 through the dW Mac).
#ifdef FXEMU_USE_AP
typedef ap_ufixed<125, 8> lr_t;
typedef ap_ufixed<1, 1> one_t;
#else
typedef ac_fixed<125, 8, false> lr_t;
typedef ac_fixed<1, 1, false> one_t;
#endif

// ---- fixed point: a Mac ----------------------------------------------------------------------
// NODE holds every product and every ACC/MUL value exactly (sized by the code generator), so
// u + v is exact and the assignment into ACC is the one rounding of an addition.
// EXACT holds the exact sum of up to 2^20 nodes (the exact order).
template <class ACC, class MUL, class OUT, bool HAS_MUL, class NODE, class EXACT = NODE>
struct FixedMac {
  typedef NODE node_t;
  typedef EXACT exact_t;
  typedef OUT out_t;
  typedef one_t one_type;
  static one_type one() { return one_type(1); }
  // Operands as the Mac reads them (fixed point: as they are).
  template <class A>
  struct operand {
    typedef A type;
  };
  template <class A>
  static const A &widen(const A &a) { return a; }
  template <class A, class B>
  static node_t product(const A &a, const B &b) {
    if (HAS_MUL) {
      MUL p = a * b;
      return node_t(p);
    }
    return node_t(a * b);
  }
  static node_t add(const node_t &u, const node_t &v) {
    ACC s = u + v;
    return node_t(s);
  }
  static node_t zero() { return node_t(ACC(0)); }
  // The exact order: the exact sum of every node, one assignment into ACC.
  static void exact_reset(exact_t &s) { s = 0; }
  static void exact_add(exact_t &s, const node_t &p) { s = s + p; }
  static node_t exact_result(const exact_t &s) {
    ACC a = s;
    return node_t(a);
  }
  static out_t out(const node_t &acc) {
    ACC a = acc;
    OUT o = a;
    return o;
  }
};

#if defined(FXEMU_USE_AP) || defined(FXEMU_USE_AC)
// Fixed point: R(a + b) and the SGD update R_master(w - lr * dw), exact then one assignment.
template <class R, class X, class Y>
inline R sum_round(const X &x, const Y &y) {
  R r = x + y;
  return r;
}
template <class R, class G>
inline R sgd_update(const R &w, const G &dw, const lr_t &lr) {
  R r = w - lr * dw;
  return r;
}
template <class R, class X>
inline R convert(const X &x) {
  R r = x;
  return r;
}
template <class T>
inline T zero_value() { return T(0); }
template <class T>
inline T relu(const T &z) { return z > 0 ? z : T(0); }
template <class T>
inline bool positive(const T &z) { return z > 0; }
#endif

#ifdef FXEMU_USE_FLOAT
// ---- float: codes, conversions -----------------------------------------------------------------
template <int W, int E>
inline void from_code(ac_std_float<W, E> &v, uint64_t c) {
  v.set_data(ac_int<64, false>(c).template slc<W>(0));
}
template <int W, int E>
inline uint64_t to_code(const ac_std_float<W, E> &v) {
  return low_bits<W>((uint64_t)v.data().to_int64());
}
template <int W, int E>
inline bool is_nan(const ac_std_float<W, E> &v) { return v.isnan(); }
template <int W, int E>
inline bool is_zero(const ac_std_float<W, E> &v) { return v.data().template slc<W - 1>(0) == 0; }
template <class T>
inline T zero_value() { return T::zero(); }

// R from an ac_std_float: one rounding to nearest even (exact when R holds the value).
template <class R>
struct converter {
  template <int W, int E>
  static R go(const ac_std_float<W, E> &v) {
    return v.template convert<R::width, R::e_width, AC_RND_CONV>();
  }
  static const R &go(const R &v) { return v; }  // the same format: nothing to do
};
template <class R, int W, int E>
inline R convert(const ac_std_float<W, E> &v) {
  return converter<R>::go(v);
}

// The exact image of every finite ac_std_float<W, E> value as a signed ac_fixed.
template <int W, int E>
struct image {
  static const int bias = (1 << (E - 1)) - 1;
  static const int mant = W - E - 1;
  static const int I = bias + 2;            // |v| < 2^(bias + 1), plus the sign
  static const int F = bias - 1 + mant;     // the smallest subnormal is 2^(1 - bias - mant)
  typedef ac_fixed<I + F, I, true> type;
};
template <int W, int E>
inline typename image<W, E>::type to_image(const ac_std_float<W, E> &v) {
  return v.template convert_to_ac_fixed<image<W, E>::I + image<W, E>::F, image<W, E>::I, true,
                                        AC_TRN, AC_WRAP>();
}

// R(exact value s): assign_from<AC_RND_CONV> (nearest even, subnormals, overflow to inf);
// an exact zero gets the sign IEEE 754 gives a sum of two terms: -0 only when both are -0.
template <class R, class FX>
inline R round_exact(const FX &s, bool both_neg_zero) {
  if (s == 0) return both_neg_zero ? -R::zero() : R::zero();
  R r;
  r.template assign_from<AC_RND_CONV>(s);
  return r;
}

// IEEE 754 specials of a two-term sum with the given signs: NaN if either is NaN or inf - inf.
template <class R>
inline bool special_sum(bool nan_x, bool inf_x, bool neg_x, bool nan_y, bool inf_y, bool neg_y,
                        R &r) {
  if (nan_x || nan_y || (inf_x && inf_y && neg_x != neg_y)) {
    r = R::nan();
    return true;
  }
  if (inf_x || inf_y) {
    r = (inf_x ? neg_x : neg_y) ? -R::inf() : R::inf();
    return true;
  }
  return false;
}

// R(x + y) with one rounding (the bias add: x in the Mac's format, y in the weight format).
template <class R, int W1, int E1, int W2, int E2>
inline R sum_round(const ac_std_float<W1, E1> &x, const ac_std_float<W2, E2> &y) {
  R r;
  if (special_sum<R>(x.isnan(), x.isinf(), x.signbit(), y.isnan(), y.isinf(), y.signbit(), r))
    return r;
  return round_exact<R>(to_image(x) + to_image(y), x.signbit() && y.signbit() && is_zero(x) &&
                                                      is_zero(y));
}

// R_master(w - lr * dw): the product and the difference exact, one rounding (as fx.fma(-lr,
// dw, w, master)).
template <class R, int W2, int E2>
inline R sgd_update(const R &w, const ac_std_float<W2, E2> &dw, const lr_t &lr) {
  R r;
  // -lr * dw: NaN/inf as dw's, sign flipped (lr > 0)
  if (special_sum<R>(w.isnan(), w.isinf(), w.signbit(), dw.isnan(), dw.isinf(), !dw.signbit(),
                     r))
    return r;
  return round_exact<R>(to_image(w) - lr * to_image(dw),
                        w.signbit() && is_zero(w) && !dw.signbit() && is_zero(dw));
}

// ReLU as numpy.maximum(z, 0.0): NaN stays NaN, z > 0 stays, everything else is +0.
template <int W, int E>
inline ac_std_float<W, E> relu(const ac_std_float<W, E> &z) {
  if (z.isnan() || z > ac_std_float<W, E>::zero()) return z;
  return ac_std_float<W, E>::zero();
}
template <int W, int E>
inline bool positive(const ac_std_float<W, E> &z) { return z > ac_std_float<W, E>::zero(); }

// ---- float: a Mac ------------------------------------------------------------------------------
// A node is an accumulator value or an exact product a * b (a, b held exactly in ACC):
//   acc + acc   -> acc.add<AC_RND_CONV>(acc)
//   prod + acc  -> a.fma<AC_RND_CONV>(b, acc)         (one rounding)
//   prod + prod -> exact sum in ac_fixed, assign_from<AC_RND_CONV>   (pairwise level 0)
// With MUL, a product is a.mult<AC_RND_CONV>(b) in MUL (a, b widened into MUL exactly).
template <class ACC, class MUL, class OUT, bool HAS_MUL>
struct FloatMac {
  struct node_t {
    bool prod;
    ACC a, b, v;
  };
  typedef OUT out_t;
  typedef ACC one_type;
  static one_type one() { return ACC(1.0); }
  // Operands as the Mac reads them: widened exactly into MUL (with one) or ACC, once per
  // operand rather than once per product.
  template <class A>
  struct operand {
    typedef typename pick<HAS_MUL, MUL, ACC>::type type;
  };
  template <class A>
  static typename operand<A>::type widen(const A &a) {
    return convert<typename operand<A>::type>(a);
  }
  static node_t value(const ACC &v) {
    node_t u;
    u.prod = false;
    u.v = v;
    return u;
  }
  template <class A, class B>
  static node_t product(const A &a, const B &b) {
    if (HAS_MUL) {
      MUL p = convert<MUL>(a).template mult<AC_RND_CONV, false>(convert<MUL>(b));
      return value(convert<ACC>(p));
    }
    node_t u;
    u.prod = true;
    u.a = convert<ACC>(a);
    u.b = convert<ACC>(b);
    return u;
  }
  static node_t add(const node_t &u, const node_t &w) {
    if (!u.prod && !w.prod) return value(u.v.template add<AC_RND_CONV, false>(w.v));
    if (u.prod && !w.prod) return fma(u, w.v);
    if (!u.prod && w.prod) return fma(w, u.v);
    // two exact products (operands are finite: NaN/inf operands go through the fma path
    // only when mixed with values; the code generator's operands are finite here)
    bool nu = u.a.signbit() != u.b.signbit(), nw = w.a.signbit() != w.b.signbit();
    bool zu = is_zero(u.a) || is_zero(u.b), zw = is_zero(w.a) || is_zero(w.b);
    ACC r;
    bool inf_u = u.a.isinf() || u.b.isinf(), inf_w = w.a.isinf() || w.b.isinf();
    bool nan_u = u.a.isnan() || u.b.isnan() || (inf_u && zu);
    bool nan_w = w.a.isnan() || w.b.isnan() || (inf_w && zw);
    if (special_sum<ACC>(nan_u, inf_u, nu, nan_w, inf_w, nw, r)) return value(r);
    return value(round_exact<ACC>(to_image(u.a) * to_image(u.b) + to_image(w.a) * to_image(w.b),
                                  zu && zw && nu && nw));
  }
  // R(a * b + c), one rounding. A zero product of finite factors leaves c unchanged (IEEE:
  // c + (+-0) = c, except -0 + +0 = +0), which spares the fma for the many zero gradients.
  static node_t fma(const node_t &p, const ACC &c) {
    if ((is_zero(p.a) && !p.b.isinf() && !p.b.isnan()) ||
        (is_zero(p.b) && !p.a.isinf() && !p.a.isnan())) {
      const bool neg = p.a.signbit() != p.b.signbit();
      if (!is_zero(c) || !c.signbit() || neg) return value(c);
    }
    return value(p.a.template fma<AC_RND_CONV, false>(p.b, c));
  }
  static node_t zero() { return value(ACC::zero()); }
  // The exact order: the exact sum of every node (products exactly, as the product of the
  // images of their factors), one rounding into ACC; an exact zero is +0; a NaN node, or
  // inf - inf, gives NaN; otherwise an infinite node gives that infinity.
  typedef typename image<ACC::width, ACC::e_width>::type img_t;
  typedef ac_fixed<2 * img_t::width + 20, 2 * img_t::i_width + 20, true> wide_t;
  struct exact_t {
    wide_t s;
    bool nan, pinf, ninf;
  };
  static void exact_reset(exact_t &e) {
    e.s = 0;
    e.nan = e.pinf = e.ninf = false;
  }
  static void exact_add(exact_t &e, const node_t &p) {
    bool nan, inf, neg;
    if (p.prod) {
      const bool z = is_zero(p.a) || is_zero(p.b);
      inf = p.a.isinf() || p.b.isinf();
      nan = p.a.isnan() || p.b.isnan() || (inf && z);
      neg = p.a.signbit() != p.b.signbit();
      if (!nan && !inf) e.s += wide_t(to_image(p.a) * to_image(p.b));
    } else {
      nan = p.v.isnan();
      inf = p.v.isinf();
      neg = p.v.signbit();
      if (!nan && !inf) e.s += wide_t(to_image(p.v));
    }
    e.nan |= nan;
    e.pinf |= inf && !neg;
    e.ninf |= inf && neg;
  }
  static node_t exact_result(const exact_t &e) {
    if (e.nan || (e.pinf && e.ninf)) return value(ACC::nan());
    if (e.pinf || e.ninf) return value(e.pinf ? ACC::inf() : -ACC::inf());
    return value(round_exact<ACC>(e.s, false));
  }
  static out_t out(const node_t &acc) { return convert<OUT>(acc.v); }  // OUT is ACC without out
};
#endif

// ---- reduction orders --------------------------------------------------------------------------
// Reducer<M, ORDER, CHUNK>: push the products k = 0..K-1 in order, then result().
//   ORDER 0 sequential: acc = R(acc + p_k) from acc = 0 (a pipelined loop).
//   ORDER 1 pairwise: adjacent pairs level by level, an odd last node carried up unchanged,
//           the root added to the zero accumulator. Streamed with a stack of complete
//           power-of-two blocks (a binary counter): merging equal blocks as they complete and
//           folding the remaining blocks from the smallest is that same tree.
//   ORDER 2 chunk: sequential within chunks of CHUNK from k = 0, the chunk sums added
//           sequentially to a zero accumulator.
//   ORDER 3 exact: the exact sum of all products, one rounding into ACC.
template <class M, int ORDER, int CHUNK>
struct Reducer;

template <class M, int CHUNK>
struct Reducer<M, 0, CHUNK> {
  typename M::node_t acc;
  void reset() { acc = M::zero(); }
  void push(const typename M::node_t &p) { acc = M::add(acc, p); }
  typename M::node_t result() const { return acc; }
};

template <class M, int CHUNK>
struct Reducer<M, 2, CHUNK> {
  typename M::node_t acc, part;
  int k;
  void reset() {
    acc = M::zero();
    part = M::zero();
    k = 0;
  }
  void push(const typename M::node_t &p) {
    part = M::add(part, p);
    if (++k == CHUNK) {
      acc = M::add(acc, part);
      part = M::zero();
      k = 0;
    }
  }
  typename M::node_t result() const { return k ? M::add(acc, part) : acc; }
};

template <class M, int CHUNK>
struct Reducer<M, 3, CHUNK> {  // exact: the exact sum, one rounding into ACC
  typename M::exact_t sum;
  void reset() { M::exact_reset(sum); }
  void push(const typename M::node_t &p) { M::exact_add(sum, p); }
  typename M::node_t result() const { return M::exact_result(sum); }
};

template <class M, int CHUNK>
struct Reducer<M, 1, CHUNK> {
  typename M::node_t stack[40];
  int level[40];
  int depth;
  void reset() { depth = 0; }
  void push(const typename M::node_t &p) {
    typename M::node_t cur = p;
    int l = 0;
    while (depth > 0 && level[depth - 1] == l) {
      cur = M::add(stack[depth - 1], cur);
      --depth;
      ++l;
    }
    stack[depth] = cur;
    level[depth] = l;
    ++depth;
  }
  typename M::node_t result() const {
    if (depth == 0) return M::zero();
    typename M::node_t cur = stack[depth - 1];
    for (int d = depth - 2; d >= 0; --d) cur = M::add(stack[d], cur);
    return M::add(M::zero(), cur);
  }
};

template <class T>
inline T load(const uint64_t *p, long i) {
  T v;
  from_code(v, p[i]);
  return v;
}

}  // namespace fxemu

#endif  // FXEMU_DP_HPP
