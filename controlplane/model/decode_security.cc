// Decoders of security.istio.io kinds besides PeerAuthentication: AuthorizationPolicy and
// RequestAuthentication.
#include <set>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "controlplane/model/decode_internal.h"
#include "controlplane/model/names.h"
#include "nlohmann/json.hpp"

namespace mesh::model {
namespace {

// Istio's match patterns: "*", "prefix*", "*suffix" or an exact value; never a '*' inside.
std::string CheckPattern(absl::string_view v) {
  if (v.empty()) return "must not be empty";
  if (v == "*") return "";
  absl::string_view inner = v;
  if (absl::StartsWith(inner, "*")) inner.remove_prefix(1);
  if (absl::EndsWith(inner, "*")) inner.remove_suffix(1);
  if (absl::StrContains(inner, '*'))
    return absl::StrCat("\"", v, "\": a * may only stand at the start or the end");
  return "";
}

std::string CheckPath(absl::string_view v) {
  if (absl::StrContains(v, '{'))
    return absl::StrCat("\"", v, "\": path templates ({*}, {**}) are not supported");
  return CheckPattern(v);
}

std::string CheckPortString(absl::string_view v) {
  uint32_t port = 0;
  if (!absl::SimpleAtoi(v, &port) || port < 1 || port > 65535)
    return absl::StrCat("\"", v, "\": must be a port number between 1 and 65535");
  return "";
}

// A list of strings at `key`, each checked by `check`.
std::vector<std::string> ReadChecked(ObjectReader& r, absl::string_view key,
                                     std::string (*check)(absl::string_view)) {
  std::vector<std::string> values = r.StringList(key);
  for (size_t i = 0; i < values.size(); ++i)
    Check(r.errors(), absl::StrCat(r.Path(key), "[", i, "]"), check(values[i]));
  return values;
}

std::string CheckCidr(absl::string_view v) {
  return CheckIpOrCidr(v);
}

AuthorizationPolicy::Source ReadSource(ObjectReader& r) {
  AuthorizationPolicy::Source s;
  s.principals = ReadChecked(r, "principals", CheckPattern);
  s.not_principals = ReadChecked(r, "notPrincipals", CheckPattern);
  s.request_principals = ReadChecked(r, "requestPrincipals", CheckPattern);
  s.not_request_principals = ReadChecked(r, "notRequestPrincipals", CheckPattern);
  s.namespaces = ReadChecked(r, "namespaces", CheckPattern);
  s.not_namespaces = ReadChecked(r, "notNamespaces", CheckPattern);
  s.ip_blocks = ReadChecked(r, "ipBlocks", CheckCidr);
  s.not_ip_blocks = ReadChecked(r, "notIpBlocks", CheckCidr);
  s.remote_ip_blocks = ReadChecked(r, "remoteIpBlocks", CheckCidr);
  s.not_remote_ip_blocks = ReadChecked(r, "notRemoteIpBlocks", CheckCidr);
  if (s == AuthorizationPolicy::Source{}) r.errors()->Add(r.path(), "must not be empty");
  return s;
}

AuthorizationPolicy::Operation ReadOperation(ObjectReader& r) {
  AuthorizationPolicy::Operation o;
  o.hosts = ReadChecked(r, "hosts", CheckPattern);
  o.not_hosts = ReadChecked(r, "notHosts", CheckPattern);
  o.ports = ReadChecked(r, "ports", CheckPortString);
  o.not_ports = ReadChecked(r, "notPorts", CheckPortString);
  o.methods = ReadChecked(r, "methods", CheckPattern);
  o.not_methods = ReadChecked(r, "notMethods", CheckPattern);
  o.paths = ReadChecked(r, "paths", CheckPath);
  o.not_paths = ReadChecked(r, "notPaths", CheckPath);
  if (o == AuthorizationPolicy::Operation{}) r.errors()->Add(r.path(), "must not be empty");
  return o;
}

// The attributes a `when` condition may name (Istio's conditions reference), and how their
// values are checked.
std::string CheckConditionKey(absl::string_view key) {
  for (absl::string_view bracketed : {"request.headers[", "request.auth.claims["}) {
    if (absl::StartsWith(key, bracketed)) {
      if (!absl::EndsWith(key, "]") || key.size() == bracketed.size() + 1)
        return absl::StrCat("\"", key, "\": want ", bracketed, "NAME]");
      return "";
    }
  }
  for (absl::string_view known :
       {"source.ip", "remote.ip", "source.namespace", "source.principal", "request.auth.principal",
        "request.auth.audiences", "request.auth.presenter", "destination.ip", "destination.port",
        "connection.sni"}) {
    if (key == known) return "";
  }
  return absl::StrCat("\"", key, "\": not a supported attribute");
}

AuthorizationPolicy::Condition ReadCondition(ObjectReader& r) {
  AuthorizationPolicy::Condition c;
  r.Required("key");
  c.key = r.String("key").value_or("");
  if (!c.key.empty()) Check(r.errors(), r.Path("key"), CheckConditionKey(c.key));
  std::string (*check)(absl::string_view) = CheckPattern;
  if (c.key == "source.ip" || c.key == "remote.ip" || c.key == "destination.ip") check = CheckCidr;
  if (c.key == "destination.port") check = CheckPortString;
  c.values = ReadChecked(r, "values", check);
  c.not_values = ReadChecked(r, "notValues", check);
  if (c.values.empty() && c.not_values.empty())
    r.errors()->Add(r.path(), "values or notValues is required");
  return c;
}

AuthorizationPolicy::Rule ReadRule(ObjectReader& r) {
  AuthorizationPolicy::Rule rule;
  r.ObjectList("from", [&](ObjectReader& f, size_t) {
    f.Required("source");
    f.Object("source", [&](ObjectReader& s) { rule.from.push_back(ReadSource(s)); });
  });
  r.ObjectList("to", [&](ObjectReader& t, size_t) {
    t.Required("operation");
    t.Object("operation", [&](ObjectReader& o) { rule.to.push_back(ReadOperation(o)); });
  });
  r.ObjectList("when", [&](ObjectReader& w, size_t) { rule.when.push_back(ReadCondition(w)); });
  return rule;
}

// An HTTP header name as RFC 9110 allows it (a token).
std::string CheckHeaderName(absl::string_view v) {
  if (v.empty()) return "must not be empty";
  for (char c : v) {
    if (!(absl::ascii_isalnum(c) || absl::StrContains("!#$%&'*+-.^_`|~", c)))
      return absl::StrCat("\"", v, "\" is not a valid HTTP header name");
  }
  return "";
}

RequestAuthentication::JwtRule ReadJwtRule(ObjectReader& r) {
  RequestAuthentication::JwtRule rule;
  r.Required("issuer");
  rule.issuer = r.String("issuer").value_or("");
  rule.audiences = r.StringList("audiences");
  rule.jwks = r.String("jwks").value_or("");
  rule.jwks_uri = r.String("jwksUri").value_or("");
  if (!rule.jwks.empty()) Check(r.errors(), r.Path("jwks"), CheckJwks(rule.jwks));
  if (!rule.jwks_uri.empty()) Check(r.errors(), r.Path("jwksUri"), CheckJwksUri(rule.jwks_uri));
  if (!rule.jwks.empty() && !rule.jwks_uri.empty())
    r.Error("jwks", "jwks and jwksUri are exclusive");
  if (rule.jwks.empty() && rule.jwks_uri.empty()) {
    r.errors()->Add(r.path(),
                    "jwks or jwksUri is required (meshpilot does not discover keys from the "
                    "issuer's OpenID configuration)");
  }
  r.ObjectList("fromHeaders", [&](ObjectReader& h, size_t) {
    h.Required("name");
    RequestAuthentication::JwtRule::Header header{h.String("name").value_or(""),
                                                  h.String("prefix").value_or("")};
    if (!header.name.empty()) Check(h.errors(), h.Path("name"), CheckHeaderName(header.name));
    rule.from_headers.push_back(std::move(header));
  });
  rule.from_params = r.StringList("fromParams");
  for (size_t i = 0; i < rule.from_params.size(); ++i) {
    if (rule.from_params[i].empty())
      r.Error(absl::StrCat("fromParams[", i, "]"), "must not be empty");
  }
  rule.forward_original_token = r.Bool("forwardOriginalToken").value_or(false);
  rule.output_payload_to_header = r.String("outputPayloadToHeader").value_or("");
  if (!rule.output_payload_to_header.empty()) {
    Check(r.errors(), r.Path("outputPayloadToHeader"),
          CheckHeaderName(rule.output_payload_to_header));
  }
  if (r.Has("outputClaimToHeaders")) r.Error("outputClaimToHeaders", "is not supported");
  if (r.Has("fromCookies")) r.Error("fromCookies", "is not supported");
  return rule;
}

}  // namespace

RequestAuthentication ReadRequestAuthentication(ObjectReader& r) {
  RequestAuthentication ra;
  r.Object("selector", [&](ObjectReader& s) { ra.selector = ReadLabels(s, "matchLabels"); });
  if (r.Has("targetRef") || r.Has("targetRefs"))
    r.Error(r.Has("targetRef") ? "targetRef" : "targetRefs",
            "is not supported: meshpilot selects workloads with selector.matchLabels");
  std::set<std::string> issuers;
  r.ObjectList("jwtRules", [&](ObjectReader& j, size_t i) {
    ra.jwt_rules.push_back(ReadJwtRule(j));
    const std::string& issuer = ra.jwt_rules.back().issuer;
    if (!issuer.empty() && !issuers.insert(issuer).second)
      j.Error("issuer", absl::StrCat("\"", issuer, "\" appears in an earlier rule"));
  });
  return ra;
}

AuthorizationPolicy ReadAuthorizationPolicy(ObjectReader& r) {
  AuthorizationPolicy ap;
  r.Object("selector", [&](ObjectReader& s) { ap.selector = ReadLabels(s, "matchLabels"); });
  if (r.Has("targetRef") || r.Has("targetRefs"))
    r.Error(r.Has("targetRef") ? "targetRef" : "targetRefs",
            "is not supported: meshpilot selects workloads with selector.matchLabels");
  std::optional<std::string> action = r.Enum("action", {"ALLOW", "DENY", "AUDIT", "CUSTOM"});
  if (action == "DENY") ap.action = AuthorizationPolicy::Action::kDeny;
  if (action == "AUDIT") ap.action = AuthorizationPolicy::Action::kAudit;
  if (action == "CUSTOM") {
    r.Get("provider");  // belongs to CUSTOM: one error, about the action
    r.Error("action",
            "CUSTOM delegates to an external authorizer (extensionProviders), which meshpilot "
            "does not run; use ALLOW, DENY or AUDIT");
  }
  if (r.Has("provider") && action != "CUSTOM") r.Error("provider", "is only valid with CUSTOM");
  r.ObjectList("rules", [&](ObjectReader& rule, size_t) { ap.rules.push_back(ReadRule(rule)); });
  return ap;
}

namespace {

// A Telemetry's `match.mode` (CLIENT_AND_SERVER when absent).
Telemetry::Mode ReadMode(ObjectReader& entry) {
  Telemetry::Mode out = Telemetry::Mode::kClientAndServer;
  entry.Object("match", [&](ObjectReader& m) {
    std::optional<std::string> mode = m.Enum("mode", {"CLIENT_AND_SERVER", "CLIENT", "SERVER"});
    if (mode == "CLIENT") out = Telemetry::Mode::kClient;
    if (mode == "SERVER") out = Telemetry::Mode::kServer;
  });
  return out;
}

Telemetry::Tracing ReadTracing(ObjectReader& t,
                               const std::optional<std::set<std::string>>& providers) {
  Telemetry::Tracing tracing;
  tracing.mode = ReadMode(t);
  t.ObjectList("providers", [&](ObjectReader& p, size_t) {
    p.Required("name");
    std::string name = p.String("name").value_or("");
    if (!name.empty() && providers && !providers->count(name)) {
      p.Error("name", absl::StrCat("unknown tracing provider \"", name, "\": meshpilot knows ",
                                   absl::StrJoin(*providers, ", "),
                                   " (add one with meshpilot's --trace-provider NAME=URL)"));
    }
    tracing.providers.push_back(std::move(name));
  });
  if (tracing.providers.size() > 1)
    t.Error("providers", "at most one provider per entry is supported, as in Istio");
  if (std::optional<double> pct = t.Number("randomSamplingPercentage")) {
    if (*pct < 0 || *pct > 100) {
      t.Error("randomSamplingPercentage", "must be between 0 and 100");
    } else {
      tracing.random_sampling_percentage = pct;
    }
  }
  tracing.disable_span_reporting = t.Bool("disableSpanReporting");
  t.Bool("useRequestIdForTraceSampling");  // accepted: meshproxy decides by random draw
  t.Map("customTags",
        [&](const std::string& name, const nlohmann::json& v, const std::string& path) {
          ObjectReader tag(&v, path, t.errors());
          if (!v.is_object()) {
            t.errors()->Add(path, "must be an object");
            return;
          }
          Telemetry::CustomTag out;
          int kinds = 0;
          tag.Object("literal", [&](ObjectReader& l) {
            ++kinds;
            l.Required("value");
            out.value = l.String("value").value_or("");
          });
          auto named = [&](Telemetry::CustomTag::Kind kind) {
            return [&, kind](ObjectReader& e) {
              ++kinds;
              out.kind = kind;
              e.Required("name");
              out.value = e.String("name").value_or("");
              out.default_value = e.String("defaultValue").value_or("");
            };
          };
          tag.Object("environment", named(Telemetry::CustomTag::Kind::kEnvironment));
          tag.Object("header", named(Telemetry::CustomTag::Kind::kHeader));
          if (kinds != 1)
            t.errors()->Add(path, "exactly one of literal, environment or header is required");
          tracing.custom_tags[name] = std::move(out);
        });
  return tracing;
}

}  // namespace

Telemetry ReadTelemetry(ObjectReader& r,
                        const std::optional<std::set<std::string>>& tracing_providers) {
  Telemetry t;
  r.Object("selector", [&](ObjectReader& s) { t.selector = ReadLabels(s, "matchLabels"); });
  if (r.Has("targetRef") || r.Has("targetRefs"))
    r.Error(r.Has("targetRef") ? "targetRef" : "targetRefs",
            "is not supported: meshpilot selects workloads with selector.matchLabels");
  r.ObjectList("accessLogging", [&](ObjectReader& a, size_t) {
    Telemetry::AccessLogging logging;
    a.ObjectList("providers", [&](ObjectReader& p, size_t) {
      p.Required("name");
      std::string name = p.String("name").value_or("");
      if (!name.empty() && name != "envoy") {
        p.Error("name", absl::StrCat("unknown provider \"", name,
                                     "\": meshpilot's access log provider is \"envoy\" (the "
                                     "file of --access-log-file, /dev/stdout by default)"));
      }
      logging.providers.push_back(std::move(name));
    });
    logging.disabled = a.Bool("disabled").value_or(false);
    a.Object("filter", [&](ObjectReader& f) {
      if (!f.String("expression").value_or("").empty())
        f.Error("expression", "CEL filters are not supported: every request is logged");
    });
    logging.mode = ReadMode(a);
    t.access_logging.push_back(std::move(logging));
  });
  r.ObjectList("tracing", [&](ObjectReader& entry, size_t) {
    t.tracing.push_back(ReadTracing(entry, tracing_providers));
  });
  r.ObjectList("metrics", [&](ObjectReader& m, size_t) {
    m.ObjectList("providers", [&](ObjectReader& p, size_t) {
      std::string name = p.String("name").value_or("");
      if (name != "prometheus")
        p.Error("name", "meshproxy's metrics go to Prometheus only (provider \"prometheus\")");
    });
    if (m.Has("overrides")) {
      m.Get("overrides");
      m.Error("overrides", "metric overrides (tags, disabling metrics) are not supported");
    }
    if (m.Bool("disabled").value_or(false))
      m.Error("disabled", "Istio's standard metrics cannot be turned off");
    m.Get("reportingInterval");  // accepted: proxies are scraped, not pushing
  });
  return t;
}

}  // namespace mesh::model
