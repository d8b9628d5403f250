// ZXP_EXPORT marks the public C++ classes and functions of libzxpager (the library is
// built with hidden visibility; only these and the C API are exported).
#ifndef ZXPAGER_EXPORT_H_
#define ZXPAGER_EXPORT_H_

#define ZXP_EXPORT __attribute__((visibility("default")))

#endif  // ZXPAGER_EXPORT_H_
