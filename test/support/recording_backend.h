#pragma once

#include <atomic>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace mesh::testing {

// An HTTP/1.1 upstream for tests that must see exactly what a proxy sent: it parses every request
// on every keep-alive connection with Boost.Beast and records it ("METHOD TARGET host=HOST
// body=BYTES"), so a request smuggled inside another one's body shows up as a request of its own.
// By default it answers `200` with body "ok TARGET"; `script` may answer a target with raw bytes
// instead (interim responses, broken framing), written as given, optionally followed after
// `then_after` by more bytes nobody asked for. Listens on 127.0.0.1 on a free port; stops and
// joins its threads on destruction.
class RecordingBackend {
 public:
  struct Answer {
    std::string bytes;  // written as the response
    std::string then;   // written later on the same connection, unasked
    int then_after_ms = 0;
  };
  // Returns the raw answer for a target, or nullopt-like empty bytes for the default answer.
  using Script = std::function<Answer(const std::string& target)>;

  explicit RecordingBackend(Script script = nullptr);
  ~RecordingBackend();
  RecordingBackend(const RecordingBackend&) = delete;
  RecordingBackend& operator=(const RecordingBackend&) = delete;

  int port() const { return port_; }
  std::vector<std::string> Requests() const;
  // Requests whose target contains `text`.
  int Count(const std::string& text) const;

 private:
  void Serve(int fd);
  Script script_;
  int listen_fd_ = -1;
  int port_ = 0;
  std::atomic<bool> stopping_{false};
  std::thread acceptor_;
  mutable std::mutex mu_;
  std::vector<std::string> requests_;
  std::vector<int> connections_;
  std::vector<std::thread> threads_;
};

}  // namespace mesh::testing
