# hetsched — plain Makefile.
#
#   make run     install missing packages, build, run the main job
#   make test    install missing packages, build, run the test suite
#   make asan    the whole suite under AddressSanitizer + UBSan
#   make valgrind  the CLI paths under valgrind (no leaks allowed)
#   make bench   build the benchmark programs (profile-guided with gcc;
#                PGO=0: plain)
#   make format  clang-format the tree; make format-check fails on what it
#                would change (CI runs it)

CC ?= cc
BUILD ?= build
PKGS := hwloc OpenCL libuv jansson
TEST_PKGS := cmocka

WARN := -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes \
	-Wmissing-prototypes -Wwrite-strings -Wundef -Wno-unused-parameter
OPT ?= -O2 -g
SAN ?=
CPPFLAGS += -D_GNU_SOURCE -DCL_TARGET_OPENCL_VERSION=300 \
	-Iinclude -Ischeduler -Idevices -Ipolicies
CFLAGS += -std=c11 $(OPT) $(WARN) $(SAN) -MMD -MP \
	$(shell pkg-config --cflags $(PKGS) 2>/dev/null)
LDLIBS += $(shell pkg-config --libs $(PKGS) 2>/dev/null) -lglpk -lhttp_parser -ldl -lpthread -lm
TEST_CFLAGS = $(shell pkg-config --cflags $(TEST_PKGS) 2>/dev/null)
TEST_LIBS = $(shell pkg-config --libs $(TEST_PKGS) 2>/dev/null)

LIB_DIRS := scheduler devices policies bench agent
LIB_SRCS := $(foreach d,$(LIB_DIRS),$(filter-out $(d)/bench-%.c,$(wildcard $(d)/*.c)))
LIB_OBJS := $(LIB_SRCS:%.c=$(BUILD)/%.o)
CLI_SRCS := $(wildcard cli/*.c)
CLI_OBJS := $(CLI_SRCS:%.c=$(BUILD)/%.o)
TEST_SRCS := $(wildcard tests/test_*.c)
TEST_BINS := $(TEST_SRCS:tests/%.c=$(BUILD)/tests/%)
TEST_SUPPORT := $(filter-out tests/test_%.c,$(wildcard tests/*.c))
TEST_SUPPORT_OBJS := $(TEST_SUPPORT:%.c=$(BUILD)/%.o)
BENCH_SRCS := $(wildcard bench/bench-*.c)
BENCH_BINS := $(BENCH_SRCS:bench/%.c=$(BUILD)/%)

LIB := $(BUILD)/libhetsched.a
CLI := $(BUILD)/hetsched

DEB_PKGS := libhwloc-dev libhwloc-plugins hwloc ocl-icd-opencl-dev \
	opencl-headers pocl-opencl-icd clinfo libuv1-dev libjansson-dev \
	libglpk-dev libcmocka-dev libhttp-parser-dev pkg-config
DEB_PKGS_OPT := valgrind clang-format

# The main job: the node's inventory, then every policy compared on the
# Azure conversation trace (report in build/report/).
REPORT_DIR ?= $(BUILD)/report

.PHONY: all run test check asan valgrind bench bench-plain format format-check clean deps

all: $(CLI) $(LIB)

$(LIB): $(LIB_OBJS)
	@mkdir -p $(@D)
	$(AR) rcs $@ $^

$(CLI): $(CLI_OBJS) $(LIB)
	$(CC) $(CFLAGS) -o $@ $(CLI_OBJS) $(LIB) $(LDLIBS)

$(BUILD)/%.o: %.c
	@mkdir -p $(@D)
	$(CC) $(CPPFLAGS) $(CFLAGS) -c -o $@ $<

# The program drives the benchmark harness (bench/) as well.
$(BUILD)/cli/%.o: cli/%.c
	@mkdir -p $(@D)
	$(CC) $(CPPFLAGS) -Ibench $(CFLAGS) -c -o $@ $<

$(BUILD)/tests/%.o: tests/%.c
	@mkdir -p $(@D)
	$(CC) $(CPPFLAGS) -Itests -Ibench $(CFLAGS) $(TEST_CFLAGS) -c -o $@ $<

$(BUILD)/tests/test_%: $(BUILD)/tests/test_%.o $(TEST_SUPPORT_OBJS) $(LIB)
	$(CC) $(CFLAGS) -o $@ $< $(TEST_SUPPORT_OBJS) $(LIB) $(TEST_LIBS) $(LDLIBS)

$(BUILD)/bench-%: $(BUILD)/bench/bench-%.o $(LIB)
	$(CC) $(CFLAGS) -o $@ $< $(LIB) $(LDLIBS)

deps:
	@sh tools/deps.sh $(DEB_PKGS) -- $(DEB_PKGS_OPT)

run: deps
	@$(MAKE) --no-print-directory all
	POCL_DEVICES="pthread basic" $(CLI) devices
	@echo
	$(CLI) bench --out $(REPORT_DIR)

# Tests run from the repository root so that data/ and tests/cases/ resolve.
check: $(CLI) $(TEST_BINS)
	@sh tools/run-tests.sh $(BUILD) $(TEST_BINS)

test: deps
	@$(MAKE) --no-print-directory check

# hwloc's PCI plugin leaks at every topology load (open-mpi/hwloc#636); its
# frames are only attributable with the slow unwinder.
asan: export ASAN_OPTIONS = fast_unwind_on_malloc=0:detect_leaks=1
asan: export LSAN_OPTIONS = suppressions=$(CURDIR)/tests/lsan.supp:print_suppressions=0
asan: export UBSAN_OPTIONS = print_stacktrace=1:halt_on_error=1
asan: deps
	@$(MAKE) --no-print-directory BUILD=build-asan OPT="-O1 -g" \
		SAN="-fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=all" \
		check

valgrind: deps
	@$(MAKE) --no-print-directory all
	@sh tools/valgrind.sh $(CLI)

# With gcc the benchmark programs are built with profile-guided
# optimization: an instrumented build in $(PGO_DIR) runs a training
# workload (tools/pgo-train.sh: not the runs the programs measure by
# default), then they are built again there from its profile and copied to
# $(BUILD). That build is also for this machine's processor (BENCH_ARCH):
# the programs run where they are built. PGO=0, or another compiler, builds
# them plain.
PGO ?= 1
BENCH_ARCH ?= -march=native
PGO_DIR := $(BUILD)/pgo
IS_CLANG := $(shell echo | $(CC) -dM -E - 2>/dev/null | grep -c __clang__)

bench-plain: $(BENCH_BINS)

ifeq ($(PGO)$(IS_CLANG),10)
bench:
	rm -rf $(PGO_DIR)
	@$(MAKE) --no-print-directory BUILD=$(PGO_DIR) PGO=0 \
		OPT="$(OPT) $(BENCH_ARCH) -fprofile-generate -fprofile-update=single" \
		bench-plain
	sh tools/pgo-train.sh $(PGO_DIR)
	find $(PGO_DIR) -name '*.o' -delete
	rm -f $(PGO_DIR)/libhetsched.a $(PGO_DIR)/bench-*
	@$(MAKE) --no-print-directory BUILD=$(PGO_DIR) PGO=0 \
		OPT="$(OPT) $(BENCH_ARCH) -fprofile-use -fprofile-partial-training -Wno-missing-profile" \
		bench-plain
	cp $(BENCH_BINS:$(BUILD)/%=$(PGO_DIR)/%) $(BUILD)/
	@echo "benchmark programs (profile-guided, $(BENCH_ARCH)): $(BENCH_BINS)"
else
bench: bench-plain
	@echo "benchmark programs: $(BENCH_BINS)"
endif

format:
	clang-format -i $$(git ls-files '*.c' '*.h')

format-check:
	clang-format --dry-run --Werror $$(git ls-files '*.c' '*.h')

clean:
	rm -rf build build-asan

-include $(LIB_OBJS:.o=.d) $(CLI_OBJS:.o=.d) $(TEST_SRCS:tests/%.c=$(BUILD)/tests/%.d)
