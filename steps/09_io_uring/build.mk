# steps/09_io_uring/build.mk -- what step 9 needs that the other steps do
# not (the Makefile includes every steps/*/build.mk).
#
# Step 9 talks to io_uring through liburing 2.2 or later, for its buffer
# ring calls (Debian, Ubuntu: liburing-dev; Fedora: liburing-devel).  Where
# the header or io_uring_register_buf_ring() is missing, make says so in one
# line and builds the other steps.  The note it leaves where the program
# would be, 09_io_uring.skipped, tells the tests why: they skip, saying so.

LIBURING ?= -luring

$(BUILD)/09_io_uring $(BUILD)/workspace/09_io_uring/09_io_uring: LDLIBS += $(LIBURING)

# \043 is '#', which would start a comment here.
LIBURING_FOUND := $(shell printf '\043include <liburing.h>\nint main(void) { return io_uring_register_buf_ring(0, 0, 0); }\n' \
                    | $(CC) -x c -o /dev/null - $(LIBURING) >/dev/null 2>&1 && echo yes)

ifneq ($(LIBURING_FOUND),yes)
ifeq ($(COMPILER),musl-gcc)
# musl-gcc sees musl's headers and libraries only, and Debian builds liburing for glibc.
LIBURING_MISSING = needs a liburing built for musl (Debian's liburing-dev is glibc's)
else
LIBURING_MISSING = needs liburing-dev (io_uring_register_buf_ring); Debian: sudo apt-get install liburing-dev
endif
$(BUILD)/09_io_uring $(BUILD)/workspace/09_io_uring/09_io_uring:
	@echo "09_io_uring: skipped, $(LIBURING_MISSING)"
	@mkdir -p $(@D) && echo "$(LIBURING_MISSING)" > $@.skipped
endif
