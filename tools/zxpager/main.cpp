// zxpager: what this kernel offers the pager, and tools to stress and measure it.
#include <fmt/core.h>

#include <map>
#include <string>

#include "commands.h"

int main(int argc, char** argv) {
  CLI::App app{
      "zxpager: Fuchsia Zircon's user-pager protocol on Linux userfaultfd.\n"
      "Run a subcommand with --help for its options."};
  app.require_subcommand(1);
  std::map<std::string, zxpager_cli::Runner> runners;
  runners["info"] = zxpager_cli::add_info(app);
  runners["bench"] = zxpager_cli::add_bench(app);
  // `bench file FILE`: the file pager against the kernel, a subcommand of bench.
  zxpager_cli::Runner bench_file = zxpager_cli::add_bench_file(*app.get_subcommand("bench"));
  // `bench blobfs`: a large blob read lazily (in-process, through blobfsd) against eagerly.
  zxpager_cli::Runner bench_blobfs = zxpager_cli::add_bench_blobfs(*app.get_subcommand("bench"));
  // `bench remote URL`: paging from a server against fetching the whole object first.
  zxpager_cli::Runner bench_remote = zxpager_cli::add_bench_remote(*app.get_subcommand("bench"));
  runners["stress"] = zxpager_cli::add_stress(app);
  CLI11_PARSE(app, argc, argv);
  for (CLI::App* sub : app.get_subcommands()) {
    if (sub->get_name() == "bench" && sub->got_subcommand("file")) return bench_file();
    if (sub->get_name() == "bench" && sub->got_subcommand("blobfs")) return bench_blobfs();
    if (sub->get_name() == "bench" && sub->got_subcommand("remote")) return bench_remote();
    auto it = runners.find(sub->get_name());
    if (it != runners.end()) return it->second();
  }
  return 2;
}
