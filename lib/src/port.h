// Ports: FIFO packet queues that pager threads wait on.
#pragma once

#include <condition_variable>
#include <atomic>
#include <deque>
#include <mutex>

#include <zircon/syscalls/port.h>

#include "object.h"
#include "thread_annotations.h"

namespace zxp {

class FaultService;

// A port. Thread-safe: any number of threads may queue, wait and withdraw at once;
// waiters are served in FIFO order of packets.
class Port final : public Object {
 public:
  static constexpr zx_obj_type_t kType = ZX_OBJ_TYPE_PORT;
  // Zircon bounds the user packets a port holds; kernel-generated ones are not counted.
  static constexpr size_t kMaxUserPackets = 2048;

  zx_obj_type_t type() const override { return kType; }

  // zx_port_queue: ZX_ERR_SHOULD_WAIT when kMaxUserPackets user packets are queued.
  zx_status_t queue_user(const zx_port_packet_t& packet);
  // Queues a library-generated packet; returns a ticket for withdraw().
  uint64_t queue_internal(const zx_port_packet_t& packet);
  // Removes a packet queued by queue_internal if it has not been dequeued yet.
  // Returns true if it was withdrawn.
  bool withdraw(uint64_t ticket);
  // True while a packet queued by queue_internal waits in the queue (not yet dequeued,
  // not withdrawn).
  bool queued(uint64_t ticket);
  // zx_port_wait: the oldest packet, or ZX_ERR_TIMED_OUT once `deadline` (monotonic ns)
  // has passed with none queued.
  zx_status_t wait(zx_time_t deadline, zx_port_packet_t* out);

  // Pager VMOs report to this port: a thread waiting on it may read the userfaultfd
  // itself (see FaultService::try_begin_polling).
  void serve_faults(FaultService* service) { service_.store(service, std::memory_order_release); }

 private:
  // After queueing: whom to wake (a sleeping waiter, or the one polling for this port),
  // decided under mu_ and done after it is dropped.
  struct Wakeup {
    bool sleeper;
    bool poller;
    FaultService* service;
  };
  Wakeup wakeup_locked() REQUIRES(mu_);
  void wake(const Wakeup& w);

  struct Entry {
    zx_port_packet_t packet;
    uint64_t ticket;  // strictly increasing along the queue
    bool user;
    bool withdrawn;
  };

  Mutex mu_;
  std::condition_variable cv_;
  std::deque<Entry> queue_ GUARDED_BY(mu_);
  size_t live_ GUARDED_BY(mu_) = 0;  // entries not withdrawn
  size_t user_packets_ GUARDED_BY(mu_) = 0;
  size_t waiters_ GUARDED_BY(mu_) = 0;
  size_t polling_ GUARDED_BY(mu_) = 0;  // waiters of this port that are the service's pollers
  std::atomic<FaultService*> service_{nullptr};
  uint64_t next_ticket_ GUARDED_BY(mu_) = 1;
};

// Monotonic clock in nanoseconds (CLOCK_MONOTONIC, as zx_clock_get_monotonic).
zx_time_t monotonic_now();

}  // namespace zxp
