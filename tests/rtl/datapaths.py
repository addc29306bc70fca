"""The co-simulated datapaths: fixed Macs covering every ap_fixed Q and O mode (sat_bits too),
float Macs of the training presets' formats, every order the generator builds."""

from __future__ import annotations

from dataclasses import dataclass

from fxemu.formats import Fixed, Float, Mac, parse

F = Fixed
HALF, F32, BF16 = parse("float16"), parse("float32"), parse("bfloat16")
E4M3, E5M2 = parse("float8_e4m3fn"), parse("float8_e5m2")


@dataclass(frozen=True)
class Datapath:
    id: str
    mac: Mac
    a: Fixed | Float
    b: Fixed | Float
    k: int = 0  # tree leaves of a pairwise Mac

    @property
    def formats(self) -> list[Fixed | Float]:
        m = self.mac
        return [f for f in (m.acc, m.mul, m.out) if f is not None]


FX16 = F(16, 8, rounding="rnd_conv", overflow="sat")
FX8 = F(8, 3)

FIXED = [
    Datapath("fixed16", Mac(F(32, 16, rounding="rnd_conv", overflow="sat")), FX16, FX16),
    Datapath("rnd-wrapsm-rndzero-satsym-rndinf-wrapN2",
             Mac(F(12, 4, rounding="rnd", overflow="wrap_sm"),
                 mul=F(10, 3, rounding="rnd_zero", overflow="sat_sym"),
                 out=F(8, 2, rounding="rnd_inf", overflow="wrap", sat_bits=2)), FX8, FX8),
    Datapath("rndconvodd-satzero-pairwise5",
             Mac(F(14, 5, rounding="rnd_conv_odd", overflow="sat_zero"), order="pairwise"),
             FX8, FX8, k=5),
    Datapath("trn-sat-chunk3", Mac(F(12, 4, overflow="sat"), order="chunk:3"), FX8, FX8),
    Datapath("trnzero-wrap-rndmininf-wrapN1-unsigned-b",
             Mac(F(10, 3, rounding="trn_zero"),
                 mul=F(9, 2, rounding="rnd_min_inf", overflow="wrap", sat_bits=1)),
             FX8, F(6, 2, signed=False)),
    Datapath("rndmininf-wrapsmN1-chunk4-out-satsym",
             Mac(F(11, 4, rounding="rnd_min_inf", overflow="wrap_sm", sat_bits=1),
                 out=F(7, 2, overflow="sat_sym"), order="chunk:4"), F(7, 2), F(7, 2)),
    Datapath("rndinf-wrapsmN2-mul-satzero",
             Mac(F(11, 4, rounding="rnd_inf", overflow="wrap_sm", sat_bits=2),
                 mul=F(8, 2, overflow="sat_zero")), F(6, 2), F(6, 2)),
    Datapath("wrapN3-out-rndconvodd-sat-pairwise3",
             Mac(F(16, 6, overflow="wrap", sat_bits=3),
                 out=F(8, 3, rounding="rnd_conv_odd", overflow="sat"), order="pairwise"),
             FX8, FX8, k=3),
    Datapath("unsigned-acc-rnd-sat",
             Mac(F(12, 5, signed=False, rounding="rnd", overflow="sat"),
                 out=F(6, 3, signed=False, rounding="rnd_conv", overflow="wrap", sat_bits=2)),
             F(6, 3, signed=False), F(6, 3, signed=False)),
    Datapath("rndzero-satsym-mul-rndconv-wrap-pairwise8",
             Mac(F(13, 5, rounding="rnd_zero", overflow="sat_sym"),
                 mul=F(9, 3, rounding="rnd_conv"), order="pairwise"), FX8, FX8, k=8),
    Datapath("rndconv-wrap-out-trnzero-satzero",
             Mac(F(10, 2, rounding="rnd_conv"), out=F(6, 1, rounding="trn_zero",
                                                      overflow="sat_zero")),
             F(5, 1), F(9, 4)),
    Datapath("mul-rnd-satsym-chunk2-wide",
             Mac(F(24, 10, overflow="sat"), mul=F(14, 5, rounding="rnd", overflow="sat_sym"),
                 order="chunk:2"), F(12, 4), F(12, 4)),
]

FLOAT = [
    Datapath("half-f32-out-half", Mac(F32, out=HALF), HALF, HALF),
    Datapath("bf16-f32-ftz", Mac(Float(8, 23, subnormals=False)), BF16, BF16),
    Datapath("e4m3-half-chunk4", Mac(HALF, order="chunk:4"), E4M3, E4M3),
    Datapath("e5m2-half-ftz-pairwise4", Mac(Float(5, 10, subnormals=False), order="pairwise"),
             E5M2, E5M2, k=4),
    Datapath("half-mul-half-acc-half", Mac(HALF, mul=HALF), HALF, HALF),
    Datapath("bf16-mul-bf16-ftz-f32-ftz-out-bf16",
             Mac(Float(8, 23, subnormals=False), mul=Float(8, 7, subnormals=False), out=BF16),
             BF16, BF16),
    Datapath("e4m3-e5m2-f32", Mac(F32), E4M3, E5M2),
]

DATAPATHS = FIXED + FLOAT
