# Build every step into build/NN_name, and test them.
#
#   make                  build every step (build/01_socket ... )
#   make 03_bind          build one step
#   make test             build, then run the tests (pytest) against build/, in
#                         parallel if pytest-xdist is installed (TEST_JOBS workers)
#   make test PYTEST_ARGS=-n0        the same, one test at a time
#   make test SANITIZE=1  the same with AddressSanitizer + UBSan, in build/sanitize/
#   make test CC=clang    the same built by clang, in build/clang/
#   make CC=musl-gcc      every step built against musl (not step 9), in build/musl/
#   make test-musl        that build, then steps 1-5's tests (and 6-8's echo tests) on it
#   make test-kernel      the kernel-sensitive tests under Debian 12's Linux 6.1
#                         (user-mode-linux: no KVM, no root)
#   make test-user        the suite as a learner runs it: a normal user, a normal PATH
#                         (as root: as TEST_USER, default nobody, in a copy it owns)
#   make valgrind         steps 5-8's echo tests, each server under valgrind (memcheck)
#   make analyze          cppcheck, clang-tidy (.clang-tidy) and gcc -fanalyzer: any
#                         finding fails it
#   make test LAB_HOSTS=ipv4-only   the whole suite under the lab's other /etc/hosts
#                         (default: stock, localhost = ::1 then 127.0.0.1; tests/lib/lab.py)
#   make workspace STEP=03_bind   your own copy of a step, with TODOs: workspace/03_bind/
#   make check STEP=03_bind       build yours (build/workspace/03_bind/) and run that step's tests
#   make check STEP=07_poll ONLY=idle   only the checks whose names say "idle"
#   make hint STEP=07_poll        the detailed hints of the step's TODOs
#   make tour             build, then a guided tour: every step run live in the two-host lab
#   make lab              build, then a shell in that lab: `other CMD` runs CMD on the other
#                         computer, `packets` captures, `lab reset` starts afresh, Ctrl-D leaves
#   make transcripts      rerun the lessons' "Observe it" transcripts and rewrite their outputs,
#                         and redraw the diagrams whose packets changed (tests/tools/diagrams.py)
#   make check-transcripts   rerun them and show a diff where a lesson drifted (make test does too)
#   make bench            the echo servers of steps 5-9 and a libuv one side by side, a few
#                         minutes (tests/bench/bench_echo.py): build/bench/results.md and .png
#   make bench BENCH_OUTPUT=docs/bench   the same, rewriting the committed report
#   make bench-quick      the same, small and short (under a minute), into build/bench-quick/;
#                         fails on a wrong echo or an error, never on speed
#   make fuzz             the libFuzzer targets of tests/fuzz/ (clang), FUZZ_SECONDS each
#                         (default 120), after replaying the inputs that once failed
#   make fuzz-ci          the same, 30 s each
#   make clean
#
# CC and CFLAGS can be overridden as usual; the warnings stay errors.

CC      ?= cc
CFLAGS  ?= -O2 -g
# Required whatever CPPFLAGS and CFLAGS say: C11 plus POSIX, every warning an
# error.  Yours come after the course's, so a -I or -D of yours adds to them.
COURSE_CPPFLAGS = -D_POSIX_C_SOURCE=200809L -Icommon
COURSE_CFLAGS   = -std=c11 -Wall -Wextra -Werror
# Each object's header dependencies go in a .d file beside it (-include below):
# editing common/log.h or steps/09_io_uring/echo.h rebuilds what includes it.
DEPFLAGS = -MMD -MP

# Each compiler builds into a folder of its own, so that one build never
# overwrites another's objects: build/ for cc (gcc on Debian), build/clang for
# CC=clang (or clang-14 ...), build/musl for CC=musl-gcc.  SANITIZE=1 adds
# sanitize/ to it (build/sanitize, build/clang/sanitize).
COMPILER := $(notdir $(firstword $(CC)))
BUILD = build
ifneq ($(filter clang%,$(COMPILER)),)
BUILD = build/clang
else ifneq ($(filter musl-%,$(COMPILER)),)
BUILD = build/musl
endif
ifeq ($(SANITIZE),1)
BUILD := $(BUILD)/sanitize
COURSE_CFLAGS += -fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer
LDFLAGS += -fsanitize=address,undefined
endif

COMPILE = $(CC) $(COURSE_CPPFLAGS) $(CPPFLAGS) $(COURSE_CFLAGS) $(CFLAGS)
LINK    = $(CC) $(COURSE_CFLAGS) $(CFLAGS) $(LDFLAGS)

STEPS      := $(notdir $(patsubst %/,%,$(sort $(wildcard steps/[0-9][0-9]_*/))))
COMMON_SRC := $(wildcard common/*.c)
COMMON_OBJ := $(COMMON_SRC:%.c=$(BUILD)/obj/%.o)
COMMON_HDR := $(wildcard common/*.h)
STEP_OBJ   := $(patsubst %.c,$(BUILD)/obj/%.o,$(wildcard steps/*/*.c))

# A step that needs more says so in its own build.mk, first: a library
# (LDLIBS), or that it cannot be built here (SKIPPED_STEPS: step 9 without
# liburing).
.DEFAULT_GOAL := all
SKIPPED_STEPS :=
include $(wildcard steps/*/build.mk)
STEP_BINS  := $(filter-out $(SKIPPED_STEPS:%=$(BUILD)/%),$(STEPS:%=$(BUILD)/%))

.PHONY: all test clean workspace check hint test-helpers $(STEPS)
all: $(STEPS:%=$(BUILD)/%)

$(STEPS): %: $(BUILD)/%

# Every .c file of common/ and of a step becomes an object under $(BUILD)/obj/.
$(BUILD)/obj/%.o: %.c
	@mkdir -p $(@D)
	$(COMPILE) $(DEPFLAGS) -c -o $@ $<

$(BUILD)/libcommon.a: $(COMMON_OBJ)
	$(AR) rcs $@ $^

# No object is deleted as "intermediate": a rebuild starts from them.
.SECONDARY:

# A step is every .c file in its folder, linked with what it uses of common/.
# (A function, because a % in a static pattern's prerequisites is the stem.)
step_objects = $(patsubst %.c,$(BUILD)/obj/%.o,$(wildcard steps/$(1)/*.c))
.SECONDEXPANSION:
$(STEP_BINS): $(BUILD)/%: $$(call step_objects,$$*) $(BUILD)/libcommon.a
	$(LINK) -o $@ $(filter %.o,$^) $(BUILD)/libcommon.a $(LDLIBS)

# Your own version of a step: workspace/NN_name/*.c, built the same way into
# build/workspace/NN_name/NN_name (tests/tools/workspace.py runs make for it).
# Its headers: the folder's own, then the reference step's (a header the
# learner has no TODO in stays in steps/NN_name/ until they copy it in),
# then common/'s; named here, not in .d files: those would name the sources
# of whichever workspace was built before.
WORKSPACE ?= workspace
$(BUILD)/workspace/%.o: $(WORKSPACE)/%.c $(COMMON_HDR) $$(wildcard $(WORKSPACE)/$$(*D)/*.h) \
                        $$(wildcard steps/$$(*D)/*.h)
	@mkdir -p $(@D)
	$(CC) -Isteps/$(*D) $(COURSE_CPPFLAGS) $(CPPFLAGS) $(COURSE_CFLAGS) $(CFLAGS) -c -o $@ $<

workspace_objects = $(patsubst $(WORKSPACE)/%.c,$(BUILD)/workspace/%.o,$(wildcard $(WORKSPACE)/$(1)/*.c))
$(BUILD)/workspace/%: $$(call workspace_objects,$$(*D)) $(BUILD)/libcommon.a
	$(LINK) -o $@ $(filter %.o,$^) $(BUILD)/libcommon.a $(LDLIBS)

-include $(COMMON_OBJ:.o=.d) $(STEP_OBJ:.o=.d)

# -- the tests' own programs ---------------------------------------------------
# What the tests run besides the steps, built here and found by pytest in
# HELPERS (--helpers-dir):
#   server_create_check   tcp_server_create() and listeners_open() with their
#                         system calls wrapped, so that the tests make each
#                         one fail in turn (tests/c/server_create_check.c);
#   flood                 bursts of connects, each then reset (tests/c/flood.c);
#   fail_accept.so, clock_jump.so   for LD_PRELOAD: an accept() that fails as
#                         told, a wall clock that jumps (tests/c/);
#   variants/STEP-WHAT/STEP   a lesson's exercise done: the step's own files with
#                         tests/variants/STEP-WHAT.patch applied, built as the
#                         step is (lesson 7: always POLLOUT; lesson 8: EPOLLET).
# The helpers of the tests are built without the sanitizers (a flooder under
# ASan floods less; an LD_PRELOAD library must not load a second ASan runtime);
# server_create_check and the variants are the course's code, built like it.
HELPERS        = $(BUILD)/tests
HELPER_CFLAGS  = -std=c11 -Wall -Wextra -Werror $(CFLAGS)
VARIANTS      := $(basename $(notdir $(wildcard tests/variants/*.patch)))
variant_step   = $(firstword $(subst -, ,$(1)))
VARIANT_BINS   = $(foreach v,$(VARIANTS),$(HELPERS)/variants/$(v)/$(call variant_step,$(v)))
TEST_HELPERS   = $(HELPERS)/server_create_check $(HELPERS)/flood $(HELPERS)/fail_accept.so \
                 $(HELPERS)/clock_jump.so $(VARIANT_BINS)

test-helpers: $(TEST_HELPERS)

$(HELPERS)/server_create_check: tests/c/server_create_check.c common/tcp_server.c common/listeners.c $(COMMON_HDR) $(BUILD)/libcommon.a
	@mkdir -p $(@D)
	$(COMPILE) -o $@ $(filter %.c,$^) $(LDFLAGS) \
	    -Wl,--wrap=socket,--wrap=setsockopt,--wrap=bind,--wrap=listen $(BUILD)/libcommon.a

$(HELPERS)/flood: tests/c/flood.c
	@mkdir -p $(@D)
	$(CC) $(HELPER_CFLAGS) -o $@ $<

$(HELPERS)/fail_accept.so $(HELPERS)/clock_jump.so: $(HELPERS)/%.so: tests/c/%.c
	@mkdir -p $(@D)
	$(CC) $(HELPER_CFLAGS) -shared -fPIC -o $@ $< -ldl

# patch (Debian: patch) applies an exercise's change to a copy of the step;
# where the step has changed under it, it fails saying so.
define VARIANT_RULE
$(HELPERS)/variants/$(1)/$(2): tests/variants/$(1).patch $(wildcard steps/$(2)/*) $(COMMON_HDR) $(BUILD)/libcommon.a
	@rm -rf $$(@D) && mkdir -p $$(@D)/src && cp steps/$(2)/* $$(@D)/src/
	@patch --quiet --force -d $$(@D)/src -p1 < $$< >/dev/null || { \
	    echo "$$<: no longer applies to steps/$(2)/: redo the exercise there and rewrite the patch (CONTRIBUTING.md)"; \
	    exit 1; }
	$(COMPILE) -o $$@ $$(@D)/src/*.c $(LDFLAGS) $(BUILD)/libcommon.a $(LDLIBS)
endef
$(foreach v,$(VARIANTS),$(eval $(call VARIANT_RULE,$(v),$(call variant_step,$(v)))))

# pytest comes from the system's packages (Debian: python3-pytest); the first
# python3 on PATH may be another interpreter that cannot see it.
PYTHON ?= $(shell for p in python3 /usr/bin/python3 /usr/local/bin/python3 python; do \
            "$$p" -c 'import pytest' >/dev/null 2>&1 && { command -v "$$p"; break; }; done)

# pytest-xdist (Debian: python3-pytest-xdist) runs the tests in TEST_JOBS
# parallel workers, each in a lab of its own (tests/conftest.py).  The tests
# mostly wait (timeouts, frame pacing, the servers' replies), so there are
# more workers than cores: 4 per core (on 2 cores, 4, 6, 8 and 10 workers
# took 80, 64, 57 and 61 s).  Without pytest-xdist they run one at a time, as
# they do with PYTEST_ARGS=-n0.
TEST_JOBS ?= $(shell echo $$(( 4 * $$(nproc 2>/dev/null || echo 2) )))

# The lab's /etc/hosts for a whole run (tests/lib/lab.py reads it from the
# environment): stock or ipv4-only.
LAB_HOSTS ?= stock
export LAB_HOSTS

# What make test runs (a file or folder list), and a command to run every
# built program under (make valgrind sets both).
TESTS ?= tests
RUN_UNDER ?=
ifneq ($(RUN_UNDER),)
RUN_UNDER_OPTION = --run-under='$(RUN_UNDER)'
endif

test: all test-helpers
	@if [ -z "$(PYTHON)" ]; then \
	    echo "make test: no Python with pytest found; install it: sudo apt-get install python3-pytest (Debian/Ubuntu), or: python3 -m pip install pytest"; \
	    exit 1; fi
	@if $(PYTHON) -c 'import xdist' >/dev/null 2>&1; then \
	    parallel="-n $(TEST_JOBS) --dist loadgroup"; \
	else \
	    echo "make test: pytest-xdist is not installed, so the tests run one at a time" \
	         "(Debian/Ubuntu: sudo apt-get install python3-pytest-xdist)"; \
	fi; \
	set -x; $(PYTHON) -m pytest -p no:cacheprovider $(TESTS) --steps-dir=$(BUILD) --helpers-dir=$(HELPERS) \
	    $(RUN_UNDER_OPTION) $$parallel $(PYTEST_ARGS)

# The suite as a learner runs it: as a normal user (TEST_USER; as root, in a
# copy of the course that user owns), with a normal Debian user's PATH (no
# /usr/sbin) and a clean environment (tests/tools/as-learner).  CI runs its
# gcc build so, as the user "learner".
TEST_USER ?= nobody
.PHONY: test-user
test-user:
	tests/tools/as-learner $(TEST_USER) make test LAB_HOSTS=$(LAB_HOSTS) \
	    $(if $(PYTEST_ARGS),PYTEST_ARGS='$(PYTEST_ARGS)')

# The tests whose outcome depends on the kernel, under Debian 12's own (Linux
# 6.1), run as a program by user-mode-linux (Debian: user-mode-linux; no KVM,
# no root needed): tests/tools/run-uml boots it on this computer's own files
# (read-only, a tmpfs on top) and runs make test there.  What 6.1 lacks,
# tests/lib/kernel.py knows (EXPECTED_MISSING), and the tests check what it
# does instead; about 4 times slower than here.
KERNEL_TESTS = tests/course/test_lab.py tests/steps/test_01_socket.py tests/steps/test_02_reuseaddr.py \
               tests/steps/test_03_bind.py tests/steps/test_04_listen.py tests/steps/test_05_accept.py \
               tests/steps/test_09_io_uring.py tests/servers/test_every_address.py \
               tests/course/test_packets.py tests/course/test_transcripts.py \
               tests/course/test_diagrams.py tests/course/test_lab_shell.py
KERNEL_TIMEOUT ?= 1800
.PHONY: test-kernel
test-kernel: all test-helpers
	tests/tools/run-uml --timeout $(KERNEL_TIMEOUT) $(if $(CI),--env CI=$(CI)) \
	    --env LAB_HOSTS=$(LAB_HOSTS) -- \
	    make --no-print-directory test TESTS="$(KERNEL_TESTS)" TEST_JOBS=2 \
	    $(if $(PYTEST_ARGS),PYTEST_ARGS='$(PYTEST_ARGS)')

# musl, the other C library of Linux (Alpine; Debian: musl-tools): steps 1-5's
# tests, and tcp_server_create()'s, against build/musl.  Step 9 is not built
# (no liburing for musl: build.mk says so).  Steps 6-8 are: their bad input,
# every-address (musl's own getaddrinfo) and echo tests run too (10 s more);
# their frame-rate, wake-up and 10,000-connection tests do not.
MUSL_TESTS = tests/steps/test_01_socket.py tests/steps/test_02_reuseaddr.py tests/steps/test_03_bind.py \
             tests/steps/test_04_listen.py tests/steps/test_05_accept.py tests/servers/test_bad_input.py \
             tests/servers/test_tcp_server_create.py tests/servers/test_every_address.py \
             tests/servers/test_echo_servers.py
.PHONY: test-musl
test-musl:
	$(MAKE) --no-print-directory test CC=musl-gcc TESTS="$(MUSL_TESTS)" \
	    PYTEST_ARGS="-k 'not 09_io_uring' $(PYTEST_ARGS)"

# Every server of steps 5-8 under valgrind's memcheck (Debian: valgrind), in
# their echo tests: an invalid read or write, a jump on uninitialised memory,
# or memory lost at exit (definite or indirect leaks; still reachable is fine:
# the kernel frees it) makes the server exit 99, and the test fail.  A program
# runs 20-50 times slower under valgrind; these tests still hold (step 8's
# 10,000 connections take 8 s).  Left out, by name:
#   out_of_descriptors  starts the server under a limit of 12 descriptors,
#       and valgrind keeps 12 of the limit for itself: the server cannot start;
#   09_io_uring  under valgrind 3.19, SIGTERM and SIGINT did not end step 9
#       (8 of its 17 echo tests failed so).
# Not run: test_06_frame_loop and test_07_answers, which measure frame rates
# and wake-ups, not memory (their servers' code runs in the echo tests).
# A -k of your own in PYTEST_ARGS replaces the one here (pytest keeps the last).
VALGRIND = valgrind -q --tool=memcheck --leak-check=full --show-leak-kinds=definite,indirect \
           --errors-for-leak-kinds=definite,indirect --error-exitcode=99
VALGRIND_TESTS = tests/steps/test_05_accept.py tests/servers/test_echo_servers.py tests/steps/test_08_epoll.py
VALGRIND_LEFT_OUT = out_of_descriptors or 09_io_uring
.PHONY: valgrind
valgrind:
	$(MAKE) --no-print-directory test TESTS="$(VALGRIND_TESTS)" RUN_UNDER="$(VALGRIND)" \
	    PYTEST_ARGS="-k 'not ($(VALGRIND_LEFT_OUT))' $(PYTEST_ARGS)"

# Static analysis; every finding fails it, and CI runs it.  Three tools, as
# each finds what the others miss: cppcheck; clang-tidy with the checks that
# .clang-tidy lists (and says why); gcc's -fanalyzer, on a build of every
# program into build/analyzer.  A finding that is wrong at one place is
# suppressed there, saying why: NOLINT(check) for clang-tidy, a
# "cppcheck-suppress ID" comment on the line before for cppcheck.  Needs
# cppcheck, clang-tidy and gcc; liburing-dev and libuv1-dev for the headers
# of step 9 and of tests/bench/uv_echo.c.  It runs its parts in parallel.
ANALYZED := $(sort $(wildcard common/*.c steps/*/*.c tests/c/*.c tests/bench/*.c tests/fuzz/*.c))
ANALYZE_JOBS ?= $(shell nproc 2>/dev/null || echo 2)
.PHONY: analyze analyze-cppcheck analyze-clang-tidy analyze-gcc
analyze:
	@$(MAKE) --no-print-directory -k -j$(ANALYZE_JOBS) --output-sync=target \
	    analyze-cppcheck analyze-clang-tidy analyze-gcc

# cppcheck knows no compiler's macros: __linux__ is what steps 8 and 9 check
# (#error elsewhere).  With a -D it checks that one configuration.
analyze-cppcheck:
	cppcheck --enable=warning,style,performance,portability --library=posix --std=c11 \
	    -D__linux__ -D_POSIX_C_SOURCE=200809L -Icommon --inline-suppr --quiet \
	    --error-exitcode=1 --template=gcc $(ANALYZED)

# One clang-tidy per file (a stamp in build/analyze/ once it passes), so that
# they run in parallel and a rerun checks only what changed.  Its summary
# ("1243 warnings generated", the system headers') is shown only on failure.
analyze-clang-tidy: $(ANALYZED:%.c=build/analyze/tidy/%.ok)

build/analyze/tidy/%.ok: %.c .clang-tidy $(wildcard common/*.h steps/*/*.h)
	@mkdir -p $(@D)
	clang-tidy --quiet $< -- -std=c11 -D_POSIX_C_SOURCE=200809L -Icommon \
	    $(addprefix -I,$(dir $(FUZZ_STEP_SRC_$(notdir $*)))) 2>$@.log \
	    || { cat $@.log; exit 1; }
	@touch $@

analyze-gcc:
	$(MAKE) --no-print-directory CC=gcc SANITIZE= BUILD=build/analyzer \
	    CFLAGS="-O2 -g -fanalyzer" all test-helpers \
	    build/analyzer/bench/loadgen build/analyzer/bench/uv_echo

# Only the Lua side: the Lua twins (docs/lua/) in the tests marked lua_twin,
# what only Lua shows (tests/lua/, compared with the C steps in $(BUILD)) and
# what LuaSocket does, measured; make test runs it too.  Needs lua5.4 and
# lua-socket.
.PHONY: test-lua
test-lua: all test-helpers
	$(or $(PYTHON),python3) -m pytest -p no:cacheprovider tests -m lua \
	    --steps-dir=$(BUILD) --helpers-dir=$(HELPERS) $(PYTEST_ARGS)

workspace:
	@python3 -m tests.tools.workspace new $(STEP)

hint:
	@python3 -m tests.tools.workspace hint $(STEP)

check: all test-helpers
	@$(or $(PYTHON),python3) -m tests.tools.workspace check --build=$(BUILD) $(if $(ONLY),--only="$(ONLY)") $(STEP)

# The tour and the transcripts need python3 only (no pytest), and the lab's
# tools: ip, unshare, nsenter, nc, ss, strace (Debian: iproute2 util-linux
# netcat-openbsd strace procps).
.PHONY: tour transcripts check-transcripts lab
tour: all
	python3 -m tests.tools.tour --steps-dir=$(BUILD)

# A shell of your own in the lab (tests/tools/lab_shell.py): type the lessons'
# transcripts, or your own variations; Ctrl-D leaves and ends all it started.
lab: all
	@python3 -m tests.tools.lab_shell --build-dir=$(BUILD)

transcripts: all
	python3 -m tests.tools.transcripts --update
	python3 -m tests.tools.diagrams --update

check-transcripts: all
	python3 -m tests.tools.transcripts --check --build-dir=$(BUILD)
	python3 -m tests.tools.diagrams --check --build-dir=$(BUILD)

# The echo servers of steps 5-9 side by side, with a libuv echo server as
# the yardstick (tests/bench/bench_echo.py): numbers, never pass/fail on speed.
# tests/bench/loadgen.c is the load generator; tests/bench/uv_echo.c needs
# libuv (Debian: libuv1-dev) and is left out, with one line, without it.
#   make bench-quick BENCH_ARGS="--servers 07_poll,08_epoll --workloads 100,100+10000idle"
# BENCH_ARGS narrows either run.  Each writes its report into build/; the
# committed one, docs/bench/results.md, only when asked:
#   make bench BENCH_OUTPUT=docs/bench
# The plot needs matplotlib (Debian: python3-matplotlib), found like pytest
# above; without it the report has the tables only.
.PHONY: bench bench-quick bench-tools
BENCH_PYTHON ?= $(shell for p in python3 /usr/bin/python3 /usr/local/bin/python3; do \
                  "$$p" -c 'import matplotlib' >/dev/null 2>&1 && { command -v "$$p"; break; }; done)

$(BUILD)/bench/loadgen: tests/bench/loadgen.c
	@mkdir -p $(@D)
	$(COMPILE) -o $@ $< $(LDFLAGS)

$(BUILD)/bench/uv_echo: tests/bench/uv_echo.c
	@mkdir -p $(@D)
	$(COMPILE) -o $@ $< $(LDFLAGS) -luv

bench-tools: $(BUILD)/bench/loadgen
	@if printf '#include <uv.h>\n' | $(CC) -E -x c - >/dev/null 2>&1; then \
	    $(MAKE) --no-print-directory $(BUILD)/bench/uv_echo; \
	else \
	    echo "make bench: no libuv headers (Debian: sudo apt-get install libuv1-dev): the libuv baseline is left out"; \
	fi

# The full run (several minutes): BENCH_OUTPUT/results.md and results.png.
# BENCH_NOTE="..." (in the environment or here) adds a paragraph to the report.
BENCH_OUTPUT ?= $(BUILD)/bench
bench: all bench-tools
	$(or $(BENCH_PYTHON),python3) -m tests.bench.bench_echo --steps-dir=$(BUILD) \
	    --output=$(BENCH_OUTPUT)/results.md --plot=$(BENCH_OUTPUT)/results.png \
	    --invoked-as="make bench$(if $(BENCH_ARGS), BENCH_ARGS='$(BENCH_ARGS)')$(if $(filter command line,$(origin BENCH_OUTPUT)), BENCH_OUTPUT=$(BENCH_OUTPUT))" $(BENCH_ARGS)

# Under a minute: every server, small loads, one repetition; fails on a wrong
# echo or any error, never on speed.  Its report goes to build/, not docs/.
bench-quick: all bench-tools
	$(or $(BENCH_PYTHON),python3) -m tests.bench.bench_echo --quick --steps-dir=$(BUILD) \
	    --output=$(BUILD)/bench-quick/results.md --plot=$(BUILD)/bench-quick/results.png \
	    --invoked-as="make bench-quick$(if $(BENCH_ARGS), BENCH_ARGS='$(BENCH_ARGS)')" $(BENCH_ARGS)

# Fuzzing with clang's libFuzzer (Debian: clang): tests/fuzz/fuzz_*.c, each
# built with every common/ file (and a step's files it names) into build/fuzz/,
# run by tests/fuzz/run.
# COURSE_CFLAGS keep the warnings errors; the sanitizers make a memory error
# or undefined behaviour a crash the fuzzer reports.
FUZZ_CC      ?= clang
FUZZ_SECONDS ?= 120
FUZZ_CFLAGS   = -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all -g -O1
FUZZ_TARGETS := $(basename $(notdir $(wildcard tests/fuzz/fuzz_*.c)))

.PHONY: fuzz fuzz-ci fuzz-tools
# A target that fuzzes a step's own code names its files here.
FUZZ_STEP_SRC_fuzz_connection := steps/08_epoll/connections.c
build/fuzz/fuzz_connection: steps/08_epoll/connections.c steps/08_epoll/connections.h
build/fuzz/%: tests/fuzz/%.c $(COMMON_SRC) $(COMMON_HDR)
	@mkdir -p $(@D)
	$(FUZZ_CC) $(COURSE_CPPFLAGS) $(CPPFLAGS) $(COURSE_CFLAGS) $(FUZZ_CFLAGS) \
	    $(addprefix -I,$(dir $(FUZZ_STEP_SRC_$*))) -o $@ $< $(COMMON_SRC) $(FUZZ_STEP_SRC_$*)

# One line, and a failure, where clang or its libFuzzer is missing: a fuzz
# run that did not happen must not pass.
fuzz-tools:
	@printf 'int LLVMFuzzerTestOneInput(const char *d, long n) { (void)d; (void)n; return 0; }\n' \
	    | $(FUZZ_CC) -fsanitize=fuzzer -x c -o /dev/null - >/dev/null 2>&1 \
	    || { echo "make fuzz: $(FUZZ_CC) with libFuzzer not found (Debian: sudo apt-get install clang)"; exit 1; }
	@$(MAKE) --no-print-directory $(FUZZ_TARGETS:%=build/fuzz/%)

fuzz: fuzz-tools
	tests/fuzz/run build/fuzz $(FUZZ_SECONDS) $(FUZZ_TARGETS)

fuzz-ci:
	@$(MAKE) --no-print-directory fuzz FUZZ_SECONDS=30

clean:
	rm -rf build
