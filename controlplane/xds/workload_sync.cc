#include "controlplane/xds/workload_sync.h"

#include <nlohmann/json.hpp>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "common/ip_address.h"
#include "common/log.h"

namespace mesh::xds {
namespace {

std::string Encode(const registry::Workload& w) {
  nlohmann::json ports = nlohmann::json::object();
  for (const auto& [service_port, port] : w.inbound_ports)
    ports[std::to_string(service_port)] = port;
  return nlohmann::json{{"name", w.name},
                        {"since", w.since_unix_ms},
                        {"namespace", w.ns},
                        {"address", w.address},
                        {"labels", w.labels},
                        {"serviceAccount", w.service_account},
                        {"workloadName", w.workload_name},
                        {"inboundPorts", ports},
                        {"healthy", w.healthy}}
      .dump();
}

}  // namespace

std::optional<registry::Workload> DecodeWorkload(const std::string& value) {
  nlohmann::json j = nlohmann::json::parse(value, nullptr, false);
  if (!j.is_object()) return std::nullopt;
  auto text = [&](const char* key) {
    auto it = j.find(key);
    return it != j.end() && it->is_string() ? it->get<std::string>() : std::string();
  };
  registry::Workload w;
  w.name = text("name");
  w.ns = text("namespace");
  w.address = text("address");
  w.service_account = text("serviceAccount");
  w.workload_name = text("workloadName");
  if (auto it = j.find("since"); it != j.end() && it->is_number_integer())
    w.since_unix_ms = it->get<int64_t>();
  if (auto it = j.find("healthy"); it != j.end() && it->is_boolean()) w.healthy = it->get<bool>();
  if (auto it = j.find("labels"); it != j.end() && it->is_object()) {
    for (const auto& [k, v] : it->items()) {
      if (v.is_string()) w.labels[k] = v.get<std::string>();
    }
  }
  if (auto it = j.find("inboundPorts"); it != j.end() && it->is_object()) {
    for (const auto& [k, v] : it->items()) {
      uint32_t service_port = 0;
      // Another replica wrote it, but it reaches EDS: ports are checked as node metadata is.
      if (!absl::SimpleAtoi(k, &service_port) || service_port == 0 || service_port > 65535 ||
          !v.is_number_unsigned() || v.get<uint64_t>() == 0 || v.get<uint64_t>() > 65535) {
        return std::nullopt;
      }
      w.inbound_ports[service_port] = v.get<uint32_t>();
    }
  }
  if (!IsIpAddress(w.address)) return std::nullopt;
  return w;
}

absl::StatusOr<std::unique_ptr<WorkloadSync>> WorkloadSync::Start(store::EtcdStore* store,
                                                                  SnapshotCache* cache,
                                                                  Options options) {
  std::unique_ptr<WorkloadSync> sync(new WorkloadSync(store, cache, std::move(options)));
  absl::StatusOr<store::RangeResult> now = store->List(kPrefix);
  if (!now.ok()) return now.status();
  sync->OnEvents([&] {
    std::vector<store::Event> initial;
    for (const store::KeyValue& kv : now->kvs)
      initial.push_back({store::Event::Type::kPut, kv, kv.mod_revision});
    return initial;
  }());
  WorkloadSync* raw = sync.get();
  auto watch = store->Watch(kPrefix, now->revision,
                            [raw](const std::vector<store::Event>& e) { raw->OnEvents(e); });
  if (!watch.ok()) return watch.status();
  sync->watch_ = std::move(*watch);
  sync->thread_ = std::thread([raw] { raw->Run(); });
  return sync;
}

WorkloadSync::~WorkloadSync() {
  {
    std::lock_guard lock(mu_);
    stop_ = true;
  }
  wake_.notify_all();
  if (thread_.joinable()) thread_.join();
  watch_.reset();
  // A clean stop: the other replicas drop these endpoints now, not after the TTL.
  if (lease_ != 0) store_->RevokeLease(lease_).IgnoreError();
}

void WorkloadSync::OnEvents(const std::vector<store::Event>& events) {
  const std::string own = absl::StrCat(kPrefix, options_.replica, "/");
  std::map<std::string, registry::Workload> remote;
  {
    std::lock_guard lock(remote_mu_);
    for (const store::Event& e : events) {
      if (absl::StartsWith(e.kv.key, own)) continue;
      if (e.type == store::Event::Type::kDelete) {
        remote_.erase(e.kv.key);
      } else if (std::optional<registry::Workload> w = DecodeWorkload(e.kv.value)) {
        remote_[e.kv.key] = std::move(*w);
      }
    }
    // The cache knows workloads by node id: the key's last segment.
    for (const auto& [key, w] : remote_) remote[key.substr(key.rfind('/') + 1)] = w;
  }
  cache_->SetRemoteWorkloads(std::move(remote));
}

absl::Status WorkloadSync::Publish() {
  if (lease_ == 0 || absl::Now() >= next_keepalive_) {
    if (lease_ != 0) {
      absl::StatusOr<absl::Duration> left = store_->KeepAlive(lease_);
      if (absl::IsNotFound(left.status())) {
        log::Warn("xds: the workload lease expired; publishing again under a new one");
        lease_ = 0;
        published_.clear();
      } else if (!left.ok()) {
        return left.status();
      }
    }
    if (lease_ == 0) {
      absl::StatusOr<int64_t> lease = store_->GrantLease(options_.ttl);
      if (!lease.ok()) return lease.status();
      lease_ = *lease;
    }
    next_keepalive_ = absl::Now() + options_.ttl / 3;
  }
  const std::map<std::string, registry::Workload> want = cache_->LocalWorkloads();
  const std::string own = absl::StrCat(kPrefix, options_.replica, "/");
  for (const auto& [id, w] : want) {
    auto it = published_.find(id);
    if (it != published_.end() && it->second == w) continue;  // encoded only when it changed
    if (absl::Status s = store_->PutWithLease(own + id, Encode(w), lease_); !s.ok()) return s;
    published_[id] = w;
  }
  for (auto it = published_.begin(); it != published_.end();) {
    if (want.count(it->first)) {
      ++it;
      continue;
    }
    absl::StatusOr<store::CommitResult> gone = store_->Commit({store::Op::Delete(own + it->first)});
    if (!gone.ok() && !absl::IsNotFound(gone.status())) return gone.status();
    it = published_.erase(it);
  }
  return absl::OkStatus();
}

void WorkloadSync::Run() {
  std::unique_lock lock(mu_);
  while (!stop_) {
    lock.unlock();
    if (absl::Status s = Publish(); !s.ok()) log::Warn("xds: publishing workloads: ", s.message());
    lock.lock();
    wake_.wait_for(lock, absl::ToChronoNanoseconds(options_.period), [this] { return stop_; });
  }
}

}  // namespace mesh::xds
