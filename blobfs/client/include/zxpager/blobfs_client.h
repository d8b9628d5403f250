// The blobfsd client: connect to the daemon, open blobs by name or Merkle root, and use
// each as a read-only mapping whose pages the daemon reads, verifies and decompresses on
// first touch (a userfaultfd of this process, served by the daemon: see README, "blobfsd").
// The mapping is of the blob's shared memory, one copy for every process of this user id
// that opens the blob: a page another such process brought in is there with no fault.
//
// Two ways to read a blob:
//  - data(): the mapping. A page that cannot be produced (it fails verification: the
//    blob is corrupt) is SIGBUS at its address in the touching thread, as on Fuchsia.
//  - read(): copies out (pages already present straight from the blob's memory, the rest
//    after asking the daemon to make them present), and returns
//    the status (ZX_ERR_IO_DATA_INTEGRITY, ...) instead of a signal. Use it whenever the
//    bytes go to the kernel: an ordinary user has only user-mode userfaultfd, where a
//    kernel access to a page not yet present (write(2) straight from data()) fails with
//    EFAULT instead of paging it in.
//
// A blob opened with kBlobfsCopyOnWrite is mapped writable and copy-on-write, the
// client-side shape of Fuchsia's writable clone of a blob's VMO (the ELF loader's data
// segment): mutable_data() takes stores, which copy the page they land on into this
// process's private memory; the blob, other clients and this client's other opens of it
// never see them. Pages never stored to are the blob's shared pages, as for a read-only
// open (no copy, no extra page-in). As for data(), commit() a range before a system
// call reads or writes it through mutable_data().
//
// C++17, no exceptions: every call returns a zx_status_t. Thread-safety: a client and
// its blobs may be used from any number of threads; requests on one connection are
// serialized (one outstanding at a time). Touching data() from many threads at once is
// fine. A blob keeps its connection alive: the BlobfsClient may be destroyed first.
#ifndef ZXPAGER_BLOBFS_CLIENT_H_
#define ZXPAGER_BLOBFS_CLIENT_H_

#include <stddef.h>
#include <stdint.h>

#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include <zircon/types.h>
#include <zxpager/unique_fd.h>

namespace zxp {

class BlobfsConnection;

// One open blob, mapped. Destroying it unmaps it and tells the daemon.
class BlobfsBlob {
 public:
  ~BlobfsBlob();
  BlobfsBlob(const BlobfsBlob&) = delete;
  BlobfsBlob& operator=(const BlobfsBlob&) = delete;

  // The blob's bytes (nullptr for an empty blob). Read-only by contract (a store through
  // it is SIGSEGV) unless opened with kBlobfsCopyOnWrite.
  const uint8_t* data() const { return data_; }
  // Opened with kBlobfsCopyOnWrite: the same mapping, writable (stores stay in this
  // process, in this blob object's mapping); nullptr otherwise and for an empty blob.
  uint8_t* mutable_data() const { return copy_on_write_ ? data_ : nullptr; }
  bool copy_on_write() const { return copy_on_write_; }
  uint64_t size() const { return size_; }
  // The Merkle root, 64 lowercase hex digits.
  const std::string& root() const { return root_; }
  bool compressed() const { return format_ != 0; }

  // Copies up to `length` bytes at `offset` into `buffer`: pages present in the blob's
  // shared memory (brought in by any client of this user id) straight from it, as a read
  // of a cached file is (no page faults, no round trip); the rest after a COMMIT. A
  // copy-on-write blob reads what data() shows, this client's stores included: every
  // range after a COMMIT (one round trip), then from the mapping.
  // *actual (may be null) gets
  // the count, short only at the end of the blob. ZX_ERR_OUT_OF_RANGE if offset > size;
  // ZX_ERR_IO_DATA_INTEGRITY if any page of the range fails verification (buffer
  // contents then unspecified); ZX_ERR_PEER_CLOSED if the daemon is gone.
  zx_status_t read(uint64_t offset, void* buffer, size_t length, size_t* actual = nullptr);
  // Makes [offset, offset+length) present (the pages are then read without a fault).
  zx_status_t commit(uint64_t offset, uint64_t length);

 private:
  // Copies [offset, offset+length) from the memory if every page of it is present there;
  // false otherwise (nothing to rely on in `out` then).
  bool read_present(uint64_t offset, uint8_t* out, uint64_t length);
  friend class BlobfsClient;
  BlobfsBlob() = default;
  std::shared_ptr<BlobfsConnection> conn_;
  uint32_t handle_ = 0;
  uint8_t* data_ = nullptr;
  uint64_t size_ = 0;
  uint64_t map_size_ = 0;
  UniqueFd memory_;  // the blob's shared memory (read-only)
  bool copy_on_write_ = false;
  bool mincore_reliable_ = false;  // this process owns the memory (or is root)
  std::mutex hint_mu_;
  int64_t present_from_ = 0, present_to_ = 0;  // seen all present (when mincore is not)
  uint32_t format_ = 0;
  std::string root_;
};

// Statistics of one blob in the daemon (BlobfsClient::stats).
struct BlobfsBlobStats {
  std::string name;  // one of its names
  std::string root;  // hex
  uint64_t size = 0;
  bool compressed = false;
  bool corrupt = false;
  uint32_t opens = 0;
  uint32_t mappings = 0;        // client mappings of the blob now
  uint32_t vmos = 0;            // shared copies kept now (one per user id)
  uint64_t pages_resident = 0;  // pages in those copies (open blobs and the cache)
  uint64_t page_ins = 0;        // fills, for all clients together
  uint64_t pages_supplied = 0;
  uint64_t bytes_read = 0;
  uint64_t bytes_decompressed = 0;
  uint64_t verify_failures = 0;
  uint64_t latency_p50_ns = 0;
  uint64_t latency_p99_ns = 0;
};

// BlobfsClient::open flags.
enum BlobfsOpenFlags : uint32_t {
  // A writable copy-on-write mapping (BlobfsBlob::mutable_data).
  kBlobfsCopyOnWrite = 1u << 0,
};

class BlobfsClient {
 public:
  // $XDG_RUNTIME_DIR/blobfsd.sock, else /tmp/blobfsd-<uid>.sock. Reentrant.
  static std::string default_socket_path();

  // Connects and says HELLO. `socket_path` nullptr or "": the default.
  // ZX_ERR_NOT_FOUND / ZX_ERR_ACCESS_DENIED / ZX_ERR_PEER_CLOSED if there is no daemon
  // there (or it cannot be reached), ZX_ERR_NOT_SUPPORTED for a daemon with no protocol
  // version in common (this library speaks version 2 only).
  static zx_status_t connect(const char* socket_path, std::unique_ptr<BlobfsClient>* out);
  ~BlobfsClient();

  // Opens a blob by name (a path relative to the directory given to mkblobfs) or by Merkle
  // root (64 hex digits) and maps it. ZX_ERR_NOT_FOUND if the image has no such blob;
  // ZX_ERR_NOT_SUPPORTED if this process cannot use userfaultfd; ZX_ERR_NO_RESOURCES if
  // the connection has too many blobs open; ZX_ERR_PEER_CLOSED if the daemon is gone.
  // `flags`: BlobfsOpenFlags (ZX_ERR_INVALID_ARGS for unknown bits).
  zx_status_t open(const char* name, std::unique_ptr<BlobfsBlob>* out) {
    return open(name, 0, out);
  }
  zx_status_t open(const char* name, uint32_t flags, std::unique_ptr<BlobfsBlob>* out);
  zx_status_t open_by_root(const char* root_hex, std::unique_ptr<BlobfsBlob>* out) {
    return open_by_root(root_hex, 0, out);
  }
  zx_status_t open_by_root(const char* root_hex, uint32_t flags,
                           std::unique_ptr<BlobfsBlob>* out);

  // Per-blob statistics of every blob the daemon has served.
  zx_status_t stats(std::vector<BlobfsBlobStats>* out);

 private:
  BlobfsClient() = default;
  zx_status_t open_common(uint16_t op, const void* body, size_t length, uint32_t flags,
                          std::unique_ptr<BlobfsBlob>* out);
  std::shared_ptr<BlobfsConnection> conn_;
};

}  // namespace zxp

#endif  // ZXPAGER_BLOBFS_CLIENT_H_
