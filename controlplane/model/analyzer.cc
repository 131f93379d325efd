#include "controlplane/model/analyzer.h"

#include <map>
#include <set>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "controlplane/model/names.h"

namespace mesh::model {

std::string Warning::ToString() const {
  return path.empty() ? absl::StrCat(object, ": ", message)
                      : absl::StrCat(object, ": ", path, ": ", message);
}

namespace {

// The merged view the checks read: base objects, replaced by the overlay's.
class View {
 public:
  View(const ConfigSnapshot& base, const std::vector<const Object*>& overlay) : base_(base) {
    for (const Object* o : overlay) {
      overlay_[static_cast<size_t>(o->kind->kind)]
              [absl::StrCat(o->meta.namespace_, "/", o->meta.name)] = o;
    }
  }

  // Calls f(const Object&) for every object of `kind` in the merged view, in no particular order.
  template <typename F>
  void ForEach(Kind kind, F&& f) const {
    const auto& over = overlay_[static_cast<size_t>(kind)];
    base_.ForEach(kind, [&](const Object& o) {
      if (over.empty() || !over.count(absl::StrCat(o.meta.namespace_, "/", o.meta.name))) f(o);
    });
    for (const auto& [key, obj] : over) f(*obj);
  }

  bool Exists(Kind kind, const std::string& ns, const std::string& name) const {
    return overlay_[static_cast<size_t>(kind)].count(absl::StrCat(ns, "/", name)) ||
           base_.Find(kind, ns, name) != nullptr;
  }

  // Every object of `kind`, ordered by namespace and name.
  std::vector<const Object*> Sorted(Kind kind) const {
    const auto& over = overlay_[static_cast<size_t>(kind)];
    std::map<std::string, const Object*> merged(over.begin(), over.end());
    for (const Object* o : base_.Sorted(kind))
      merged.emplace(absl::StrCat(o->meta.namespace_, "/", o->meta.name), o);
    std::vector<const Object*> out;
    for (const auto& [key, o] : merged) out.push_back(o);
    return out;
  }

 private:
  const ConfigSnapshot& base_;
  std::array<std::map<std::string, const Object*>, kKindCount> overlay_;
};

bool HostProvided(const View& view, const std::string& host) {
  // The common case, a Service's own name, is a direct lookup.
  std::vector<absl::string_view> parts = absl::StrSplit(host, '.');
  if (parts.size() == 5 && parts[2] == "svc" && parts[3] == "cluster" && parts[4] == "local" &&
      parts[0] != "*" &&
      view.Exists(Kind::kService, std::string(parts[1]), std::string(parts[0]))) {
    return true;
  }
  bool found = false;
  bool wildcard = absl::StartsWith(host, "*");
  if (wildcard)
    view.ForEach(Kind::kService, [&](const Object& o) {
      if (!found)
        found = HostMatches(
            host, absl::StrCat(o.meta.name, ".", o.meta.namespace_, ".svc.cluster.local"));
    });
  view.ForEach(Kind::kServiceEntry, [&](const Object& o) {
    for (const std::string& h : std::get<ServiceEntry>(o.spec).hosts) {
      if (!found) found = HostMatches(h, host) || HostMatches(host, h);
    }
  });
  return found;
}

bool SubsetDefined(const View& view, const std::string& host, const std::string& subset) {
  bool found = false;
  view.ForEach(Kind::kDestinationRule, [&](const Object& o) {
    const auto& dr = std::get<DestinationRule>(o.spec);
    if (found || !HostMatches(ResolveHost(dr.host, o.meta.namespace_), host)) return;
    for (const Subset& s : dr.subsets) found = found || s.name == subset;
  });
  return found;
}

void CheckDestination(const View& view, const Object& o, const Destination& d,
                      const std::string& path, std::vector<Warning>* out) {
  std::string host = ResolveHost(d.host, o.meta.namespace_);
  if (!HostProvided(view, host)) {
    out->push_back({o.DisplayName(), path + ".host",
                    absl::StrCat("no Service or ServiceEntry provides host \"", host, "\"")});
  }
  if (!d.subset.empty() && !SubsetDefined(view, host, d.subset)) {
    out->push_back(
        {o.DisplayName(), path + ".subset",
         absl::StrCat("subset \"", d.subset, "\" is not defined by any DestinationRule for host \"",
                      host, "\"")});
  }
}

void CheckGateways(const View& view, const Object& o, const std::vector<std::string>& gateways,
                   const std::string& path, std::vector<Warning>* out) {
  for (size_t i = 0; i < gateways.size(); ++i) {
    const std::string& g = gateways[i];
    if (g == "mesh") continue;
    std::string ns = o.meta.namespace_, name = g;
    if (size_t slash = g.find('/'); slash != std::string::npos) {
      ns = g.substr(0, slash);
      name = g.substr(slash + 1);
    }
    if (!view.Exists(Kind::kGateway, ns, name)) {
      out->push_back({o.DisplayName(), absl::StrCat(path, "[", i, "]"),
                      absl::StrCat("gateway \"", ns, "/", name, "\" does not exist")});
    }
  }
}

// The gateways a VirtualService binds, as "ns/name".
std::set<std::string> BoundGateways(const Object& o) {
  std::set<std::string> out;
  for (const std::string& g : std::get<VirtualService>(o.spec).gateways) {
    if (g == "mesh") continue;
    out.insert(g.find('/') == std::string::npos ? absl::StrCat(o.meta.namespace_, "/", g) : g);
  }
  return out;
}

// At a gateway, VirtualServices for one host are merged, oldest first: an earlier one whose
// routes end with a catch-all (a route without match) leaves the later one's routes unreached.
void CheckShadowedAtGateway(const View& view, const Object& o, std::vector<Warning>* out) {
  const auto& vs = std::get<VirtualService>(o.spec);
  const std::set<std::string> gateways = BoundGateways(o);
  if (gateways.empty() || vs.http.empty()) return;
  std::set<std::string> hosts;
  for (const std::string& h : vs.hosts) hosts.insert(ResolveHost(h, o.meta.namespace_));
  view.ForEach(Kind::kVirtualService, [&](const Object& earlier) {
    if (&earlier == &o || !CreatedBefore(earlier.meta, o.meta)) return;
    const auto& e = std::get<VirtualService>(earlier.spec);
    bool catch_all = false;
    for (const HTTPRoute& r : e.http) catch_all = catch_all || r.match.empty();
    if (!catch_all) return;
    for (const std::string& g : BoundGateways(earlier)) {
      if (!gateways.count(g)) continue;
      for (const std::string& h : e.hosts) {
        const std::string host = ResolveHost(h, earlier.meta.namespace_);
        if (!hosts.count(host)) continue;
        out->push_back({o.DisplayName(), "spec.http",
                        absl::StrCat("never reached for host \"", host, "\" at gateway ", g, ": ",
                                     earlier.DisplayName(),
                                     " is merged first and has a route without match")});
        return;
      }
    }
  });
}

void CheckVirtualService(const View& view, const Object& o, std::vector<Warning>* out) {
  const auto& vs = std::get<VirtualService>(o.spec);
  CheckGateways(view, o, vs.gateways, "spec.gateways", out);
  CheckShadowedAtGateway(view, o, out);
  for (size_t i = 0; i < vs.http.size(); ++i) {
    const HTTPRoute& r = vs.http[i];
    std::string base = absl::StrCat("spec.http[", i, "]");
    for (size_t j = 0; j < r.route.size(); ++j) {
      CheckDestination(view, o, r.route[j].destination,
                       absl::StrCat(base, ".route[", j, "].destination"), out);
    }
    if (r.mirror) CheckDestination(view, o, *r.mirror, base + ".mirror", out);
    for (size_t j = 0; j < r.match.size(); ++j) {
      CheckGateways(view, o, r.match[j].gateways, absl::StrCat(base, ".match[", j, "].gateways"),
                    out);
    }
  }
  auto check_l4 = [&](const std::vector<RouteDestination>& route, const std::string& base) {
    for (size_t j = 0; j < route.size(); ++j) {
      CheckDestination(view, o, route[j].destination,
                       absl::StrCat(base, ".route[", j, "].destination"), out);
    }
  };
  for (size_t i = 0; i < vs.tcp.size(); ++i)
    check_l4(vs.tcp[i].route, absl::StrCat("spec.tcp[", i, "]"));
  for (size_t i = 0; i < vs.tls.size(); ++i)
    check_l4(vs.tls[i].route, absl::StrCat("spec.tls[", i, "]"));
}

void CheckDestinationRule(const View& view, const Object& o, std::vector<Warning>* out) {
  const auto& dr = std::get<DestinationRule>(o.spec);
  std::string host = ResolveHost(dr.host, o.meta.namespace_);
  if (!HostProvided(view, host)) {
    out->push_back({o.DisplayName(), "spec.host",
                    absl::StrCat("no Service or ServiceEntry provides host \"", host, "\"")});
  }
}

}  // namespace

std::vector<Warning> Analyze(const ConfigSnapshot& base, const std::vector<const Object*>& overlay,
                             bool only_overlay, absl::string_view ns) {
  View view(base, overlay);
  std::vector<Warning> out;
  auto check = [&](const Object& o) {
    if (!ns.empty() && o.meta.namespace_ != ns) return;
    if (o.kind->kind == Kind::kVirtualService) CheckVirtualService(view, o, &out);
    if (o.kind->kind == Kind::kDestinationRule) CheckDestinationRule(view, o, &out);
  };
  if (only_overlay) {
    for (const Object* o : overlay) check(*o);
  } else {
    for (Kind k : {Kind::kVirtualService, Kind::kDestinationRule}) {
      for (const Object* o : view.Sorted(k)) check(*o);
    }
  }
  return out;
}

}  // namespace mesh::model
