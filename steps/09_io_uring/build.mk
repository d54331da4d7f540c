# steps/09_io_uring/build.mk -- what step 9 needs that the other steps do
# not (the Makefile includes every steps/*/build.mk before its rules).
#
# Step 9 talks to io_uring through liburing 2.3 or later: its multishot
# receive (io_uring_prep_recv_multishot), buffer rings and cancel by file
# descriptor (Debian 12, Ubuntu 23.04 and later: liburing-dev; Fedora:
# liburing-devel).  Where the header or one of those calls is missing, make
# says so in one line and builds the other steps.  The note it leaves where
# the program would be, 09_io_uring.skipped, tells the tests why: they skip,
# saying so.

LIBURING ?= -luring

$(BUILD)/09_io_uring $(BUILD)/workspace/09_io_uring/09_io_uring: LDLIBS += $(LIBURING)

# Whether this compiler finds a liburing with every call step 9 makes that
# came late: asked once per build folder (build/liburing-*.mk keeps the
# answer), again once liburing.h appears in /usr/include, never for make
# clean.  \043 is '#', which would start a comment here.
LIBURING_HEADER := $(wildcard /usr/include/liburing.h /usr/local/include/liburing.h)
LIBURING_PROBE  := $(BUILD)/liburing-$(if $(LIBURING_HEADER),header,no-header).mk
LIBURING_CALLS   = io_uring_prep_recv_multishot(0, 0, 0, 0, 0); io_uring_prep_cancel_fd(0, 0, 0); \
                   io_uring_prep_multishot_accept(0, 0, 0, 0, 0); \
                   io_uring_buf_ring_init(0); return io_uring_register_buf_ring(0, 0, 0);

ifneq ($(MAKECMDGOALS),clean)
-include $(LIBURING_PROBE)
endif

$(LIBURING_PROBE): steps/09_io_uring/build.mk
	@mkdir -p $(@D)
	@if printf '\043include <liburing.h>\nint main(void) { $(LIBURING_CALLS) }\n' \
	        | $(CC) -x c -o /dev/null - $(LIBURING) >/dev/null 2>&1; \
	then echo "LIBURING_FOUND = yes"; else echo "LIBURING_FOUND = no"; fi > $@

ifeq ($(LIBURING_FOUND),no)
ifeq ($(COMPILER),musl-gcc)
# musl-gcc sees musl's headers and libraries only, and Debian builds liburing for glibc.
LIBURING_MISSING = needs a liburing built for musl (Debian's liburing-dev is glibc's)
else
LIBURING_MISSING = needs liburing-dev 2.3 or later (io_uring_prep_recv_multishot); Debian: sudo apt-get install liburing-dev
endif
SKIPPED_STEPS += 09_io_uring
$(BUILD)/09_io_uring $(BUILD)/workspace/09_io_uring/09_io_uring:
	@echo "09_io_uring: skipped, $(LIBURING_MISSING)"
	@mkdir -p $(@D) && echo "$(LIBURING_MISSING)" > $@.skipped
endif
