"""What the running kernel can do, found by probing it inside the lab.

Learners run the suite on the kernels their distributions ship: Debian 12
(6.1), Ubuntu 22.04 (5.15) and 24.04 (6.8), RHEL 9 (5.14), WSL2 (5.15,
6.6).  A few of the lessons' claims hold only from some kernel on.  Each
such feature is named here, with what a test sees without it, and the lab
probes for it once: by trying it, never by reading the version string
(distributions backport fixes, and a sysctl can be hidden or turned off).

A test that checks what a kernel without the feature does instead takes
the `kernel_has` fixture (test_04_listen.py: the somaxconn cap, the SYN
queue, the SYN resends; step 9's io_uring, through the registry); one with
nothing to check instead is marked

    @pytest.mark.kernel("somaxconn_sysctl")

and a transcript says it in its marker, <!-- transcript needs=NAME -->:
where the kernel lacks it, they are skipped with a line naming the
feature.  Under CI (conftest.py) a skip is a failure unless its feature is
in EXPECTED_MISSING for the kernel the run is on.
"""

import ctypes
import os
import platform
import shutil
import socket
import subprocess
import sys
import time

from tests.lib.lab import LOCAL_V4, NOBODY, bare_syn

# name -> what a test needs, in words (since which kernel, which setting)
FEATURES = {
    "somaxconn_sysctl": "net.core.somaxconn visible and settable in the lab's network "
                        "namespace (Linux 6.3+ in a namespace owned by a user namespace; "
                        "before, the kernel hides net.core there)",
    "syn_linear_timeouts": "net.ipv4.tcp_syn_linear_timeouts, the first SYN resends 1 s apart "
                           "(Linux 6.5+; before, the interval doubles from the start)",
    "syn_queue_backlog_plus_one": "a SYN queue that holds BACKLOG + 1 half-open connections "
                                  "(Linux 6.13, and the stable kernels it went back to; "
                                  "before, BACKLOG)",
    "io_uring": "io_uring with what step 9 uses (Linux 6.1+), not turned off by "
                "kernel.io_uring_disabled (6.6+) or a seccomp filter (Docker's default)",
}

# The kernel series CI runs the suite on, and the features expected missing
# there (everything else must be present, or its tests' skips fail CI).
EXPECTED_MISSING = {
    "6.1": {"somaxconn_sysctl", "syn_linear_timeouts"},   # Debian 12, under user-mode-linux
}


def series():
    """'6.1' for 6.1.0-28-amd64 or 6.1.176: the kernel's major.minor."""
    return ".".join(platform.release().split(".")[:2])


def expected_missing():
    return EXPECTED_MISSING.get(series(), set())


# -- the probes (each runs in the lab's own network namespace) ----------------

def _somaxconn_sysctl():
    path = "/proc/sys/net/core/somaxconn"
    return os.path.exists(path) and os.access(path, os.W_OK)


def _syn_linear_timeouts():
    return os.path.exists("/proc/sys/net/ipv4/tcp_syn_linear_timeouts")


def _syn_queue_backlog_plus_one(lab):
    """Whether a listener with BACKLOG 1 keeps 2 half-open connections (BACKLOG
    + 1) or 1, SYN cookies off: measured in a network namespace of its own
    (unshare --net), which ends with the probe, so that nothing it leaves
    half-open meets a test (on 6.1 a test's counters then moved by more than
    its own SYNs).  None where it cannot tell."""
    if not lab.private or not shutil.which("unshare"):
        return None
    from tests import ROOT
    result = subprocess.run(["unshare", "--net", "--", sys.executable, "-m", "tests.lib.kernel",
                             "syn_queue"], cwd=ROOT, capture_output=True, text=True, timeout=30)
    answer = result.stdout.strip()
    return {"2": True, "1": False}.get(answer)


def _count_half_open():
    """The probe itself, in its own network namespace: 198.51.100.1 on one end
    of a veth pair whose other end has no address, so the SYN-ACKs to NOBODY
    go out and nobody answers; three SYNs from NOBODY at a listener with
    BACKLOG 1; prints how many stay half-open."""
    for argv in (["ip", "link", "set", "lo", "up"],
                 ["ip", "link", "add", "probe0", "type", "veth", "peer", "name", "probe1"],
                 ["ip", "addr", "add", f"{LOCAL_V4}/24", "dev", "probe0"],
                 ["ip", "link", "set", "probe0", "up"],
                 ["ip", "link", "set", "probe1", "up"]):
        subprocess.run(argv, check=True, capture_output=True, timeout=10)
    with open("/proc/sys/net/ipv4/tcp_syncookies", "w") as f:
        f.write("0")       # a full queue drops the SYN instead of answering with a cookie
    with socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW) as sender, \
            socket.socket() as listener:
        listener.bind((LOCAL_V4, 0))
        listener.listen(1)
        port = listener.getsockname()[1]
        for number in range(3):
            sender.sendto(bare_syn(NOBODY, LOCAL_V4, 41000 + number, port), (LOCAL_V4, 0))
        deadline = time.monotonic() + 2
        half_open = 0
        while time.monotonic() < deadline:
            out = subprocess.run(["ss", "-tnH", "state", "syn-recv", f"sport = :{port}"],
                                 capture_output=True, text=True, timeout=5).stdout
            half_open = len(out.splitlines())
            if half_open >= 2:
                break
            time.sleep(0.01)     # polling with a deadline
    print(half_open)


# io_uring_setup(2): 425 on every architecture since 5.1.
SYS_IO_URING_SETUP = 425
IORING_SETUP_SINGLE_ISSUER = 1 << 12     # Linux 6.0
IORING_SETUP_DEFER_TASKRUN = 1 << 13     # Linux 6.1, the last thing step 9 needs


def _io_uring():
    """io_uring_setup() works with the flags step 9 sets up its ring with:
    DEFER_TASKRUN came with Linux 6.1, after the multishot receive (6.0) and
    the buffer ring (5.19) the step also uses."""
    libc = ctypes.CDLL(None, use_errno=True)
    params = ctypes.create_string_buffer(120)           # struct io_uring_params
    flags = IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN
    params[8:12] = flags.to_bytes(4, "little")          # after sq_entries, cq_entries
    fd = libc.syscall(SYS_IO_URING_SETUP, 4, params)
    if fd < 0:
        return False
    os.close(fd)
    return True


PROBES = {
    "somaxconn_sysctl": lambda lab: _somaxconn_sysctl(),
    "syn_linear_timeouts": lambda lab: _syn_linear_timeouts(),
    "syn_queue_backlog_plus_one": _syn_queue_backlog_plus_one,
    "io_uring": lambda lab: _io_uring(),
}


def probe(lab, names=FEATURES):
    """{feature: True/False, or None where the lab cannot tell}, for the
    kernel this lab runs on (asked in the lab's own network namespace)."""
    if not lab.private:
        return {name: None for name in names}
    return {name: PROBES[name](lab) for name in names}


def lacks(feature):
    """The skip reason of a test or transcript that needs `feature`."""
    return f"kernel lacks {feature}: {FEATURES[feature]}"


if __name__ == "__main__":       # python3 -m tests.lib.kernel syn_queue (the probe above)
    if sys.argv[1:] == ["syn_queue"]:
        _count_half_open()
