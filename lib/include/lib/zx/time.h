// zx::duration, zx::time, zx::clock and the zx::nsec/usec/msec/sec/min/hour helpers,
// as in Fuchsia's lib/zx. Arithmetic saturates at the infinities, as Zircon's does.
#ifndef LIB_ZX_TIME_H_
#define LIB_ZX_TIME_H_

#include <stdint.h>

#include <zircon/syscalls.h>
#include <zircon/types.h>

namespace zx {
namespace internal {

constexpr int64_t saturating_add(int64_t a, int64_t b) {
  int64_t r = 0;
  if (__builtin_add_overflow(a, b, &r)) return a < 0 ? INT64_MIN : INT64_MAX;
  return r;
}
constexpr int64_t saturating_sub(int64_t a, int64_t b) {
  int64_t r = 0;
  if (__builtin_sub_overflow(a, b, &r)) return a < 0 ? INT64_MIN : INT64_MAX;
  return r;
}
constexpr int64_t saturating_mul(int64_t a, int64_t b) {
  int64_t r = 0;
  if (__builtin_mul_overflow(a, b, &r)) return (a < 0) != (b < 0) ? INT64_MIN : INT64_MAX;
  return r;
}

}  // namespace internal

// A span of nanoseconds. A value type: reentrant.
class duration final {
 public:
  constexpr duration() = default;
  explicit constexpr duration(zx_duration_t value) : value_(value) {}

  static constexpr duration infinite() { return duration(ZX_TIME_INFINITE); }
  static constexpr duration infinite_past() { return duration(ZX_TIME_INFINITE_PAST); }

  constexpr zx_duration_t get() const { return value_; }

  constexpr duration operator+(duration other) const {
    return duration(internal::saturating_add(value_, other.value_));
  }
  constexpr duration operator-(duration other) const {
    return duration(internal::saturating_sub(value_, other.value_));
  }
  constexpr duration operator*(int64_t multiplier) const {
    return duration(internal::saturating_mul(value_, multiplier));
  }
  constexpr duration operator/(int64_t divisor) const { return duration(value_ / divisor); }
  constexpr int64_t operator/(duration other) const { return value_ / other.value_; }
  constexpr duration operator%(duration other) const { return duration(value_ % other.value_); }
  constexpr duration operator-() const {
    return duration(internal::saturating_sub(0, value_));
  }

  constexpr duration& operator+=(duration other) { return *this = *this + other; }
  constexpr duration& operator-=(duration other) { return *this = *this - other; }
  constexpr duration& operator*=(int64_t multiplier) { return *this = *this * multiplier; }
  constexpr duration& operator/=(int64_t divisor) { return *this = *this / divisor; }

  constexpr bool operator==(duration other) const { return value_ == other.value_; }
  constexpr bool operator!=(duration other) const { return value_ != other.value_; }
  constexpr bool operator<(duration other) const { return value_ < other.value_; }
  constexpr bool operator<=(duration other) const { return value_ <= other.value_; }
  constexpr bool operator>(duration other) const { return value_ > other.value_; }
  constexpr bool operator>=(duration other) const { return value_ >= other.value_; }

  constexpr int64_t to_nsecs() const { return value_; }
  constexpr int64_t to_usecs() const { return value_ / ZX_USEC(1); }
  constexpr int64_t to_msecs() const { return value_ / ZX_MSEC(1); }
  constexpr int64_t to_secs() const { return value_ / ZX_SEC(1); }
  constexpr int64_t to_mins() const { return value_ / ZX_MIN(1); }
  constexpr int64_t to_hours() const { return value_ / ZX_HOUR(1); }

 private:
  zx_duration_t value_ = 0;
};

// A point on a clock, in nanoseconds. Only the monotonic clock exists here. A value type:
// reentrant.
template <zx_clock_t kClockId>
class basic_time final {
 public:
  constexpr basic_time() = default;
  explicit constexpr basic_time(zx_time_t value) : value_(value) {}

  static constexpr basic_time infinite() { return basic_time(ZX_TIME_INFINITE); }
  static constexpr basic_time infinite_past() { return basic_time(ZX_TIME_INFINITE_PAST); }

  constexpr zx_time_t get() const { return value_; }
  zx_time_t* get_address() { return &value_; }

  constexpr duration operator-(basic_time other) const {
    return duration(internal::saturating_sub(value_, other.value_));
  }
  constexpr basic_time operator+(duration delta) const {
    return basic_time(internal::saturating_add(value_, delta.get()));
  }
  constexpr basic_time operator-(duration delta) const {
    return basic_time(internal::saturating_sub(value_, delta.get()));
  }
  constexpr basic_time& operator+=(duration delta) { return *this = *this + delta; }
  constexpr basic_time& operator-=(duration delta) { return *this = *this - delta; }

  constexpr bool operator==(basic_time other) const { return value_ == other.value_; }
  constexpr bool operator!=(basic_time other) const { return value_ != other.value_; }
  constexpr bool operator<(basic_time other) const { return value_ < other.value_; }
  constexpr bool operator<=(basic_time other) const { return value_ <= other.value_; }
  constexpr bool operator>(basic_time other) const { return value_ > other.value_; }
  constexpr bool operator>=(basic_time other) const { return value_ >= other.value_; }

 private:
  zx_time_t value_ = 0;
};

using time = basic_time<ZX_CLOCK_MONOTONIC>;

// The clocks. Reentrant.
class clock final {
 public:
  clock() = delete;
  static time get_monotonic() { return time(zx_clock_get_monotonic()); }
};

constexpr duration nsec(int64_t n) { return duration(ZX_NSEC(1)) * n; }
constexpr duration usec(int64_t n) { return duration(ZX_USEC(1)) * n; }
constexpr duration msec(int64_t n) { return duration(ZX_MSEC(1)) * n; }
constexpr duration sec(int64_t n) { return duration(ZX_SEC(1)) * n; }
constexpr duration min(int64_t n) { return duration(ZX_MIN(1)) * n; }
constexpr duration hour(int64_t n) { return duration(ZX_HOUR(1)) * n; }

// The monotonic time `nanoseconds` from now, saturating at ZX_TIME_INFINITE. Reentrant.
inline time deadline_after(duration nanoseconds) {
  return time(zx_deadline_after(nanoseconds.get()));
}

}  // namespace zx

#endif  // LIB_ZX_TIME_H_
