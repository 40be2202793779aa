#include "common/unparseable_request.h"

#include <grpcpp/server_context.h>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "common/grpc_status.h"
#include "google/protobuf/descriptor.h"

namespace twopc {
namespace {

using grpc::experimental::InterceptionHookPoints;
using grpc::experimental::InterceptorBatchMethods;
using grpc::experimental::ServerRpcInfo;

// One call of a synchronous unary or server-streaming method.
class UnparseableRequestInterceptor final
    : public grpc::experimental::Interceptor {
 public:
  explicit UnparseableRequestInterceptor(const char* method)
      : method_(method) {}

  void Intercept(InterceptorBatchMethods* methods) override {
    // The request is received once, before the handler runs; gRPC shows
    // it as null when it did not deserialise.
    if (methods->QueryInterceptionHookPoint(
            InterceptionHookPoints::POST_RECV_MESSAGE) &&
        methods->GetRecvMessage() == nullptr) {
      unparseable_ = true;
    }
    if (unparseable_ && methods->QueryInterceptionHookPoint(
                            InterceptionHookPoints::PRE_SEND_STATUS)) {
      // Only gRPC's own answer, INTERNAL. (RESOURCE_EXHAUSTED, sent when
      // the server has no thread for the call, stays.)
      if (methods->GetSendStatus().error_code() == grpc::StatusCode::INTERNAL) {
        methods->ModifySendStatus(ToGrpcStatus(absl::InvalidArgumentError(
            UnparseableRequestMessage(method_ == nullptr ? "" : method_))));
      }
    }
    methods->Proceed();
  }

 private:
  const char* const method_;
  bool unparseable_ = false;
};

class UnparseableRequestInterceptorFactory final
    : public grpc::experimental::ServerInterceptorFactoryInterface {
 public:
  grpc::experimental::Interceptor* CreateServerInterceptor(
      ServerRpcInfo* info) override {
    // A streaming request is read by the handler, which sees a message that
    // does not parse as the end of the stream; nothing to do here.
    if (info->type() != ServerRpcInfo::Type::UNARY &&
        info->type() != ServerRpcInfo::Type::SERVER_STREAMING) {
      return nullptr;
    }
    // An interceptor costs every call it is created for (see the header):
    // calls that parse their own requests (the hot path) and callback calls
    // get none.
    auto* context = dynamic_cast<grpc::ServerContext*>(info->server_context());
    if (context == nullptr ||
        dynamic_cast<SelfParsingContext*>(context) != nullptr) {
      return nullptr;
    }
    return new UnparseableRequestInterceptor(info->method());
  }
};

}  // namespace

std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface>
MakeUnparseableRequestInterceptorFactory() {
  return std::make_unique<UnparseableRequestInterceptorFactory>();
}

std::string UnparseableRequestMessage(const std::string& method) {
  // "/package.Service/Method" -> "package.Service.Method".
  std::string full_name = method.empty() ? method : method.substr(1);
  const size_t slash = full_name.rfind('/');
  if (slash != std::string::npos) full_name[slash] = '.';
  const google::protobuf::MethodDescriptor* descriptor =
      google::protobuf::DescriptorPool::generated_pool()->FindMethodByName(
          full_name);
  const std::string type =
      descriptor == nullptr
          ? "request message"
          : std::string(descriptor->input_type()->full_name());
  return absl::StrCat("request to ", method, " is not a valid ", type,
                      " (its bytes do not parse as one): send a serialised ",
                      type, " as defined in twopc's .proto files");
}

}  // namespace twopc
