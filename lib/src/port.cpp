#include "port.h"

#include "fault_service.h"

#include <time.h>

#include <algorithm>
#include <chrono>

namespace zxp {

zx_time_t monotonic_now() {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<zx_time_t>(ts.tv_sec) * 1000000000LL + ts.tv_nsec;
}

Port::Wakeup Port::wakeup_locked() {
  // A packet the poller of this port queued while reading faults is its own: it takes it
  // as soon as its drain ends. Waking a sleeper for it would hand the fault to another
  // thread (a futex wake and a thread switch before the supply) and leave the poller to
  // find the queue empty; sleepers are woken for the packets beyond that one.
  // (A poller of another port has polling_ == 0 here: only one port's threads poll.)
  const bool own_poller = polling_ > 0 && FaultService::on_poller_thread();
  return Wakeup{waiters_ > 0 && !(own_poller && live_ <= 1), polling_ > (own_poller ? 1u : 0u),
                service_.load(std::memory_order_acquire)};
}

void Port::wake(const Wakeup& w) {
  if (w.sleeper) cv_.notify_one();
  if (w.poller && w.service) w.service->wake_poller();
}

zx_status_t Port::queue_user(const zx_port_packet_t& packet) {
  MutexLock lock(mu_);
  if (user_packets_ >= kMaxUserPackets) return ZX_ERR_SHOULD_WAIT;
  queue_.push_back(Entry{packet, next_ticket_++, true, false});
  ++user_packets_;
  ++live_;
  Wakeup w = wakeup_locked();
  lock.unlock();
  wake(w);
  return ZX_OK;
}

uint64_t Port::queue_internal(const zx_port_packet_t& packet) {
  MutexLock lock(mu_);
  uint64_t ticket = next_ticket_++;
  queue_.push_back(Entry{packet, ticket, false, false});
  ++live_;
  Wakeup w = wakeup_locked();
  lock.unlock();
  wake(w);
  return ticket;
}

bool Port::withdraw(uint64_t ticket) {
  MutexLock lock(mu_);
  auto it = std::lower_bound(queue_.begin(), queue_.end(), ticket,
                             [](const Entry& e, uint64_t t) { return e.ticket < t; });
  if (it == queue_.end() || it->ticket != ticket || it->withdrawn) return false;
  it->withdrawn = true;
  --live_;
  // Withdrawn entries at the front are dropped at once; others when they reach it.
  while (!queue_.empty() && queue_.front().withdrawn) queue_.pop_front();
  return true;
}

bool Port::queued(uint64_t ticket) {
  MutexLock lock(mu_);
  auto it = std::lower_bound(queue_.begin(), queue_.end(), ticket,
                             [](const Entry& e, uint64_t t) { return e.ticket < t; });
  return it != queue_.end() && it->ticket == ticket && !it->withdrawn;
}

zx_status_t Port::wait(zx_time_t deadline, zx_port_packet_t* out) {
  MutexLock lock(mu_);
  while (live_ == 0) {
    if (deadline != ZX_TIME_INFINITE && monotonic_now() >= deadline) return ZX_ERR_TIMED_OUT;
    FaultService* service = service_.load(std::memory_order_acquire);
    if (service && service->try_begin_polling(this)) {
      // Read faults here rather than sleep until the fault thread hands them over.
      ++polling_;
      lock.unlock();
      service->poll_as_poller(deadline);
      lock.lock();
      // Give up the role and count it in one step under mu_: polling_ must count exactly
      // the waiters that poll, or a packet queued for one would not wake it.
      service->end_polling();
      --polling_;
      // A thread sleeping here (it could not poll when it began to wait) may poll now.
      if (waiters_ > 0 && live_ == 0) cv_.notify_one();
      continue;
    }
    ++waiters_;
    if (service) service->note_sleeper(1);
    if (deadline == ZX_TIME_INFINITE) {
      cv_.wait(lock.native());
    } else {
      // steady_clock is CLOCK_MONOTONIC on Linux, the clock zx_time_t deadlines use.
      auto tp = std::chrono::steady_clock::time_point(std::chrono::nanoseconds(deadline));
      cv_.wait_until(lock.native(), tp);
    }
    if (service) service->note_sleeper(-1);
    --waiters_;
  }
  while (queue_.front().withdrawn) queue_.pop_front();
  Entry& e = queue_.front();
  *out = e.packet;
  const bool request = !e.user;
  if (e.user) --user_packets_;
  --live_;
  queue_.pop_front();
  while (!queue_.empty() && queue_.front().withdrawn) queue_.pop_front();
  // Leaving with the last packet while no waiter of this port polls: a sleeper (one that
  // began waiting before the port served faults, or found another port's threads
  // polling) tries to take over reading faults, so the next one reaches a pager thread
  // directly rather than through the fault thread.
  FaultService* service = service_.load(std::memory_order_acquire);
  const bool hand_over = !polling_ && waiters_ > 0 && live_ == 0 && service != nullptr;
  lock.unlock();
  if (hand_over) cv_.notify_one();
  // Only a waiter that would read the userfaultfd (its deadline still ahead) holds the
  // fault thread back: a program that polls its port with a past deadline never does, and
  // its faults must not wait for it.
  if (request && service && (deadline == ZX_TIME_INFINITE || deadline > monotonic_now())) {
    service->note_request_taken();
  }
  return ZX_OK;
}

}  // namespace zxp
