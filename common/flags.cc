#include "common/flags.h"

#include <map>
#include <vector>

#include "absl/flags/parse.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"

namespace mesh::flags {

void ParseCommandLine(int argc, char** argv, const std::set<std::string>& repeatable) {
  std::vector<std::string> args;
  std::map<std::string, size_t> first_of;  // repeatable flag -> index of its merged argument
  for (int i = 0; i < argc; ++i) {
    std::string a = argv[i];
    if (i == 0 || !absl::StartsWith(a, "--")) {
      args.push_back(std::move(a));
      continue;
    }
    size_t end = std::min(a.find('='), a.size());
    for (size_t c = 2; c < end; ++c) {
      if (a[c] == '-') a[c] = '_';
    }
    std::string name = a.substr(2, end - 2);
    if (repeatable.count(name)) {
      std::string value;
      if (end < a.size()) {
        value = a.substr(end + 1);
      } else if (i + 1 < argc) {
        value = argv[++i];
      }
      auto it = first_of.find(name);
      if (it == first_of.end()) {
        first_of[name] = args.size();
        args.push_back(absl::StrCat("--", name, "=", value));
      } else {
        absl::StrAppend(&args[it->second], ",", value);
      }
      continue;
    }
    args.push_back(std::move(a));
  }
  std::vector<char*> pointers;
  for (std::string& a : args) pointers.push_back(a.data());
  absl::ParseCommandLine(static_cast<int>(pointers.size()), pointers.data());
}

}  // namespace mesh::flags
