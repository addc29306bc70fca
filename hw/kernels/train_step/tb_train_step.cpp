// tb_train_step.cpp -- self-checking test bench of the training-step kernel (C simulation).
//
// Usage: tb_train_step GOLDEN   (a file written by fxemu.hw.tools.golden.write_golden for the policy
// this bench was built with). Exit status: 0 all codes match, 1 a mismatch, 2 a bad file.
//
// The golden file is little-endian uint64 words:
//   magic "FXEMUGLD", version 1, n, lr_bits, steps, then the initial params (PARAM_WORDS) and
//   per step: x (n * 784), logits (n * 10), dlogits (n * 10), params after the step
// -- every tensor as codes produced by fxemu's emulated backend.
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <vector>

#include "train_step.hpp"

static const uint64_t MAGIC = 0x444c47554d455846ull;  // "FXEMUGLD"

static bool read_words(FILE *f, std::vector<uint64_t> &v, size_t n) {
  v.resize(n);
  return n == 0 || fread(v.data(), sizeof(uint64_t), n, f) == n;
}

static long compare(const char *what, int step, const std::vector<uint64_t> &got,
                    const std::vector<uint64_t> &want, size_t n) {
  long bad = 0;
  for (size_t i = 0; i < n; ++i) {
    if (got[i] != want[i]) {
      if (bad < 5)
        printf("step %d %s[%zu]: kernel 0x%llx, emulator 0x%llx\n", step, what, i,
               (unsigned long long)got[i], (unsigned long long)want[i]);
      ++bad;
    }
  }
  if (bad) printf("step %d %s: %ld of %zu codes differ\n", step, what, bad, n);
  return bad;
}

int main(int argc, char **argv) {
  if (argc != 2) {
    fprintf(stderr, "usage: %s GOLDEN\n", argv[0]);
    return 2;
  }
  FILE *f = fopen(argv[1], "rb");
  if (!f) {
    perror(argv[1]);
    return 2;
  }
  std::vector<uint64_t> head;
  if (!read_words(f, head, 5) || head[0] != MAGIC || head[1] != 1) {
    fprintf(stderr, "%s: not a version-1 fxemu golden file\n", argv[1]);
    return 2;
  }
  const uint32_t n = (uint32_t)head[2];
  const uint64_t lr_bits = head[3];
  const long steps = (long)head[4];
  if (n < 1 || n > FXEMU_BATCH_MAX) {
    fprintf(stderr, "%s: batch %u outside 1..%d\n", argv[1], n, FXEMU_BATCH_MAX);
    return 2;
  }
  std::vector<uint64_t> params, x, logits_want, dlogits, params_want;
  std::vector<uint64_t> logits((size_t)n * FXEMU_CLASSES);
  std::vector<uint64_t> cache((size_t)n * FXEMU_CACHE_WORDS_PER_SAMPLE);
  if (!read_words(f, params, FXEMU_PARAM_WORDS)) {
    fprintf(stderr, "%s: truncated\n", argv[1]);
    return 2;
  }
  long bad = 0;
  for (long s = 0; s < steps; ++s) {
    if (!read_words(f, x, (size_t)n * FXEMU_IMAGE_WORDS) ||
        !read_words(f, logits_want, (size_t)n * FXEMU_CLASSES) ||
        !read_words(f, dlogits, (size_t)n * FXEMU_CLASSES) ||
        !read_words(f, params_want, FXEMU_PARAM_WORDS)) {
      fprintf(stderr, "%s: truncated at step %ld\n", argv[1], s);
      return 2;
    }
    fxemu_train_step(FXEMU_OP_FORWARD, n, lr_bits, x.data(), params.data(), logits.data(),
                     dlogits.data(), cache.data());
    bad += compare("logits", (int)s, logits, logits_want, logits.size());
    fxemu_train_step(FXEMU_OP_BACKWARD_UPDATE, n, lr_bits, x.data(), params.data(),
                     logits.data(), dlogits.data(), cache.data());
    bad += compare("params", (int)s, params, params_want, FXEMU_PARAM_WORDS);
  }
  fclose(f);
  if (bad) {
    printf("FAIL: %ld codes differ from the emulator\n", bad);
    return 1;
  }
  printf("PASS: %ld steps of batch %u bit-identical to the emulator\n", steps, n);
  return 0;
}
