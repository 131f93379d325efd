#pragma once

#include <string>

namespace mesh::demo {

struct GrpcEchoOptions {
  std::string listen;  // IP:PORT
  std::string name, version;
  int fail_code = 0;  // a gRPC status every call ends with instead (0: answer normally)
};

// Serves meshpilot.testing.v1.Echo over h2c until SIGTERM: Whoami and Say (unary), Repeat
// (server streaming), Collect (client streaming) and Chat (bidirectional), each answering with
// the app's name and version. Returns the process exit code.
int ServeGrpcEcho(const GrpcEchoOptions& options);

}  // namespace mesh::demo
