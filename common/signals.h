#pragma once

#include <signal.h>

namespace mesh::signals {

// Blocks SIGINT and SIGTERM in the calling thread and every thread it starts afterwards (call it
// before starting any), and ignores SIGPIPE, so that only WaitForStopSignal receives the stop
// signals.
sigset_t BlockStopSignals();

// Waits for SIGINT or SIGTERM; returns which.
int WaitForStopSignal(const sigset_t& signals);

}  // namespace mesh::signals
