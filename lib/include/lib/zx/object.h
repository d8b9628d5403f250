// zx::object<T>, the move-only owner every handle wrapper derives from, and
// zx::unowned<T>, which borrows a handle without closing it. As in Fuchsia's lib/zx.
#ifndef LIB_ZX_OBJECT_H_
#define LIB_ZX_OBJECT_H_

#include <zircon/syscalls.h>
#include <zircon/types.h>

#include <type_traits>
#include <utility>

namespace zx {

// Owns one handle and closes it on destruction. Move-only.
//
// Thread-compatible: the calls it makes are thread-safe, so const methods of one object
// may run on several threads at once, but anything that changes which handle it owns
// (reset, release, replace, assignment, destruction) must not race another use of it.
template <typename T>
class object {
 public:
  constexpr object() = default;
  explicit object(zx_handle_t value) : value_(value) {}

  // Takes over another object's handle: from a handle of any type into zx::handle
  // (object<void>), or from zx::handle into a typed wrapper, as in Fuchsia.
  template <typename U>
  object(object<U>&& other) : value_(other.release()) {  // NOLINT(google-explicit-constructor)
    static_assert(std::is_same<T, void>::value || std::is_same<U, void>::value,
                  "only zx::handle converts to and from the typed wrappers");
  }

  object(const object&) = delete;
  object& operator=(const object&) = delete;

  object(object&& other) noexcept : value_(other.release()) {}
  object& operator=(object&& other) noexcept {
    if (this != &other) reset(other.release());
    return *this;
  }

  ~object() { reset(); }

  // zx_handle_duplicate: a second handle to the same object, with `rights` (a subset of
  // this handle's, or ZX_RIGHT_SAME_RIGHTS). *result is reset to it on success.
  zx_status_t duplicate(zx_rights_t rights, object<T>* result) const {
    zx_handle_t h = ZX_HANDLE_INVALID;
    zx_status_t status = zx_handle_duplicate(value_, rights, &h);
    result->reset(h);
    return status;
  }

  // zx_handle_replace: consumes this handle (even on failure, as in Zircon) and puts a
  // handle with `rights` into *result.
  zx_status_t replace(zx_rights_t rights, object<T>* result) {
    zx_handle_t h = ZX_HANDLE_INVALID;
    zx_status_t status = zx_handle_replace(value_, rights, &h);
    // The old handle is gone either way: forget it without closing it again.
    value_ = ZX_HANDLE_INVALID;
    result->reset(h);
    return status;
  }

  zx_status_t get_info(uint32_t topic, void* buffer, size_t buffer_size, size_t* actual_count,
                       size_t* avail_count) const {
    return zx_object_get_info(value_, topic, buffer, buffer_size, actual_count, avail_count);
  }

  // Closes the owned handle, if any, and owns `value` instead.
  void reset(zx_handle_t value = ZX_HANDLE_INVALID) {
    close();
    value_ = value;
  }

  // Gives up ownership without closing; the caller must close the handle.
  [[nodiscard]] zx_handle_t release() {
    zx_handle_t h = value_;
    value_ = ZX_HANDLE_INVALID;
    return h;
  }

  // For calls that write a new handle: closes the current one first.
  zx_handle_t* reset_and_get_address() {
    reset();
    return &value_;
  }

  zx_handle_t get() const { return value_; }
  bool is_valid() const { return value_ != ZX_HANDLE_INVALID; }
  explicit operator bool() const { return is_valid(); }

  void swap(object& other) { std::swap(value_, other.value_); }

 protected:
  zx_handle_t value_ = ZX_HANDLE_INVALID;

 private:
  void close() {
    if (value_ != ZX_HANDLE_INVALID) {
      // A failed close means the handle was not ours (closed behind our back); there is
      // nothing to undo, so the status is dropped deliberately.
      static_cast<void>(zx_handle_close(value_));
      value_ = ZX_HANDLE_INVALID;
    }
  }
};

template <typename T>
bool operator==(const object<T>& a, const object<T>& b) {
  return a.get() == b.get();
}
template <typename T>
bool operator!=(const object<T>& a, const object<T>& b) {
  return !(a == b);
}

// Borrows a handle: gives access to T's methods without owning (closing) the handle.
//
// Thread-compatible, like object<T>; the borrowed handle must outlive it.
template <typename T>
class unowned final {
 public:
  constexpr unowned() = default;
  explicit unowned(zx_handle_t h) : value_(h) {}
  explicit unowned(const T& owner) : value_(owner.get()) {}
  unowned(const unowned& other) : value_(other.value_.get()) {}
  unowned& operator=(const unowned& other) {
    if (this != &other) {
      forget();
      value_ = T(other.value_.get());
    }
    return *this;
  }
  unowned(unowned&& other) noexcept : value_(other.take()) {}
  unowned& operator=(unowned&& other) noexcept {
    if (this != &other) {
      forget();
      value_ = T(other.take());
    }
    return *this;
  }
  ~unowned() { forget(); }

  const T& operator*() const { return value_; }
  const T* operator->() const { return &value_; }

 private:
  // Drops the borrowed value without closing it.
  void forget() { static_cast<void>(value_.release()); }
  zx_handle_t take() { return value_.release(); }

  T value_;
};

template <typename T>
bool operator==(const unowned<T>& a, const unowned<T>& b) {
  return a->get() == b->get();
}
template <typename T>
bool operator!=(const unowned<T>& a, const unowned<T>& b) {
  return !(a == b);
}

}  // namespace zx

#endif  // LIB_ZX_OBJECT_H_
