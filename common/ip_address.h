#pragma once

#include <arpa/inet.h>

#include <string>

namespace mesh {

// Whether `s` is an IPv4 or IPv6 address in text form (inet_pton's grammar; no host names).
inline bool IsIpAddress(const std::string& s) {
  in6_addr any;
  return inet_pton(AF_INET, s.c_str(), &any) == 1 || inet_pton(AF_INET6, s.c_str(), &any) == 1;
}

}  // namespace mesh
