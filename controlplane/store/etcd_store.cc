#include "controlplane/store/etcd_store.h"

#include <arpa/inet.h>
#include <grpcpp/grpcpp.h>
#include <netdb.h>

#include <condition_variable>
#include <map>
#include <mutex>
#include <set>
#include <thread>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "common/log.h"
#include "controlplane/store/record_io.h"
#include "etcd/etcdserverpb/rpc.grpc.pb.h"

namespace mesh::store {
namespace {

namespace pb = etcdserverpb;

KeyValue FromEtcd(const mvccpb::KeyValue& kv) {
  return KeyValue{kv.key(), kv.value(), kv.create_revision(), kv.mod_revision()};
}

// etcd's transient refusals: no member reachable, a leader election, a slow raft round.
bool Retryable(const grpc::Status& s) {
  if (s.error_code() == grpc::StatusCode::UNAVAILABLE ||
      s.error_code() == grpc::StatusCode::DEADLINE_EXCEEDED) {
    return true;
  }
  const std::string& m = s.error_message();
  return absl::StrContains(m, "leader changed") || absl::StrContains(m, "no leader") ||
         absl::StrContains(m, "request timed out") || absl::StrContains(m, "too many requests");
}

bool AuthExpired(const grpc::Status& s) {
  return absl::StrContains(s.error_message(), "invalid auth token");
}

absl::Status ToAbsl(const std::string& what, const grpc::Status& s) {
  std::string message = absl::StrCat("etcd ", what, ": ", s.error_message());
  switch (s.error_code()) {
    case grpc::StatusCode::OK: return absl::OkStatus();
    case grpc::StatusCode::INVALID_ARGUMENT: return absl::InvalidArgumentError(message);
    case grpc::StatusCode::RESOURCE_EXHAUSTED: return absl::ResourceExhaustedError(message);
    case grpc::StatusCode::OUT_OF_RANGE: return absl::OutOfRangeError(message);
    case grpc::StatusCode::NOT_FOUND: return absl::NotFoundError(message);
    case grpc::StatusCode::UNAUTHENTICATED:
    case grpc::StatusCode::PERMISSION_DENIED: return absl::PermissionDeniedError(message);
    case grpc::StatusCode::FAILED_PRECONDITION: return absl::FailedPreconditionError(message);
    default: return absl::UnavailableError(message);
  }
}

// "host:port" as an address gRPC can list in an ipv4:/ipv6: target.
absl::StatusOr<std::string> Resolve(const std::string& endpoint, bool* v6) {
  size_t colon = endpoint.rfind(':');
  int port;
  if (colon == std::string::npos || !absl::SimpleAtoi(endpoint.substr(colon + 1), &port) ||
      port <= 0 || port > 65535) {
    return absl::InvalidArgumentError(absl::StrCat("etcd endpoint ", endpoint, ": want host:port"));
  }
  std::string host = endpoint.substr(0, colon);
  if (absl::StartsWith(host, "[") && absl::EndsWith(host, "]"))
    host = host.substr(1, host.size() - 2);
  addrinfo hints{};
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* res = nullptr;
  if (getaddrinfo(host.c_str(), nullptr, &hints, &res) != 0 || !res) {
    return absl::InvalidArgumentError(absl::StrCat("etcd endpoint ", endpoint, ": unknown host"));
  }
  char text[INET6_ADDRSTRLEN] = {};
  *v6 = res->ai_family == AF_INET6;
  if (*v6) {
    inet_ntop(AF_INET6, &reinterpret_cast<sockaddr_in6*>(res->ai_addr)->sin6_addr, text,
              sizeof text);
  } else {
    inet_ntop(AF_INET, &reinterpret_cast<sockaddr_in*>(res->ai_addr)->sin_addr, text, sizeof text);
  }
  freeaddrinfo(res);
  return *v6 ? absl::StrCat("[", text, "]:", port) : absl::StrCat(text, ":", port);
}

}  // namespace

std::string RangeEnd(absl::string_view prefix) {
  std::string end(prefix);
  while (!end.empty()) {
    if (static_cast<unsigned char>(end.back()) < 0xff) {
      end.back() = static_cast<char>(end.back() + 1);
      return end;
    }
    end.pop_back();
  }
  return std::string(1, '\0');  // every key
}

struct EtcdStore::Impl {
  Options options;
  std::shared_ptr<grpc::Channel> channel;
  std::unique_ptr<pb::KV::Stub> kv;
  std::unique_ptr<pb::Watch::Stub> watch;
  std::unique_ptr<pb::Lease::Stub> lease;
  std::unique_ptr<pb::Auth::Stub> auth;
  std::mutex token_mu;
  std::string token;  // guarded by token_mu
  std::atomic<int64_t> revision{0};

  void Saw(const pb::ResponseHeader& h) {
    int64_t seen = revision.load();
    while (h.revision() > seen && !revision.compare_exchange_weak(seen, h.revision())) {
    }
  }

  // Deadline (unless streaming) and the auth token.
  void Prepare(grpc::ClientContext* ctx, bool streaming = false) {
    // Wait for a connection (up to the deadline) rather than fail at once: gRPC then dials the
    // endpoints again, in order, instead of answering from a failed attempt's backoff.
    ctx->set_wait_for_ready(true);
    if (!streaming) {
      ctx->set_deadline(std::chrono::system_clock::now() +
                        absl::ToChronoNanoseconds(options.request_timeout));
    }
    std::lock_guard lock(token_mu);
    if (!token.empty()) ctx->AddMetadata("token", token);
  }

  grpc::Status Authenticate() {
    if (options.username.empty()) return grpc::Status::OK;
    grpc::ClientContext ctx;
    ctx.set_wait_for_ready(true);
    ctx.set_deadline(std::chrono::system_clock::now() +
                     absl::ToChronoNanoseconds(options.request_timeout));
    pb::AuthenticateRequest req;
    req.set_name(options.username);
    req.set_password(options.password);
    pb::AuthenticateResponse res;
    grpc::Status s = auth->Authenticate(&ctx, req, &res);
    if (s.ok()) {
      std::lock_guard lock(token_mu);
      token = res.token();
    }
    return s;
  }

  // Runs `call(ctx)` until it succeeds, fails for good, or retry_for passes; re-authenticates
  // when the token expired.
  template <class F>
  absl::Status Call(const std::string& what, F&& call) {
    const absl::Time give_up = absl::Now() + options.retry_for;
    absl::Duration backoff = absl::Milliseconds(50);
    for (int attempt = 0;; ++attempt) {
      grpc::ClientContext ctx;
      Prepare(&ctx);
      grpc::Status s = call(&ctx);
      if (s.ok()) return absl::OkStatus();
      if (AuthExpired(s) || s.error_code() == grpc::StatusCode::UNAUTHENTICATED) {
        if (attempt == 0 && Authenticate().ok()) continue;
      }
      if (!Retryable(s) || absl::Now() + backoff > give_up) return ToAbsl(what, s);
      if (attempt == 0) log::Warn("store: etcd ", what, ": ", s.error_message(), "; retrying");
      absl::SleepFor(backoff);
      backoff = std::min(backoff * 2, absl::Seconds(1));
    }
  }

  absl::StatusOr<pb::RangeResponse> Range(const std::string& key, const std::string& end,
                                          int64_t at_revision = 0, bool keys_only = false) {
    pb::RangeRequest req;
    req.set_key(key);
    req.set_range_end(end);
    req.set_revision(at_revision);
    req.set_keys_only(keys_only);
    pb::RangeResponse res;
    absl::Status s = Call("range", [&](grpc::ClientContext* ctx) {
      res.Clear();
      return kv->Range(ctx, req, &res);
    });
    if (!s.ok()) return s;
    Saw(res.header());
    return res;
  }
};

EtcdStore::EtcdStore(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
EtcdStore::~EtcdStore() = default;

absl::StatusOr<EtcdStore::Options> EtcdStore::ParseUrl(const std::string& url) {
  Options o;
  std::string rest;
  if (absl::StartsWith(url, "etcd://")) {
    rest = url.substr(7);
  } else if (absl::StartsWith(url, "etcds://")) {
    rest = url.substr(8);
    o.tls = true;
  } else {
    return absl::InvalidArgumentError(
        absl::StrCat("store ", url, ": want etcd://host:port[,host:port...] or etcds://..."));
  }
  if (size_t at = rest.rfind('@'); at != std::string::npos) {
    std::string credentials = rest.substr(0, at);
    rest = rest.substr(at + 1);
    size_t colon = credentials.find(':');
    o.username = credentials.substr(0, colon);
    if (colon != std::string::npos) o.password = credentials.substr(colon + 1);
  }
  for (absl::string_view e : absl::StrSplit(rest, ',', absl::SkipEmpty())) {
    o.endpoints.emplace_back(e);
  }
  if (o.endpoints.empty())
    return absl::InvalidArgumentError(absl::StrCat("store ", url, ": no etcd endpoint"));
  return o;
}

absl::StatusOr<std::unique_ptr<EtcdStore>> EtcdStore::Open(Options options) {
  std::vector<std::string> addresses;
  bool any_v6 = false, any_v4 = false;
  for (const std::string& e : options.endpoints) {
    bool v6 = false;
    absl::StatusOr<std::string> a = Resolve(e, &v6);
    if (!a.ok()) return a.status();
    (v6 ? any_v6 : any_v4) = true;
    addresses.push_back(*a);
  }
  if (any_v4 && any_v6)
    return absl::InvalidArgumentError("etcd endpoints: all IPv4 or all IPv6, not both");
  std::shared_ptr<grpc::ChannelCredentials> credentials = grpc::InsecureChannelCredentials();
  grpc::ChannelArguments args;
  if (options.tls || !options.ca_file.empty()) {
    grpc::SslCredentialsOptions ssl;
    auto read = [](const std::string& path, std::string* out) -> absl::Status {
      if (path.empty()) return absl::OkStatus();
      absl::StatusOr<std::string> text = ReadFile(path);
      if (!text.ok())
        return absl::InvalidArgumentError(absl::StrCat("etcd TLS: ", path, ": cannot be read"));
      *out = *text;
      return absl::OkStatus();
    };
    for (auto [path, out] : {std::pair{options.ca_file, &ssl.pem_root_certs},
                             std::pair{options.cert_file, &ssl.pem_cert_chain},
                             std::pair{options.key_file, &ssl.pem_private_key}}) {
      if (absl::Status s = read(path, out); !s.ok()) return s;
    }
    credentials = grpc::SslCredentials(ssl);
    // Members are dialled by address; their certificates name the host given first.
    std::string host = options.endpoints[0].substr(0, options.endpoints[0].rfind(':'));
    args.SetSslTargetNameOverride(host);
  }
  // Fail over quickly: a dead member is skipped, and a lost one is redialled soon.
  args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 100);
  args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 1000);
  args.SetInt(GRPC_ARG_KEEPALIVE_TIME_MS, 10000);
  args.SetInt(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, 5000);
  args.SetInt(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1);
  args.SetMaxReceiveMessageSize(-1);
  std::string target = absl::StrCat(any_v6 ? "ipv6:" : "ipv4:", absl::StrJoin(addresses, ","));

  auto impl = std::make_unique<Impl>();
  impl->options = std::move(options);
  impl->channel = grpc::CreateCustomChannel(target, credentials, args);
  impl->kv = pb::KV::NewStub(impl->channel);
  impl->watch = pb::Watch::NewStub(impl->channel);
  impl->lease = pb::Lease::NewStub(impl->channel);
  impl->auth = pb::Auth::NewStub(impl->channel);
  if (!impl->options.username.empty()) {
    grpc::Status s;
    absl::Time give_up = absl::Now() + impl->options.retry_for;
    while (!(s = impl->Authenticate()).ok() && Retryable(s) && absl::Now() < give_up)
      absl::SleepFor(absl::Milliseconds(200));
    if (!s.ok() && !Retryable(s)) {
      return absl::PermissionDeniedError(
          absl::StrCat("etcd authentication as ", impl->options.username, ": ", s.error_message()));
    }
    if (!s.ok()) return ToAbsl("authentication", s);
  }
  std::unique_ptr<EtcdStore> store(new EtcdStore(std::move(impl)));
  // Reads the current revision, and proves a member answers.
  absl::StatusOr<pb::RangeResponse> probe = store->impl_->Range("/meshpilot/", "", 0, true);
  if (!probe.ok()) return probe.status();
  log::Info("store: etcd at ", absl::StrJoin(store->impl_->options.endpoints, ","),
            " revision=", store->impl_->revision.load());
  return store;
}

absl::StatusOr<CommitResult> EtcdStore::Commit(std::vector<Op> ops) {
  if (absl::Status s = CheckOps(ops); !s.ok()) return s;
  std::set<std::string> keys;
  pb::TxnRequest req;
  for (const Op& op : ops) {
    if (!keys.insert(op.key).second)
      return absl::InvalidArgumentError(absl::StrCat("key ", op.key, " appears twice"));
    if (op.expect_mod_revision || op.type == Op::Type::kDelete) {
      pb::Compare* c = req.add_compare();
      c->set_key(op.key);
      if (op.expect_mod_revision) {
        c->set_target(pb::Compare::MOD);
        c->set_result(pb::Compare::EQUAL);
        c->set_mod_revision(*op.expect_mod_revision);  // 0: the key must not exist
      } else {
        c->set_target(pb::Compare::VERSION);  // a delete needs the key to exist
        c->set_result(pb::Compare::GREATER);
        c->set_version(0);
      }
      req.add_failure()->mutable_request_range()->set_key(op.key);
    }
    if (op.type == Op::Type::kCheck) {
      req.add_success()->mutable_request_range()->set_key(op.key);  // keeps responses in op order
    } else if (op.type == Op::Type::kPut) {
      pb::PutRequest* put = req.add_success()->mutable_request_put();
      put->set_key(op.key);
      put->set_value(op.value);
      put->set_prev_kv(true);
    } else {
      pb::DeleteRangeRequest* del = req.add_success()->mutable_request_delete_range();
      del->set_key(op.key);
      del->set_prev_kv(true);
    }
  }
  pb::TxnResponse res;
  int attempts = 0;
  absl::Status s = impl_->Call("transaction", [&](grpc::ClientContext* ctx) {
    res.Clear();
    ++attempts;
    return impl_->kv->Txn(ctx, req, &res);
  });
  if (!s.ok()) {
    if (absl::IsInvalidArgument(s) || absl::IsResourceExhausted(s)) {
      return absl::Status(s.code(), absl::StrCat("the transaction exceeds etcd's limits, nothing "
                                                 "was written (",
                                                 s.message(), ")"));
    }
    return s;
  }
  impl_->Saw(res.header());
  const int64_t rev = res.header().revision();
  if (!res.succeeded() && attempts > 1) {
    // An earlier attempt may have been applied before its answer was lost: then every op's
    // effect is in place, and the commit succeeded.
    if (absl::StatusOr<CommitResult> applied = AppliedEarlier(ops); applied.ok()) return applied;
  }
  if (!res.succeeded()) {
    // Which precondition failed, in op order, from the keys read back.
    int i = 0;
    for (const Op& op : ops) {
      if (!op.expect_mod_revision && op.type != Op::Type::kDelete) continue;
      const pb::RangeResponse& cur = res.responses(i++).response_range();
      const bool exists = cur.kvs_size() > 0;
      const int64_t mod = exists ? cur.kvs(0).mod_revision() : 0;
      if (!op.expect_mod_revision) {
        if (!exists) return absl::NotFoundError(absl::StrCat("key ", op.key, " not found"));
        continue;
      }
      const int64_t want = *op.expect_mod_revision;
      if (want == 0 && exists)
        return absl::AlreadyExistsError(absl::StrCat("key ", op.key, " already exists"));
      if (want > 0 && !exists)
        return absl::NotFoundError(absl::StrCat("key ", op.key, " not found"));
      if (want > 0 && mod != want) {
        return absl::FailedPreconditionError(
            absl::StrCat("key ", op.key, " is at revision ", mod, ", not ", want));
      }
    }
    return absl::AbortedError("etcd transaction refused; its keys changed meanwhile");
  }
  CommitResult out;
  out.revision = rev;
  for (size_t i = 0; i < ops.size(); ++i) {
    const pb::ResponseOp& r = res.responses(static_cast<int>(i));
    if (ops[i].type == Op::Type::kCheck) {
      const auto& kvs = r.response_range().kvs();
      out.kvs.push_back(kvs.empty() ? KeyValue{ops[i].key, "", 0, 0} : FromEtcd(kvs[0]));
    } else if (ops[i].type == Op::Type::kPut) {
      const mvccpb::KeyValue& prev = r.response_put().prev_kv();
      int64_t created = r.response_put().has_prev_kv() ? prev.create_revision() : rev;
      out.kvs.push_back(KeyValue{ops[i].key, ops[i].value, created, rev});
    } else {
      const auto& prev = r.response_delete_range().prev_kvs();
      out.kvs.push_back(prev.empty() ? KeyValue{ops[i].key, "", 0, 0} : FromEtcd(prev[0]));
    }
  }
  return out;
}

absl::StatusOr<CommitResult> EtcdStore::AppliedEarlier(const std::vector<Op>& ops) {
  std::vector<std::string> keys;
  for (const Op& op : ops) keys.push_back(op.key);
  absl::StatusOr<std::vector<std::optional<KeyValue>>> now = GetMany(keys);
  if (!now.ok()) return now.status();
  CommitResult out;
  for (size_t i = 0; i < ops.size(); ++i) {
    const Op& op = ops[i];
    const std::optional<KeyValue>* cur = &(*now)[i];
    if (op.type == Op::Type::kCheck) {  // no effect to look for
      out.kvs.push_back(cur->value_or(KeyValue{op.key, "", 0, 0}));
      continue;
    }
    const bool put = op.type == Op::Type::kPut;
    if (put != cur->has_value() ||
        (put && ((*cur)->value != op.value ||
                 (*cur)->mod_revision <= op.expect_mod_revision.value_or(0)))) {
      return absl::FailedPreconditionError("not applied");
    }
    if (put) out.revision = std::max(out.revision, (*cur)->mod_revision);
    out.kvs.push_back(put ? **cur : KeyValue{op.key, "", 0, 0});
  }
  log::Info("store: an etcd transaction answered late was found applied at revision ",
            out.revision);
  return out;
}

absl::StatusOr<std::optional<KeyValue>> EtcdStore::Get(absl::string_view key) {
  absl::StatusOr<pb::RangeResponse> res = impl_->Range(std::string(key), "");
  if (!res.ok()) return res.status();
  if (res->kvs_size() == 0) return std::optional<KeyValue>();
  return std::optional<KeyValue>(FromEtcd(res->kvs(0)));
}

absl::StatusOr<std::vector<std::optional<KeyValue>>> EtcdStore::GetMany(
    const std::vector<std::string>& keys) {
  std::vector<std::optional<KeyValue>> out;
  // etcd caps a transaction's operations (128 by default): read in chunks of 100, every chunk
  // after the first at the first one's revision, so the whole answer is one point in time.
  int64_t at = 0;
  for (size_t start = 0; start < keys.size(); start += 100) {
    pb::TxnRequest req;
    for (size_t i = start; i < std::min(keys.size(), start + 100); ++i) {
      pb::RangeRequest* range = req.add_success()->mutable_request_range();
      range->set_key(keys[i]);
      range->set_revision(at);
    }
    pb::TxnResponse res;
    absl::Status s = impl_->Call("read", [&](grpc::ClientContext* ctx) {
      res.Clear();
      return impl_->kv->Txn(ctx, req, &res);
    });
    if (!s.ok()) return s;
    impl_->Saw(res.header());
    if (at == 0) at = res.header().revision();
    for (const pb::ResponseOp& r : res.responses()) {
      const pb::RangeResponse& range = r.response_range();
      out.push_back(range.kvs_size() ? std::optional<KeyValue>(FromEtcd(range.kvs(0)))
                                     : std::nullopt);
    }
  }
  return out;
}

absl::StatusOr<RangeResult> EtcdStore::List(absl::string_view prefix) {
  absl::StatusOr<pb::RangeResponse> res = impl_->Range(std::string(prefix), RangeEnd(prefix));
  if (!res.ok()) return res.status();
  RangeResult out;
  out.revision = res->header().revision();
  for (const mvccpb::KeyValue& kv : res->kvs()) out.kvs.push_back(FromEtcd(kv));
  return out;
}

int64_t EtcdStore::Revision() {
  return impl_->revision.load();
}

// One etcd watch on its own stream and thread; see the class comment for resumption.
class EtcdStore::EtcdWatch : public store::Watch {
 public:
  EtcdWatch(Impl* impl, std::string prefix, int64_t after, WatchCallback callback)
      : impl_(impl), prefix_(std::move(prefix)), last_(after), callback_(std::move(callback)) {}

  ~EtcdWatch() override {
    {
      std::lock_guard lock(mu_);
      stop_ = true;
      if (ctx_) ctx_->TryCancel();
    }
    wake_.notify_all();
    if (thread_.joinable()) thread_.join();
  }

  // The keys as of `after` (what the watcher knows), then the stream.
  absl::Status Start() {
    if (last_ > 0) {
      absl::StatusOr<pb::RangeResponse> known =
          impl_->Range(prefix_, RangeEnd(prefix_), last_, true);
      if (!known.ok()) {
        if (absl::IsOutOfRange(known.status()) ||
            absl::StrContains(known.status().message(), "compacted")) {
          return absl::OutOfRangeError(absl::StrCat("revision ", last_, " is compacted"));
        }
        return known.status();
      }
      for (const mvccpb::KeyValue& kv : known->kvs()) known_[kv.key()] = kv.mod_revision();
    }
    absl::Status opened = Open();
    if (!opened.ok()) return opened;
    thread_ = std::thread([this] { Run(); });
    return absl::OkStatus();
  }

 private:
  using Stream = grpc::ClientReaderWriter<pb::WatchRequest, pb::WatchResponse>;

  // A stream watching from last_ + 1, once etcd confirmed it. OutOfRange when that revision is
  // compacted.
  absl::Status Open() {
    auto ctx = std::make_shared<grpc::ClientContext>();
    impl_->Prepare(ctx.get(), true);
    {
      std::lock_guard lock(mu_);
      if (stop_) return absl::CancelledError("watch stopped");
      ctx_ = ctx;
    }
    std::unique_ptr<Stream> stream = impl_->watch->Watch(ctx.get());
    pb::WatchRequest req;
    pb::WatchCreateRequest* create = req.mutable_create_request();
    create->set_key(prefix_);
    create->set_range_end(RangeEnd(prefix_));
    create->set_start_revision(last_ + 1);
    create->set_prev_kv(true);
    pb::WatchResponse res;
    if (!stream->Write(req) || !stream->Read(&res)) {
      grpc::Status s = stream->Finish();
      return ToAbsl("watch", s.ok() ? grpc::Status(grpc::StatusCode::UNAVAILABLE, "closed") : s);
    }
    impl_->Saw(res.header());
    if (res.canceled() || res.compact_revision() > 0) {
      ctx->TryCancel();
      stream->Finish();
      if (res.compact_revision() > 0) {
        return absl::OutOfRangeError(absl::StrCat("revision ", last_ + 1, " is compacted (to ",
                                                  res.compact_revision(), ")"));
      }
      return absl::UnavailableError(absl::StrCat("etcd refused the watch: ", res.cancel_reason()));
    }
    stream_ = std::move(stream);
    return absl::OkStatus();
  }

  void Run() {
    absl::Duration backoff = absl::Milliseconds(100);
    for (;;) {
      pb::WatchResponse res;
      bool compacted = false;
      while (stream_ && stream_->Read(&res)) {
        impl_->Saw(res.header());
        // etcd confirms a watch, then cancels it if its start was compacted meanwhile.
        if ((compacted = res.compact_revision() > 0)) break;
        Deliver(res);
        backoff = absl::Milliseconds(100);
      }
      if (stream_) {
        if (Stopped()) return;
        if (std::shared_ptr<grpc::ClientContext> ctx = Context()) ctx->TryCancel();
        grpc::Status s = stream_->Finish();
        stream_.reset();
        if (!compacted) {
          log::Warn("store: etcd watch on ", prefix_, " broke at revision ", last_, " (",
                    s.error_message(), "); resuming");
        }
      }
      if (Stopped()) return;
      absl::Status opened =
          compacted ? absl::OutOfRangeError(absl::StrCat("revision ", last_ + 1, " is compacted"))
                    : Open();
      if (absl::IsOutOfRange(opened)) {
        log::Warn("store: etcd watch on ", prefix_, ": ", opened.message(), "; listing again");
        opened = Resync();
        if (opened.ok()) opened = Open();
      }
      if (!opened.ok()) {
        if (Stopped()) return;
        std::unique_lock lock(mu_);
        wake_.wait_for(lock, absl::ToChronoNanoseconds(backoff), [this] { return stop_; });
        backoff = std::min(backoff * 2, absl::Seconds(2));
      }
    }
  }

  void Deliver(const pb::WatchResponse& res) {
    if (res.events_size() == 0) return;
    std::vector<Event> events;
    events.reserve(res.events_size());
    for (const mvccpb::Event& e : res.events()) {
      Event out;
      out.revision = e.kv().mod_revision();
      if (e.type() == mvccpb::Event::DELETE) {
        out.type = Event::Type::kDelete;
        out.kv = e.has_prev_kv() ? FromEtcd(e.prev_kv()) : KeyValue{e.kv().key(), "", 0, 0};
        known_.erase(e.kv().key());
      } else {
        out.kv = FromEtcd(e.kv());
        known_[e.kv().key()] = e.kv().mod_revision();
      }
      last_ = std::max(last_, out.revision);
      events.push_back(std::move(out));
    }
    callback_(events);
  }

  // After a compaction: the prefix as it is now, delivered as the difference from known_.
  absl::Status Resync() {
    absl::StatusOr<pb::RangeResponse> now = impl_->Range(prefix_, RangeEnd(prefix_));
    if (!now.ok()) return now.status();
    const int64_t at = now->header().revision();
    std::vector<Event> events;
    std::set<std::string> present;
    for (const mvccpb::KeyValue& kv : now->kvs()) {
      present.insert(kv.key());
      auto it = known_.find(kv.key());
      if (it != known_.end() && it->second == kv.mod_revision()) continue;
      events.push_back(Event{Event::Type::kPut, FromEtcd(kv), kv.mod_revision()});
    }
    std::sort(events.begin(), events.end(),
              [](const Event& a, const Event& b) { return a.revision < b.revision; });
    for (const auto& [key, mod] : known_) {
      if (!present.count(key)) events.push_back(Event{Event::Type::kDelete, {key, "", 0, mod}, at});
    }
    known_.clear();
    for (const mvccpb::KeyValue& kv : now->kvs()) known_[kv.key()] = kv.mod_revision();
    last_ = std::max(last_, at);
    log::Info("store: etcd watch on ", prefix_, " resynced at revision ", at, ": ", events.size(),
              " changes");
    if (!events.empty() && !Stopped()) callback_(events);
    return absl::OkStatus();
  }

  bool Stopped() {
    std::lock_guard lock(mu_);
    return stop_;
  }
  std::shared_ptr<grpc::ClientContext> Context() {
    std::lock_guard lock(mu_);
    return ctx_;
  }

  Impl* impl_;
  const std::string prefix_;
  int64_t last_;                          // the highest revision delivered (or the watcher's start)
  std::map<std::string, int64_t> known_;  // key -> mod_revision, as the watcher saw them
  WatchCallback callback_;
  std::unique_ptr<Stream> stream_;
  std::mutex mu_;
  std::condition_variable wake_;
  bool stop_ = false;
  std::shared_ptr<grpc::ClientContext> ctx_;  // the current stream's; guarded by mu_
  std::thread thread_;
};

absl::StatusOr<WatchPtr> EtcdStore::Watch(std::string prefix, int64_t after_revision,
                                          WatchCallback callback) {
  auto watch = std::make_unique<EtcdWatch>(impl_.get(), std::move(prefix), after_revision,
                                           std::move(callback));
  if (absl::Status s = watch->Start(); !s.ok()) return s;
  return WatchPtr(std::move(watch));
}

absl::StatusOr<int64_t> EtcdStore::GrantLease(absl::Duration ttl) {
  pb::LeaseGrantRequest req;
  req.set_ttl(std::max<int64_t>(1, absl::ToInt64Seconds(ttl)));
  pb::LeaseGrantResponse res;
  absl::Status s = impl_->Call("lease grant", [&](grpc::ClientContext* ctx) {
    return impl_->lease->LeaseGrant(ctx, req, &res);
  });
  if (!s.ok()) return s;
  if (!res.error().empty()) return absl::UnavailableError("etcd lease grant: " + res.error());
  return res.id();
}

absl::StatusOr<absl::Duration> EtcdStore::KeepAlive(int64_t lease) {
  pb::LeaseKeepAliveResponse res;
  absl::Status s = impl_->Call("lease keep-alive", [&](grpc::ClientContext* ctx) {
    auto stream = impl_->lease->LeaseKeepAlive(ctx);
    pb::LeaseKeepAliveRequest req;
    req.set_id(lease);
    if (!stream->Write(req) || !stream->Read(&res)) return stream->Finish();
    stream->WritesDone();
    ctx->TryCancel();
    stream->Finish();
    return grpc::Status::OK;
  });
  if (!s.ok()) return s;
  if (res.ttl() <= 0) return absl::NotFoundError(absl::StrCat("lease ", lease, " has expired"));
  return absl::Seconds(res.ttl());
}

absl::Status EtcdStore::RevokeLease(int64_t lease) {
  pb::LeaseRevokeRequest req;
  req.set_id(lease);
  pb::LeaseRevokeResponse res;
  return impl_->Call("lease revoke", [&](grpc::ClientContext* ctx) {
    return impl_->lease->LeaseRevoke(ctx, req, &res);
  });
}

absl::Status EtcdStore::PutWithLease(const std::string& key, const std::string& value,
                                     int64_t lease) {
  pb::PutRequest req;
  req.set_key(key);
  req.set_value(value);
  req.set_lease(lease);
  pb::PutResponse res;
  absl::Status s =
      impl_->Call("put", [&](grpc::ClientContext* ctx) { return impl_->kv->Put(ctx, req, &res); });
  if (s.ok()) impl_->Saw(res.header());
  return s;
}

absl::Status EtcdStore::Compact(int64_t revision) {
  pb::CompactionRequest req;
  req.set_revision(revision);
  req.set_physical(true);
  pb::CompactionResponse res;
  return impl_->Call("compaction",
                     [&](grpc::ClientContext* ctx) { return impl_->kv->Compact(ctx, req, &res); });
}

}  // namespace mesh::store
