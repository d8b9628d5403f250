// Kernel objects and the process-wide handle table.
#pragma once

#include <stdint.h>

#include <atomic>
#include <deque>
#include <memory>
#include <mutex>
#include <vector>

#include <zircon/types.h>

#include "thread_annotations.h"

namespace zxp {

// Base of every object a handle can name. Objects are shared_ptr-owned: by handles, by
// mappings, and by the objects that refer to them. Thread-safe.
class Object : public std::enable_shared_from_this<Object> {
 public:
  Object();
  virtual ~Object();
  Object(const Object&) = delete;
  Object& operator=(const Object&) = delete;

  virtual zx_obj_type_t type() const = 0;
  zx_koid_t koid() const { return koid_; }

  // Handle bookkeeping; called by the handle table only.
  void add_handle() { handle_count_.fetch_add(1, std::memory_order_relaxed); }
  void remove_handle();
  uint32_t handle_count() const { return handle_count_.load(std::memory_order_acquire); }

 protected:
  // Called once the last handle to the object is closed (Zircon's on_zero_handles),
  // without any table lock held.
  virtual void on_zero_handles() {}

 private:
  const zx_koid_t koid_;
  std::atomic<uint32_t> handle_count_{0};
};

template <typename T>
constexpr zx_obj_type_t object_type_of();

// The process-wide handle table. Handle values carry a generation, so a closed handle
// stays invalid for a long time even though its slot is reused. Thread-safe.
class HandleTable {
 public:
  struct Entry {
    std::shared_ptr<Object> object;
    zx_rights_t rights = 0;
  };

  static HandleTable& get();

  // Adds a handle; ZX_ERR_NO_RESOURCES when the table is full.
  zx_status_t add(std::shared_ptr<Object> object, zx_rights_t rights, zx_handle_t* out);
  // Looks a handle up without changing it.
  zx_status_t lookup(zx_handle_t handle, Entry* out);
  // Looks a handle up and checks its type and rights, in Zircon's order: bad handle,
  // wrong type, access denied.
  template <typename T>
  zx_status_t lookup_as(zx_handle_t handle, zx_rights_t needed, std::shared_ptr<T>* out,
                        zx_rights_t* rights_out = nullptr) {
    Entry e;
    zx_status_t st = lookup(handle, &e);
    if (st != ZX_OK) return st;
    if (e.object->type() != T::kType) return ZX_ERR_WRONG_TYPE;
    if ((e.rights & needed) != needed) return ZX_ERR_ACCESS_DENIED;
    *out = std::static_pointer_cast<T>(std::move(e.object));
    if (rights_out) *rights_out = e.rights;
    return ZX_OK;
  }
  // Removes a handle; the object's on_zero_handles runs here if it was the last one.
  zx_status_t remove(zx_handle_t handle);
  // Atomically replaces `handle` by a new one with `rights` (a subset of its own).
  zx_status_t replace(zx_handle_t handle, zx_rights_t rights, zx_handle_t* out);
  // Number of live handles (for leak checks).
  size_t live_count();

 private:
  struct Slot {
    std::shared_ptr<Object> object;
    zx_rights_t rights = 0;
    uint32_t generation = 1;
  };
  static constexpr uint32_t kIndexBits = 20;
  static constexpr uint32_t kGenerationBits = 10;
  static constexpr uint32_t kMaxHandles = 1u << kIndexBits;

  static zx_handle_t encode(uint32_t index, uint32_t generation);
  Slot* slot_for(zx_handle_t handle) REQUIRES(mu_);

  Mutex mu_;
  std::vector<std::unique_ptr<Slot[]>> chunks_ GUARDED_BY(mu_);
  uint32_t next_unused_ GUARDED_BY(mu_) = 0;
  std::deque<uint32_t> free_ GUARDED_BY(mu_);  // FIFO: a freed slot is reused as late as possible
  size_t live_ GUARDED_BY(mu_) = 0;
};

}  // namespace zxp
