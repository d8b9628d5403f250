// The zxpager CLI's subcommands. Each registers its options on `app` and returns the
// function that runs it (exit status).
#pragma once

#include <functional>

#include <CLI/CLI.hpp>

namespace zxpager_cli {

using Runner = std::function<int()>;

Runner add_info(CLI::App& app);
Runner add_stress(CLI::App& app);
Runner add_bench(CLI::App& app);
// `bench file`, registered on the bench subcommand.
Runner add_bench_file(CLI::App& bench);
// `bench blobfs`, registered on the bench subcommand.
Runner add_bench_blobfs(CLI::App& bench);
// `bench remote URL`, registered on the bench subcommand.
Runner add_bench_remote(CLI::App& bench);

}  // namespace zxpager_cli
