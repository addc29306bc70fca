"""Golden vectors from the emulator and the self-checking Verilog test bench of a PE array.

Streams come in groups sharing one ``b`` matrix (K × P, the weights a layer holds while its
inputs stream through) and G different ``a`` vectors, so one :func:`fxemu.matmul` per group
gives every expected code. Operand codes mix uniform random codes with each format's edge
codes (zeros, ±max, min, ±1 LSB, single bits at every position, and for floats subnormals,
the smallest normal, ±inf and NaN at a low rate).

Memory files (``$readmemh``): ``<name>_in.mem`` one beat per line ``{start, last, a, b}`` (tree
PE: ``{a, b}``), ``<name>_exp.mem`` one line per beat carrying ``last``: the P expected out
codes, lane j at bits ``[j·Wout, (j+1)·Wout)``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ...arith import matmul
from ...formats import Fixed, Float, Mac
from ...quantize import from_bits, to_bits

#: the largest stream length drawn for a streaming PE
MAX_STREAM = 12


def edge_codes(fmt: Fixed | Float) -> np.ndarray:
    """The edge codes of a format (uint64)."""
    w = fmt.width
    mask = (1 << w) - 1
    if isinstance(fmt, Fixed):
        c = {0, 1, mask, fmt.max_int, fmt.min_int & mask, (fmt.min_int + 1) & mask,
             (fmt.max_int - 1) & mask, 2}
        c |= {1 << i for i in range(w)} | {(-(1 << i)) & mask for i in range(w - 1)}
        c |= {(1 << i) | 1 for i in range(1, w)}
        return np.array(sorted(x & mask for x in c), np.uint64)
    e, m = fmt.exp_bits, fmt.man_bits
    sign = 1 << (e + m)
    top = (1 << e) - 1
    mags = {0, 1, (1 << m) - 1, 1 << m, ((top - 1) << m) | ((1 << m) - 1),
            (fmt.bias << m), (fmt.bias << m) | 1, ((fmt.bias + 1) << m) - 1}
    mags |= {1 << i for i in range(m)}
    mags |= {top << m, (top << m) | 1, (top << m) | (1 << max(m - 1, 0))}
    out = set()
    for v in mags:
        if v > sign - 1:
            continue
        out |= {v, v | sign}
    return np.array(sorted(out), np.uint64)


def _is_special(codes: np.ndarray, fmt: Fixed | Float) -> np.ndarray:
    if isinstance(fmt, Fixed):
        return np.zeros(codes.shape, bool)
    return ~np.isfinite(from_bits(codes, fmt))


def draw_codes(fmt: Fixed | Float, shape: tuple[int, ...], rng: np.random.Generator,
               special_rate: float = 0.003) -> np.ndarray:
    """Operand codes: half uniform random, half edge codes; inf/NaN kept at ``special_rate``."""
    n = int(np.prod(shape))
    w = fmt.width
    rand = rng.integers(0, 1 << w, n, dtype=np.uint64) if w < 64 else \
        rng.integers(0, 2**63, n, dtype=np.uint64)
    edges = edge_codes(fmt)
    pick = edges[rng.integers(0, len(edges), n)]
    codes = np.where(rng.random(n) < 0.5, rand, pick)
    if isinstance(fmt, Float):
        # inf/NaN codes (from either source) become finite random codes unless kept
        spec = _is_special(codes, fmt)
        keep = rng.random(n) < special_rate
        fresh = rng.integers(0, 1 << (w - 1), n, dtype=np.uint64)
        fresh = np.where(_is_special(fresh, fmt), np.uint64(0), fresh)
        codes = np.where(spec & ~keep, fresh, codes)
    return codes.reshape(shape)


@dataclass
class Golden:
    """Beats of operand codes and the expected out codes of an array of ``pes`` PEs."""

    mac: Mac
    a_fmt: Fixed | Float
    b_fmt: Fixed | Float
    pes: int
    k: int  # leaves of the tree PE, 0 for a streaming PE
    a: list[np.ndarray]  # per group: (G, K) a codes
    b: list[np.ndarray]  # per group: (K, P) b codes
    expected: list[np.ndarray]  # per group: (G, P) out codes

    @property
    def streams(self) -> int:
        """Dot products checked (one per lane per stream)."""
        return sum(x.size for x in self.expected)

    def stream(self, index: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(a codes, b codes (K, P), expected codes (P,)) of array stream ``index``."""
        for a, b, e in zip(self.a, self.b, self.expected, strict=True):
            if index < a.shape[0]:
                return a[index], b, e[index]
            index -= a.shape[0]
        raise IndexError(index)

    def in_width(self) -> int:
        wa, wb = self.a_fmt.width, self.b_fmt.width
        if self.k:
            return self.k * (wa + wb * self.pes)
        return 2 + wa + wb * self.pes

    def out_width(self) -> int:
        return self.mac.out_format.width * self.pes

    def beats(self) -> int:
        return sum(a.shape[0] * (1 if self.k else a.shape[1]) for a in self.a)

    def write(self, directory: Path, name: str) -> tuple[Path, Path]:
        """Write ``<name>_in.mem`` and ``<name>_exp.mem``; return their paths."""
        wa, wb, wo = self.a_fmt.width, self.b_fmt.width, self.mac.out_format.width
        pes, k = self.pes, self.k
        lines_in, lines_exp = [], []
        hin, hout = (self.in_width() + 3) // 4, (self.out_width() + 3) // 4
        for a, b, e in zip(self.a, self.b, self.expected, strict=True):
            kk = a.shape[1]
            # b part of a beat: lane j at [j·wb, (j+1)·wb) (tree: element i of lane j at
            # [(j·k + i)·wb, ...))
            if k:
                bword = 0
                for j in range(pes):
                    for i in range(kk):
                        bword |= int(b[i, j]) << ((j * k + i) * wb)
            else:
                bwords = []
                for i in range(kk):
                    v = 0
                    for j in range(pes):
                        v |= int(b[i, j]) << (j * wb)
                    bwords.append(v)
            for g in range(a.shape[0]):
                if k:
                    aword = 0
                    for i in range(kk):
                        aword |= int(a[g, i]) << (i * wa)
                    lines_in.append(f"{(aword << (wb * pes * k)) | bword:0{hin}x}")
                else:
                    for i in range(kk):
                        word = (((int(i == 0) << 1) | int(i == kk - 1)) << wa) | int(a[g, i])
                        word = (word << (wb * pes)) | bwords[i]
                        lines_in.append(f"{word:0{hin}x}")
                ow = 0
                for j in range(pes):
                    ow |= int(e[g, j]) << (j * wo)
                lines_exp.append(f"{ow:0{hout}x}")
        pin, pexp = directory / f"{name}_in.mem", directory / f"{name}_exp.mem"
        pin.write_text("\n".join(lines_in) + "\n")
        pexp.write_text("\n".join(lines_exp) + "\n")
        return pin, pexp


def golden(mac: Mac, a_fmt: Fixed | Float, b_fmt: Fixed | Float, *, pes: int, k: int = 0,
           streams: int = 100_000, seed: int = 0, group: int = 64) -> Golden:
    """At least ``streams`` dot products (lane-streams) and their codes from
    :func:`fxemu.matmul` under ``mac`` (operands as the formats' values)."""
    rng = np.random.default_rng(seed)
    out_fmt = mac.out_format
    need = -(-streams // pes)
    A, B, E = [], [], []
    done = 0
    while done < need:
        g = min(group, need - done)
        kk = k if k else int(rng.integers(1, MAX_STREAM + 1))
        a = draw_codes(a_fmt, (g, kk), rng)
        b = draw_codes(b_fmt, (kk, pes), rng)
        r = matmul(from_bits(a, a_fmt), from_bits(b, b_fmt), mac)
        A.append(a)
        B.append(b)
        E.append(to_bits(r, out_fmt).reshape(g, pes))
        done += g
    return Golden(mac, a_fmt, b_fmt, pes, k, A, B, E)


def bench_verilog(g: Golden, dut: str, name: str, in_mem: str, exp_mem: str) -> str:
    """Verilog of ``<name>_core`` (clock in; drives ``dut`` from ``in_mem``, compares each
    result with ``exp_mem``, counts ``passed``/``failed`` lane results, latches the first
    mismatch, raises ``done``) and ``<name>`` (a free-running clock around the core that
    prints ``PASS n FAIL m`` and finishes; exit code via ``$fatal`` on a failure)."""
    iw, ow = g.in_width(), g.out_width()
    wo = g.mac.out_format.width
    nb, ns = g.beats(), sum(a.shape[0] for a in g.a)
    wa, wb = g.a_fmt.width, g.b_fmt.width
    if g.k:
        drive = (f"  assign dut_a = word[{iw - 1}:{wb * g.pes * g.k}];\n"
                 f"  assign dut_b = word[{wb * g.pes * g.k - 1}:0];\n")
        ports = ".valid(valid), .a(dut_a), .b(dut_b)"
        aw, bw = wa * g.k, wb * g.pes * g.k
    else:
        drive = (f"  assign dut_start = word[{iw - 1}];\n  assign dut_last = word[{iw - 2}];\n"
                 f"  assign dut_a = word[{iw - 3}:{wb * g.pes}];\n"
                 f"  assign dut_b = word[{wb * g.pes - 1}:0];\n")
        ports = ".valid(valid), .start(dut_start), .last(dut_last), .a(dut_a), .b(dut_b)"
        aw, bw = wa, wb * g.pes
    return f"""// self-checking bench of {dut}: {g.streams} lane results, {nb} beats
// golden vectors from fxemu.matmul under Mac(acc={g.mac.acc}, mul={g.mac.mul},
// out={g.mac.out}, order={g.mac.order}), operands {g.a_fmt} x {g.b_fmt}
module {name}_core (
  input clk,
  output reg done = 1'b0,
  output reg [31:0] passed = 32'd0,
  output reg [31:0] failed = 32'd0,
  output reg [31:0] bad_stream = 32'hffffffff,
  output reg [31:0] bad_lane = 32'd0,
  output reg [{wo - 1}:0] bad_got = {wo}'d0
);
  localparam NB = {nb};
  localparam NS = {ns};
  reg [{iw - 1}:0] inmem [0:NB-1];
  reg [{ow - 1}:0] expmem [0:NS-1];
  initial begin
    $readmemh("{in_mem}", inmem);
    $readmemh("{exp_mem}", expmem);
  end
  reg [31:0] bi = 32'd0;
  reg [31:0] oi = 32'd0;
  reg valid = 1'b0;
  reg [{iw - 1}:0] word = {iw}'d0;
  wire dut_start, dut_last;
  wire [{aw - 1}:0] dut_a;
  wire [{bw - 1}:0] dut_b;
  wire out_valid;
  wire [{ow - 1}:0] out;
{drive}  {dut} dut (.clk(clk), .rst(1'b0), {ports}, .out_valid(out_valid), .out(out));
  integer j;
  reg [31:0] np, nf;
  always @(posedge clk) begin
    if (bi < NB) begin
      word <= inmem[bi];
      valid <= 1'b1;
      bi <= bi + 1;
    end else begin
      valid <= 1'b0;
    end
    if (out_valid) begin
      np = passed;
      nf = failed;
      for (j = 0; j < {g.pes}; j = j + 1) begin
        if (out[j*{wo} +: {wo}] == expmem[oi][j*{wo} +: {wo}]) np = np + 1;
        else begin
          nf = nf + 1;
          if (bad_stream == 32'hffffffff) begin
            bad_stream <= oi;
            bad_lane <= j;
            bad_got <= out[j*{wo} +: {wo}];
          end
        end
      end
      passed <= np;
      failed <= nf;
      oi <= oi + 1;
      if (oi + 1 == NS) done <= 1'b1;
    end
  end
endmodule

module {name} ;
  reg clk = 1'b0;
  wire done;
  wire [31:0] passed, failed, bad_stream, bad_lane;
  wire [{wo - 1}:0] bad_got;
  {name}_core core (.clk(clk), .done(done), .passed(passed), .failed(failed),
    .bad_stream(bad_stream), .bad_lane(bad_lane), .bad_got(bad_got));
  always #5 clk = ~clk;
  always @(posedge clk) if (done) begin
    $display("{dut}: PASS %0d FAIL %0d", passed, failed);
    if (failed != 0)
      $display("{dut}: first mismatch stream %0d lane %0d got %h", bad_stream, bad_lane,
               bad_got);
    $finish;
  end
endmodule
"""
