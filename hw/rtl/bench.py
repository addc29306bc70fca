"""Golden vectors from the emulator and the self-checking Verilog test bench of a PE array.

Streams come in groups sharing one ``b`` matrix (K × P, the weights a layer holds while its
inputs stream through) and G different ``a`` vectors, so one :func:`fxemu.matmul` per group
gives every expected code. Operand codes mix uniform random codes with each format's edge
codes (zeros, ±max, min, ±1 LSB, single bits at every position, and for floats subnormals,
the smallest normal, ±inf and NaN at a low rate).

Memory files (``$readmemh``, every field padded to whole hex digits): ``<name>_in.mem`` one
beat per line (:meth:`Golden.in_fields`), ``<name>_exp.mem`` one line per result beat: the P
expected out codes, lane j at digit-aligned offset ``j·pad(Wout)``.
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

    #: dtype of the operand words in ``a``/``b`` (object: Python ints wider than 64 bits)
    word_dtype = np.uint64

    @property
    def a_width(self) -> int:
        """Bits of one ``a`` operand word on the PE's port."""
        return self.a_fmt.width

    @property
    def b_width(self) -> int:
        """Bits of one ``b`` operand word on the PE's port."""
        return self.b_fmt.width

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

    def _pad(self, w: int) -> int:
        return 4 * (-(-w // 4))

    def in_fields(self) -> list[tuple[str, int, int]]:
        """``(field, width, offset)`` of an input-memory word, each field nibble-aligned:
        streaming ``ctl`` ({start, last}), ``a``, ``b<j>`` per lane; tree ``a<i>`` per element
        and ``b<j>_<i>`` per lane and element."""
        wa, wb = self.a_width, self.b_width
        if self.k:
            names = [(f"a{i}", wa) for i in range(self.k)]
            names += [(f"b{j}_{i}", wb) for j in range(self.pes) for i in range(self.k)]
        else:
            names = [("ctl", 2), ("a", wa)] + [(f"b{j}", wb) for j in range(self.pes)]
        out, off = [], 0
        for name, w in reversed(names):
            out.append((name, w, off))
            off += self._pad(w)
        return out[::-1]

    def in_width(self) -> int:
        return sum(self._pad(w) for _, w, _ in self.in_fields())

    def out_width(self) -> int:
        """Width of an expected-memory word (lane j at ``j·pad(Wout)``)."""
        return self._pad(self.mac.out_format.width) * self.pes

    def beats(self) -> int:
        return sum(a.shape[0] * (1 if self.k else a.shape[1]) for a in self.a)

    def _columns(self) -> dict[str, np.ndarray]:
        cols: dict[str, list[np.ndarray]] = {}

        def put(name: str, v: np.ndarray) -> None:
            cols.setdefault(name, []).append(np.asarray(v, self.word_dtype if name != "ctl"
                                                        else np.uint64))

        for a, b in zip(self.a, self.b, strict=True):
            g, kk = a.shape
            if self.k:
                for i in range(kk):
                    put(f"a{i}", a[:, i])
                    for j in range(self.pes):
                        put(f"b{j}_{i}", np.full(g, b[i, j], self.word_dtype))
            else:
                ks = np.tile(np.arange(kk), g)
                put("ctl", (ks == 0).astype(np.uint64) * 2 + (ks == kk - 1))
                put("a", a.reshape(-1))
                bt = np.tile(b, (g, 1))
                for j in range(self.pes):
                    put(f"b{j}", bt[:, j])
        return {k: np.concatenate(v) for k, v in cols.items()}

    @staticmethod
    def _hex(cols: list[tuple[np.ndarray, int]]) -> bytes:
        """Lines of hex digits, the columns' fields side by side (first column leftmost)."""
        digits = [-(-w // 4) for _, w in cols]
        n = len(cols[0][0])
        buf = np.empty((n, sum(digits) + 1), np.uint8)
        pos = 0
        table = np.frombuffer(b"0123456789abcdef", np.uint8)
        for (v, _), nd in zip(cols, digits, strict=True):
            if v.dtype == object:  # words wider than 64 bits
                text = "".join(f"{int(x):0{nd}x}" for x in v).encode()
                buf[:, pos:pos + nd] = np.frombuffer(text, np.uint8).reshape(n, nd)
                pos += nd
                continue
            v = v.astype(np.uint64)
            for i in range(nd):
                shift = np.uint64(4 * (nd - 1 - i))
                buf[:, pos + i] = table[((v >> shift) & np.uint64(15)).astype(np.intp)]
            pos += nd
        buf[:, -1] = ord("\n")
        return buf.tobytes()

    def write(self, directory: Path, name: str) -> tuple[Path, Path]:
        """Write ``<name>_in.mem`` and ``<name>_exp.mem``; return their paths."""
        cols = self._columns()
        text_in = self._hex([(cols[f], w) for f, w, _ in self.in_fields()])
        e = np.concatenate(self.expected)
        wo = self.mac.out_format.width
        text_exp = self._hex([(e[:, j], wo) for j in reversed(range(self.pes))])
        pin, pexp = directory / f"{name}_in.mem", directory / f"{name}_exp.mem"
        pin.write_bytes(text_in)
        pexp.write_bytes(text_exp)
        return pin, pexp


def golden(mac: Mac, a_fmt: Fixed | Float, b_fmt: Fixed | Float, *, pes: int, k: int = 0,
           streams: int = 100_000, seed: int = 0, group: int = 64) -> Golden:
    """At least ``streams`` dot products (lane-streams) and their codes from
    :func:`fxemu.matmul` under ``mac`` (operands as the formats' values; a block Mac's
    operands are block-pair words, see :func:`fxemu.hw.rtl._block.block_golden`)."""
    if mac.block:
        from ._block import block_golden

        return block_golden(mac, pes=pes, k=k, streams=streams, seed=seed)
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
    """Verilog of ``<name>_core``: clock in; drives ``dut`` from ``in_mem`` one beat per
    cycle, compares each result with ``exp_mem``, counts ``passed``/``failed`` lane results,
    latches the first mismatch (``bad_stream``, ``bad_lane``, ``bad_got``) and raises
    ``done`` after the last result (:func:`suite_verilog` clocks and reports cores)."""
    iw, ow = g.in_width(), g.out_width()
    wo = g.mac.out_format.width
    pwo = g._pad(wo)
    nb, ns = g.beats(), sum(a.shape[0] for a in g.a)
    wa, wb = g.a_width, g.b_width
    f = {n: (w, off) for n, w, off in g.in_fields()}
    lines = []
    if g.k:
        for i in range(g.k):
            lines.append(f"  assign dut_a[{i * wa} +: {wa}] = word[{f[f'a{i}'][1]} +: {wa}];")
            for j in range(g.pes):
                lines.append(f"  assign dut_b[{(j * g.k + i) * wb} +: {wb}] = "
                             f"word[{f[f'b{j}_{i}'][1]} +: {wb}];")
        ports = ".valid(valid), .a(dut_a), .b(dut_b)"
        aw, bw = wa * g.k, wb * g.pes * g.k
    else:
        c = f["ctl"][1]
        lines += [f"  assign dut_start = word[{c + 1}];", f"  assign dut_last = word[{c}];",
                  f"  assign dut_a = word[{f['a'][1]} +: {wa}];"]
        for j in range(g.pes):
            lines.append(f"  assign dut_b[{j * wb} +: {wb}] = word[{f[f'b{j}'][1]} +: {wb}];")
        ports = ".valid(valid), .start(dut_start), .last(dut_last), .a(dut_a), .b(dut_b)"
        aw, bw = wa, wb * g.pes
    drive = "\n".join(lines) + "\n"
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
  wire [{wo * g.pes - 1}:0] out;
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
        if (out[j*{wo} +: {wo}] == expmem[oi][j*{pwo} +: {wo}]) np = np + 1;
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

"""


def suite_verilog(cores: list[tuple[str, str]], top: str = "tb") -> str:
    """A top module ``top`` clocking every ``<core>_core`` of ``cores`` (``(core, label)``)
    until all are done, then printing one line per core,
    ``RESULT <label> PASS <n> FAIL <m> STREAM <s> LANE <l> GOT <hex>``, and finishing."""
    inst, reports, dones = [], [], []
    for i, (core, label) in enumerate(cores):
        inst.append(f"  wire d{i}; wire [31:0] p{i}, f{i}, s{i}, l{i};\n"
                    f"  wire [63:0] g{i};\n"
                    f"  {core}_core c{i} (.clk(clk), .done(d{i}), .passed(p{i}), .failed(f{i}), "
                    f".bad_stream(s{i}), .bad_lane(l{i}), .bad_got(g{i}));")
        reports.append(f'    $display("RESULT {label} PASS %0d FAIL %0d STREAM %0d LANE %0d '
                       f'GOT %0h", p{i}, f{i}, s{i}, l{i}, g{i});')
        dones.append(f"d{i}")
    return (f"module {top};\n  reg clk = 1'b0;\n  reg finished = 1'b0;\n" + "\n".join(inst)
            + "\n  always #5 clk = ~clk;\n"
            + f"  always @(posedge clk) if (!finished && {' && '.join(dones)}) begin\n"
            + "    finished <= 1'b1;\n" + "\n".join(reports) + "\n    $finish;\n  end\n"
            + "endmodule\n")
