#include "controlplane/store/record_io.h"

#include <sys/stat.h>

#include <catch2/catch.hpp>
#include <filesystem>

#include "test/support/temp_dir.h"

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

TEST_CASE("WriteFileAtomically replaces a file whole, with its mode, and creates directories") {
  testing::TempDir dir;
  const std::string path = dir / "a/b/secret.pem";
  REQUIRE(WriteFileAtomically(path, "first", 0644).ok());
  REQUIRE(WriteFileAtomically(path, "second", 0600).ok());
  CHECK(*ReadFile(path) == "second");
  struct stat st;
  REQUIRE(::stat(path.c_str(), &st) == 0);
  CHECK((st.st_mode & 0777) == 0600);
  CHECK(!std::filesystem::exists(path + ".tmp"));
  CHECK(!WriteFileAtomically(path + "/under-a-file", "x", 0600).ok());
  CHECK(absl::IsNotFound(ReadFile(dir / "missing").status()));
}

}  // namespace
}  // namespace mesh::store
