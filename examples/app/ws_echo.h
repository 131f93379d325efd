#pragma once

#include <string>

namespace mesh::demo {

// Serves WebSocket echo (Boost.Beast) on `listen` (IP:PORT) until killed: every message comes
// back prefixed with "NAME VERSION: ". Plain HTTP requests get 200 "NAME VERSION" (so /ping
// works for health checks). Returns the process exit code.
int ServeWebSocketEcho(const std::string& listen, const std::string& name,
                       const std::string& version);

}  // namespace mesh::demo
