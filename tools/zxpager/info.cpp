// zxpager info: the kernel's userfaultfd and io_uring features and the paths the library
// takes on them.
#include <fmt/core.h>
#include <sys/utsname.h>

#include <string>

#include <zircon/syscalls.h>
#include <zxpager/zxpager.h>

#include "commands.h"

namespace zxpager_cli {
namespace {

struct Options {
  bool json = false;
};

const char* yes(bool v) { return v ? "yes" : "no"; }

int run_info(const Options& o) {
  zxp_features_t f;
  zxp_get_features(&f);
  struct utsname u;
  uname(&u);
  std::string access = !f.uffd_available ? "unavailable"
                       : f.uffd_user_mode_only ? "user-mode only (UFFD_USER_MODE_ONLY)"
                       : f.uffd_via_dev ? "full, through /dev/userfaultfd"
                                        : "full, through the userfaultfd syscall";
  std::string anon_path = f.move ? "UFFDIO_MOVE (zero copy)" : "UFFDIO_COPY fallback (no MOVE)";
  std::string fail_path = f.thread_id ? "signal to the faulting thread (UFFD_FEATURE_THREAD_ID)"
                          : f.poison  ? "poison marker (no THREAD_ID; the page fails until supplied)"
                                      : "none: zx_pager_create refuses (neither THREAD_ID nor POISON)";
  std::string remote_path = f.remote_vmos
                                ? "yes: FAIL, detach and teardown by poison markers (POISON)"
                                : "refused (ZX_ERR_NOT_SUPPORTED): they depend on UFFDIO_POISON, Linux 6.6+";
  std::string evict_path = f.wp ? (f.wp_unpopulated ? "write-protect, check, drop (WP)"
                                                     : "write-protect, check, drop (WP; no WP_UNPOPULATED)")
                                : "ZX_ERR_NOT_SUPPORTED (no WP on anonymous memory)";
  std::string unmap_path = f.mremap_dontunmap
                               ? "mremap(MREMAP_DONTUNMAP): old range stays reserved"
                               : "mremap, then a MAP_FIXED_NOREPLACE placeholder (checked)";
  std::string wait_path = f.epoll_pwait2 ? "epoll_pwait2 (nanoseconds)"
                                         : "epoll_wait, timeout rounded up to milliseconds";
  std::string commit_path = f.madv_populate ? "MADV_POPULATE_WRITE"
                                            : "touch each page (no MADV_POPULATE_*)";
  std::string committed_path = f.pagemap_scan
                                   ? "PAGEMAP_SCAN (the page tables that exist)"
                                   : "a /proc/self/pagemap entry per page of its length";
  std::string disabled = f.disabled[0] ? f.disabled : "none";
  if (o.json) {
    fmt::print(
        "{{\"kernel\":\"{}\",\"userfaultfd\":{},\"via_dev\":{},\"user_mode_only\":{},"
        "\"api_features\":{},\"move\":{},\"poison\":{},\"wp\":{},\"wp_unpopulated\":{},"
        "\"minor_shmem\":{},\"thread_id\":{},\"exact_address\":{},\"event_remap\":{},"
        "\"event_remove\":{},\"event_unmap\":{},\"io_uring\":{},\"anon_supply\":\"{}\","
        "\"page_size\":{},\"mremap_dontunmap\":{},\"epoll_pwait2\":{},\"madv_populate\":{},"
        "\"pagemap_scan\":{},\"remote_vmos\":{},\"fail_by_signal\":{},\"kernel_api_features\":{},"
        "\"disabled\":\"{}\"}}\n",
        u.release, f.uffd_available ? "true" : "false", f.uffd_via_dev ? "true" : "false",
        f.uffd_user_mode_only ? "true" : "false", f.uffd_api_features,
        f.move ? "true" : "false", f.poison ? "true" : "false", f.wp ? "true" : "false",
        f.wp_unpopulated ? "true" : "false", f.minor_shmem ? "true" : "false",
        f.thread_id ? "true" : "false", f.exact_address ? "true" : "false",
        f.event_remap ? "true" : "false", f.event_remove ? "true" : "false",
        f.event_unmap ? "true" : "false", f.io_uring ? "true" : "false",
        f.move ? "move" : "copy", zx_system_get_page_size(),
        f.mremap_dontunmap ? "true" : "false", f.epoll_pwait2 ? "true" : "false",
        f.madv_populate ? "true" : "false", f.pagemap_scan ? "true" : "false",
        f.remote_vmos ? "true" : "false",
        f.fail_by_signal ? "true" : "false", f.uffd_kernel_features, f.disabled);
    return f.uffd_available ? 0 : 1;
  }
  fmt::print("kernel                  Linux {}\n", u.release);
  fmt::print("userfaultfd             {}\n", access);
  if (!f.uffd_available) {
    fmt::print("                        {}\n", f.uffd_error);
    fmt::print("                        (needs Linux >= 4.14 with CONFIG_USERFAULTFD, and either\n"
               "                        vm.unprivileged_userfaultfd=1, access to /dev/userfaultfd,\n"
               "                        or Linux >= 5.11 for user-mode-only descriptors)\n");
  }
  fmt::print("  API features          {:#x}", f.uffd_api_features);
  if (f.uffd_disabled_features) {
    fmt::print("  (kernel {:#x}, {:#x} disabled)", f.uffd_kernel_features,
               f.uffd_disabled_features);
  }
  fmt::print("\n");
  fmt::print("  MOVE                  {}  (UFFD_FEATURE_MOVE, Linux 6.8+)\n", yes(f.move));
  fmt::print("  POISON                {}  (Linux 6.6+; remote VMOs depend on it)\n", yes(f.poison));
  fmt::print("  WP (anonymous)        {}  (Linux 5.7+)\n", yes(f.wp));
  fmt::print("  WP_UNPOPULATED        {}  (Linux 6.4+)\n", yes(f.wp_unpopulated));
  fmt::print("  MINOR_SHMEM           {}  (Linux 5.14+)\n", yes(f.minor_shmem));
  fmt::print("  THREAD_ID             {}  (Linux 4.14+)\n", yes(f.thread_id));
  fmt::print("  EXACT_ADDRESS         {}\n", yes(f.exact_address));
  fmt::print("  EVENT_REMAP/REMOVE/UNMAP  {}/{}/{}\n", yes(f.event_remap), yes(f.event_remove),
             yes(f.event_unmap));
  fmt::print("mremap DONTUNMAP        {}  (Linux 5.7+)\n", yes(f.mremap_dontunmap));
  fmt::print("epoll_pwait2            {}  (Linux 5.11+)\n", yes(f.epoll_pwait2));
  fmt::print("MADV_POPULATE_*         {}  (Linux 5.14+)\n", yes(f.madv_populate));
  fmt::print("PAGEMAP_SCAN            {}  (Linux 6.7+)\n", yes(f.pagemap_scan));
  fmt::print("disabled (ZXPAGER_DISABLE)  {}\n", disabled);
  fmt::print("io_uring                {}\n", f.io_uring ? "available" : "unavailable");
  fmt::print("page size               {}\n", zx_system_get_page_size());
  fmt::print("\npaths the library takes here\n");
  fmt::print("  supply from memfd aux        UFFDIO_COPY, then FALLOC_FL_PUNCH_HOLE\n");
  fmt::print("  supply from anonymous aux    {}\n", anon_path);
  fmt::print("  ZX_PAGER_OP_FAIL on mappings {}\n", fail_path);
  fmt::print("  remote pager VMOs            {}\n", remote_path);
  fmt::print("  zxp_vmo_evict                {}\n", evict_path);
  fmt::print("  unmapping a pager VMO        {}\n", unmap_path);
  fmt::print("  zx_port_wait with a deadline {}\n", wait_path);
  fmt::print("  commit of an anonymous VMO   {}\n", commit_path);
  fmt::print("  ZX_INFO_VMO committed bytes  {}\n", committed_path);
  fmt::print("  zx_vmo_read of missing pages {}\n",
             f.uffd_user_mode_only ? "requested, then copied (kernel faults are not paged)"
                                   : "requested, then copied with process_vm_readv");
  return f.uffd_available ? 0 : 1;
}

}  // namespace

Runner add_info(CLI::App& app) {
  auto opts = std::make_shared<Options>();
  CLI::App* sub = app.add_subcommand(
      "info", "What this kernel offers (userfaultfd features, io_uring) and which paths the "
              "library takes on it");
  sub->add_flag("--json", opts->json, "Print one JSON object instead of the table");
  return [opts] { return run_info(*opts); };
}

}  // namespace zxpager_cli
