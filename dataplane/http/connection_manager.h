#pragma once

#include <list>
#include <memory>
#include <string>
#include <vector>

#include "dataplane/codec/codec.h"
#include "dataplane/http/http_context.h"
#include "dataplane/router/router_stage.h"

namespace mesh::dataplane {

// The HTTP layer of one downstream connection, whichever codec it speaks, in the shape of
// Envoy's connection manager: each request stream the codec opens becomes an ActiveStream that
// runs the router stage, answers local replies in the client's form (gRPC or not), and otherwise
// hands the request to an UpstreamRequest and relays its response, with flow control both ways.
// Mirrored requests are sent alongside and their answers dropped. Worker-thread only; destroying
// it cancels every stream still upstream.
class ConnectionManager : public ServerCodecCallbacks {
 public:
  struct Settings {
    size_t buffer_limit = 1024 * 1024;  // request body kept for retries (per_request_buffer_limit)
  };
  // `listener` is the config the connection was accepted under; it must outlive the manager.
  ConnectionManager(HttpContext& context, const ListenerConfig& listener, DownstreamInfo downstream,
                    Settings settings);
  ~ConnectionManager() override;

  // ServerCodecCallbacks
  RequestDecoder& NewStream(ResponseEncoder& encoder) override;

  // Destroys streams that ended; call outside the codec's callbacks.
  void Cleanup();
  // Ends each stream that moved no byte either way for the listener's stream_idle_timeout: 408
  // "stream timeout" when its response has not started, else a reset (Envoy's rule).
  void CheckIdleStreams(absl::Time now);
  size_t active_streams() const { return streams_.size(); }

 private:
  class ActiveStream;
  class Mirror;
  friend class ActiveStream;
  friend class Mirror;
  void Finished(ActiveStream* stream);
  void StartMirror(const Cluster& cluster, const Route& route, const RequestHead& head);
  void MirrorDone(Mirror* mirror);

  HttpContext& context_;
  const ListenerConfig& listener_config_;
  const std::string& listener_;
  const DownstreamInfo downstream_;
  const Settings settings_;
  std::list<std::unique_ptr<ActiveStream>> streams_;
  std::vector<std::unique_ptr<ActiveStream>> finished_;
  std::list<std::unique_ptr<Mirror>> mirrors_;
  std::vector<std::unique_ptr<Mirror>> finished_mirrors_;
};

}  // namespace mesh::dataplane
