// TempDir: a fresh directory under $TMPDIR, removed with its contents when
// the object goes away.
#ifndef TWOPC_TESTS_TESTING_TEMP_DIR_H_
#define TWOPC_TESTS_TESTING_TEMP_DIR_H_

#include <string>

namespace twopc::testing {

class TempDir {
 public:
  TempDir();
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  const std::string& path() const { return path_; }
  // path() + "/" + name.
  std::string Sub(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

}  // namespace twopc::testing

#endif  // TWOPC_TESTS_TESTING_TEMP_DIR_H_
