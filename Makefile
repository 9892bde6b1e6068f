# Switchyard build entry points. `make` builds the release binary build/switchyard.
#   make            release build into build/
#   make debug      debug build into build/debug/
#   make asan       ASan+UBSan build into build/asan/
#   make fuzz       libFuzzer harnesses (clang) into build/fuzz/
#   make tsan       ThreadSanitizer build and threaded unit tests into build/tsan/
#   make test       the whole test suite (scripts/test.sh)
#   make demo       the main job (scripts/demo.sh)
#   make format     clang-format every source file
JOBS ?= $(shell nproc 2>/dev/null || echo 2)

.PHONY: all release debug asan tsan fuzz test demo format clean

all: release

release:
	cmake -S . -B build -DCMAKE_BUILD_TYPE=Release -DCMAKE_C_FLAGS_RELEASE="-O2 -g -DNDEBUG" >/dev/null
	cmake --build build -j$(JOBS)

debug:
	cmake -S . -B build/debug -DCMAKE_BUILD_TYPE=Debug >/dev/null
	cmake --build build/debug -j$(JOBS)

asan:
	cmake -S . -B build/asan -DCMAKE_BUILD_TYPE=Debug -DCMAKE_C_FLAGS_DEBUG="-O1 -g" -DSY_SANITIZE=ON >/dev/null
	cmake --build build/asan -j$(JOBS)

fuzz:
	CC=clang cmake -S . -B build/fuzz -DCMAKE_BUILD_TYPE=Debug -DCMAKE_C_FLAGS_DEBUG="-O1 -g" -DSY_SANITIZE=ON -DSY_FUZZ=ON >/dev/null
	cmake --build build/fuzz -j$(JOBS)

test:
	bash scripts/test.sh

demo:
	bash scripts/demo.sh

format:
	clang-format -i $$(git ls-files '*.c' '*.h')

clean:
	rm -rf build

# ThreadSanitizer build (engine core, scheduler, publisher threads); not part of scripts/test.sh.
# ZMQ is not instrumented: tests/tsan.supp silences its internals.
tsan:
	cmake -S . -B build/tsan -DCMAKE_BUILD_TYPE=Debug -DCMAKE_C_FLAGS_DEBUG="-O1 -g -fsanitize=thread" -DCMAKE_EXE_LINKER_FLAGS="-fsanitize=thread" >/dev/null
	cmake --build build/tsan -j$(JOBS)
	cd build/tsan && TSAN_OPTIONS="suppressions=$(CURDIR)/tests/tsan.supp halt_on_error=1" ctest -L unit -R 'engine_core|sched|ev|metrics|kv_xfer' --output-on-failure
