// train_step.hpp -- the HLS accelerator of the reference network's SGD training step.
//
// One top function, two operations (the boundary is fxemu/hw/layout.py; keep them in step):
//   op 0 = FORWARD: read x (n images) and params, write logits (n x 10) and cache
//   op 1 = BACKWARD_UPDATE: read dlogits (n x 10) and cache, update params in place (SGD)
// Every element crosses the boundary as one uint64 word holding its format's raw code in the
// low bits; lr_bits is the IEEE-754 binary64 pattern of the learning rate (in [2^-64, 2^8)).
// The element types and Macs come from fxemu_policy.h, generated from a precision policy by
// fxemu/hw/codegen.py.
#ifndef FXEMU_TRAIN_STEP_HPP
#define FXEMU_TRAIN_STEP_HPP

#include <stdint.h>

#define FXEMU_IMAGE 28
#define FXEMU_FILTERS 12
#define FXEMU_KERNEL 3
#define FXEMU_CONV_OUT 26
#define FXEMU_POOLED 13
#define FXEMU_FLAT 2028
#define FXEMU_CLASSES 10
#define FXEMU_IMAGE_WORDS 784

#define FXEMU_CONV_W_OFFSET 0
#define FXEMU_CONV_B_OFFSET 108
#define FXEMU_DENSE_W_OFFSET 120
#define FXEMU_DENSE_B_OFFSET 20400
#define FXEMU_PARAM_WORDS 20410

#define FXEMU_BATCH_MAX 256
#define FXEMU_CACHE_X_OFFSET 0
#define FXEMU_CACHE_Z1_OFFSET 784
#define FXEMU_CACHE_H_OFFSET 8896
#define FXEMU_CACHE_DH_OFFSET 10924
#define FXEMU_CACHE_WORDS_PER_SAMPLE 12952

#define FXEMU_OP_FORWARD 0
#define FXEMU_OP_BACKWARD_UPDATE 1

void fxemu_train_step(uint32_t op, uint32_t n, uint64_t lr_bits, const uint64_t *x,
                      uint64_t *params, uint64_t *logits, const uint64_t *dlogits,
                      uint64_t *cache);

#endif  // FXEMU_TRAIN_STEP_HPP
