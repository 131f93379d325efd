#pragma once

#include <boost/asio/awaitable.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <utility>

#include "dataplane/server/worker.h"

namespace mesh::dataplane {

// Proxies one accepted TCP connection to a host of the listener's cluster (weighted when the
// listener has several): bytes flow both ways, a half-close is passed on, and the connection is
// closed after the listener's idle timeout without traffic. Never throws out of the coroutine.
boost::asio::awaitable<void> ServeTcp(Worker& worker, boost::asio::ip::tcp::socket socket,
                                      ListenerRuntimePtr listener, ListenerConfigPtr config);

}  // namespace mesh::dataplane
