#include "controlplane/store/record_io.h"

#include <catch2/catch.hpp>

namespace mesh::store {
namespace {

TEST_CASE("Framed records read back whole") {
  std::string data;
  AppendFramed("one", &data);
  AppendFramed("", &data);
  AppendFramed(std::string(70000, 'x'), &data);
  ReadResult r = ReadFramed(data);
  REQUIRE(r.payloads.size() == 3);
  CHECK(r.payloads[0] == "one");
  CHECK(r.payloads[1].empty());
  CHECK(r.payloads[2].size() == 70000);
  CHECK(r.valid_bytes == data.size());
}

TEST_CASE("Reading stops at a truncated record and reports the valid prefix") {
  std::string data;
  AppendFramed("first", &data);
  size_t good = data.size();
  AppendFramed("second", &data);
  for (size_t cut = good; cut < data.size(); ++cut) {
    ReadResult r = ReadFramed(data.substr(0, cut));
    REQUIRE(r.payloads.size() == 1);
    CHECK(r.valid_bytes == good);
  }
}

TEST_CASE("Reading stops at a record whose checksum does not match") {
  std::string data;
  AppendFramed("first", &data);
  size_t good = data.size();
  AppendFramed("second", &data);
  data[data.size() - 1] ^= 0x40;
  ReadResult r = ReadFramed(data);
  CHECK(r.payloads.size() == 1);
  CHECK(r.valid_bytes == good);
}

}  // namespace
}  // namespace mesh::store
