// Small text helpers the zxpager subcommands share.
#pragma once

#include <fmt/core.h>

#include <string>
#include <vector>

namespace zxpager_cli {

// `s` as the inside of a JSON string: quotes and backslashes escaped, control characters
// as \u00XX.
inline std::string json_escape(const std::string& s) {
  std::string out;
  for (char c : s) {
    if (c == '"' || c == '\\') out += '\\';
    if (static_cast<unsigned char>(c) < 0x20) {
      out += fmt::format("\\u{:04x}", c);
      continue;
    }
    out += c;
  }
  return out;
}

// "a, b, c": a list of names for a help text or a message.
inline std::string join_names(const std::vector<std::string>& names) {
  std::string out;
  for (const std::string& n : names) out += (out.empty() ? "" : ", ") + n;
  return out;
}

}  // namespace zxpager_cli
