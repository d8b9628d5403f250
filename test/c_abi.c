/* The C ABI stands alone: a C11 program that includes every public C header and uses
 * handles, VMOs, ports and VMARs, linked against the shared library only. */
#include <stdio.h>
#include <string.h>

#include <zircon/errors.h>
#include <zircon/rights.h>
#include <zircon/status.h>
#include <zircon/syscalls.h>
#include <zircon/syscalls/object.h>
#include <zircon/syscalls/port.h>
#include <zircon/types.h>
#include <zxpager/zxpager.h>

_Static_assert(__STDC_VERSION__ == 201112L, "this test pins the C headers at C11");
_Static_assert(sizeof(zx_port_packet_t) == 48, "Zircon's packet layout");
_Static_assert(ZX_ERR_BAD_STATE == -20, "Zircon's values");

static int failures = 0;

#define EXPECT(cond)                                              \
  do {                                                            \
    if (!(cond)) {                                                \
      fprintf(stderr, "%s:%d: failed: %s\n", __FILE__, __LINE__, #cond); \
      ++failures;                                                 \
    }                                                             \
  } while (0)

#define EXPECT_STATUS(call, want)                                             \
  do {                                                                        \
    zx_status_t st_ = (call);                                                 \
    if (st_ != (want)) {                                                      \
      fprintf(stderr, "%s:%d: %s returned %s, want %s\n", __FILE__, __LINE__, #call, \
              zx_status_get_string(st_), zx_status_get_string(want));         \
      ++failures;                                                             \
    }                                                                         \
  } while (0)

static void vmos(uint32_t options) {
  zx_handle_t vmo = ZX_HANDLE_INVALID;
  EXPECT_STATUS(zx_vmo_create(3 * 4096 - 1, options, &vmo), ZX_OK);
  uint64_t size = 0;
  EXPECT_STATUS(zx_vmo_get_size(vmo, &size), ZX_OK);
  EXPECT(size == 3 * 4096);
  const char msg[] = "from C";
  EXPECT_STATUS(zx_vmo_write(vmo, msg, 4090, sizeof(msg)), ZX_OK);
  char got[sizeof(msg)] = {0};
  EXPECT_STATUS(zx_vmo_read(vmo, got, 4090, sizeof(got)), ZX_OK);
  EXPECT(memcmp(got, msg, sizeof(msg)) == 0);
  EXPECT_STATUS(zx_vmo_read(vmo, got, size, 1), ZX_ERR_OUT_OF_RANGE);

  zx_info_vmo_t info;
  size_t actual = 0, avail = 0;
  EXPECT_STATUS(zx_object_get_info(vmo, ZX_INFO_VMO, &info, sizeof(info), &actual, &avail),
                ZX_OK);
  EXPECT(info.size_bytes == size);
  EXPECT(info.committed_bytes == 2 * 4096);
  EXPECT_STATUS(zx_vmo_op_range(vmo, ZX_VMO_OP_DECOMMIT, 0, size, NULL, 0), ZX_OK);
  EXPECT_STATUS(zx_object_get_info(vmo, ZX_INFO_VMO, &info, sizeof(info), &actual, &avail),
                ZX_OK);
  EXPECT(info.committed_bytes == 0);

  zx_vaddr_t addr = 0;
  EXPECT_STATUS(zx_vmar_map(zx_vmar_root_self(), ZX_VM_PERM_READ | ZX_VM_PERM_WRITE, 0, vmo, 0,
                            size, &addr),
                ZX_OK);
  if (addr) {
    memcpy((void*)(addr + 8192), "mapped", 7);
    EXPECT_STATUS(zx_vmo_read(vmo, got, 8192, 7), ZX_OK);
    EXPECT(memcmp(got, "mapped", 7) == 0);
    EXPECT_STATUS(zx_vmar_unmap(zx_vmar_root_self(), addr, size), ZX_OK);
  }

  zx_handle_t ro = ZX_HANDLE_INVALID;
  EXPECT_STATUS(zx_handle_duplicate(vmo, ZX_RIGHT_READ, &ro), ZX_OK);
  EXPECT_STATUS(zx_vmo_write(ro, msg, 0, 1), ZX_ERR_ACCESS_DENIED);
  zx_handle_t both[2] = {vmo, ro};
  EXPECT_STATUS(zx_handle_close_many(both, 2), ZX_OK);
  EXPECT_STATUS(zx_handle_close(vmo), ZX_ERR_BAD_HANDLE);
}

static void ports(void) {
  zx_handle_t port = ZX_HANDLE_INVALID;
  EXPECT_STATUS(zx_port_create(0, &port), ZX_OK);
  zx_port_packet_t p;
  memset(&p, 0, sizeof(p));
  p.key = 11;
  p.user.u32[0] = 22;
  EXPECT_STATUS(zx_port_queue(port, &p), ZX_OK);
  zx_port_packet_t got;
  memset(&got, 0, sizeof(got));
  EXPECT_STATUS(zx_port_wait(port, ZX_TIME_INFINITE, &got), ZX_OK);
  EXPECT(got.key == 11 && got.type == ZX_PKT_TYPE_USER && got.user.u32[0] == 22);
  zx_time_t deadline = zx_deadline_after(ZX_MSEC(5));
  EXPECT_STATUS(zx_port_wait(port, deadline, &got), ZX_ERR_TIMED_OUT);
  EXPECT(zx_clock_get_monotonic() >= deadline);

  zx_handle_t replaced = ZX_HANDLE_INVALID;
  EXPECT_STATUS(zx_handle_replace(port, ZX_RIGHT_READ, &replaced), ZX_OK);
  EXPECT_STATUS(zx_port_queue(replaced, &p), ZX_ERR_ACCESS_DENIED);
  zx_info_handle_basic_t basic;
  EXPECT_STATUS(
      zx_object_get_info(replaced, ZX_INFO_HANDLE_BASIC, &basic, sizeof(basic), NULL, NULL),
      ZX_OK);
  EXPECT(basic.type == ZX_OBJ_TYPE_PORT && basic.rights == ZX_RIGHT_READ);
  EXPECT_STATUS(zx_handle_close(replaced), ZX_OK);
}

static void nested_vmars(void) {
  zx_handle_t sub = ZX_HANDLE_INVALID;
  zx_vaddr_t base = 0;
  EXPECT_STATUS(zx_vmar_allocate(zx_vmar_root_self(),
                                 ZX_VM_CAN_MAP_READ | ZX_VM_CAN_MAP_WRITE | ZX_VM_CAN_MAP_SPECIFIC,
                                 0, 4 * 4096, &sub, &base),
                ZX_OK);
  zx_info_vmar_t info;
  EXPECT_STATUS(zx_object_get_info(sub, ZX_INFO_VMAR, &info, sizeof(info), NULL, NULL), ZX_OK);
  EXPECT(info.base == base && info.len == 4 * 4096);
  zx_handle_t vmo = ZX_HANDLE_INVALID;
  EXPECT_STATUS(zx_vmo_create(4096, 0, &vmo), ZX_OK);
  zx_vaddr_t addr = 0;
  EXPECT_STATUS(zx_vmar_map(sub, ZX_VM_PERM_READ | ZX_VM_PERM_WRITE | ZX_VM_SPECIFIC, 2 * 4096,
                            vmo, 0, 4096, &addr),
                ZX_OK);
  EXPECT(addr == base + 2 * 4096);
  EXPECT_STATUS(zx_vmar_op_range(sub, ZX_VMAR_OP_COMMIT, addr, 4096, NULL, 0), ZX_OK);
  EXPECT_STATUS(zx_vmar_op_range(sub, ZX_VMAR_OP_COMMIT, base, 4096, NULL, 0), ZX_ERR_BAD_STATE);
  EXPECT_STATUS(zx_vmar_destroy(sub), ZX_OK);
  EXPECT_STATUS(zx_vmar_map(sub, ZX_VM_PERM_READ, 0, vmo, 0, 4096, &addr), ZX_ERR_BAD_STATE);
  EXPECT_STATUS(zx_vmar_destroy(zx_vmar_root_self()), ZX_ERR_NOT_SUPPORTED);
  EXPECT_STATUS(zx_handle_close(vmo), ZX_OK);
  EXPECT_STATUS(zx_handle_close(sub), ZX_OK);
}

int main(void) {
  EXPECT(zx_system_get_page_size() == 4096);
  EXPECT(strcmp(zx_status_get_string(ZX_ERR_BAD_HANDLE), "ZX_ERR_BAD_HANDLE") == 0);
  vmos(0);
  vmos(ZXP_VMO_ANONYMOUS);
  ports();
  nested_vmars();
  EXPECT_STATUS(zx_handle_close(ZX_HANDLE_INVALID), ZX_OK);
  if (failures) {
    fprintf(stderr, "c_abi: %d failure(s)\n", failures);
    return 1;
  }
  printf("c_abi: ok\n");
  return 0;
}
