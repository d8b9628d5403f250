// The C ABI of the pager calls and the zxp_ extensions: validates arguments in Zircon's
// order and calls into the objects.
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <zircon/syscalls.h>
#include <zxpager/zxpager.h>

#include <liburing.h>

#include "c_abi.h"
#include "fault_service.h"
#include "object.h"
#include "pager.h"
#include "port.h"
#include "uffd.h"
#include "vmo.h"

using zxp::HandleTable;

namespace {

// Looks up the pager and the pager VMO of a pager call, in Zircon's order.
zx_status_t lookup_pager_and_vmo(zx_handle_t pager_handle, zx_rights_t pager_rights,
                                 zx_handle_t vmo_handle, zx_rights_t vmo_rights,
                                 std::shared_ptr<zxp::Pager>* pager,
                                 std::shared_ptr<zxp::Vmo>* vmo) {
  zx_status_t st = HandleTable::get().lookup_as(pager_handle, pager_rights, pager);
  if (st != ZX_OK) return st;
  return HandleTable::get().lookup_as(vmo_handle, vmo_rights, vmo);
}

// The pager VMO of `vmo` if it belongs to `pager`, else null (ZX_ERR_INVALID_ARGS).
zxp::PagerVmo* owned_pager_vmo(const std::shared_ptr<zxp::Pager>& pager,
                               const std::shared_ptr<zxp::Vmo>& vmo) {
  if (vmo->kind() != zxp::Vmo::Kind::kPager) return nullptr;
  auto* pv = static_cast<zxp::PagerVmo*>(vmo.get());
  return pv->pager_koid() == pager->koid() ? pv : nullptr;
}

// Both lookups, then that the VMO is the pager's, in Zircon's order. *pv stays valid
// while *vmo is held.
zx_status_t lookup_owned(zx_handle_t pager_handle, zx_rights_t pager_rights,
                         zx_handle_t vmo_handle, zx_rights_t vmo_rights,
                         std::shared_ptr<zxp::Vmo>* vmo, zxp::PagerVmo** pv) {
  std::shared_ptr<zxp::Pager> pager;
  zx_status_t st =
      lookup_pager_and_vmo(pager_handle, pager_rights, vmo_handle, vmo_rights, &pager, vmo);
  if (st != ZX_OK) return st;
  *pv = owned_pager_vmo(pager, *vmo);
  return *pv ? ZX_OK : ZX_ERR_INVALID_ARGS;
}

zx_status_t supply(zx_handle_t pager_handle, zx_handle_t vmo_handle, uint64_t offset,
                   uint64_t length, zx_handle_t aux_handle, uint64_t aux_offset, bool legacy,
                   bool keep_aux = false) {
  std::shared_ptr<zxp::Pager> pager;
  std::shared_ptr<zxp::Vmo> vmo, aux;
  // The newest rule: pager MANAGE_VMO, pager VMO WRITE, aux WRITE. The legacy call asks
  // nothing of the pager and VMO, and READ|WRITE of the aux.
  zx_status_t st = lookup_pager_and_vmo(pager_handle, legacy ? 0 : ZX_RIGHT_MANAGE_VMO,
                                        vmo_handle, legacy ? 0 : ZX_RIGHT_WRITE, &pager, &vmo);
  if (st != ZX_OK) return st;
  // Zircon checks that the VMO is the pager's before it looks at the aux handle.
  zxp::PagerVmo* pv = owned_pager_vmo(pager, vmo);
  if (!pv) return ZX_ERR_INVALID_ARGS;
  st = HandleTable::get().lookup_as(aux_handle,
                                    legacy ? (ZX_RIGHT_READ | ZX_RIGHT_WRITE) : ZX_RIGHT_WRITE,
                                    &aux);
  if (st != ZX_OK) return st;
  if (!zxp::page_aligned(offset) || !zxp::page_aligned(length) || !zxp::page_aligned(aux_offset)) {
    return ZX_ERR_INVALID_ARGS;
  }
  if (!zxp::range_within(offset, length, pv->size()) ||
      !zxp::range_within(aux_offset, length, aux->size())) {
    return ZX_ERR_OUT_OF_RANGE;
  }
  // Zircon cannot take pages out of a pager-backed VMO.
  if (aux->kind() == zxp::Vmo::Kind::kPager) return ZX_ERR_NOT_SUPPORTED;
  return pv->supply(offset, length, aux.get(), aux_offset, legacy, keep_aux);
}

zx_status_t detach(zx_handle_t pager_handle, zx_handle_t vmo_handle, bool decommit) {
  std::shared_ptr<zxp::Vmo> vmo;
  zxp::PagerVmo* pv = nullptr;
  zx_status_t st = lookup_owned(pager_handle, ZX_RIGHT_ATTACH_VMO | ZX_RIGHT_MANAGE_VMO,
                                vmo_handle, ZX_RIGHT_WRITE, &vmo, &pv);
  if (st != ZX_OK) return st;
  pv->detach(true, decommit);
  return ZX_OK;
}

}  // namespace

extern "C" {

zx_status_t zx_pager_create(uint32_t options, zx_handle_t* out) noexcept try {
  if (options != 0 || !out) return ZX_ERR_INVALID_ARGS;
  zx_status_t st;
  zxp::FaultService* service = zxp::FaultService::get(&st);
  if (!service) return st;
  return HandleTable::get().add(std::make_shared<zxp::Pager>(service), ZX_DEFAULT_PAGER_RIGHTS,
                                out);
} catch (...) {
  return zxp::status_from_exception();
}

zx_status_t zx_pager_create_vmo(zx_handle_t pager_handle, uint32_t options, zx_handle_t port_handle,
                                uint64_t key, uint64_t size, zx_handle_t* out) noexcept try {
  std::shared_ptr<zxp::Pager> pager;
  zx_status_t st = HandleTable::get().lookup_as(pager_handle, ZX_RIGHT_ATTACH_VMO, &pager);
  if (st != ZX_OK) return st;
  std::shared_ptr<zxp::Port> port;
  st = HandleTable::get().lookup_as(port_handle, ZX_RIGHT_WRITE, &port);
  if (st != ZX_OK) return st;
  if (options & ~(ZX_VMO_RESIZABLE | ZX_VMO_TRAP_DIRTY | ZXP_PAGER_VMO_PRIVATE)) {
    return ZX_ERR_INVALID_ARGS;
  }
  if (!out) return ZX_ERR_INVALID_ARGS;
  // A private VMO's memory is its one mapping, which cannot end in SIGBUS where a shrink
  // cuts it: only shared VMOs resize.
  const bool resizable = (options & ZX_VMO_RESIZABLE) != 0;
  if (resizable && (options & ZXP_PAGER_VMO_PRIVATE)) return ZX_ERR_NOT_SUPPORTED;
  uint64_t rounded;
  if (!zxp::round_up_page(size, &rounded) || rounded > zxp::kMaxVmoSize) {
    return ZX_ERR_OUT_OF_RANGE;
  }
  std::shared_ptr<zxp::PagerVmo> vmo;
  st = pager->create_vmo(options, std::move(port), key, rounded, &vmo);
  if (st != ZX_OK) return st;
  return HandleTable::get().add(std::move(vmo),
                                ZX_DEFAULT_VMO_RIGHTS | (resizable ? ZX_RIGHT_RESIZE : 0), out);
} catch (...) {
  return zxp::status_from_exception();
}

zx_status_t zxp_pager_create_remote_vmo(zx_handle_t pager_handle, uint32_t options,
                                        zx_handle_t port_handle, uint64_t key, int uffd,
                                        uint64_t remote_addr, uint64_t size,
                                        zx_handle_t* out) noexcept try {
  std::shared_ptr<zxp::Pager> pager;
  zx_status_t st = HandleTable::get().lookup_as(pager_handle, ZX_RIGHT_ATTACH_VMO, &pager);
  if (st != ZX_OK) return st;
  std::shared_ptr<zxp::Port> port;
  st = HandleTable::get().lookup_as(port_handle, ZX_RIGHT_WRITE, &port);
  if (st != ZX_OK) return st;
  if (options != 0 || !out || !zxp::page_aligned(remote_addr)) return ZX_ERR_INVALID_ARGS;
  if (!zxp::uffd::is_userfaultfd(uffd)) return ZX_ERR_INVALID_ARGS;
  uint64_t rounded;
  if (size == 0 || !zxp::round_up_page(size, &rounded) || rounded > zxp::kMaxVmoSize ||
      remote_addr > UINT64_MAX - rounded) {
    return size == 0 ? ZX_ERR_INVALID_ARGS : ZX_ERR_OUT_OF_RANGE;
  }
  std::shared_ptr<zxp::PagerVmo> vmo;
  st = pager->create_remote_vmo(std::move(port), key, uffd, remote_addr, rounded, &vmo);
  if (st != ZX_OK) return st;
  // Until the handle exists the VMO only borrows the descriptor: on failure it is
  // dropped here (HandleTable::add's failure tears it down) without closing or poisoning
  // what the caller still owns. (A handle closed by another thread before the adopt
  // below leaves the descriptor to the VMO's destructor: closed, its pages not poisoned.)
  st = HandleTable::get().add(vmo, ZX_DEFAULT_VMO_RIGHTS, out);
  if (st != ZX_OK) return st;
  vmo->adopt_remote_fd(zxp::UniqueFd(uffd));
  return ZX_OK;
} catch (...) {
  return zxp::status_from_exception();
}

zx_status_t zxp_remote_map_create(uint64_t size, uintptr_t* addr, int* uffd) noexcept try {
  if (!addr || !uffd || size == 0) return ZX_ERR_INVALID_ARGS;
  uint64_t rounded;
  if (!zxp::round_up_page(size, &rounded) || rounded > zxp::kMaxVmoSize) {
    return ZX_ERR_OUT_OF_RANGE;
  }
  if (!zxp::uffd::probe().available) return ZX_ERR_NOT_SUPPORTED;
  // The pager fails this mapping's faults, and guards it against zeros at teardown, with
  // poison markers: without UFFDIO_POISON (before 6.6) a remote VMO cannot keep its
  // promise, and the pager refuses it anyway (zxp_pager_create_remote_vmo).
  if (!(zxp::uffd::probe().features & UFFD_FEATURE_POISON)) return ZX_ERR_NOT_SUPPORTED;
  // No events: the client's munmap/madvise must never wait for the pager process.
  int fd = zxp::uffd::open(zxp::uffd::probe().features & UFFD_FEATURE_POISON);
  if (fd < 0) return ZX_ERR_NOT_SUPPORTED;
  void* p = mmap(nullptr, rounded, PROT_READ | PROT_WRITE,
                 MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (p == MAP_FAILED) {
    close(fd);
    return ZX_ERR_NO_MEMORY;
  }
  madvise(p, rounded, MADV_DONTFORK);
  int err = zxp::uffd::register_range(fd, reinterpret_cast<uintptr_t>(p), rounded, false,
                                      nullptr);
  if (err != 0) {
    munmap(p, rounded);
    close(fd);
    return err == ENOMEM ? ZX_ERR_NO_MEMORY : ZX_ERR_NOT_SUPPORTED;
  }
  *addr = reinterpret_cast<uintptr_t>(p);
  *uffd = fd;
  return ZX_OK;
} catch (...) {
  return zxp::status_from_exception();
}

zx_status_t zx_pager_detach_vmo(zx_handle_t pager_handle, zx_handle_t vmo_handle) noexcept try {
  return detach(pager_handle, vmo_handle, true);
} catch (...) {
  return zxp::status_from_exception();
}

zx_status_t zxp_pager_detach_vmo_keep_pages(zx_handle_t pager_handle,
                                            zx_handle_t vmo_handle) noexcept try {
  return detach(pager_handle, vmo_handle, false);
} catch (...) {
  return zxp::status_from_exception();
}

zx_status_t zx_pager_supply_pages(zx_handle_t pager, zx_handle_t pager_vmo, uint64_t offset,
                                  uint64_t length, zx_handle_t aux_vmo,
                                  uint64_t aux_offset) noexcept try {
  return supply(pager, pager_vmo, offset, length, aux_vmo, aux_offset, false);
} catch (...) {
  return zxp::status_from_exception();
}

zx_status_t zxp_pager_supply_pages_copy(zx_handle_t pager, zx_handle_t pager_vmo, uint64_t offset,
                                       uint64_t length, zx_handle_t aux_vmo,
                                       uint64_t aux_offset) noexcept try {
  return supply(pager, pager_vmo, offset, length, aux_vmo, aux_offset, false, true);
} catch (...) {
  return zxp::status_from_exception();
}

zx_status_t zx_pager_vmo_op(zx_handle_t pager, zx_handle_t pager_vmo, uint32_t op, uint64_t offset,
                            uint64_t length, zx_handle_t aux_vmo,
                            uint64_t aux_offset) noexcept try {
  if (op != ZX_PAGER_SUPPLY_PAGES) {
    std::shared_ptr<zxp::Pager> p;
    std::shared_ptr<zxp::Vmo> v;
    zx_status_t st = lookup_pager_and_vmo(pager, 0, pager_vmo, 0, &p, &v);
    return st != ZX_OK ? st : ZX_ERR_INVALID_ARGS;
  }
  return supply(pager, pager_vmo, offset, length, aux_vmo, aux_offset, true);
} catch (...) {
  return zxp::status_from_exception();
}

zx_status_t zx_pager_op_range(zx_handle_t pager_handle, uint32_t op, zx_handle_t vmo_handle,
                              uint64_t offset, uint64_t length, uint64_t data) noexcept try {
  std::shared_ptr<zxp::Vmo> vmo;
  zxp::PagerVmo* pv = nullptr;
  zx_status_t st =
      lookup_owned(pager_handle, ZX_RIGHT_MANAGE_VMO, vmo_handle, ZX_RIGHT_WRITE, &vmo, &pv);
  if (st != ZX_OK) return st;
  if (!zxp::page_aligned(offset) || !zxp::page_aligned(length)) return ZX_ERR_INVALID_ARGS;
  switch (op) {
    case ZX_PAGER_OP_FAIL: {
      auto error = static_cast<zx_status_t>(static_cast<int64_t>(data));
      if (static_cast<int64_t>(data) != error) return ZX_ERR_INVALID_ARGS;
      switch (error) {
        case ZX_ERR_IO:
        case ZX_ERR_IO_DATA_INTEGRITY:
        case ZX_ERR_BAD_STATE:
        case ZX_ERR_NO_SPACE:
        case ZX_ERR_BUFFER_TOO_SMALL:
          break;
        default:
          return ZX_ERR_INVALID_ARGS;
      }
      if (!zxp::range_within(offset, length, pv->size())) return ZX_ERR_OUT_OF_RANGE;
      return pv->fail(offset, length, error);
    }
    case ZX_PAGER_OP_DIRTY:
    case ZX_PAGER_OP_WRITEBACK_END:
      if (data != 0) return ZX_ERR_INVALID_ARGS;
      if (!zxp::range_within(offset, length, pv->size())) return ZX_ERR_OUT_OF_RANGE;
      return op == ZX_PAGER_OP_DIRTY ? pv->op_dirty(offset, length)
                                     : pv->writeback_end(offset, length);
    case ZX_PAGER_OP_WRITEBACK_BEGIN:
      if (data & ~ZX_VMO_DIRTY_RANGE_IS_ZERO) return ZX_ERR_INVALID_ARGS;
      if (!zxp::range_within(offset, length, pv->size())) return ZX_ERR_OUT_OF_RANGE;
      return pv->writeback_begin(offset, length, (data & ZX_VMO_DIRTY_RANGE_IS_ZERO) != 0);
    default:
      return ZX_ERR_NOT_SUPPORTED;  // (Zircon's answer to an op it does not know)
  }
} catch (...) {
  return zxp::status_from_exception();
}

zx_status_t zx_pager_query_vmo_stats(zx_handle_t pager_handle, zx_handle_t vmo_handle,
                                     uint32_t options, void* buffer,
                                     size_t buffer_size) noexcept try {
  // Zircon's order: the handles (the pager with MANAGE_VMO, the VMO with READ, as its
  // kernel asks), the VMO's pager, the buffer's size, the options.
  std::shared_ptr<zxp::Vmo> vmo;
  zxp::PagerVmo* pv = nullptr;
  zx_status_t st =
      lookup_owned(pager_handle, ZX_RIGHT_MANAGE_VMO, vmo_handle, ZX_RIGHT_READ, &vmo, &pv);
  if (st != ZX_OK) return st;
  if (buffer_size < sizeof(zx_pager_vmo_stats_t)) return ZX_ERR_BUFFER_TOO_SMALL;
  if (options & ~ZX_PAGER_RESET_VMO_STATS) return ZX_ERR_INVALID_ARGS;
  // Zircon faults on a bad buffer while copying out; here a null one is refused before
  // the query, which would otherwise consume the state a reset clears.
  if (!buffer) return ZX_ERR_INVALID_ARGS;
  bool modified = false;
  st = pv->query_stats((options & ZX_PAGER_RESET_VMO_STATS) != 0, &modified);
  if (st != ZX_OK) return st;
  zx_pager_vmo_stats_t stats = {};
  stats.modified = modified ? ZX_PAGER_VMO_STATS_MODIFIED : 0;
  memcpy(buffer, &stats, sizeof(stats));
  return ZX_OK;
} catch (...) {
  return zxp::status_from_exception();
}

zx_status_t zx_pager_query_dirty_ranges(zx_handle_t pager_handle, zx_handle_t vmo_handle,
                                        uint64_t offset, uint64_t length, void* buffer,
                                        size_t buffer_size, size_t* actual,
                                        size_t* avail) noexcept try {
  // Zircon's order: the pager with MANAGE_VMO, the VMO with READ, the VMO's pager.
  std::shared_ptr<zxp::Vmo> vmo;
  zxp::PagerVmo* pv = nullptr;
  zx_status_t st =
      lookup_owned(pager_handle, ZX_RIGHT_MANAGE_VMO, vmo_handle, ZX_RIGHT_READ, &vmo, &pv);
  if (st != ZX_OK) return st;
  if (!zxp::page_aligned(offset) || !zxp::page_aligned(length)) return ZX_ERR_INVALID_ARGS;
  if (!zxp::range_within(offset, length, pv->size())) return ZX_ERR_OUT_OF_RANGE;
  std::vector<zx_vmo_dirty_range_t> ranges;
  st = pv->query_dirty(offset, length, &ranges);
  if (st != ZX_OK) return st;
  const size_t fit = std::min(ranges.size(), buffer_size / sizeof(zx_vmo_dirty_range_t));
  // Zircon faults on a bad buffer when it copies a range out (ZX_ERR_INVALID_ARGS).
  if (fit > 0 && !buffer) return ZX_ERR_INVALID_ARGS;
  if (fit > 0) memcpy(buffer, ranges.data(), fit * sizeof(zx_vmo_dirty_range_t));
  if (actual) *actual = fit;
  if (avail) *avail = ranges.size();
  return ZX_OK;
} catch (...) {
  return zxp::status_from_exception();
}

// ---- extensions ----

zx_status_t zxp_get_features(zxp_features_t* out) noexcept try {
  if (!out) return ZX_ERR_INVALID_ARGS;
  const zxp::uffd::Probe& p = zxp::uffd::probe();
  zxp_features_t f = {};
  f.uffd_available = p.available;
  f.uffd_via_dev = p.via_dev;
  f.uffd_user_mode_only = p.user_mode_only;
  f.uffd_api_features = p.features;
  f.move = (p.features & UFFD_FEATURE_MOVE) != 0;
  f.poison = (p.features & UFFD_FEATURE_POISON) != 0;
  f.wp = (p.features & UFFD_FEATURE_PAGEFAULT_FLAG_WP) != 0;
  f.wp_unpopulated = (p.features & UFFD_FEATURE_WP_UNPOPULATED) != 0;
  f.minor_shmem = (p.features & UFFD_FEATURE_MINOR_SHMEM) != 0;
  f.thread_id = (p.features & UFFD_FEATURE_THREAD_ID) != 0;
  f.exact_address = (p.features & UFFD_FEATURE_EXACT_ADDRESS) != 0;
  f.event_remap = (p.features & UFFD_FEATURE_EVENT_REMAP) != 0;
  f.event_remove = (p.features & UFFD_FEATURE_EVENT_REMOVE) != 0;
  f.event_unmap = (p.features & UFFD_FEATURE_EVENT_UNMAP) != 0;
  f.anon_supply_by_move = f.move;
  strncpy(f.uffd_error, p.error.c_str(), sizeof(f.uffd_error) - 1);
  f.mremap_dontunmap = zxp::uffd::kernel_has(zxp::uffd::kDontUnmap);
  f.epoll_pwait2 = zxp::uffd::kernel_has(zxp::uffd::kEpollPwait2);
  f.madv_populate = zxp::uffd::kernel_has(zxp::uffd::kPopulate);
  f.pagemap_scan = zxp::uffd::kernel_has(zxp::uffd::kPagemapScan);
  f.remote_vmos = p.available && f.poison;
  f.fail_by_signal = f.thread_id;
  f.wp_shmem = f.wp && (p.features & UFFD_FEATURE_WP_HUGETLBFS_SHMEM) != 0;
  f.uffd_kernel_features = p.kernel_features;
  f.uffd_disabled_features = p.disabled_features;
  strncpy(f.disabled, p.disabled_names.c_str(), sizeof(f.disabled) - 1);
  static const bool uring = [] {
    struct io_uring ring;
    if (io_uring_queue_init(2, &ring, 0) != 0) return false;
    io_uring_queue_exit(&ring);
    return true;
  }();
  f.io_uring = uring;
  *out = f;
  return ZX_OK;
} catch (...) {
  return zxp::status_from_exception();
}

zx_status_t zxp_pager_get_stats(zx_handle_t pager_handle, zxp_pager_stats_t* out) noexcept try {
  std::shared_ptr<zxp::Pager> pager;
  zx_status_t st = HandleTable::get().lookup_as(pager_handle, 0, &pager);
  if (st != ZX_OK) return st;
  if (!out) return ZX_ERR_INVALID_ARGS;
  pager->stats()->snapshot(out);
  return ZX_OK;
} catch (...) {
  return zxp::status_from_exception();
}

zx_status_t zxp_vmo_evict(zx_handle_t vmo_handle, uint64_t offset, uint64_t length,
                          uint64_t* evicted_bytes) noexcept try {
  std::shared_ptr<zxp::Vmo> vmo;
  zx_status_t st = HandleTable::get().lookup_as(vmo_handle, ZX_RIGHT_WRITE, &vmo);
  if (st != ZX_OK) return st;
  if (vmo->kind() != zxp::Vmo::Kind::kPager) return ZX_ERR_NOT_SUPPORTED;
  if (!zxp::page_aligned(offset) || !zxp::page_aligned(length)) return ZX_ERR_INVALID_ARGS;
  if (!zxp::range_within(offset, length, vmo->size())) return ZX_ERR_OUT_OF_RANGE;
  uint64_t evicted = 0;
  st = static_cast<zxp::PagerVmo*>(vmo.get())->evict(offset, length, &evicted);
  if (evicted_bytes) *evicted_bytes = evicted;
  return st;
} catch (...) {
  return zxp::status_from_exception();
}

namespace {

// The shared pager VMO behind `vmo_handle`, looked up with `rights`.
zx_status_t lookup_shared_pager_vmo(zx_handle_t vmo_handle, zx_rights_t rights,
                                    std::shared_ptr<zxp::PagerVmo>* out) {
  std::shared_ptr<zxp::Vmo> vmo;
  zx_status_t st = HandleTable::get().lookup_as(vmo_handle, rights, &vmo);
  if (st != ZX_OK) return st;
  if (vmo->kind() != zxp::Vmo::Kind::kPager) return ZX_ERR_NOT_SUPPORTED;
  auto pager_vmo = std::static_pointer_cast<zxp::PagerVmo>(vmo);
  if (!pager_vmo->shared()) return ZX_ERR_NOT_SUPPORTED;
  *out = std::move(pager_vmo);
  return ZX_OK;
}

bool remote_views_supported() {
  // Failed and torn-down pages reach another process only through poison markers.
  return zxp::uffd::probe().available && (zxp::uffd::probe().features & UFFD_FEATURE_POISON);
}

}  // namespace

zx_status_t zxp_vmo_get_memory_fd(zx_handle_t vmo_handle, uint32_t options, int* fd) noexcept try {
  const bool writable = (options & ZXP_REMOTE_WRITABLE) != 0;
  std::shared_ptr<zxp::PagerVmo> vmo;
  zx_status_t st = lookup_shared_pager_vmo(
      vmo_handle, ZX_RIGHT_MAP | ZX_RIGHT_READ | (writable ? ZX_RIGHT_WRITE : 0), &vmo);
  if (st != ZX_OK) return st;
  if (!fd || (options & ~ZXP_REMOTE_WRITABLE)) return ZX_ERR_INVALID_ARGS;
  if (!remote_views_supported()) return ZX_ERR_NOT_SUPPORTED;
  zxp::UniqueFd out;
  st = vmo->memory_fd(writable, &out);
  if (st != ZX_OK) return st;
  *fd = out.release();
  return ZX_OK;
} catch (...) {
  return zxp::status_from_exception();
}

zx_status_t zxp_remote_map_vmo(int memory_fd, uint64_t offset, uint64_t len, uint32_t options,
                               uintptr_t* addr, int* uffd) noexcept try {
  if (!addr || !uffd || len == 0 || !zxp::page_aligned(offset) ||
      (options & ~ZXP_REMOTE_WRITABLE)) {
    return ZX_ERR_INVALID_ARGS;
  }
  const bool writable = (options & ZXP_REMOTE_WRITABLE) != 0;
  struct stat st;
  if (memory_fd < 0 || fstat(memory_fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    return ZX_ERR_INVALID_ARGS;
  }
  int fl = fcntl(memory_fd, F_GETFL);
  if (fl < 0) return ZX_ERR_INVALID_ARGS;
  if (writable && (fl & O_ACCMODE) != O_RDWR) return ZX_ERR_ACCESS_DENIED;
  uint64_t rounded;
  if (!zxp::round_up_page(len, &rounded) || rounded > zxp::kMaxVmoSize ||
      offset > static_cast<uint64_t>(st.st_size) ||
      rounded > static_cast<uint64_t>(st.st_size) - offset) {
    return ZX_ERR_OUT_OF_RANGE;
  }
  if (!remote_views_supported()) return ZX_ERR_NOT_SUPPORTED;
  // No events: the client's munmap/madvise must never wait for the pager process. A
  // writable mapping is write-protected too where the kernel can (shared memory WP), so
  // that the pager sees its stores (dirty pages).
  const bool wp = writable && (zxp::uffd::probe().features & UFFD_FEATURE_PAGEFAULT_FLAG_WP) &&
                  (zxp::uffd::probe().features & UFFD_FEATURE_WP_HUGETLBFS_SHMEM);
  zxp::UniqueFd fd(zxp::uffd::open(UFFD_FEATURE_POISON |
                                   (wp ? UFFD_FEATURE_WP_HUGETLBFS_SHMEM : 0)));
  if (!fd) return ZX_ERR_NOT_SUPPORTED;
  // Read-only: a private mapping of the read-only descriptor. Nothing done through it can
  // reach the memory others see (a store after mprotect, or a COPY through its
  // userfaultfd, makes a private page of this process).
  void* p = writable ? mmap(nullptr, rounded, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_NORESERVE,
                            memory_fd, static_cast<off_t>(offset))
                     : mmap(nullptr, rounded, PROT_READ, MAP_PRIVATE | MAP_NORESERVE, memory_fd,
                            static_cast<off_t>(offset));
  if (p == MAP_FAILED) return errno == ENOMEM ? ZX_ERR_NO_MEMORY : ZX_ERR_INVALID_ARGS;
  madvise(p, rounded, MADV_DONTFORK);
  int err = zxp::uffd::register_range(fd.get(), reinterpret_cast<uintptr_t>(p), rounded, wp,
                                      nullptr);
  // Protected whole before it is handed out: no store lands unseen, even before the pager
  // attaches the mapping (one would wait until then).
  if (err == 0 && wp) {
    err = zxp::uffd::writeprotect(fd.get(), reinterpret_cast<uintptr_t>(p), rounded, true, false);
  }
  if (err != 0) {
    munmap(p, rounded);
    return err == ENOMEM ? ZX_ERR_NO_MEMORY : ZX_ERR_NOT_SUPPORTED;
  }
  *addr = reinterpret_cast<uintptr_t>(p);
  *uffd = fd.release();
  return ZX_OK;
} catch (...) {
  return zxp::status_from_exception();
}

zx_status_t zxp_vmo_attach_remote(zx_handle_t vmo_handle, int uffd, uint64_t remote_addr,
                                  uint64_t vmo_offset, uint64_t len, uint64_t* id) noexcept try {
  std::shared_ptr<zxp::PagerVmo> vmo;
  zx_status_t st = lookup_shared_pager_vmo(vmo_handle, ZX_RIGHT_WRITE, &vmo);
  if (st != ZX_OK) return st;
  if (!id || len == 0 || !zxp::page_aligned(remote_addr) || !zxp::page_aligned(vmo_offset) ||
      !zxp::page_aligned(len)) {
    return ZX_ERR_INVALID_ARGS;
  }
  if (!zxp::range_within(vmo_offset, len, vmo->size()) || remote_addr > UINT64_MAX - len) {
    return ZX_ERR_OUT_OF_RANGE;
  }
  if (!zxp::uffd::is_userfaultfd(uffd)) return ZX_ERR_INVALID_ARGS;
  if (!remote_views_supported()) return ZX_ERR_NOT_SUPPORTED;
  return vmo->attach_remote(uffd, remote_addr, vmo_offset, len, id);
} catch (...) {
  return zxp::status_from_exception();
}

zx_status_t zxp_vmo_detach_remote(zx_handle_t vmo_handle, uint64_t id) noexcept try {
  std::shared_ptr<zxp::PagerVmo> vmo;
  zx_status_t st = lookup_shared_pager_vmo(vmo_handle, ZX_RIGHT_WRITE, &vmo);
  if (st == ZX_ERR_NOT_SUPPORTED) return ZX_ERR_NOT_FOUND;  // it has no remote mappings
  if (st != ZX_OK) return st;
  return vmo->detach_remote(id);
} catch (...) {
  return zxp::status_from_exception();
}

zx_status_t zxp_vmo_supply_path(zx_handle_t aux_handle, const char** out) noexcept try {
  std::shared_ptr<zxp::Vmo> vmo;
  zx_status_t st = HandleTable::get().lookup_as(aux_handle, 0, &vmo);
  if (st != ZX_OK) return st;
  if (!out) return ZX_ERR_INVALID_ARGS;
  bool move = vmo->kind() == zxp::Vmo::Kind::kAnonymous &&
              (zxp::uffd::probe().features & UFFD_FEATURE_MOVE);
  *out = move ? "move" : "copy";
  return ZX_OK;
} catch (...) {
  return zxp::status_from_exception();
}

}  // extern "C"
