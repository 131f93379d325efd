// libFuzzer: a DiscoveryResponse (binary, or text format for readable seeds) as meshproxy's ADS
// client receives it: validated, applied or NACKed with a message, then built into the cluster
// table the request path uses. Nothing crashes; a refused response leaves the config as it was.
#include <google/protobuf/io/tokenizer.h>
#include <google/protobuf/stubs/logging.h>
#include <google/protobuf/text_format.h>

#include <cstdlib>

#include "dataplane/upstream/cluster_table.h"
#include "dataplane/xds/xds_client.h"

namespace {

using envoy::service::discovery::v3::DiscoveryRequest;
using envoy::service::discovery::v3::DiscoveryResponse;

struct Transport : mesh::dataplane::AdsTransport {
  bool Send(const DiscoveryRequest& request) override {
    last = request;
    return true;
  }
  DiscoveryRequest last;
};

// Most inputs are not text format: say nothing about them.
struct Silent : google::protobuf::io::ErrorCollector {
  void AddError(int, int, const std::string&) override {}
} kSilent;

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  google::protobuf::SetLogHandler(nullptr);  // protobuf's complaints about fuzzed strings
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  DiscoveryResponse response;
  std::string text(reinterpret_cast<const char*>(data), size);
  google::protobuf::TextFormat::Parser parser;
  parser.RecordErrorsTo(&kSilent);
  if (!parser.ParseFromString(text, &response) &&
      !response.ParseFromArray(data, static_cast<int>(size))) {
    return 0;
  }
  envoy::config::core::v3::Node node;
  node.set_id("fuzz");
  mesh::dataplane::ClusterTablePtr table;
  mesh::dataplane::XdsClient client(node, [&](mesh::dataplane::ProxyConfigPtr config) {
    auto built = mesh::dataplane::ClusterTable::Build(*config, table.get());
    if (!built.ok()) return built.status();
    table = *built;
    return absl::OkStatus();
  });
  Transport transport;
  client.OnConnect(&transport);
  mesh::dataplane::ProxyConfigPtr before = client.current();
  client.OnResponse(response);
  // A NACK keeps the previous config; an ACK names the version.
  if (transport.last.has_error_detail()) {
    if (client.current() != before) std::abort();
  }
  return 0;
}
