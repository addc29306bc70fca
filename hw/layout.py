"""The accelerator's boundary: buffer sizes, operations and the s_axilite register map.

One HLS top function runs the training step of the reference network in two operations::

    void fxemu_train_step(uint32_t op, uint32_t n, uint64_t lr_bits,
                          const uint64_t *x, uint64_t *params, uint64_t *logits,
                          const uint64_t *dlogits, uint64_t *cache);

``OP_FORWARD`` reads ``x`` (n images) and the params, writes ``logits`` (n × 10) and ``cache``;
``OP_BACKWARD_UPDATE`` reads ``dlogits`` (n × 10, the host's softmax/cross-entropy gradient
rounded into ``policy.backward.grad``) and ``cache`` and updates ``params`` in place (SGD).
Every element crosses the boundary as one uint64 word holding its format's raw code in the low
bits (``fx.to_bits`` / ``fx.from_bits``), so the boundary adds no rounding; ``lr_bits`` is the
IEEE-754 binary64 pattern of the learning rate.

Buffers (words of 64 bits):

``x``       ``n * IMAGE_WORDS`` codes in ``policy.forward.input`` (row-major 28 × 28 per image)
``params``  ``PARAM_WORDS`` codes in ``policy.update.master``: conv_w (12,1,3,3), conv_b (12),
            dense_w (10,2028), dense_b (10), each row-major, at the ``*_OFFSET`` below
``logits``  ``n * CLASSES`` codes in ``policy.forward.activation``
``dlogits`` ``n * CLASSES`` codes in ``policy.backward.grad``
``cache``   ``n * CACHE_WORDS_PER_SAMPLE`` words of DRAM scratch between the two operations;
            per sample: x (784 input codes), z1 (12·26·26 activation codes: conv + bias),
            h (2028 activation codes: pooled ReLU), dh (2028 grad codes: dense dX)
"""

from __future__ import annotations

__all__ = [
    "BATCH_MAX", "CACHE_DH_OFFSET", "CACHE_H_OFFSET", "CACHE_WORDS_PER_SAMPLE",
    "CACHE_X_OFFSET", "CACHE_Z1_OFFSET", "CLASSES", "CONV_B_OFFSET", "CONV_W_OFFSET",
    "DENSE_B_OFFSET", "DENSE_W_OFFSET", "IMAGE_WORDS", "LR_MAX", "LR_MIN", "OP_BACKWARD_UPDATE",
    "OP_FORWARD", "PARAM_WORDS", "REGISTERS", "VLNV",
]

IMAGE = 28
FILTERS = 12
KERNEL = 3
CONV_OUT = IMAGE - KERNEL + 1  # 26
POOLED = CONV_OUT // 2  # 13
FLAT = FILTERS * POOLED * POOLED  # 2028

IMAGE_WORDS = IMAGE * IMAGE  # 784
CLASSES = 10

CONV_W_OFFSET = 0
CONV_B_OFFSET = CONV_W_OFFSET + FILTERS * KERNEL * KERNEL  # 108
DENSE_W_OFFSET = CONV_B_OFFSET + FILTERS  # 120
DENSE_B_OFFSET = DENSE_W_OFFSET + CLASSES * FLAT  # 20400
PARAM_WORDS = DENSE_B_OFFSET + CLASSES  # 20410

#: The largest batch one call handles (the host splits evaluation batches; a training batch
#: must fit, since the weight gradients reduce over the whole batch).
BATCH_MAX = 256

CACHE_X_OFFSET = 0
CACHE_Z1_OFFSET = CACHE_X_OFFSET + IMAGE_WORDS  # 784
CACHE_H_OFFSET = CACHE_Z1_OFFSET + FILTERS * CONV_OUT * CONV_OUT  # 8896
CACHE_DH_OFFSET = CACHE_H_OFFSET + FLAT  # 10924
CACHE_WORDS_PER_SAMPLE = CACHE_DH_OFFSET + FLAT  # 12952

OP_FORWARD = 0
OP_BACKWARD_UPDATE = 1

#: The learning rates the datapath multiplies exactly: lr is held as
#: ``ap_ufixed<125, 8>`` (117 fraction bits), which holds every double in [2^-64, 2^8).
LR_MIN = 2.0**-64
LR_MAX = 2.0**8

#: Seconds one kernel operation may take before the board driver gives up (a batch of
#: BATCH_MAX at the cycle model's slowest policy on a PYNQ-Z2 takes well under a minute).
TIMEOUT_S = 60.0

#: VLNV of the exported IP (the PYNQ driver binds to it).
VLNV = "fxemu:hls:fxemu_train_step:1.0"

#: Vitis HLS s_axilite layout of the ``control`` bundle for the top function's argument order
#: (offsets in bytes; 64-bit values split into a low and a high 32-bit register).
REGISTERS: dict[str, int] = {
    "CTRL": 0x00,  # bit0 ap_start, bit1 ap_done (clear on read), bit2 ap_idle, bit3 ap_ready
    "GIE": 0x04,
    "IER": 0x08,
    "ISR": 0x0C,
    "op": 0x10,
    "n": 0x18,
    "lr_bits_lo": 0x20,
    "lr_bits_hi": 0x24,
    "x_lo": 0x2C,
    "x_hi": 0x30,
    "params_lo": 0x38,
    "params_hi": 0x3C,
    "logits_lo": 0x44,
    "logits_hi": 0x48,
    "dlogits_lo": 0x50,
    "dlogits_hi": 0x54,
    "cache_lo": 0x5C,
    "cache_hi": 0x60,
}

CTRL_AP_START = 1 << 0
CTRL_AP_DONE = 1 << 1
CTRL_AP_IDLE = 1 << 2
CTRL_AP_READY = 1 << 3

#: The buffer names, in the top function's pointer-argument order.
BUFFERS = ("x", "params", "logits", "dlogits", "cache")


def buffer_words(name: str, n: int = BATCH_MAX) -> int:
    """Words of buffer ``name`` for a batch of ``n`` samples."""
    sizes = {"x": n * IMAGE_WORDS, "params": PARAM_WORDS, "logits": n * CLASSES,
             "dlogits": n * CLASSES, "cache": n * CACHE_WORDS_PER_SAMPLE}
    if name not in sizes:
        raise ValueError(f"buffer: must be one of {', '.join(BUFFERS)}; got {name!r}")
    return sizes[name]
