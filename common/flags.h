#pragma once

#include <set>
#include <string>

namespace mesh::flags {

// Parses the command line with absl, accepting DESIGN.md's dashed flag names (--data-dir) as
// absl's underscored ones (--data_dir). A flag named in `repeatable` may be given several times;
// its values are joined with commas, so a std::vector<std::string> flag receives them all.
void ParseCommandLine(int argc, char** argv, const std::set<std::string>& repeatable = {});

}  // namespace mesh::flags
