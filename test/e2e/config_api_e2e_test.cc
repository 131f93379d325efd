// End to end: the real meshpilot and meshctl binaries, on a free port and a temporary directory,
// applying the voting-app tutorial's manifests as they are.
#include <catch2/catch.hpp>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "absl/strings/match.h"
#include "absl/strings/str_split.h"
#include "nlohmann/json.hpp"
#include "test/support/meshpilot.h"
#include "test/support/temp_dir.h"

namespace mesh {
namespace {

using nlohmann::json;
using testing::CommandResult;
using testing::MeshpilotProcess;
using testing::RunCommand;
using testing::TempDir;

const std::string kManifests = MESH_MANIFESTS_DIR;

struct Cluster {
  Cluster() : pilot(MESHPILOT_BIN, dir.path() + "/data") { REQUIRE(pilot.Start()); }

  CommandResult Ctl(std::vector<std::string> args, const std::string& stdin_text = "") {
    std::vector<std::string> argv = {MESHCTL_BIN, "--server", pilot.address(), "--token",
                                     pilot.token()};
    argv.insert(argv.end(), args.begin(), args.end());
    return RunCommand(argv, stdin_text);
  }
  CommandResult Apply(const std::string& file) {
    return Ctl({"apply", "-n", "voting", "-f", kManifests + "/" + file});
  }

  TempDir dir;
  MeshpilotProcess pilot;
};

std::vector<std::string> Lines(const std::string& s) {
  return absl::StrSplit(s, '\n', absl::SkipEmpty());
}

TEST_CASE(
    "The voting-app tutorial applies in order: created, unchanged, configured, and get shows it") {
  Cluster c;
  // Step 1: the app and its gateway.
  CommandResult r = c.Apply("kubernetes/step-1-create-voting-app.yaml");
  REQUIRE(r.exit_code == 0);
  CHECK(
      Lines(r.out) ==
      std::vector<std::string>{
          "deployment.apps/voting-storage-1-0 skipped (apps/v1 Deployment is not a mesh resource)",
          "service/voting-storage created",
          "deployment.apps/voting-analytics-1-0 skipped (apps/v1 Deployment is not a mesh "
          "resource)",
          "service/voting-analytics created",
          "deployment.apps/voting-app-1-0 skipped (apps/v1 Deployment is not a mesh resource)",
          "service/voting-app created"});
  r = c.Apply("istio/step-1-create-voting-app-gateway.yaml");
  REQUIRE(r.exit_code == 0);
  CHECK(Lines(r.out) ==
        std::vector<std::string>{"virtualservice.networking.istio.io/voting-app created",
                                 "gateway.networking.istio.io/voting-app-gateway created"});
  // Re-applying an unchanged file answers unchanged.
  r = c.Apply("istio/step-1-create-voting-app-gateway.yaml");
  CHECK(Lines(r.out) ==
        std::vector<std::string>{"virtualservice.networking.istio.io/voting-app unchanged",
                                 "gateway.networking.istio.io/voting-app-gateway unchanged"});

  // Step 2: analytics 1.1, then mTLS and per-component routing.
  REQUIRE(c.Apply("kubernetes/step-2-update-voting-analytics-to-1.1.yaml").exit_code == 0);
  r = c.Apply("istio/step-2-update-and-add-routing-for-all-components.yaml");
  REQUIRE(r.exit_code == 0);
  CHECK(absl::StrContains(r.out, "virtualservice.networking.istio.io/voting-app configured\n"));
  CHECK(absl::StrContains(r.out, "policy.authentication.istio.io/default created\n"));
  CHECK(absl::StrContains(r.out, "destinationrule.networking.istio.io/voting-storage created\n"));
  CHECK(!absl::StrContains(r.out, "Warning"));

  // Step 3: the 2.0 components, with MySQL on a second storage port.
  REQUIRE(c.Apply("kubernetes/step-3-update-voting-app-with-new-storage.yaml").exit_code == 0);
  r = c.Apply("istio/step-3-add-routing-for-2.0-components.yaml");
  REQUIRE(r.exit_code == 0);
  CHECK(absl::StrContains(r.out, "destinationrule.networking.istio.io/voting-app configured\n"));
  CHECK(!absl::StrContains(r.out, "Warning"));

  // The rest of the tutorial's files, each on its own, apply cleanly too.
  for (const auto& entry : std::filesystem::directory_iterator(kManifests + "/istio")) {
    INFO(entry.path().string());
    CHECK(c.Ctl({"apply", "-n", "voting", "-f", entry.path().string()}).exit_code == 0);
  }
  for (const auto& entry : std::filesystem::directory_iterator(kManifests + "/kubernetes")) {
    INFO(entry.path().string());
    CHECK(c.Ctl({"apply", "-n", "voting", "-f", entry.path().string()}).exit_code == 0);
  }
  // Leave step 3's state in place, then read it back.
  REQUIRE(c.Apply("kubernetes/step-3-update-voting-app-with-new-storage.yaml").exit_code == 0);
  REQUIRE(c.Apply("istio/step-3-add-routing-for-2.0-components.yaml").exit_code == 0);

  r = c.Ctl({"get", "vs", "voting-app", "-n", "voting", "-o", "json"});
  REQUIRE(r.exit_code == 0);
  json vs = json::parse(r.out);
  CHECK(vs["spec"]["http"][0]["match"][0]["headers"]["cookie"]["regex"] ==
        "^(.*?; ?)?(featureflag=on)(;.*)?$");
  CHECK(vs["spec"]["http"][0]["route"][0]["destination"]["subset"] == "v2-0");

  r = c.Ctl({"get", "destinationrules", "-n", "voting"});
  REQUIRE(r.exit_code == 0);
  CHECK(Lines(r.out).size() == 4);
  CHECK(absl::StartsWith(r.out, "NAME"));

  r = c.Ctl({"get", "svc", "voting-storage", "-n", "voting", "-o", "yaml"});
  REQUIRE(r.exit_code == 0);
  CHECK(absl::StrContains(r.out, "port: 3306"));

  r = c.Ctl({"get", "policy", "-A"});
  CHECK(absl::StrContains(r.out, "voting      default   STRICT"));

  r = c.Ctl({"analyze"});
  CHECK(r.exit_code == 0);
  CHECK(r.out == "No problems found.\n");
}

TEST_CASE(
    "meshctl delete -f removes what a file names, analyze then reports the dangling references") {
  Cluster c;
  REQUIRE(c.Apply("kubernetes/step-1-create-voting-app.yaml").exit_code == 0);
  REQUIRE(c.Apply("istio/step-1-create-voting-app-gateway.yaml").exit_code == 0);
  CommandResult r =
      c.Ctl({"delete", "-n", "voting", "-f", kManifests + "/istio/voting-app-gateway.yaml"});
  REQUIRE(r.exit_code == 0);
  CHECK(r.out == "gateway.networking.istio.io/voting-app-gateway deleted\n");
  r = c.Ctl({"analyze", "-n", "voting"});
  CHECK(r.out ==
        "Warning: VirtualService voting/voting-app: spec.gateways[0]: gateway "
        "\"voting/voting-app-gateway\" does not exist\n");
  r = c.Ctl({"get", "gw", "voting-app-gateway", "-n", "voting"});
  CHECK(r.exit_code == 1);
  CHECK(absl::StrContains(r.out, "(404)"));
}

TEST_CASE("meshctl reports invalid manifests with their paths and writes nothing") {
  Cluster c;
  std::string bad =
      "apiVersion: networking.istio.io/v1alpha3\nkind: VirtualService\nmetadata: {name: x}\n"
      "spec:\n  hosts: [r]\n  http:\n  - route: [{destination: {host: r}, weight: 101}]\n";
  CommandResult r = c.Ctl({"apply", "-n", "voting", "-f", "-"}, bad);
  CHECK(r.exit_code == 1);
  CHECK(r.out ==
        "Error from server (400): VirtualService voting/x: spec.http[0].route[0].weight: must be "
        "between 0 and 100\n");
  r = c.Ctl({"get", "vs", "-A"});
  CHECK(r.out == "No resources found\n");
}

TEST_CASE(
    "meshctl with a wrong token is refused, version works, the token comes from the data dir") {
  Cluster c;
  CommandResult r =
      RunCommand({MESHCTL_BIN, "--server", c.pilot.address(), "--token", "wrong", "get", "vs"});
  CHECK(r.exit_code == 1);
  CHECK(absl::StrContains(r.out, "(401)"));
  r = RunCommand(
      {MESHCTL_BIN, "--server", c.pilot.address(), "--data-dir", c.pilot.data_dir(), "version"});
  CHECK(r.exit_code == 0);
  CHECK(absl::StrContains(r.out, "server version: "));
  r = RunCommand({MESHCTL_BIN, "--server", c.pilot.address(), "--data-dir", c.pilot.data_dir(),
                  "get", "gw", "-A"});
  CHECK(r.exit_code == 0);
}

TEST_CASE("The admin token is created once, 0600, and survives restarts") {
  TempDir dir;
  MeshpilotProcess pilot(MESHPILOT_BIN, dir.path() + "/data");
  REQUIRE(pilot.Start());
  std::string token = pilot.token();
  auto perms = std::filesystem::status(dir.path() + "/data/admin.token").permissions();
  CHECK((perms & std::filesystem::perms::all) ==
        (std::filesystem::perms::owner_read | std::filesystem::perms::owner_write));
  CHECK(pilot.Terminate() == 0);
  REQUIRE(pilot.Start());
  CHECK(pilot.token() == token);
}

TEST_CASE("A second meshpilot on the same data dir refuses to start") {
  TempDir dir;
  MeshpilotProcess first(MESHPILOT_BIN, dir.path() + "/data");
  REQUIRE(first.Start());
  MeshpilotProcess second(MESHPILOT_BIN, dir.path() + "/data");
  CHECK(!second.Start());
  CHECK(absl::StrContains(second.Log(), "is in use by another process"));
}

}  // namespace
}  // namespace mesh
