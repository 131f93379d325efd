#include "controlplane/registry/registry.h"

#include <algorithm>
#include <set>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace mesh::registry {

bool LabelsMatch(const model::Labels& selector, const model::Labels& labels) {
  for (const auto& [k, v] : selector) {
    auto it = labels.find(k);
    if (it == labels.end() || it->second != v) return false;
  }
  return true;
}

namespace {

// Istio infers a port's protocol from its name prefix ("http-web", "grpc") or appProtocol.
std::string ProtocolOf(const std::string& name, const std::string& app_protocol) {
  std::string p = absl::AsciiStrToLower(app_protocol.empty() ? name : app_protocol);
  for (const char* known :
       {"http2", "https", "http", "grpc-web", "grpc", "tcp", "tls", "mongo", "mysql", "redis"}) {
    if (p == known || absl::StartsWith(p, absl::StrCat(known, "-")))
      return absl::AsciiStrToUpper(known);
  }
  return "TCP";
}

void SortEndpoints(std::vector<Endpoint>* endpoints) {
  std::sort(endpoints->begin(), endpoints->end(), [](const Endpoint& a, const Endpoint& b) {
    return std::tie(a.address, a.port) < std::tie(b.address, b.port);
  });
}

// Where a workload entry serves a service port: its named port, else the target port.
uint32_t EntryPort(const model::WorkloadEntry& we, const std::string& port_name, uint32_t target) {
  if (!port_name.empty()) {
    if (auto it = we.ports.find(port_name); it != we.ports.end()) return it->second;
  }
  return target;
}

const std::string& AccountOf(const std::string& service_account) {
  static const std::string kDefault = "default";
  return service_account.empty() ? kDefault : service_account;
}

Endpoint FromEntry(const model::WorkloadEntry& we, uint32_t port,
                   const model::Object* object = nullptr) {
  Endpoint e;
  e.address = we.address;
  e.port = port;
  e.labels = we.labels;
  e.service_account = we.service_account;
  e.weight = we.weight ? we.weight : 1;
  e.locality = we.locality;
  if (object) {
    e.workload = object->meta.name;
    e.workload_ns = object->meta.namespace_;
  }
  return e;
}

}  // namespace

Registry Registry::Build(const model::ConfigSnapshot& config,
                         const std::vector<Workload>& workloads) {
  Registry r;
  // Order does not matter here: endpoints and ports are sorted at the end.
  auto all = [&](model::Kind kind) {
    std::vector<const model::Object*> out;
    out.reserve(config.Count(kind));
    config.ForEach(kind, [&](const model::Object& o) { out.push_back(&o); });
    return out;
  };
  std::vector<const model::Object*> entries = all(model::Kind::kWorkloadEntry);
  // Entries by namespace and by each "key=value" label, so a selector looks only at entries that
  // carry one of its labels.
  std::map<std::pair<std::string, std::string>, std::vector<const model::Object*>> by_label;
  for (const model::Object* o : entries) {
    for (const auto& [k, v] : std::get<model::WorkloadEntry>(o->spec).labels) {
      by_label[{o->meta.namespace_, absl::StrCat(k, "=", v)}].push_back(o);
    }
  }
  auto selected = [&](const std::string& ns, const model::Labels& selector) {
    const std::vector<const model::Object*>* smallest = nullptr;
    static const std::vector<const model::Object*> kNone;
    for (const auto& [k, v] : selector) {
      auto it = by_label.find({ns, absl::StrCat(k, "=", v)});
      if (it == by_label.end()) return &kNone;
      if (!smallest || it->second.size() < smallest->size()) smallest = &it->second;
    }
    return smallest ? smallest : &kNone;
  };

  for (const model::Object* svc_obj : all(model::Kind::kService)) {
    const auto& svc = std::get<model::Service>(svc_obj->spec);
    const std::string& ns = svc_obj->meta.namespace_;
    // The registered workloads this Service may take: those whose identity fits it.
    std::vector<const Workload*> fitting;
    if (!svc.selector.empty()) {
      std::set<std::string> accounts;
      for (const model::Object* we_obj : *selected(ns, svc.selector)) {
        const auto& we = std::get<model::WorkloadEntry>(we_obj->spec);
        if (LabelsMatch(svc.selector, we.labels)) accounts.insert(AccountOf(we.service_account));
      }
      std::vector<const Workload*> matching;
      for (const Workload& w : workloads) {
        if (w.ns == ns && LabelsMatch(svc.selector, w.labels)) matching.push_back(&w);
      }
      if (accounts.empty() && !matching.empty()) {
        const Workload* earliest = *std::min_element(
            matching.begin(), matching.end(), [](const Workload* a, const Workload* b) {
              return std::tie(a->since_unix_ms, a->name) < std::tie(b->since_unix_ms, b->name);
            });
        accounts.insert(AccountOf(earliest->service_account));
      }
      for (const Workload* w : matching) {
        if (accounts.count(AccountOf(w->service_account))) {
          fitting.push_back(w);
          continue;
        }
        std::string& why = r.refusals_[w->name];
        absl::StrAppend(&why, why.empty() ? "" : "; ", "not an endpoint of ", svc_obj->meta.name,
                        ".", ns, ".svc.cluster.local: it runs as service account ",
                        AccountOf(w->service_account), ", the service's workloads as ",
                        absl::StrJoin(accounts, ", "));
      }
    }
    for (const model::Service::Port& p : svc.ports) {
      ServicePort sp;
      sp.host = absl::StrCat(svc_obj->meta.name, ".", ns, ".svc.cluster.local");
      sp.ns = ns;
      sp.port = p.port;
      sp.port_name = p.name;
      sp.protocol = ProtocolOf(p.name, p.app_protocol);
      uint32_t target = p.target_port ? p.target_port : p.port;
      if (!svc.selector.empty()) {
        for (const model::Object* we_obj : *selected(ns, svc.selector)) {
          const auto& we = std::get<model::WorkloadEntry>(we_obj->spec);
          if (!LabelsMatch(svc.selector, we.labels)) continue;
          sp.endpoints.push_back(FromEntry(
              we, EntryPort(we, p.target_port_name.empty() ? p.name : p.target_port_name, target),
              we_obj));
        }
        for (const Workload* w : fitting) {
          auto it = w->inbound_ports.find(p.port);
          if (it == w->inbound_ports.end()) continue;
          Endpoint e;
          e.address = w->address;
          e.port = it->second;
          e.labels = w->labels;
          e.service_account = w->service_account;
          e.healthy = w->healthy;
          e.workload = w->workload_name.empty() ? w->name : w->workload_name;
          e.workload_ns = w->ns;
          sp.endpoints.push_back(std::move(e));
        }
      }
      SortEndpoints(&sp.endpoints);
      r.ports_.push_back(std::move(sp));
    }
  }

  for (const model::Object* se_obj : all(model::Kind::kServiceEntry)) {
    const auto& se = std::get<model::ServiceEntry>(se_obj->spec);
    const std::string& ns = se_obj->meta.namespace_;
    for (const std::string& host : se.hosts) {
      for (const model::ServicePort& p : se.ports) {
        ServicePort sp;
        sp.host = host;
        sp.ns = ns;
        sp.port = p.number;
        sp.port_name = p.name;
        sp.protocol = p.protocol.empty() ? ProtocolOf(p.name, "") : p.protocol;
        uint32_t target = p.target_port ? p.target_port : p.number;
        for (const model::WorkloadEntry& we : se.endpoints)
          sp.endpoints.push_back(FromEntry(we, EntryPort(we, p.name, target)));
        if (se.workload_selector && !se.workload_selector->empty()) {
          for (const model::Object* we_obj : *selected(ns, *se.workload_selector)) {
            const auto& we = std::get<model::WorkloadEntry>(we_obj->spec);
            if (LabelsMatch(*se.workload_selector, we.labels)) {
              sp.endpoints.push_back(FromEntry(we, EntryPort(we, p.name, target), we_obj));
            }
          }
        }
        SortEndpoints(&sp.endpoints);
        r.ports_.push_back(std::move(sp));
      }
    }
  }
  std::stable_sort(r.ports_.begin(), r.ports_.end(),
                   [](const ServicePort& a, const ServicePort& b) {
                     return std::tie(a.host, a.port, a.ns, a.port_name) <
                            std::tie(b.host, b.port, b.ns, b.port_name);
                   });
  for (size_t i = 0; i < r.ports_.size(); ++i)
    r.index_.emplace(std::make_pair(r.ports_[i].host, r.ports_[i].port), i);
  return r;
}

const ServicePort* Registry::Find(const std::string& host, uint32_t port) const {
  auto it = index_.find({host, port});
  return it == index_.end() ? nullptr : &ports_[it->second];
}

}  // namespace mesh::registry
