// zxpager-demo: real page faults on a mapping become Zircon page requests, which a pager
// thread answers by supplying pages. Prints what happened.
#include <fmt/core.h>
#include <stdint.h>
#include <string.h>

#include <atomic>
#include <thread>
#include <vector>

#include <zircon/status.h>
#include <zircon/syscalls.h>
#include <zxpager/zxpager.h>

namespace {

constexpr uint64_t kPages = 64;
constexpr uint64_t kPage = 4096;

// The content the pager "loads" for a page: a deterministic pattern.
uint8_t pattern(uint64_t page, uint64_t i) { return static_cast<uint8_t>(page * 31 + i * 7 + 1); }

[[noreturn]] void die(const char* what, zx_status_t st) {
  fmt::print(stderr, "zxpager-demo: {}: {}\n", what, zx_status_get_string(st));
  exit(1);
}

void check(const char* what, zx_status_t st) {
  if (st != ZX_OK) die(what, st);
}

struct Run {
  uint64_t requests = 0, pages = 0;
};

// Serves page requests on `port` until a COMPLETE packet arrives, filling the aux VMO
// with the pattern and supplying the requested range.
Run serve(zx_handle_t pager, zx_handle_t port, zx_handle_t vmo, zx_handle_t aux) {
  Run run;
  std::vector<uint8_t> buf(kPages * kPage);
  for (;;) {
    zx_port_packet_t packet;
    zx_status_t st = zx_port_wait(port, zx_deadline_after(ZX_SEC(10)), &packet);
    if (st == ZX_ERR_TIMED_OUT) die("waiting for a page request (nothing came in 10 s)", st);
    check("zx_port_wait", st);
    if (packet.page_request.command == ZX_PAGER_VMO_COMPLETE) break;
    uint64_t off = packet.page_request.offset, len = packet.page_request.length;
    for (uint64_t p = off / kPage; p < (off + len) / kPage; ++p) {
      for (uint64_t i = 0; i < kPage; ++i) buf[p * kPage - off + i] = pattern(p, i);
    }
    check("zx_vmo_write", zx_vmo_write(aux, buf.data(), 0, len));
    check("zx_pager_supply_pages", zx_pager_supply_pages(pager, vmo, off, len, aux, 0));
    ++run.requests;
    run.pages += len / kPage;
  }
  return run;
}

void demo_path(zx_handle_t pager, uint32_t aux_options, const char* label) {
  zx_handle_t port, vmo, aux;
  check("zx_port_create", zx_port_create(0, &port));
  check("zx_pager_create_vmo", zx_pager_create_vmo(pager, 0, port, 7, kPages * kPage, &vmo));
  check("zx_vmo_create", zx_vmo_create(kPages * kPage, aux_options, &aux));
  zx_vaddr_t addr;
  check("zx_vmar_map", zx_vmar_map(zx_vmar_root_self(), ZX_VM_PERM_READ | ZX_VM_ALLOW_FAULTS, 0,
                                   vmo, 0, kPages * kPage, &addr));
  const char* path;
  zxp_vmo_supply_path(aux, &path);

  Run run;
  std::thread pager_thread([&] { run = serve(pager, port, vmo, aux); });
  std::atomic<uint64_t> bad{0};
  std::vector<std::thread> readers;
  for (int t = 0; t < 4; ++t) {
    readers.emplace_back([&, t] {
      // Each reader walks all pages from its own starting point: every first touch of a
      // page is a real fault that blocks until the pager supplies it.
      for (uint64_t k = 0; k < kPages; ++k) {
        uint64_t p = (k + t * 16) % kPages;
        auto* bytes = reinterpret_cast<const volatile uint8_t*>(addr + p * kPage);
        for (uint64_t i = 0; i < kPage; i += 512) {
          if (bytes[i] != pattern(p, i)) bad++;
        }
      }
    });
  }
  for (auto& r : readers) r.join();
  check("zx_pager_detach_vmo", zx_pager_detach_vmo(pager, vmo));
  pager_thread.join();
  zx_info_vmo_t info;
  check("zx_object_get_info", zx_object_get_info(vmo, ZX_INFO_VMO, &info, sizeof(info), nullptr,
                                                 nullptr));
  fmt::print("  {:<28} {:>3} requests, {:>3} pages supplied by {:<4}, {} KiB committed, {}\n",
             label, run.requests, run.pages, path, info.committed_bytes / 1024,
             bad ? fmt::format("{} BAD BYTES", bad.load()) : std::string("all bytes correct"));
  zx_vmar_unmap(zx_vmar_root_self(), addr, kPages * kPage);
  zx_handle_close(vmo);
  zx_handle_close(aux);
  zx_handle_close(port);
  if (bad) exit(1);
}

void demo_fail(zx_handle_t pager) {
  zx_handle_t port, vmo;
  check("zx_port_create", zx_port_create(0, &port));
  check("zx_pager_create_vmo", zx_pager_create_vmo(pager, 0, port, 9, kPage, &vmo));
  zx_status_t read_status = ZX_OK;
  std::thread reader([&] {
    uint8_t b;
    read_status = zx_vmo_read(vmo, &b, 0, 1);
  });
  zx_port_packet_t packet;
  check("zx_port_wait", zx_port_wait(port, zx_deadline_after(ZX_SEC(10)), &packet));
  check("zx_pager_op_range",
        zx_pager_op_range(pager, ZX_PAGER_OP_FAIL, vmo, 0, kPage, static_cast<uint64_t>(ZX_ERR_IO)));
  reader.join();
  fmt::print("  {:<28} request at offset {} failed with ZX_ERR_IO: zx_vmo_read returned {}\n",
             "ZX_PAGER_OP_FAIL", packet.page_request.offset, zx_status_get_string(read_status));
  zx_handle_close(vmo);
  zx_handle_close(port);
}

}  // namespace

int main() {
  zxp_features_t f;
  zxp_get_features(&f);
  if (!f.uffd_available) {
    fmt::print(stderr, "zxpager-demo: userfaultfd is not available here: {}\n", f.uffd_error);
    return 1;
  }
  fmt::print("zxpager demo: {} pages mapped, 4 threads faulting through the mapping\n", kPages);
  zx_handle_t pager;
  check("zx_pager_create", zx_pager_create(0, &pager));
  demo_path(pager, 0, "memfd aux VMO");
  demo_path(pager, ZXP_VMO_ANONYMOUS, "anonymous aux VMO");
  demo_fail(pager);
  zxp_pager_stats_t s;
  zxp_pager_get_stats(pager, &s);
  fmt::print("pager statistics: {} requests ({} withdrawn), {} faults, pages supplied: {} by MOVE, "
             "{} by COPY, {} zero; {} waiters failed\n",
             s.requests, s.requests_withdrawn, s.faults, s.pages_supplied_move,
             s.pages_supplied_copy, s.pages_supplied_zero, s.failures);
  zx_handle_close(pager);
  return 0;
}
