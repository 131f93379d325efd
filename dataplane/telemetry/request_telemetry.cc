#include "dataplane/telemetry/request_telemetry.h"

#include <algorithm>
#include <cstdio>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"

namespace mesh::dataplane::telemetry {

std::string RandomUuid(uint64_t high, uint64_t low) {
  high = (high & ~uint64_t{0xf000}) | 0x4000;                    // version 4
  low = (low & ~(uint64_t{0xc} << 60)) | (uint64_t{0x8} << 60);  // variant 10
  char out[37];
  snprintf(out, sizeof out, "%08x-%04x-%04x-%04x-%012llx", static_cast<uint32_t>(high >> 32),
           static_cast<uint32_t>((high >> 16) & 0xffff), static_cast<uint32_t>(high & 0xffff),
           static_cast<uint32_t>(low >> 48),
           static_cast<unsigned long long>(low & 0xffffffffffffULL));
  return out;
}

void GrpcMessageCounter::Feed(absl::string_view data) {
  size_t i = 0;
  while (i < data.size()) {
    if (prefix_got_ < sizeof prefix_) {
      size_t take = std::min(sizeof prefix_ - prefix_got_, data.size() - i);
      std::copy_n(data.data() + i, take, prefix_ + prefix_got_);
      prefix_got_ += take;
      i += take;
      if (prefix_got_ < sizeof prefix_) break;
      ++messages_;
      remaining_ = (uint64_t{prefix_[1]} << 24) | (uint64_t{prefix_[2]} << 16) |
                   (uint64_t{prefix_[3]} << 8) | uint64_t{prefix_[4]};
    } else {
      uint64_t take = std::min<uint64_t>(remaining_, data.size() - i);
      remaining_ -= take;
      i += take;
    }
    if (prefix_got_ == sizeof prefix_ && remaining_ == 0) prefix_got_ = 0;
  }
}

RequestTelemetry::RequestTelemetry(const LocalWorkload& local, PeerCache& peers, bool inbound,
                                   absl::Time start)
    : local_(local), peers_(peers), inbound_(inbound), start_(start) {}

void RequestTelemetry::OnRequestHead(HeaderMap& headers, absl::string_view authority, bool grpc) {
  grpc_ = grpc;
  if (inbound_) {
    if (const std::string* value = headers.Get(kPeerMetadataHeader)) {
      peer_sent_metadata_ = true;
      peer_ = peers_.Decode(*value);
    }
    // The service the caller asked for: its Host, without the port, completed as Kubernetes
    // resolves "name" and "name.namespace" from this namespace.
    absl::string_view host = authority;
    if (!absl::StartsWith(host, "[")) host = host.substr(0, host.rfind(':'));
    service_ = std::string(host);
    const size_t dots = std::count(host.begin(), host.end(), '.');
    if (!host.empty() && dots == 0) {
      service_ = absl::StrCat(host, ".", local_.peer.ns, ".svc.cluster.local");
    } else if (dots == 1) {
      service_ = absl::StrCat(host, ".svc.cluster.local");
    }
  }
  headers.Remove(kPeerMetadataHeader);
  headers.Remove(kPeerMetadataIdHeader);
}

void RequestTelemetry::OnRequestBody(absl::string_view data) {
  request_bytes_ += data.size();
  if (grpc_) request_messages_.Feed(data);
}

void RequestTelemetry::OnUpstreamHead(HeaderMap& headers, absl::string_view cluster,
                                      const std::vector<std::string>& service_hosts) {
  if (inbound_) {
    if (service_hosts.empty()) return;
    // The request's host, completed (OnRequestHead), when it is one of them; else the first.
    if (std::find(service_hosts.begin(), service_hosts.end(), service_) == service_hosts.end())
      service_ = service_hosts.front();
    return;
  }
  // The cluster outlives the request (its snapshot is held), so a view of its name will do.
  outbound_service_ = OutboundClusterService(cluster);
  if (local_.metadata.empty()) return;
  headers.Set(kPeerMetadataHeader, local_.metadata);
  headers.Set(kPeerMetadataIdHeader, local_.metadata_id);
}

void RequestTelemetry::OnResponseHead(int status, HeaderMap& headers, const PeerInfo* endpoint) {
  response_code_ = status;
  details_ = "via_upstream";
  if (const std::string* g = headers.Get("grpc-status")) grpc_status_ = *g;  // trailers-only
  if (inbound_) {
    if (peer_sent_metadata_ && !local_.metadata.empty()) {
      headers.Set(kPeerMetadataHeader, local_.metadata);
      headers.Set(kPeerMetadataIdHeader, local_.metadata_id);
    }
    return;
  }
  if (const std::string* value = headers.Get(kPeerMetadataHeader)) peer_ = peers_.Decode(*value);
  headers.Remove(kPeerMetadataHeader);
  headers.Remove(kPeerMetadataIdHeader);
  endpoint_peer_ = endpoint;
}

void RequestTelemetry::OnResponseBody(absl::string_view data) {
  response_bytes_ += data.size();
  if (grpc_) response_messages_.Feed(data);
}

void RequestTelemetry::OnResponseTrailers(const HeaderMap& trailers) {
  if (const std::string* g = trailers.Get("grpc-status")) grpc_status_ = *g;
}

void RequestTelemetry::OnLocalReply(int status, const std::string* grpc_status, size_t body_bytes,
                                    absl::string_view flags) {
  response_code_ = status;
  if (grpc_status) grpc_status_ = *grpc_status;
  response_bytes_ += body_bytes;
  if (!flags.empty()) AddFlag(flags);
  // Why the proxy answered itself, in Envoy's words.
  static const std::pair<const char*, const char*> kDetails[] = {
      {"NR", "route_not_found"},
      {"FI", "fault_filter_abort"},
      {"UH", "no_healthy_upstream"},
      {"NC", "cluster_not_found"},
      {"UF", "upstream_reset_before_response_started{connection_failure}"},
      {"UC", "upstream_reset_before_response_started{connection_termination}"},
      {"UR", "upstream_reset_before_response_started{remote_reset}"},
      {"UPE", "upstream_reset_before_response_started{protocol_error}"},
      {"UT", "upstream_response_timeout"},
      {"UO", "upstream_reset_before_response_started{overflow}"},
      {"SI", "stream_idle_timeout"}};
  details_ = status == 403   ? "rbac_access_denied_matched_policy[none]"
             : status == 401 ? "jwt_authn_access_denied"
                             : "direct_response";
  for (const auto& [flag, details] : kDetails) {
    if (flags == flag) details_ = details;
  }
}

void RequestTelemetry::AddFlag(absl::string_view flag) {
  for (absl::string_view f : absl::StrSplit(flags_, ',')) {
    if (f == flag) return;
  }
  if (!flags_.empty()) flags_ += ',';
  flags_.append(flag.data(), flag.size());
}

void RequestTelemetry::Record(absl::Time end, absl::string_view peer_principal,
                              IstioMetrics* metrics) const {
  RequestRecord r;
  const PeerInfo* peer = peer_ ? peer_.get() : endpoint_peer_;
  if (inbound_) {
    r.reporter = Reporter::kDestination;
    r.source = peer;
    r.destination = &local_.peer;
    r.source_principal = peer_principal;
    r.destination_principal = local_.principal;
    r.connection_security_policy = peer_principal.empty() ? "none" : "mutual_tls";
  } else {
    r.reporter = Reporter::kSource;
    r.source = &local_.peer;
    r.destination = peer;
    r.source_principal = local_.principal;
    r.connection_security_policy = "unknown";
  }
  r.destination_service = inbound_ ? absl::string_view(service_) : outbound_service_;
  r.request_protocol = grpc_ ? "grpc" : "http";
  r.response_code = response_code_;
  r.grpc_response_status = grpc_status_;
  r.response_flags = flags_;
  r.duration = end - start_;
  r.request_bytes = request_bytes_;
  r.response_bytes = response_bytes_;
  r.request_messages = request_messages_.messages();
  r.response_messages = response_messages_.messages();
  metrics->Record(r);
}

}  // namespace mesh::dataplane::telemetry
