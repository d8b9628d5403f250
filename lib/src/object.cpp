#include "object.h"

namespace zxp {
namespace {

constexpr uint32_t kChunkSize = 4096;
std::atomic<zx_koid_t> g_next_koid{ZX_KOID_FIRST};

}  // namespace

Object::Object() : koid_(g_next_koid.fetch_add(1, std::memory_order_relaxed)) {}
Object::~Object() = default;

void Object::remove_handle() {
  if (handle_count_.fetch_sub(1, std::memory_order_acq_rel) == 1) on_zero_handles();
}

HandleTable& HandleTable::get() {
  // Never destroyed: handles may be closed from atexit handlers and other threads.
  static HandleTable* table = new HandleTable();
  return *table;
}

zx_handle_t HandleTable::encode(uint32_t index, uint32_t generation) {
  return (generation << (kIndexBits + 2)) | (index << 2) | ZX_HANDLE_FIXED_BITS_MASK;
}

HandleTable::Slot* HandleTable::slot_for(zx_handle_t handle) {
  if ((handle & ZX_HANDLE_FIXED_BITS_MASK) != ZX_HANDLE_FIXED_BITS_MASK) return nullptr;
  uint32_t index = (handle >> 2) & (kMaxHandles - 1);
  uint32_t generation = handle >> (kIndexBits + 2);
  if (index >= next_unused_) return nullptr;
  Slot* s = &chunks_[index / kChunkSize][index % kChunkSize];
  if (!s->object || s->generation != generation) return nullptr;
  return s;
}

zx_status_t HandleTable::add(std::shared_ptr<Object> object, zx_rights_t rights,
                             zx_handle_t* out) {
  MutexLock lock(mu_);
  uint32_t index;
  if (!free_.empty() && (free_.size() > 1024 || next_unused_ == kMaxHandles)) {
    index = free_.front();
    free_.pop_front();
  } else if (next_unused_ < kMaxHandles) {
    index = next_unused_;
    if (index / kChunkSize >= chunks_.size()) {
      // Allocations first (they may throw): a failure leaves the table as it was.
      auto chunk = std::make_unique<Slot[]>(kChunkSize);
      chunks_.reserve(chunks_.size() + 1);
      chunks_.push_back(std::move(chunk));
    }
    ++next_unused_;
  } else {
    return ZX_ERR_NO_RESOURCES;
  }
  object->add_handle();
  Slot& s = chunks_[index / kChunkSize][index % kChunkSize];
  s.object = std::move(object);
  s.rights = rights;
  ++live_;
  *out = encode(index, s.generation);
  return ZX_OK;
}

zx_status_t HandleTable::lookup(zx_handle_t handle, Entry* out) {
  MutexLock lock(mu_);
  Slot* s = slot_for(handle);
  if (!s) return ZX_ERR_BAD_HANDLE;
  out->object = s->object;
  out->rights = s->rights;
  return ZX_OK;
}

zx_status_t HandleTable::remove(zx_handle_t handle) {
  std::shared_ptr<Object> object;
  {
    MutexLock lock(mu_);
    Slot* s = slot_for(handle);
    if (!s) return ZX_ERR_BAD_HANDLE;
    object = std::move(s->object);
    s->object.reset();
    s->generation = (s->generation + 1) & ((1u << kGenerationBits) - 1);
    free_.push_back((handle >> 2) & (kMaxHandles - 1));
    --live_;
  }
  object->remove_handle();
  return ZX_OK;
}

zx_status_t HandleTable::replace(zx_handle_t handle, zx_rights_t rights, zx_handle_t* out) {
  MutexLock lock(mu_);
  Slot* s = slot_for(handle);
  if (!s) return ZX_ERR_BAD_HANDLE;
  if (rights == ZX_RIGHT_SAME_RIGHTS) rights = s->rights;
  if ((s->rights & rights) != rights) {
    // As in Zircon, the original handle is consumed even when the call fails.
    lock.unlock();
    remove(handle);
    return ZX_ERR_INVALID_ARGS;
  }
  // The slot keeps the object; only the generation (and so the value) and rights change,
  // so the handle count stays as it is.
  s->generation = (s->generation + 1) & ((1u << kGenerationBits) - 1);
  s->rights = rights;
  *out = encode((handle >> 2) & (kMaxHandles - 1), s->generation);
  return ZX_OK;
}

size_t HandleTable::live_count() {
  MutexLock lock(mu_);
  return live_;
}

}  // namespace zxp
