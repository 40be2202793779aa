# twopc: the two commands of the README, plus developer targets.
#   make test       install missing Debian packages, build, run every test
#   make run        install, build, start a local cluster in the foreground
#   make test-asan  the tests under AddressSanitizer + UndefinedBehaviorSanitizer
JOBS ?= 2
BUILD ?= build
BUILD_TYPE ?= RelWithDebInfo
CMAKE_EXTRA ?=
CTEST_FLAGS ?= --output-on-failure --timeout 600

.PHONY: all deps configure build test run test-asan clean

all: build

deps:
	@bash deploy/install-deps.sh

$(BUILD)/CMakeCache.txt: | deps
	cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=$(BUILD_TYPE) $(CMAKE_EXTRA)

configure: deps $(BUILD)/CMakeCache.txt

build: configure
	cmake --build $(BUILD) -j$(JOBS)

test: build
	cd $(BUILD) && ctest $(CTEST_FLAGS) -j$(JOBS)

run: build
	@TWOPC_BIN=$(BUILD)/bin bash deploy/run-local.sh

test-asan:
	$(MAKE) test BUILD=build-asan BUILD_TYPE=Debug \
	  CMAKE_EXTRA="-DTWOPC_SANITIZE=address,undefined"

clean:
	rm -rf build build-asan
