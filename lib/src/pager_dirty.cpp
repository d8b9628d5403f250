// Dirty tracking and writeback: ZX_VMO_TRAP_DIRTY, ZX_PAGER_OP_DIRTY,
// ZX_PAGER_OP_WRITEBACK_BEGIN/END and zx_pager_query_dirty_ranges.
//
// Zircon's page states, on userfaultfd write-protection. A supplied page is Clean: it is
// installed write-protected (UFFDIO_COPY_MODE_WP) in the home, and write-protected in
// every writable view (for a shared VMO, a view's protection is its own: pte markers keep
// it on pages the view has not mapped yet). The first write to it traps in the fault
// thread (on_wp_fault): without ZX_VMO_TRAP_DIRTY the page becomes Dirty and the write is
// let through (protection off at that address); with it, the write waits for a
// ZX_PAGER_VMO_DIRTY request to be answered (OP_DIRTY lets it through, OP_FAIL fails it
// with SIGBUS). zx_vmo_write asks the same way before it copies. WRITEBACK_BEGIN turns
// Dirty pages AwaitingClean and write-protects them again, so a write racing the
// writeback traps and makes the page Dirty again; WRITEBACK_END turns only the pages still
// AwaitingClean Clean. Nothing written after a BEGIN is lost to its END.
//
// Tracking starts lazily (start_dirty_tracking): at creation with ZX_VMO_TRAP_DIRTY, at
// the first pager call that asks about dirty pages, and for a shared VMO at its first
// writable mapping or zx_vmo_write. Until then nothing could store into a shared VMO's
// memory unseen, and read-only use keeps the kernel's fault-around in its views. A private
// VMO (one mapping, always writable underneath) keeps UFFDIO_MOVE supply until a pager
// asks about its dirty pages: if it was mapped writable before that, every present page
// counts as Dirty then (its stores were not seen), and the first writeback cleans them.
// zx_vmo_write records what it writes either way.
//
// Locking as in pager.h: PagerVmo::mu_ held throughout; UFFDIO_WRITEPROTECT never waits
// for the fault thread.
#include <errno.h>

#include <algorithm>

#include "fault_service.h"
#include "pager.h"
#include "status.h"
#include "uffd.h"

namespace zxp {

void PagerVmo::start_dirty_tracking() {
  if (dirty_tracking_ || !wp_) return;
  stop_huge_units();
  dirty_tracking_ = true;
  if (shared_) track_view_writes();
  // Pages nothing could have stored into unseen are Clean once protected; the others
  // (and any that cannot be protected) are taken for Dirty: never lost.
  present_.for_each_present_run(0, size_pages(), [&](uint64_t a, uint64_t b) {
    if (unseen_stores_) {
      dirty_.set(a, b);
      return;
    }
    dirty_.for_each_missing_run(a, b, [&](uint64_t x, uint64_t y) {
      if (!protect_everywhere(x, y)) dirty_.set(x, y);
    });
  });
}

bool PagerVmo::protect_everywhere(uint64_t first, uint64_t end) {
  if (first >= end) return true;
  bool ok = uffd::writeprotect(uffd_, home_ + first * kPageSize, (end - first) * kPageSize, true,
                               false) == 0;
  if (shared_) ok = protect_views(first, end) && ok;
  return ok && !untracked_writer_;
}

void PagerVmo::mark_written(uint64_t first, uint64_t end) {
  if (first >= end) return;
  clean_.clear(first, end);
  dirty_.set(first, end);
  awaiting_.clear(first, end);
  zero_wb_.clear(first, end);
}

uint64_t PagerVmo::dirty_ticket_covering(uint64_t page) const {
  auto it = dirty_requests_.upper_bound(page);
  if (it == dirty_requests_.begin()) return 0;
  --it;
  return it->second.end > page ? it->second.ticket : 0;
}

void PagerVmo::queue_dirty_request(uint64_t first, uint64_t end) {
  zx_port_packet_t packet = {};
  packet.key = key_;
  packet.type = ZX_PKT_TYPE_PAGE_REQUEST;
  packet.status = ZX_OK;
  packet.page_request.command = ZX_PAGER_VMO_DIRTY;
  packet.page_request.offset = first * kPageSize;
  packet.page_request.length = (end - first) * kPageSize;
  const uint64_t ticket = port_->queue_internal(packet);
  dirty_requests_.emplace(first, Request{end, ticket});
  ++ticket_pieces_[ticket];
  stats_->dirty_requests.fetch_add(1, std::memory_order_relaxed);
}

zx_status_t PagerVmo::await_dirty(std::unique_lock<std::mutex>& lock, uint64_t first,
                                  uint64_t* end) {
  if (!trap_dirty_) return ZX_OK;
  uint64_t q = first;
  while (q < *end && !write_needs_request(q)) ++q;
  if (q > first) {
    *end = q;  // write these now; the rest asks afterwards
    return ZX_OK;
  }
  DirtyLibWaiter w{first};
  dirty_lib_waiters_.push_back(&w);
  zx_status_t st = ZX_OK;
  for (;;) {
    if (w.status != ZX_OK) {
      st = w.status;
      break;
    }
    if (detached_ || torn_down_) {
      st = ZX_ERR_BAD_STATE;
      break;
    }
    if (first >= size_pages()) {
      st = ZX_ERR_OUT_OF_RANGE;
      break;
    }
    if (!present_.test(first) || !write_needs_request(first)) {
      // Let through (or gone meanwhile): the caller looks again.
      *end = first;
      break;
    }
    if (dirty_ticket_covering(first) == 0) {
      // One request for the run of pages the write needs let through, as Zircon asks.
      uint64_t r = first + 1;
      while (r < *end && write_needs_request(r) && dirty_ticket_covering(r) == 0) ++r;
      queue_dirty_request(first, r);
    }
    cv_.wait(lock);
  }
  dirty_lib_waiters_.erase(std::find(dirty_lib_waiters_.begin(), dirty_lib_waiters_.end(), &w));
  return st;
}

zx_status_t PagerVmo::op_dirty(uint64_t offset, uint64_t len) {
  const uint64_t first = offset / kPageSize, end = (offset + len) / kPageSize;
  std::unique_lock lock(mu_);
  // Only a VMO whose writes trap has writes waiting for this.
  if (!trap_dirty_ || !wp_) return ZX_ERR_NOT_SUPPORTED;
  if (detached_ || torn_down_) return ZX_ERR_BAD_STATE;
  if (first >= end) return ZX_OK;
  // Every page must be there to be dirtied, or be a zero page (committed now, as zeros).
  std::vector<std::pair<uint64_t, uint64_t>> missing;
  present_.for_each_missing_run(first, end, [&](uint64_t a, uint64_t b) {
    zero_.for_each_missing_run(a, b, [&](uint64_t x, uint64_t y) { missing.emplace_back(x, y); });
  });
  if (!missing.empty()) {
    // The requests for pages that went away meanwhile (a zero range written back) end
    // here all the same: their writers look again, and ask for the pages first.
    for (const auto& run : missing) {
      const uint64_t a = run.first, b = run.second;
      retire_in(dirty_requests_, a, b, true);
      std::erase_if(dirty_waiters_, [&](const MapWaiter& w) {
        if (w.page < a || w.page >= b) return false;
        uffd::wake(w.fd, w.addr & ~(kPageSize - 1), kPageSize);
        return true;
      });
    }
    cv_.notify_all();
    return ZX_ERR_NOT_FOUND;
  }
  for (;;) {
    zx_status_t z = fill_grown(first, end);
    if (z != ZX_ERR_SHOULD_WAIT) {
      if (z != ZX_OK) return z;
      break;
    }
    lock.unlock();
    service_->sync();
    lock.lock();
    if (detached_ || torn_down_) return ZX_ERR_BAD_STATE;
    if (end > size_pages()) return ZX_ERR_OUT_OF_RANGE;
  }
  mark_written(first, end);
  // Writes held for these pages go on: protection off where each faulted (which wakes it).
  // Others stay protected until their own first write, which then traps once more and
  // finds the page Dirty.
  std::erase_if(dirty_waiters_, [&](const MapWaiter& w) {
    if (w.page < first || w.page >= end) return false;
    uffd::writeprotect(w.fd, w.addr & ~(kPageSize - 1), kPageSize, false, true);
    modified_ = true;  // its store lands now
    return true;
  });
  retire_in(dirty_requests_, first, end, true);
  cv_.notify_all();
  return ZX_OK;
}

zx_status_t PagerVmo::writeback_begin(uint64_t offset, uint64_t len, bool zero) {
  const uint64_t first = offset / kPageSize, end = (offset + len) / kPageSize;
  std::unique_lock lock(mu_);
  quiesce_supplies(lock);  // dirty tracking may start below
  if (!wp_) return ZX_ERR_NOT_SUPPORTED;
  // (A detached VMO keeps its dirty pages, and the pager may still write them back.)
  if (torn_down_) return ZX_ERR_BAD_STATE;
  start_dirty_tracking();
  std::vector<std::pair<uint64_t, uint64_t>> runs;
  if (!zero) {
    dirty_.for_each_present_run(first, end,
                                [&](uint64_t a, uint64_t b) { runs.emplace_back(a, b); });
  }
  for (auto& [a, b] : runs) {
    // Protected again, so that a write from now on traps and makes the page Dirty again.
    // Where that cannot be done, writes go unseen: the pages stay Dirty.
    if (protect_everywhere(a, b)) awaiting_.set(a, b);
  }
  // Zero ranges (the zero pages not written: a written one is Dirty data) are written back
  // as zeros with either flag. As on Zircon, a zero range is under writeback from its
  // start only: a BEGIN that starts inside one leaves it as it is.
  zero_.for_each_present_run(first, end, [&](uint64_t a, uint64_t b) {
    dirty_.for_each_missing_run(a, b, [&](uint64_t x, uint64_t y) {
      if (x == first && x > 0 && zero_.test(x - 1) && !dirty_.test(x - 1)) {
        return;  // starts inside a zero range
      }
      zero_wb_.set(x, y);
    });
  });
  return ZX_OK;
}

zx_status_t PagerVmo::writeback_end(uint64_t offset, uint64_t len) {
  const uint64_t first = offset / kPageSize, end = (offset + len) / kPageSize;
  std::lock_guard lock(mu_);
  if (!wp_) return ZX_ERR_NOT_SUPPORTED;
  if (torn_down_) return ZX_ERR_BAD_STATE;
  std::vector<std::pair<uint64_t, uint64_t>> runs;
  awaiting_.for_each_present_run(first, end,
                                 [&](uint64_t a, uint64_t b) { runs.emplace_back(a, b); });
  const bool clean = tracking_clean();
  for (auto& [a, b] : runs) {
    // Not written since BEGIN (a write would have taken them out of awaiting_): Clean,
    // and still protected everywhere.
    awaiting_.clear(a, b);
    dirty_.clear(a, b);
    zero_.clear(a, b);  // written back: what the pager holds now
    if (clean) clean_.set(a, b);
  }
  runs.clear();
  zero_wb_.for_each_present_run(first, end, [&](uint64_t a, uint64_t b) { runs.emplace_back(a, b); });
  for (auto& [a, b] : runs) {
    // Zeros written back: the pages are the pager's from now on, not present (the zero
    // pages committed meanwhile go), requested when next touched.
    zero_wb_.clear(a, b);
    zero_.clear(a, b);
    std::vector<std::pair<uint64_t, uint64_t>> drop;
    present_.for_each_present_run(a, b, [&](uint64_t x, uint64_t y) { drop.emplace_back(x, y); });
    for (auto& [x, y] : drop) {
      present_.clear(x, y);
      clean_.clear(x, y);
      if (shared_) punch(x, y);  // (only shared VMOs resize)
    }
  }
  return ZX_OK;
}

zx_status_t PagerVmo::query_dirty(uint64_t offset, uint64_t len,
                                  std::vector<zx_vmo_dirty_range_t>* out) {
  const uint64_t first = offset / kPageSize, end = (offset + len) / kPageSize;
  std::unique_lock lock(mu_);
  quiesce_supplies(lock);  // dirty tracking may start below
  if (!wp_) return ZX_ERR_NOT_SUPPORTED;
  start_dirty_tracking();  // (a private VMO's stores are seen from here on)
  // A writer the library cannot see (a writable descriptor handed out) may have written
  // any present page: all of them count.
  const PageSet& dirty = untracked_writer_ ? present_ : dirty_;
  std::vector<zx_vmo_dirty_range_t> zeros;
  zero_.for_each_present_run(first, end, [&](uint64_t a, uint64_t b) {
    dirty.for_each_missing_run(a, b, [&](uint64_t x, uint64_t y) {
      zeros.push_back({x * kPageSize, (y - x) * kPageSize, ZX_VMO_DIRTY_RANGE_IS_ZERO});
    });
  });
  auto z = zeros.begin();
  dirty.for_each_present_run(first, end, [&](uint64_t a, uint64_t b) {
    while (z != zeros.end() && z->offset < a * kPageSize) out->push_back(*z++);
    out->push_back({a * kPageSize, (b - a) * kPageSize, 0});
  });
  out->insert(out->end(), z, zeros.end());
  return ZX_OK;
}

}  // namespace zxp
