#include "tests/testing/tcp_proxy.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <memory>

#include "absl/strings/str_cat.h"

namespace twopc::testing {
namespace {

sockaddr_in Loopback(int port) {
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  address.sin_port = htons(static_cast<uint16_t>(port));
  return address;
}

absl::Status Errno(const char* what) {
  return absl::InternalError(absl::StrCat(what, ": ", std::strerror(errno)));
}

// Writes all of `data`; false on error (the peer is gone).
bool WriteAll(int fd, const char* data, size_t size) {
  while (size > 0) {
    const ssize_t n = send(fd, data, size, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    data += n;
    size -= static_cast<size_t>(n);
  }
  return true;
}

}  // namespace

absl::StatusOr<std::unique_ptr<TcpProxy>> TcpProxy::Start(int target_port) {
  const int listen_fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (listen_fd < 0) return Errno("socket");
  sockaddr_in address = Loopback(0);
  socklen_t length = sizeof(address);
  if (bind(listen_fd, reinterpret_cast<sockaddr*>(&address), length) != 0 ||
      listen(listen_fd, 64) != 0 ||
      getsockname(listen_fd, reinterpret_cast<sockaddr*>(&address), &length) !=
          0) {
    const absl::Status status = Errno("listening on a loopback port");
    close(listen_fd);
    return status;
  }
  int wake[2];
  if (pipe2(wake, O_CLOEXEC) != 0) {
    const absl::Status status = Errno("pipe2");
    close(listen_fd);
    return status;
  }
  return std::unique_ptr<TcpProxy>(new TcpProxy(
      listen_fd, ntohs(address.sin_port), target_port, wake[0], wake[1]));
}

TcpProxy::TcpProxy(int listen_fd, int port, int target_port, int wake_read_fd,
                   int wake_write_fd)
    : listen_fd_(listen_fd),
      port_(port),
      wake_read_fd_(wake_read_fd),
      wake_write_fd_(wake_write_fd),
      target_port_(target_port),
      thread_([this] { Run(); }) {}

TcpProxy::~TcpProxy() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
  }
  const char byte = 0;
  (void)!write(wake_write_fd_, &byte, 1);
  thread_.join();
  absl::MutexLock lock(&mu_);
  for (const Connection& connection : connections_) {
    if (connection.client_fd < 0) continue;
    close(connection.client_fd);
    close(connection.target_fd);
  }
  close(listen_fd_);
  close(wake_read_fd_);
  close(wake_write_fd_);
}

std::string TcpProxy::address() const {
  return absl::StrCat("127.0.0.1:", port_);
}

void TcpProxy::BlackHoleOpenConnections() {
  {
    absl::MutexLock lock(&mu_);
    for (Connection& connection : connections_) connection.black_holed = true;
  }
  const char byte = 0;
  (void)!write(wake_write_fd_, &byte, 1);
}

int TcpProxy::connections_accepted() const {
  absl::MutexLock lock(&mu_);
  return accepted_;
}

void TcpProxy::SetTargetPort(int port) {
  absl::MutexLock lock(&mu_);
  target_port_ = port;
}

void TcpProxy::Accept() {
  const int client_fd = accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
  if (client_fd < 0) return;
  int target_port;
  {
    absl::MutexLock lock(&mu_);
    ++accepted_;
    target_port = target_port_;
  }
  const int target_fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  const sockaddr_in target = Loopback(target_port);
  if (target_port == 0 || target_fd < 0 ||
      connect(target_fd, reinterpret_cast<const sockaddr*>(&target),
              sizeof(target)) != 0) {
    // The target refuses: so does the proxy.
    if (target_fd >= 0) close(target_fd);
    close(client_fd);
    return;
  }
  const int one = 1;
  setsockopt(client_fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  setsockopt(target_fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  absl::MutexLock lock(&mu_);
  connections_.push_back({client_fd, target_fd, false});
}

bool TcpProxy::Forward(int from, int to) {
  char buffer[64 << 10];
  const ssize_t n = recv(from, buffer, sizeof(buffer), 0);
  if (n < 0 && (errno == EINTR || errno == EAGAIN)) return true;
  if (n <= 0) return false;
  return WriteAll(to, buffer, static_cast<size_t>(n));
}

void TcpProxy::Run() {
  while (true) {
    // Poll the wake pipe, the listening socket and both sides of every
    // forwarded connection. Only this thread changes `connections_`'s
    // size, so the indices stay valid without the lock.
    std::vector<pollfd> fds = {{wake_read_fd_, POLLIN, 0},
                               {listen_fd_, POLLIN, 0}};
    std::vector<size_t> polled;  // index into connections_ per pair of fds
    {
      absl::MutexLock lock(&mu_);
      if (stopping_) return;
      for (size_t i = 0; i < connections_.size(); ++i) {
        const Connection& connection = connections_[i];
        if (connection.black_holed || connection.client_fd < 0) continue;
        fds.push_back({connection.client_fd, POLLIN, 0});
        fds.push_back({connection.target_fd, POLLIN, 0});
        polled.push_back(i);
      }
    }
    if (poll(fds.data(), fds.size(), -1) < 0) {
      if (errno == EINTR) continue;
      return;
    }
    if (fds[0].revents != 0) {
      char drain[64];
      (void)!read(wake_read_fd_, drain, sizeof(drain));
    }
    if (fds[1].revents & POLLIN) Accept();
    absl::MutexLock lock(&mu_);
    for (size_t k = 0; k < polled.size(); ++k) {
      Connection& connection = connections_[polled[k]];
      if (connection.black_holed) continue;
      const pollfd& client = fds[2 + 2 * k];
      const pollfd& target = fds[3 + 2 * k];
      bool open = true;
      if (client.revents != 0) {
        open = Forward(connection.client_fd, connection.target_fd);
      }
      if (open && target.revents != 0) {
        open = Forward(connection.target_fd, connection.client_fd);
      }
      if (!open) {
        close(connection.client_fd);
        close(connection.target_fd);
        connection.client_fd = connection.target_fd = -1;
      }
    }
  }
}

}  // namespace twopc::testing
