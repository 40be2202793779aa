# twopc: the two commands of the README, plus developer targets.
#   make test       install missing Debian packages, build, run every test
#   make run        install, build, start a local cluster in the foreground
#   make test-asan  the tests under AddressSanitizer + UndefinedBehaviorSanitizer
#   make chaos      the long fault campaign: 200,000 simulated schedules, a
#                   10-minute process campaign and a long fuzz run
#   make bench      the README's benchmark table (medians of 3 runs)
JOBS ?= 2
BUILD ?= build
BUILD_TYPE ?= RelWithDebInfo
CMAKE_EXTRA ?=
CTEST_FLAGS ?= --output-on-failure --timeout 600

.PHONY: all deps configure build test run test-asan chaos bench clean

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

# Sanitized Debug code runs ~25x slower: the simulation runs a tenth of its
# default schedules, to stay well inside the per-test timeout.
test-asan:
	TWOPC_SIM_SEEDS=2500 $(MAKE) test BUILD=build-asan BUILD_TYPE=Debug \
	  CMAKE_EXTRA="-DTWOPC_SANITIZE=address,undefined"

# Long versions of the tests in tests/simulation, tests/chaos and tests/fuzz;
# each prints its figures. Override the sizes with the variables below.
SIM_SEEDS ?= 200000
CHAOS_SECONDS ?= 600
FUZZ_SECONDS ?= 60
chaos: build
	TWOPC_SIM_SEEDS=$(SIM_SEEDS) $(BUILD)/tests/simulation/simulation_test \
	  --gtest_filter=Simulation.RandomSchedules
	TWOPC_CHAOS_SECONDS=$(CHAOS_SECONDS) $(BUILD)/tests/chaos/chaos_campaign_test
	TWOPC_FUZZ_SECONDS=$(FUZZ_SECONDS) $(BUILD)/tests/fuzz/fuzz_test

bench: build
	bash tools/bench.sh $(BUILD)/bin

clean:
	rm -rf build build-asan
