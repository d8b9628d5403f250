// Skips a whole test program, as liburing's tests do (exit 77: meson's SKIP), when this
// kernel, or ZXPAGER_DISABLE, lacks a feature the program has no fallback for. One line
// at file scope: ZXP_TEST_REQUIRES(remote_vmos, "remote pager VMOs need UFFDIO_POISON").
#pragma once

#include <stdio.h>
#include <stdlib.h>

#include <zxpager/zxpager.h>

#define ZXP_TEST_REQUIRES(field, why)                                       \
  [[maybe_unused]] static const bool zxp_test_requires_##field = [] {        \
    zxp_features_t f;                                                       \
    if (zxp_get_features(&f) == ZX_OK && !f.field) {                        \
      fprintf(stderr, "SKIP: this kernel (or ZXPAGER_DISABLE) lacks %s: %s\n", \
              #field, why);                                                 \
      exit(77);                                                             \
    }                                                                       \
    return true;                                                            \
  }()
