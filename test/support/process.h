#pragma once

#include <sys/types.h>

#include <chrono>
#include <functional>
#include <string>
#include <vector>

namespace mesh::testing {

// A child process started by a test. Its stdout and stderr go to `log_path`. The destructor
// kills it (SIGKILL) if it is still running, so a test never leaves its processes behind.
class Process {
 public:
  // `env` entries ("NAME=value") are added to the inherited environment.
  Process(std::vector<std::string> argv, std::string log_path, std::vector<std::string> env = {});
  ~Process();
  Process(const Process&) = delete;
  Process& operator=(const Process&) = delete;

  pid_t pid() const { return pid_; }
  bool running();
  // Sends `signal` and waits for the exit; returns the wait status.
  int Stop(int signal);
  std::string Log() const;

 private:
  pid_t pid_ = -1;
  std::string log_path_;
  bool reaped_ = false;
  int status_ = 0;
};

// The output and exit code of a command run to completion.
struct CommandResult {
  int exit_code = -1;
  std::string out;  // stdout and stderr together
};
// Runs argv with `stdin_text` on its standard input and waits for it.
CommandResult RunCommand(const std::vector<std::string>& argv, const std::string& stdin_text = "",
                         const std::vector<std::string>& env = {});

// A TCP port on 127.0.0.1 that was free a moment ago, never the same one twice in a test process.
int FreePort();

// Polls `check` until it returns true or `timeout` passes.
bool WaitFor(const std::function<bool()>& check, std::chrono::milliseconds timeout);

}  // namespace mesh::testing
