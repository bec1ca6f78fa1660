#pragma once
// Waits for something to listen at host:port, by plain TCP connects (closed again at once), retried
// until `timeout` has passed. A rank that is not the store's server calls this before it connects
// c10d's TCPStore: LibTorch 2.11's TCPStore client corrupts the heap now and then when its own
// connect times out (the process then aborts at exit instead of ending with meddiff's one-line error),
// so a rendezvous that never comes up is found here, without a TCPStore.
#include <chrono>
#include <string>

namespace meddiff {

// Empty when a connect succeeded within `timeout`; else why the last attempt failed.
std::string wait_for_listener(const std::string& host, int port, std::chrono::milliseconds timeout);

}  // namespace meddiff
