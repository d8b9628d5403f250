// A program from outside the tree: built with `pkg-config --cflags --libs zxpager` and
// nothing else, against an installed zxpager. Prints "outside: ok" when all went well.
#include <lib/zx/port.h>
#include <lib/zx/vmo.h>
#include <stdio.h>
#include <string.h>
#include <zircon/syscalls.h>

#define CHECK(cond)                                              \
  do {                                                           \
    if (!(cond)) {                                               \
      fprintf(stderr, "outside: failed: %s (line %d)\n", #cond, __LINE__); \
      return 1;                                                  \
    }                                                            \
  } while (0)

int main() {
  zx::vmo vmo;
  CHECK(zx::vmo::create(4096, 0, &vmo) == ZX_OK);
  const char msg[] = "installed";
  CHECK(vmo.write(msg, 10, sizeof(msg)) == ZX_OK);
  char got[sizeof(msg)] = {};
  CHECK(vmo.read(got, 10, sizeof(got)) == ZX_OK);
  CHECK(memcmp(got, msg, sizeof(msg)) == 0);
  uint64_t size = 0;
  CHECK(zx_vmo_get_size(vmo.get(), &size) == ZX_OK && size == 4096);

  zx::port port;
  CHECK(zx::port::create(0, &port) == ZX_OK);
  zx_port_packet_t p = {};
  p.key = 1234;
  CHECK(port.queue(&p) == ZX_OK);
  zx_port_packet_t out = {};
  CHECK(port.wait(zx::deadline_after(zx::sec(5)), &out) == ZX_OK);
  CHECK(out.key == 1234);
  CHECK(port.wait(zx::deadline_after(zx::msec(1)), &out) == ZX_ERR_TIMED_OUT);
  printf("outside: ok\n");
  return 0;
}
