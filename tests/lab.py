"""The test lab: a private network with two computers, made without root.

Every test, the tour and the transcript capture run inside it:

    this computer  "local"   lo: 127.0.0.1, ::1
                             lab0: 198.51.100.1/24, 2001:db8::1/64
                                    |  veth pair: a real network link
    other computer "remote"  lab1: 198.51.100.2/24, 2001:db8::2/64

enter() moves the *calling process* into a new user namespace (where it is
root) with a new network namespace, so nothing it does can reach the
machine's own network, and no port it binds can collide with the machine's.
A child process holds a second network namespace: the other computer.  A
socket made while our thread visits that namespace (setns) stays there after
we return, so a test connects "from the other computer" with an ordinary
Python socket.  All addresses come from the documentation ranges
(198.51.100.0/24, 2001:db8::/32): nothing here can leave the machine.

enter() must run while the process has one thread (the kernel refuses
unshare(CLONE_NEWUSER) otherwise): pytest's conftest and the tour call it
first thing.  Where a namespace cannot be made, Lab says why in `reason`.
"""

import contextlib
import ctypes
import os
import shutil
import socket
import subprocess

LOCAL_V4 = "198.51.100.1"
REMOTE_V4 = "198.51.100.2"
LOCAL_V6 = "2001:db8::1"
REMOTE_V6 = "2001:db8::2"

CLONE_NEWUSER = 0x10000000
CLONE_NEWNET = 0x40000000

_libc = ctypes.CDLL(None, use_errno=True)


def _os_error(call):
    errnum = ctypes.get_errno()
    return OSError(errnum, f"{call}: {os.strerror(errnum)}")


def _run(argv):
    result = subprocess.run(argv, capture_output=True, text=True, timeout=10)
    if result.returncode != 0:
        raise OSError(f"{' '.join(argv)}: {result.stderr.strip()}")


class Lab:
    """The two-computer network, or the reason there is none."""

    def __init__(self):
        self.private = False   # are we in our own network namespace?
        self.remote = False    # is the other computer there?
        self.reason = ""       # why not, in words a learner can act on
        self._remote_keeper = None
        self._remote_ns = None
        self._home_ns = None

    # -- making it ---------------------------------------------------------

    def _enter_private_network(self):
        uid, gid = os.getuid(), os.getgid()
        if _libc.unshare(CLONE_NEWUSER | CLONE_NEWNET) == 0:
            with open("/proc/self/setgroups", "w") as f:
                f.write("deny")
            with open("/proc/self/uid_map", "w") as f:
                f.write(f"0 {uid} 1")
            with open("/proc/self/gid_map", "w") as f:
                f.write(f"0 {gid} 1")
        elif _libc.unshare(CLONE_NEWNET) != 0:   # root where user namespaces are off
            raise _os_error("unshare(CLONE_NEWUSER|CLONE_NEWNET)")
        self.private = True
        _run(["ip", "link", "set", "lo", "up"])

    def _add_remote_computer(self):
        # The other computer is a network namespace kept alive by a child;
        # it dies with us (it exits when its stdin, our pipe, closes).
        self._remote_keeper = subprocess.Popen(
            ["unshare", "--net", "--", "sh", "-c", "echo ready; exec cat >/dev/null"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        if self._remote_keeper.stdout.readline() != b"ready\n":
            raise OSError("unshare --net: could not make the second network namespace")
        pid = str(self._remote_keeper.pid)
        remote = ["nsenter", "-t", pid, "-n"]
        _run(["ip", "link", "add", "lab0", "type", "veth", "peer", "name", "lab1",
              "netns", pid])
        _run(["ip", "addr", "add", f"{LOCAL_V4}/24", "dev", "lab0"])
        _run(["ip", "-6", "addr", "add", f"{LOCAL_V6}/64", "dev", "lab0", "nodad"])
        _run(["ip", "link", "set", "lab0", "up"])
        _run(remote + ["ip", "link", "set", "lo", "up"])
        _run(remote + ["ip", "addr", "add", f"{REMOTE_V4}/24", "dev", "lab1"])
        _run(remote + ["ip", "-6", "addr", "add", f"{REMOTE_V6}/64", "dev", "lab1", "nodad"])
        _run(remote + ["ip", "link", "set", "lab1", "up"])
        self._remote_ns = os.open(f"/proc/{pid}/ns/net", os.O_RDONLY | os.O_CLOEXEC)
        self._home_ns = os.open("/proc/self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
        self.remote = True

    def enter(self):
        missing = [tool for tool in ("ip", "unshare", "nsenter") if not shutil.which(tool)]
        if missing:
            self.reason = (f"the lab needs {', '.join(missing)} (Debian: apt-get install "
                           "iproute2 util-linux)")
            return self
        try:
            self._enter_private_network()
        except OSError as error:
            self.reason = (f"no private network namespace ({error}); enable unprivileged user "
                           "namespaces (sysctl kernel.unprivileged_userns_clone=1, or on Ubuntu "
                           "kernel.apparmor_restrict_unprivileged_userns=0) or run as root")
            return self
        try:
            self._add_remote_computer()
        except (OSError, subprocess.SubprocessError) as error:
            self.reason = f"no second host: {error} (the kernel needs veth support)"
        return self

    def close(self):
        if self._remote_keeper is not None:
            self._remote_keeper.stdin.close()
            self._remote_keeper.wait(timeout=5)
        for fd in (self._remote_ns, self._home_ns):
            if fd is not None:
                os.close(fd)

    # -- using it ----------------------------------------------------------

    @contextlib.contextmanager
    def _on_remote(self):
        if not self.remote:
            raise RuntimeError(f"the lab has no second host: {self.reason}")
        if _libc.setns(self._remote_ns, CLONE_NEWNET) != 0:
            raise _os_error("setns(remote)")
        try:
            yield
        finally:
            if _libc.setns(self._home_ns, CLONE_NEWNET) != 0:
                raise _os_error("setns(home)")

    def socket(self, family=socket.AF_INET, where="local"):
        """A TCP socket on this computer, or on the other one (where="remote")."""
        if where == "local":
            return socket.socket(family, socket.SOCK_STREAM)
        with self._on_remote():
            return socket.socket(family, socket.SOCK_STREAM)

    def remote_command(self, argv):
        """argv, to run on the other computer (for subprocess)."""
        if not self.remote:
            raise RuntimeError(f"the lab has no second host: {self.reason}")
        return ["nsenter", "-t", str(self._remote_keeper.pid), "-n", "--"] + list(argv)

    def describe(self):
        if self.remote:
            return (f"lab: private network; this computer {LOCAL_V4} / {LOCAL_V6}, "
                    f"the other computer {REMOTE_V4} / {REMOTE_V6}")
        if self.private:
            return f"lab: private network, loopback only ({self.reason})"
        return f"lab: none, the machine's own loopback ({self.reason})"


_the_lab = None


def enter():
    """Enter the lab once per process; later calls return the same Lab."""
    global _the_lab
    if _the_lab is None:
        _the_lab = Lab().enter()
    return _the_lab
