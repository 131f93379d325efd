#define CATCH_CONFIG_RUNNER
#include <catch2/catch.hpp>

#include "common/log.h"

int main(int argc, char* argv[]) {
  // Tests assert on behaviour, not on log lines; keep the output to warnings and failures.
  mesh::log::SetLevel(mesh::log::Level::kWarn);
  return Catch::Session().run(argc, argv);
}
