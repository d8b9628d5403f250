// Resizable pager VMOs (zx_vmo_set_size) and zx_pager_query_vmo_stats.
//
// A resizable pager VMO is shared (a memfd): its size is the memfd's size, and its home
// maps the memfd over a fixed reserve, so it grows in place. Linux does the rest of a
// shrink in every view of every process at once: ftruncate drops the pages past the end
// from the page cache and from every mapping (private copies included), and a fault past
// the end is SIGBUS before it reaches userfaultfd. What is left to the library is its own
// record: pages, requests and waiters past the end.
//
// Zircon's rule for growth (the pager writeback design's "zero interval"): the pager has no
// content for a range the VMO grew over, so the kernel supplies zeros there itself, with no
// request. Here every page of zero_ is such a page: the first touch (a fault, a
// zx_vmo_read/write, a COMMIT) puts a zero page in, and zx_pager_supply_pages skips it.
// Dirty tracking reports the zero pages not written since as zero ranges
// (ZX_VMO_DIRTY_RANGE_IS_ZERO) until they are written back as zeros (pager_dirty.cpp).
//
// Locking as in pager.h: everything below runs with PagerVmo::mu_ held, which ftruncate
// and UFFDIO_COPY never wait on the fault thread for.
#include <errno.h>
#include <unistd.h>

#include <algorithm>

#include "clone.h"
#include "fault_service.h"
#include "pager.h"
#include "status.h"
#include "uffd.h"

namespace zxp {
namespace {

constexpr uint64_t kZeroPages = 16;
alignas(4096) const uint8_t kZeros[kZeroPages * kPageSize] = {};

}  // namespace

zx_status_t PagerVmo::fill_grown(uint64_t first, uint64_t end) {
  end = std::min(end, size_pages());
  // (Detached, a zero range still reads as zeros: it survives a detach, as on Zircon.)
  if (first >= end || torn_down_) return ZX_OK;
  std::vector<std::pair<uint64_t, uint64_t>> runs;
  zero_.for_each_present_run(first, end, [&](uint64_t za, uint64_t zb) {
    present_.for_each_missing_run(za, zb, [&](uint64_t a, uint64_t b) {
      for (uint64_t p = a; p < b; p += kZeroPages) {
        runs.emplace_back(p, std::min(b, p + kZeroPages));
      }
    });
  });
  for (auto [a, b] : runs) {
    // A remote view may still hold a marker from a FAIL before the page was cut off.
    if (!remote_views_.empty() || !local_views_.empty()) unpoison_views(a, b, kZeros);
    uint64_t p = a;
    while (p < b) {
      // Write-protected where writes are tracked: a zero page is Clean until written.
      uffd::Progress r = uffd::copy(uffd_, home_ + p * kPageSize, kZeros, (b - p) * kPageSize,
                                    true, tracking_writes());
      mark_present(p, p + r.done / kPageSize, false);
      p += r.done / kPageSize;
      if (r.err == 0) break;
      if (r.err == EEXIST) {
        // There already (a view filled the memfd while replacing a marker): keep it.
        mark_present(p, p + 1, false);
        ++p;
        continue;
      }
      if (r.err == EAGAIN) return ZX_ERR_SHOULD_WAIT;
      return r.err == ENOMEM ? ZX_ERR_NO_MEMORY : status_from_errno(r.err);
    }
    // Stores into them are modifications like any other once stats are tracked.
    if ((stats_used_ || dirty_tracking_) && wp_ && !protect_views(a, b)) {
      untracked_store_ = true;
      if (dirty_tracking_) dirty_.set(a, b);
    }
  }
  return ZX_OK;
}

zx_status_t PagerVmo::set_size(uint64_t new_size) {
  if (!resizable()) return ZX_ERR_UNAVAILABLE;
  uint64_t rounded;
  if (!round_up_page(new_size, &rounded) || rounded > kMaxVmoSize) return ZX_ERR_OUT_OF_RANGE;
  // The home cannot move (threads may be blocked in it, views point at it): a VMO grows
  // within the reserve it was created with.
  if (rounded > reserve_) return ZX_ERR_NO_MEMORY;
  // Clones stop seeing what a shrink cuts off, for good (as on Zircon, growing again does
  // not show it to them): their memory there turns into their own before the memfd ends
  // earlier. No clone is made or changed meanwhile.
  std::lock_guard clones(clones_mu_);
  if (rounded < size()) {
    for (CloneVmo* c : clones_) {
      zx_status_t st = c->clamp_to_root(rounded);
      if (st != ZX_OK) return st;
    }
  }
  std::unique_lock lock(mu_);
  quiesce_supplies(lock);  // a shrink drops pages a supply may be putting in
  if (torn_down_) return ZX_ERR_BAD_STATE;
  const uint64_t old_pages = size_pages(), new_pages = rounded / kPageSize;
  if (rounded != size()) {
    if (ftruncate(memfd_.get(), static_cast<off_t>(rounded)) != 0) {
      return errno == ENOSPC || errno == ENOMEM ? ZX_ERR_NO_MEMORY : status_from_errno(errno);
    }
    size_.store(rounded, std::memory_order_release);
  }
  if (new_pages < old_pages) {
    present_.clear(new_pages, old_pages);
    clean_.clear(new_pages, old_pages);
    zero_.clear(new_pages, old_pages);
    dirty_.clear(new_pages, old_pages);
    awaiting_.clear(new_pages, old_pages);
    zero_wb_.clear(new_pages, old_pages);
    // As on Zircon, requests past the end count as supplied: a packet not yet read is
    // withdrawn, one partly past the end stays for its remaining pages.
    retire_requests(new_pages, old_pages, true);
    retire_in(dirty_requests_, new_pages, old_pages, true);
    // Writes held for DIRTY requests past the end fault again, into SIGBUS.
    std::erase_if(dirty_waiters_, [&](const MapWaiter& w) {
      if (w.page < new_pages) return false;
      uffd::wake(w.fd, w.addr & ~(kPageSize - 1), kPageSize);
      return true;
    });
    // Threads blocked past the end fault again, into SIGBUS: the memfd ends before them.
    std::erase_if(map_waiters_, [&](const MapWaiter& w) {
      if (w.page < new_pages) return false;
      uffd::wake(w.fd, w.addr & ~(kPageSize - 1), kPageSize);
      return true;
    });
    // zx_vmo_read/write waiting past the end fail (ZX_ERR_OUT_OF_RANGE); a COMMIT keeps
    // what is left of its range.
    for (LibWaiter* w : lib_waiters_) signal(w);
    cv_.notify_all();
  } else if (new_pages > old_pages) {
    zero_.set(old_pages, new_pages);
  }
  modified_ = true;
  // Zircon zeroes the bytes from `size` to the page boundary. Unless the page is a zero
  // page of a grown range, that needs its content first: wait for the pager like a read.
  if (rounded != new_size) {
    const uint64_t page = new_size / kPageSize;
    if (!present_.test(page) && !zero_.test(page)) {
      LibWaiter w;
      w.head = page;
      lib_waiters_.push_back(&w);
      zx_status_t st = wait_for_head(lock, &w, page + 1);
      lib_waiters_.erase(std::find(lib_waiters_.begin(), lib_waiters_.end(), &w));
      if (st != ZX_OK) return st;
      if (size() != rounded) return ZX_OK;  // resized again meanwhile
    }
    if (present_.test(page)) {
      const size_t tail = rounded - new_size;
      if (pwrite(memfd_.get(), kZeros, tail, static_cast<off_t>(new_size)) !=
          static_cast<ssize_t>(tail)) {
        return status_from_errno(errno);
      }
      mark_written(page, page + 1);
    }
  }
  return ZX_OK;
}

void PagerVmo::track_writes_for_stats() {
  if (!wp_) return;
  if (shared_) {
    track_view_writes();
    // The library writes the home only inside zx_vmo_write, which counts on its own; the
    // views are where stores land unseen.
    present_.for_each_present_run(0, size_pages(), [&](uint64_t a, uint64_t b) {
      if (!protect_views(a, b)) untracked_store_ = true;
    });
  } else {
    // A private VMO's home is its mapping.
    present_.for_each_present_run(0, size_pages(), [&](uint64_t a, uint64_t b) {
      if (uffd::writeprotect(uffd_, home_ + a * kPageSize, (b - a) * kPageSize, true, false) !=
          0) {
        untracked_store_ = true;
      }
    });
  }
}

zx_status_t PagerVmo::query_stats(bool reset, bool* modified) {
  std::unique_lock lock(mu_);
  quiesce_supplies(lock);  // writes may be tracked from here on
  if (!stats_used_) {
    // Writes are tracked from the first query on. What came before is not known page by
    // page: untracked_store_ already says whether a writable mapping existed.
    stop_huge_units();
    stats_used_ = true;
    track_writes_for_stats();
  }
  // A descriptor handed out writable (zxp_vmo_get_memory_fd) writes unseen, always; so
  // does the other process of a remote VMO, whose memory is its own.
  *modified = modified_ || untracked_store_ || untracked_writer_ || remote_;
  if (reset) {
    modified_ = false;
    // Without WP mode, a writable mapping can store unseen at any time.
    bool untracked = false;
    if (!wp_) {
      if (shared_) {
        for (auto& [a, v] : local_views_) untracked = untracked || v.writable;
      } else {
        untracked = num_mappings() > 0;
      }
    } else if (shared_) {
      for (auto& [a, v] : local_views_) untracked = untracked || (v.writable && !v.wp);
    }
    untracked_store_ = untracked;
    // Pages stored into since (Dirty ones too) must trap their next store again, as every
    // store after a reset is a modification.
    track_writes_for_stats();
  }
  return ZX_OK;
}

}  // namespace zxp
