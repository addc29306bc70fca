// csim_api.cpp -- the C entry points of the C-simulation library (fxemu/hw/csim.py loads them
// with ctypes). Not part of the HLS design.
#include <stdint.h>

#include "train_step.hpp"

extern "C" {

// The top function, with the arguments checked: 0 on success, 1 bad op, 2 bad n.
int fxemu_csim_run(uint32_t op, uint32_t n, uint64_t lr_bits, const uint64_t *x,
                   uint64_t *params, uint64_t *logits, const uint64_t *dlogits,
                   uint64_t *cache) {
  if (op != FXEMU_OP_FORWARD && op != FXEMU_OP_BACKWARD_UPDATE) return 1;
  if (n < 1 || n > FXEMU_BATCH_MAX) return 2;
  fxemu_train_step(op, n, lr_bits, x, params, logits, dlogits, cache);
  return 0;
}

// The layout the library was built with (the host checks it against fxemu.hw.layout).
long fxemu_csim_layout(int which) {
  switch (which) {
    case 0: return FXEMU_IMAGE_WORDS;
    case 1: return FXEMU_CLASSES;
    case 2: return FXEMU_PARAM_WORDS;
    case 3: return FXEMU_BATCH_MAX;
    case 4: return FXEMU_CACHE_WORDS_PER_SAMPLE;
    default: return -1;
  }
}
}
