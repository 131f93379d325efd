#include "common/yaml_json.h"

#include <catch2/catch.hpp>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "nlohmann/json.hpp"

namespace mesh {
namespace {

using nlohmann::json;

TEST_CASE("YAML plain scalars resolve with the core schema, quoted ones stay strings") {
  auto docs = ParseYamlDocuments(
      "a: 8080\nb: \"1.0\"\nc: 1.5\nd: true\ne: ~\nf: hello\ng: '42'\nh: 0x1f\n");
  REQUIRE(docs.ok());
  REQUIRE(docs->size() == 1);
  const json& d = (*docs)[0];
  CHECK(d["a"] == 8080);
  CHECK(d["b"] == "1.0");
  CHECK(d["c"] == 1.5);
  CHECK(d["d"] == true);
  CHECK(d["e"].is_null());
  CHECK(d["f"] == "hello");
  CHECK(d["g"] == "42");
  CHECK(d["h"] == 31);
}

TEST_CASE("Multi-document YAML yields each non-empty document in order") {
  auto docs = ParseYamlDocuments("# comment only\n---\nkind: A\n---\n---\nkind: B\n");
  REQUIRE(docs.ok());
  REQUIRE(docs->size() == 2);
  CHECK((*docs)[0]["kind"] == "A");
  CHECK((*docs)[1]["kind"] == "B");
}

TEST_CASE("A YAML syntax error names the line and column") {
  auto docs = ParseYamlDocuments("a: [1, 2\nb: c\n");
  REQUIRE(!docs.ok());
  CHECK(absl::StrContains(docs.status().message(), "line "));
}

TEST_CASE("Duplicate mapping keys are an error") {
  auto docs = ParseYamlDocuments("a: 1\na: 2\n");
  REQUIRE(!docs.ok());
  CHECK(absl::StrContains(docs.status().message(), "duplicate key \"a\""));
}

TEST_CASE("Alias expansion is bounded, so a billion-laughs document is refused") {
  std::string bomb =
      "a: &a [\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\"]\n";
  char prev = 'a';
  for (char c = 'b'; c <= 'j'; ++c) {
    bomb += absl::StrCat(std::string(1, c), ": &", std::string(1, c), " [");
    for (int i = 0; i < 9; ++i) bomb += absl::StrCat(i ? "," : "", "*", std::string(1, prev));
    bomb += "]\n";
    prev = c;
  }
  auto docs = ParseYamlDocuments(bomb);
  REQUIRE(!docs.ok());
  CHECK(absl::StrContains(docs.status().message(), "alias expansion is bounded"));
}

TEST_CASE("Deep flow nesting is refused before the parser recurses") {
  std::string deep(100000, '[');
  auto docs = ParseYamlDocuments(deep);
  REQUIRE(!docs.ok());
  CHECK(docs.status().message() == "YAML nesting deeper than 64 levels");
}

TEST_CASE("The document count is bounded") {
  YamlLimits limits;
  limits.max_documents = 3;
  std::string text;
  for (int i = 0; i < 4; ++i) text += "---\nk: v\n";
  auto docs = ParseYamlDocuments(text, limits);
  REQUIRE(!docs.ok());
  CHECK(docs.status().message() == "more than 3 documents in one request");
}

TEST_CASE("JsonToYaml round-trips, quoting strings that look like other types") {
  json v = {
      {"version", "1.0"}, {"port", 8080}, {"on", "true"}, {"list", {"a", "b"}}, {"empty", ""}};
  auto back = ParseYamlDocuments(JsonToYaml(v));
  REQUIRE(back.ok());
  CHECK((*back)[0] == v);
}

}  // namespace
}  // namespace mesh

namespace mesh {
namespace {

TEST_CASE("Nesting inside quoted strings, escapes and comments does not count") {
  CHECK(CheckNestingDepth(R"(a: "[[[[\"[[[[", b: '[[[[' # [[[[)", 2).ok());
  CHECK(CheckNestingDepth("{\"a\": [[1]]}", 3).ok());
  CHECK(!CheckNestingDepth("{\"a\": [[[1]]]}", 3).ok());
}

}  // namespace
}  // namespace mesh

namespace mesh {
namespace {

TEST_CASE("Streams that send yaml-cpp 0.7's LoadAll into an endless loop are refused at once") {
  // Found by the libFuzzer harness: each hung a REST handler thread forever, allocating.
  for (const char* text : {",a", ",p: n{\"a", "\n,\n", "kind: Service\n---\n,x: y\n"}) {
    INFO(text);
    auto docs = ParseYamlDocuments(text);
    REQUIRE_FALSE(docs.ok());
    CHECK(absl::StartsWith(docs.status().message(), "YAML: line "));
  }
  // What looks alike but is valid still parses.
  auto fine = ParseYamlDocuments("a: \",b\"\n---\n- x,y\n---\n---\nb: 1\n");
  REQUIRE(fine.ok());
  CHECK(fine->size() == 3);
}

}  // namespace
}  // namespace mesh
