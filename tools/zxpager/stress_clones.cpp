// zxpager stress --clones: clone threads create, map, read, write, resize and close
// SNAPSHOT_AT_LEAST_ON_WRITE clones of the pager VMOs and of their own clones, while the
// rest of the stress supplies, fails and evicts the root VMOs' pages; every byte a clone
// reads is checked against what the model says it may hold (README: "Clones under
// stress").
#include <signal.h>
#include <string.h>

#include <algorithm>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include <fmt/core.h>
#include <zircon/syscalls.h>
#include <zircon/syscalls/object.h>

#include "stress_internal.h"

namespace zxpager_cli::stress {

// A clone thread keeps a few clones open (children of a root VMO or of one of its own
// clones), reads and writes their pages, and closes them. It is the only user of its
// clones, so what they must read follows from its own record and the root's rules.
void Stress::clone_thread(uint32_t i) {
  Guard guard;
  t_guard = &guard;
  CloneWorker& w = *clone_workers_[i];
  Rng rng(o_.seed * 0xc2b2ae3d27d4eb4full + 0x2000 + i);
  std::vector<uint64_t> buf(kWords), expected(kWords);
  std::vector<LiveClone> live;
  while (!stop_.load(std::memory_order_relaxed)) {
    const uint64_t r = rng.below(64);
    if (live.empty() || (r < 2 && live.size() < kMaxLiveClones)) {
      clone_create(w, rng, live);
    } else if (r < 4) {
      clone_close(w, rng, live, rng.below(live.size()), &guard, buf.data(), expected.data());
    } else if (r < 5 && live[r % live.size()].m->resizable) {
      clone_resize(w, rng, live[r % live.size()]);
    } else if (r < 6) {
      clone_remap(w, rng, live[rng.below(live.size())], buf.data(), expected.data());
    } else {
      clone_access(w, guard, rng, live[rng.below(live.size())], false, buf.data(),
                   expected.data());
    }
  }
  while (!live.empty()) {
    clone_close(w, rng, live, live.size() - 1, &guard, buf.data(), expected.data());
  }
  t_guard = nullptr;
  clones_done_.fetch_add(1);
}

bool Stress::clone_create(CloneWorker& w, Rng& rng, std::vector<LiveClone>& live) {
  auto m = std::make_shared<CloneModel>();
  m->id = next_clone_id_.fetch_add(1);
  // The parent: a root VMO or, half the time, one of this thread's clones (a chain).
  const LiveClone* parent = nullptr;
  if (!live.empty() && (rng.next() & 1)) {
    parent = &live[rng.below(live.size())];
    if (parent->m->depth >= kMaxCloneDepth) parent = nullptr;
  }
  zx_handle_t parent_handle;
  uint64_t parent_pages;
  if (parent != nullptr) {
    m->parent = parent->m;
    m->vmo = parent->m->vmo;
    m->depth = parent->m->depth + 1;
    m->floor = parent->m->latest;
    parent_handle = parent->handle;
    parent_pages = parent->m->size;
  } else {
    m->vmo = static_cast<uint32_t>(rng.below(vmos_.size()));
    parent_handle = vmos_[m->vmo]->handle;
    parent_pages = pages_per_vmo_;
  }
  // The whole parent, or a page-aligned window of it, one in four reaching past its end.
  if ((rng.next() & 3) == 0) {
    m->size = parent_pages;
  } else {
    m->offset = rng.below(parent_pages);
    m->size = 1 + rng.below(parent_pages - m->offset);
    if ((rng.next() & 3) == 0) m->size += 1 + rng.below(16);
  }
  m->limit = std::min(m->size, parent_pages - m->offset);
  m->resizable = (rng.next() & 3) == 0;
  const uint32_t options = ZX_VMO_CHILD_SNAPSHOT_AT_LEAST_ON_WRITE |
                           (m->resizable ? ZX_VMO_CHILD_RESIZABLE : 0);

  w.watch.where.store(m->vmo * pages_per_vmo_, std::memory_order_relaxed);
  w.watch.since.store(now_ns(), std::memory_order_relaxed);
  zx_handle_t h = ZX_HANDLE_INVALID;
  zx_status_t st =
      zx_vmo_create_child(parent_handle, options, m->offset * kPage, m->size * kPage, &h);
  w.watch.since.store(0, std::memory_order_relaxed);
  const std::string what =
      fmt::format("zx_vmo_create_child({} {}, {:#x}, offset {:#x}, size {:#x})",
                  parent ? "clone" : "vmo", parent ? parent->m->id : m->vmo, options,
                  m->offset * kPage, m->size * kPage);
  if (st != ZX_OK) {
    errors_.add(kUnexpectedStatus, fmt::format("{}: {}", what, status_name(st)));
    std::lock_guard lock(clone_failures_mu_);
    ++clone_failures_[fmt::format("{} from zx_vmo_create_child of a {}", status_name(st),
                                  parent ? "clone" : "root VMO")];
    return false;
  }
  // ZX_INFO_VMO names the parent and says what the child is.
  zx_info_handle_basic_t pb{};
  zx_info_vmo_t info{};
  st = zx_object_get_info(parent_handle, ZX_INFO_HANDLE_BASIC, &pb, sizeof(pb), nullptr, nullptr);
  if (st == ZX_OK) st = zx_object_get_info(h, ZX_INFO_VMO, &info, sizeof(info), nullptr, nullptr);
  if (st != ZX_OK) {
    errors_.add(kUnexpectedStatus, fmt::format("zx_object_get_info of a clone: {}", status_name(st)));
  } else if (info.parent_koid != pb.koid || !(info.flags & ZX_INFO_VMO_IS_COW_CLONE) ||
             info.size_bytes != m->size * kPage ||
             !(info.flags & ZX_INFO_VMO_RESIZABLE) != !m->resizable) {
    errors_.add(kUnexpectedStatus,
                fmt::format("ZX_INFO_VMO after {}: parent koid {} (parent is {}), flags {:#x}, "
                            "size {:#x}",
                            what, info.parent_koid, pb.koid, info.flags, info.size_bytes));
  }
  m->koid = info.koid;
  zx_vaddr_t addr = 0;
  st = zx_vmar_map(zx_vmar_root_self(), ZX_VM_PERM_READ | ZX_VM_PERM_WRITE | ZX_VM_ALLOW_FAULTS, 0,
                   h, 0, m->size * kPage, &addr);
  if (st != ZX_OK) {
    errors_.add(kUnexpectedStatus, fmt::format("zx_vmar_map of a clone after {}: {}", what,
                                               status_name(st)));
    zx_handle_close(h);
    return false;
  }
  w.created.fetch_add(1, std::memory_order_relaxed);
  if (parent != nullptr) w.chained.fetch_add(1, std::memory_order_relaxed);
  if (m->resizable) w.resizable.fetch_add(1, std::memory_order_relaxed);
  if (m->limit < m->size) w.beyond_parent.fetch_add(1, std::memory_order_relaxed);
  uint32_t deepest = max_depth_seen_.load();
  while (deepest < m->depth && !max_depth_seen_.compare_exchange_weak(deepest, m->depth)) {
  }
  const uint64_t open = clones_live_.fetch_add(1) + 1;
  uint64_t most = clones_live_max_.load();
  while (most < open && !clones_live_max_.compare_exchange_weak(most, open)) {
  }
  const uint64_t size = m->size;
  live.push_back(LiveClone{std::move(m), h, addr, size});
  return true;
}

// Unmaps and closes, in either order; between a close of the handle and the unmap, the
// mapping alone keeps the clone and must still read right.
void Stress::clone_close(CloneWorker& w, Rng& rng, std::vector<LiveClone>& live, size_t k,
                         Guard* guard, uint64_t* buf, uint64_t* expected) {
  LiveClone c = std::move(live[k]);
  live.erase(live.begin() + static_cast<ptrdiff_t>(k));
  // Held by a child's record too: a child of it is still open.
  if (c.m.use_count() > 1) w.parent_closed_first.fetch_add(1, std::memory_order_relaxed);
  const bool unmap_first = rng.next() & 1;
  zx_status_t st;
  if (!unmap_first) {
    if ((st = zx_handle_close(c.handle)) != ZX_OK) {
      errors_.add(kHandle, fmt::format("zx_handle_close(clone {}): {}", c.m->id, status_name(st)));
    }
    c.handle = ZX_HANDLE_INVALID;
    clone_access(w, *guard, rng, c, true, buf, expected);
  }
  if (c.mapped_pages > 0 &&
      (st = zx_vmar_unmap(zx_vmar_root_self(), c.base, c.mapped_pages * kPage)) != ZX_OK) {
    errors_.add(kHandle, fmt::format("zx_vmar_unmap(clone {}): {}", c.m->id, status_name(st)));
  }
  if (unmap_first && (st = zx_handle_close(c.handle)) != ZX_OK) {
    errors_.add(kHandle, fmt::format("zx_handle_close(clone {}): {}", c.m->id, status_name(st)));
  }
  (unmap_first ? w.closed_unmap_first : w.closed_handle_first)
      .fetch_add(1, std::memory_order_relaxed);
  clones_live_.fetch_sub(1);
}

// Unmaps a clone and maps it again (at its size now): its pages are kept in between, and
// one is read or written with zx_vmo_read/zx_vmo_write while it has no mapping.
void Stress::clone_remap(CloneWorker& w, Rng& rng, LiveClone& c, uint64_t* buf,
                         uint64_t* expected) {
  zx_status_t st = zx_vmar_unmap(zx_vmar_root_self(), c.base, c.mapped_pages * kPage);
  if (st != ZX_OK) {
    errors_.add(kHandle, fmt::format("zx_vmar_unmap(clone {}): {}", c.m->id, status_name(st)));
    return;
  }
  c.base = 0;
  c.mapped_pages = 0;
  Guard unused;
  clone_access(w, unused, rng, c, false, buf, expected);
  zx_vaddr_t addr = 0;
  st = zx_vmar_map(zx_vmar_root_self(), ZX_VM_PERM_READ | ZX_VM_PERM_WRITE | ZX_VM_ALLOW_FAULTS, 0,
                   c.handle, 0, c.m->size * kPage, &addr);
  if (st != ZX_OK) {
    errors_.add(kUnexpectedStatus, fmt::format("zx_vmar_map of clone {} again ({:#x} bytes): {}",
                                               c.m->id, c.m->size * kPage, status_name(st)));
    return;
  }
  c.base = addr;
  c.mapped_pages = c.m->size;
  w.remaps.fetch_add(1, std::memory_order_relaxed);
}

// A resizable clone none of whose descendants is open: shrinking drops its pages past the
// new end and lowers its parent limit (growing back reads zeros there, as on Zircon).
void Stress::clone_resize(CloneWorker& w, Rng& rng, LiveClone& c) {
  CloneModel& m = *c.m;
  if (c.m.use_count() > 1) return;
  const uint64_t pages = 1 + rng.below(std::max<uint64_t>(m.size * 2, 2));
  w.watch.where.store(m.vmo * pages_per_vmo_, std::memory_order_relaxed);
  w.watch.since.store(now_ns(), std::memory_order_relaxed);
  zx_status_t st = zx_vmo_set_size(c.handle, pages * kPage);
  w.watch.since.store(0, std::memory_order_relaxed);
  if (st != ZX_OK) {
    errors_.add(kUnexpectedStatus, fmt::format("zx_vmo_set_size(clone {}, {:#x} -> {:#x}): {}",
                                               m.id, m.size * kPage, pages * kPage,
                                               status_name(st)));
    return;
  }
  if (pages < m.size) {
    m.limit = std::min(m.limit, pages);
    for (auto it = m.latest.begin(); it != m.latest.end();) {
      it = it->first >= pages ? m.latest.erase(it) : std::next(it);
    }
    std::erase_if(m.written, [&](uint64_t p) { return p >= pages; });
  }
  m.size = pages;
  w.resizes.fetch_add(1, std::memory_order_relaxed);
}

CloneExpect Stress::clone_expect(const CloneModel& m, uint64_t page) const {
  CloneExpect e;
  // Below the stamped words, a page is the root's page it lies over, or zeros if some
  // clone on the way up has it past its parent limit.
  const CloneModel* l = &m;
  uint64_t q = page;
  while (true) {
    if (q >= l->limit) {
      e.zeros = true;
      break;
    }
    q += l->offset;
    if (!l->parent) {
      e.vmo = l->vmo;
      e.root_page = q;
      break;
    }
    l = l->parent.get();
  }
  auto own = m.latest.find(page);
  if (own != m.latest.end()) {
    e.stamps.push_back({m.id, own->second, own->second, page, 0});
    return e;
  }
  // Not written here: the parent's page as it was at creation or any later write of the
  // parent's to it (at least on write); if the parent had not written it at creation, its
  // own parent's the same way, and so on up to the root.
  l = &m;
  q = page;
  while (true) {
    if (q >= l->limit || !l->parent) {
      e.region_base = true;
      break;
    }
    const uint64_t pq = q + l->offset;
    const CloneModel* up = l->parent.get();
    auto f = l->floor.find(pq);
    const uint32_t floor = f == l->floor.end() ? 0 : f->second;
    auto lt = up->latest.find(pq);
    const uint32_t hi = lt == up->latest.end() ? 0 : lt->second;
    if (hi >= std::max<uint32_t>(floor, 1)) {
      e.stamps.push_back({up->id, std::max<uint32_t>(floor, 1), hi, pq, floor});
    }
    if (floor > 0) break;
    l = up;
    q = pq;
  }
  return e;
}

void Stress::clone_access(CloneWorker& w, Guard& guard, Rng& rng, LiveClone& c,
                          bool mapping_only, uint64_t* buf, uint64_t* expected) {
  CloneModel& m = *c.m;
  const uint64_t mapped = std::min(m.size, c.mapped_pages);
  if (mapping_only && c.mapped_pages == 0) return;
  const bool via_map = c.mapped_pages > 0 &&
                       (mapping_only || access_ == AccessMode::kMapping ||
                        (access_ == AccessMode::kMixed && (rng.next() & 1)));
  if (via_map && mapped == 0) return;
  const uint64_t reach = via_map ? mapped : m.size;
  // Half the accesses go to a page the clone or its parent wrote (where copy-on-write and
  // the snapshot matter), the rest anywhere.
  uint64_t page = rng.below(reach);
  if (rng.next() & 1) {
    const CloneModel* from = (rng.next() & 1) && m.parent ? m.parent.get() : &m;
    if (!from->written.empty()) {
      const uint64_t p = from->written[rng.below(from->written.size())];
      const uint64_t shift = from == &m ? 0 : m.offset;
      if (p >= shift && p - shift < reach) page = p - shift;
    }
  }
  const bool write = !mapping_only && rng.below(8) < 3;
  const CloneExpect e = clone_expect(m, page);
  uint8_t* const page_addr = reinterpret_cast<uint8_t*>(c.base + page * kPage);
  uint64_t* const stamp_addr = reinterpret_cast<uint64_t*>(page_addr) + kCloneWord;
  uint64_t probe_word = 0, probe_value = 0;
  const uint32_t seq = m.seq + 1;

  const uint64_t seq0 = fail_seq_.load();
  w.watch.where.store(e.zeros ? m.vmo * pages_per_vmo_ : e.vmo * pages_per_vmo_ + e.root_page,
                      std::memory_order_relaxed);
  w.watch.since.store(now_ns(), std::memory_order_relaxed);
  int sig = 0;
  zx_status_t st = ZX_OK;
  if (write) {
    for (uint64_t j = 0; j < kCloneWords; ++j) {
      expected[j] = clone_stamp(o_.seed, m.id, seq, page, j);
    }
    if (via_map) {
      sig = guarded_store_words(&guard, stamp_addr, expected, kCloneWords);
    } else {
      st = zx_vmo_write(c.handle, expected, page * kPage + kCloneWord * 8, kCloneWords * 8);
    }
  } else if (via_map) {
    probe_word = rng.below(kWords);
    sig = guarded_read(&guard, reinterpret_cast<const uint64_t*>(page_addr) + probe_word,
                       &probe_value, page_addr, buf);
  } else {
    st = zx_vmo_read(c.handle, buf, page * kPage, kPage);
  }
  w.watch.since.store(0, std::memory_order_relaxed);
  (write ? w.writes : w.reads).fetch_add(1, std::memory_order_relaxed);
  (via_map ? w.via_mapping : w.via_call).fetch_add(1, std::memory_order_relaxed);
  const char* how = via_map ? (write ? "stores through the mapping" : "loads through the mapping")
                            : (write ? "zx_vmo_write" : "zx_vmo_read");

  if (sig == 0 && st == ZX_OK) {
    if (write) {
      m.seq = seq;
      if (m.latest.insert_or_assign(page, seq).second) m.written.push_back(page);
      return;
    }
    clone_check(w, c, page, buf, expected, how);
    return;
  }
  const std::string where =
      fmt::format("clone {} (depth {}, over vmo {}) page {} ({})", m.id, m.depth, m.vmo, page,
                  e.zeros ? std::string("past a parent's end: no request to fail")
                          : fmt::format("root page {}", e.root_page));
  if (sig != 0) {
    const uintptr_t a = guard.addr;
    const uintptr_t pa = reinterpret_cast<uintptr_t>(page_addr);
    // A store's first word takes the page; a signal after it is never a FAIL's.
    const bool addr_ok = write ? guard.stage == kStore && a == reinterpret_cast<uintptr_t>(stamp_addr)
                         : guard.stage == kCopy
                             ? (a >= pa && a < pa + kPage)
                             : a == reinterpret_cast<uintptr_t>(
                                        reinterpret_cast<const uint64_t*>(page_addr) + probe_word);
    if (sig != SIGBUS || guard.code != BUS_ADRERR || !addr_ok) {
      errors_.add(kUnexpectedSignal,
                  fmt::format("{} (si_code {}) at {:#x} during {} of {} (stage {})",
                              strsignal(sig), static_cast<int>(guard.code), a, how, where,
                              static_cast<int>(guard.stage)));
      return;
    }
  }
  const FailureCause cause =
      e.zeros ? FailureCause::kNone : failure_cause(*vmos_[e.vmo], e.root_page, seq0, sig != 0, st);
  switch (cause) {
    case FailureCause::kFail:
      (sig ? w.fail_sigbus : w.fail_status).fetch_add(1, std::memory_order_relaxed);
      return;
    case FailureCause::kDetach:
      (sig ? w.detach_sigbus : w.detach_status).fetch_add(1, std::memory_order_relaxed);
      return;
    case FailureCause::kNone:
      break;
  }
  errors_.add(sig ? kUnexpectedSignal : kUnexpectedStatus,
              fmt::format("{} from {} of {}, which no FAIL or detach explains",
                          sig ? "SIGBUS" : status_name(st), how, where));
  // Past the first messages only counts remain: these say which kinds they are.
  std::lock_guard lock(clone_failures_mu_);
  ++clone_failures_[fmt::format("{} from {} of a clone page {}", sig ? "SIGBUS" : status_name(st),
                                how, e.zeros ? "past a parent's end" : "over a root page")];
}

// Builds the page the clone may read that is nearest to what it read (the loose words, a
// generation or a faulting thread's slot, taken from what was read where they are
// allowed; the stamped words from the candidate their first word names), and compares.
void Stress::clone_check(CloneWorker& w, const LiveClone& c, uint64_t page, const uint64_t* buf,
                         uint64_t* expected, const char* how) {
  const CloneModel& m = *c.m;
  const CloneExpect e = clone_expect(m, page);
  const bool zero_root = !e.zeros && is_zero_page(e.vmo, e.root_page);
  if (e.zeros || zero_root) {
    std::fill(expected, expected + kWords, 0);
  } else {
    for (uint64_t j = kHeaderWords; j < kWords; ++j) {
      expected[j] = content_word(e.vmo, e.root_page, j);
    }
    expected[0] = kMagic;
    expected[1] = e.vmo;
    expected[2] = e.root_page;
    const uint64_t max_gen = vmos_[e.vmo]->gen[e.root_page].load();
    expected[3] = buf[3] >= 1 && buf[3] <= max_gen ? buf[3] : max_gen;
  }
  if (!e.zeros) {
    for (uint32_t t = 0; t < o_.threads; ++t) {
      const uint64_t j = kSlotWord + t;
      if (is_slot_value(o_.seed, t, e.vmo, e.root_page, buf[j])) expected[j] = buf[j];
    }
  }
  // The stamped words: whichever candidate the first word names, else the base, else
  // (wrong) the most likely one.
  const uint64_t* region = buf + kCloneWord;
  const uint64_t id = region[0] >> 32;
  const uint32_t seq = static_cast<uint32_t>(region[0]);
  const CloneExpect::Stamp* hit = nullptr;
  for (const auto& s : e.stamps) {
    if (s.id == id && seq >= s.lo && seq <= s.hi) hit = &s;
  }
  const bool base_ok = e.region_base && memcmp(region, expected + kCloneWord, kCloneWords * 8) == 0;
  if (hit == nullptr && !base_ok && !e.stamps.empty()) hit = &e.stamps.front();
  if (hit != nullptr) {
    const uint32_t hseq = hit->id == id && seq >= hit->lo && seq <= hit->hi ? seq : hit->hi;
    for (uint64_t j = 0; j < kCloneWords; ++j) {
      expected[kCloneWord + j] = clone_stamp(o_.seed, hit->id, hseq, hit->page, j);
    }
  }
  const uint8_t* got = reinterpret_cast<const uint8_t*>(buf);
  const uint8_t* want = reinterpret_cast<const uint8_t*>(expected);
  uint64_t wrong = 0, first = kPage;
  for (uint64_t b = 0; b < kPage; ++b) {
    if (got[b] != want[b]) {
      ++wrong;
      if (first == kPage) first = b;
    }
  }
  if (wrong == 0) {
    if (e.zeros) w.checked_zero.fetch_add(1, std::memory_order_relaxed);
    else if (hit == nullptr) w.checked_parent.fetch_add(1, std::memory_order_relaxed);
    else if (hit->id == m.id) w.checked_own.fetch_add(1, std::memory_order_relaxed);
    else w.checked_ancestor.fetch_add(1, std::memory_order_relaxed);
    if (hit != nullptr && hit->id != m.id && (hit->floor == 0 || seq > hit->floor)) {
      w.ancestor_later.fetch_add(1, std::memory_order_relaxed);
    }
    return;
  }
  clone_wrong_bytes_.fetch_add(wrong, std::memory_order_relaxed);
  clone_wrong_pages_.fetch_add(1, std::memory_order_relaxed);
  const uint64_t word = first / 8;
  const char* what = word >= kCloneWord ? (hit ? (hit->id == m.id ? "the clone's own write"
                                                                  : "an ancestor clone's write")
                                               : "the parent's bytes")
                     : e.zeros                                    ? "zeros past a parent's end"
                     : zero_root                                  ? "a zero page of the root"
                     : word < kHeaderWords                        ? "the root page's header"
                     : word >= kSlotWord && word < kSlotWord + o_.threads
                         ? "a faulting thread's slot"
                         : "the root page's content";
  std::string chain;
  for (const CloneModel* l = &m; l != nullptr; l = l->parent.get()) {
    chain += fmt::format("{}clone {} at page {} of {}{}", chain.empty() ? "" : ", ", l->id,
                         l->offset, l->parent ? "its parent" : fmt::format("vmo {}", l->vmo),
                         l->limit < l->size ? fmt::format(" (limit {} of {} pages)", l->limit,
                                                          l->size)
                                            : "");
  }
  errors_.add(kMismatch,
              fmt::format("{} wrong bytes in clone {} page {} after {}; first at byte {:#x} "
                          "of the page (offset {:#x} in the clone{}), word {} ({}): read "
                          "{:#018x}, expected {:#018x} [{}]",
                          wrong, m.id, page, how, first, page * kPage + first,
                          e.zeros ? "" : fmt::format(", root vmo {} offset {:#x}", e.vmo,
                                                     e.root_page * kPage + first),
                          word, what, buf[word], expected[word], chain));
}

}  // namespace zxpager_cli::stress
