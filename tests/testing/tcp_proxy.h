// TcpProxy: forwards the TCP connections made to a loopback port of its own
// to a target port, and can black-hole the connections open so far: their
// bytes are no longer forwarded either way and their sockets stay open, as
// when the peer's host loses power or the network drops every packet (no
// TCP reset, nothing more arrives). Connections accepted afterwards are
// forwarded normally. For tests of dead-connection detection (keepalive)
// without root or iptables.
//
// Thread-safety: all methods may be called from any thread; the forwarding
// runs on a thread of its own.
#ifndef TWOPC_TESTS_TESTING_TCP_PROXY_H_
#define TWOPC_TESTS_TESTING_TCP_PROXY_H_

#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"

namespace twopc::testing {

class TcpProxy {
 public:
  // Listens on 127.0.0.1 (a free port) and forwards to 127.0.0.1:target_port
  // (0: refuses every connection until SetTargetPort).
  static absl::StatusOr<std::unique_ptr<TcpProxy>> Start(int target_port);

  // Closes every connection and joins the forwarding thread.
  ~TcpProxy();

  TcpProxy(const TcpProxy&) = delete;
  TcpProxy& operator=(const TcpProxy&) = delete;

  // "127.0.0.1:<port>", to dial instead of the target.
  std::string address() const;

  // From now on nothing more is forwarded on the connections accepted so
  // far (in either direction); they stay open until the proxy is destroyed.
  void BlackHoleOpenConnections() ABSL_LOCKS_EXCLUDED(mu_);

  // Later connections go to 127.0.0.1:port; 0 refuses them (as a target
  // that is down).
  void SetTargetPort(int port) ABSL_LOCKS_EXCLUDED(mu_);

  // Connections accepted so far (those the target refused included).
  int connections_accepted() const ABSL_LOCKS_EXCLUDED(mu_);

 private:
  struct Connection {
    int client_fd = -1;
    int target_fd = -1;
    bool black_holed = false;
  };

  TcpProxy(int listen_fd, int port, int target_port, int wake_read_fd,
           int wake_write_fd);

  void Run();
  void Accept() ABSL_LOCKS_EXCLUDED(mu_);
  // Forwards what `from` has; false when the connection is over.
  static bool Forward(int from, int to);

  const int listen_fd_;
  const int port_;
  // A byte written here wakes the thread (a black-holing or the end).
  const int wake_read_fd_;
  const int wake_write_fd_;

  mutable absl::Mutex mu_;
  std::vector<Connection> connections_ ABSL_GUARDED_BY(mu_);
  int target_port_ ABSL_GUARDED_BY(mu_);
  int accepted_ ABSL_GUARDED_BY(mu_) = 0;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::thread thread_;  // last: starts once everything above is ready
};

}  // namespace twopc::testing

#endif  // TWOPC_TESTS_TESTING_TCP_PROXY_H_
