"""The test lab: a private network with two computers, made without root,
with its own name resolution and its own kernel settings.

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

The lab owns everything a test's outcome depends on, so that the suite
gives the same answers on a learner's laptop as here:

- Name resolution.  The process also gets a mount namespace of its own, in
  which the lab's own files are bind-mounted over /etc/hosts (one of
  HOSTS_FILES: "stock", the lines Debian, Fedora and Docker ship, under which
  glibc lists ::1 first for localhost; or "ipv4-only", 127.0.0.1 alone),
  /etc/nsswitch.conf (hosts: files, nothing else: no DNS, no
  systemd-resolved, no myhostname), /etc/gai.conf (empty: glibc's built-in
  address order, whatever the machine's says), /etc/host.conf and
  /etc/resolv.conf (a DNS server nobody runs, for musl: RESOLV_CONF), and
  nscd's socket is hidden, since nscd would answer from outside the namespace.
  LAB_HOSTS=ipv4-only in the environment picks the other hosts file for a
  whole run; use_hosts() switches it for one test.
- Temporary files: a folder of the run's own (TMPDIR), which the labs made
  inside it share, so nothing another user left in /tmp (a
  /tmp/pytest-of-root: in the lab everyone is uid 0) meets the tests; a
  transcript gets an empty /tmp of its own (private_tmp()).
- /etc/services: Debian's lines for the ports the lessons use (SERVICES).
- Kernel settings (SYSCTLS): a new network namespace starts from the kernel's
  defaults, and copies a few (tcp_rmem, tcp_wmem) from the machine's, which
  a learner's kernel or distribution may have changed.  The lab sets every
  one a test relies on, in both computers.

enter() must run while the process has one thread (the kernel refuses
unshare(CLONE_NEWUSER) otherwise): pytest's conftest and the tour call it
first thing.  Where a namespace cannot be made, Lab says why in `reason`.

Labs inside a lab.  A process already in a lab's user namespace (where it
is root) makes a lab of its own with new network and mount namespaces only,
which the kernel allows even to a process with threads, for the calling
thread: that is how each pytest-xdist worker, a child of the pytest process
that entered the lab first, gets its own network (ports, kernel settings,
counters, what ss lists), its own second computer and its own /etc/hosts,
so that workers never see each other's (tests/conftest.py).  The threads
and processes the calling thread starts afterwards are in the lab with it.
"""

import atexit
import contextlib
import ctypes
import os
import shutil
import socket
import struct
import subprocess
import tempfile
import time

LOCAL_V4 = "198.51.100.1"
REMOTE_V4 = "198.51.100.2"
LOCAL_V6 = "2001:db8::1"
REMOTE_V6 = "2001:db8::2"
# An address on the lab's network that no computer has: a SYN-ACK sent there
# goes out and is never answered (a handshake that never completes).
NOBODY = "198.51.100.3"

# The lab's /etc/hosts, by name.  "stock" is what a learner most likely has:
# Debian 12's lines for localhost (Fedora's and Docker's default say the same).
HOSTS_FILES = {
    "stock": ("127.0.0.1\tlocalhost\n"
              "::1\t\tlocalhost ip6-localhost ip6-loopback\n"),
    "ipv4-only": "127.0.0.1\tlocalhost\n",
}
# What getaddrinfo("localhost") lists under each, in glibc's order (its
# built-in RFC 3484 table ranks ::1 above any IPv4 address).
LOCALHOST = {
    "stock": ("::1", "127.0.0.1"),
    "ipv4-only": ("127.0.0.1",),
}
DEFAULT_HOSTS = "stock"

# Every kernel setting a test or a transcript relies on, with its default on
# a current kernel; written in both computers' network namespaces.
SYSCTLS = {
    # '::' without IPV6_V6ONLY takes IPv4 clients too (steps 1-5 on '::').
    "net/ipv6/bindv6only": "0",
    # IPv6 on, whatever the machine's "all"/"default" say (a new namespace
    # may inherit them: net.core.devconf_inherit_init_net).
    "net/ipv6/conf/all/disable_ipv6": "0",
    "net/ipv6/conf/default/disable_ipv6": "0",
    "net/ipv6/conf/lo/disable_ipv6": "0",
    # Where kernel-picked ports come from: the transcripts treat exactly
    # this range as "varies between runs".
    "net/ipv4/ip_local_port_range": "32768 60999",
    # Ports below 1024 need CAP_NET_BIND_SERVICE (Docker sets 0: none do).
    "net/ipv4/ip_unprivileged_port_start": "1024",
    # listen() caps BACKLOG at this (128 before Linux 5.4; lesson 4 shows 4096).
    # Every new network namespace starts at 4096 (5.4+), and before 6.3 the
    # kernel hides net.core from one owned by a user namespace, as the lab's
    # is: then the lab checks the effect instead (HIDDEN_SYSCTLS).
    "net/core/somaxconn": "4096",
    # A full accept queue drops SYNs (the client retries) instead of resetting.
    "net/ipv4/tcp_abort_on_overflow": "0",
    # SYN cookies once the SYN queue (bounded by BACKLOG, like the accept
    # queue) is full; with cookies off, tcp_max_syn_backlog keeps the last
    # quarter of it for clients known to have completed a handshake before
    # (lesson 4, tests/steps/test_04_listen.py::test_the_syn_queue).
    "net/ipv4/tcp_syncookies": "1",
    "net/ipv4/tcp_max_syn_backlog": "4096",
    # A SYN nobody answers is resent tcp_syn_retries + tcp_syn_linear_timeouts
    # = 10 times, the first five 1 s apart, then doubling (Linux 6.5+; before,
    # 6 times, doubling from the start): lesson 4 shows them.  A SYN-ACK whose
    # final ACK was dropped is resent 5 times.
    "net/ipv4/tcp_syn_retries": "6",
    "net/ipv4/tcp_syn_linear_timeouts": "4",
    "net/ipv4/tcp_synack_retries": "5",
    # The TCP options the packet transcripts show in every SYN.
    "net/ipv4/tcp_timestamps": "1",
    "net/ipv4/tcp_sack": "1",
    "net/ipv4/tcp_window_scaling": "1",
    # A closed connection's TIME-WAIT is kept (lesson 2), up to this many.
    "net/ipv4/tcp_max_tw_buckets": "65536",
    # ... and a reset arriving then does not end it (RFC 1337; the kernel's
    # default, 0, lets it): on a busy machine a packet of the closing
    # connection, delivered late, was answered with one, and the TIME-WAIT a
    # lesson shows was gone before `ss` could list it.
    "net/ipv4/tcp_rfc1337": "1",
    # Socket buffer sizes (min, default, max): what a slow reader lets pile
    # up in the kernel.  Copied from the machine's into a new namespace.
    "net/ipv4/tcp_rmem": "4096 131072 6291456",
    "net/ipv4/tcp_wmem": "4096 16384 4194304",
}

# Settings some kernels do not show in the lab's network namespace
# (tests/lib/kernel.py names the feature each one is): their absence is the
# kernel's, not a failure of the lab's.  somaxconn's value is still checked,
# by its effect: a listen() asking for more shows the cap in ss.
HIDDEN_SYSCTLS = {
    "net/core/somaxconn": "somaxconn_sysctl",
    "net/ipv4/tcp_syn_linear_timeouts": "syn_linear_timeouts",
}

# The files of the lab's name resolution: path -> what to put there.
NSSWITCH_HOSTS_LINE = "hosts:          files\n"
GAI_CONF = ("# The lab's /etc/gai.conf: no rules, so glibc's built-in table (RFC 3484)\n"
            "# orders the addresses, whatever this machine's gai.conf says.\n")
HOST_CONF = "multi on\n"
# musl has no nsswitch.conf: it asks DNS for every name /etc/hosts lacks (make
# test-musl).  Nothing answers on 127.0.0.1 in the lab's network, so such a
# lookup fails after one try of one second (EAI_AGAIN), where glibc's, told
# "hosts: files", fails at once (EAI_NONAME); glibc never reads this file then.
RESOLV_CONF = ("# The lab's /etc/resolv.conf: no DNS server (musl would otherwise wait\n"
               "# 5 s twice for the machine's, which the lab's network cannot reach).\n"
               "nameserver 127.0.0.1\noptions timeout:1 attempts:1\n")
NSCD_DIR = "/var/run/nscd"   # glibc asks the nscd listening in here first
# nc -v names a port from /etc/services ("[tcp/http-alt]").  Distributions'
# files differ (Fedora's names 7777, the lessons' port, "cbt"; Debian's does
# not), so the lab puts these lines of Debian's (netbase) in its place.
SERVICES = ("# The lab's /etc/services: lines of Debian's, so that nc -v names the\n"
            "# same ports whatever this machine's file says (tests/lib/lab.py).\n"
            "echo\t\t7/tcp\n"
            "ssh\t\t22/tcp\n"
            "http\t\t80/tcp\t\twww\n"
            "https\t\t443/tcp\n"
            "http-alt\t8080/tcp\twebcache\n")

CLONE_NEWNS = 0x00020000
CLONE_NEWUSER = 0x10000000
CLONE_NEWNET = 0x40000000
MS_BIND = 0x1000
MS_REC = 0x4000
MS_PRIVATE = 0x40000

_libc = ctypes.CDLL(None, use_errno=True)


def _os_error(call):
    errnum = ctypes.get_errno()
    return OSError(errnum, f"{call}: {os.strerror(errnum)}")


def map_root(uid, gid):
    """In a user namespace the calling process has just made: be its root,
    as uid and gid, who were outside it (user_namespaces(7); setgroups must
    be denied before an unprivileged process may write gid_map)."""
    with open("/proc/self/setgroups", "w") as f:
        f.write("deny")
    with open("/proc/self/uid_map", "w") as f:
        f.write(f"0 {uid} 1")
    with open("/proc/self/gid_map", "w") as f:
        f.write(f"0 {gid} 1")


def _run(argv):
    result = subprocess.run(argv, capture_output=True, text=True, timeout=10)
    if result.returncode != 0:
        raise OSError(f"{' '.join(argv)}: {result.stderr.strip()}")


def _mount(source, target, fstype=None, flags=0):
    if _libc.mount(source.encode(), target.encode(), fstype and fstype.encode(), flags,
                   None) != 0:
        raise _os_error(f"mount {source} on {target}")


def _write_sysctls(values, strict=True):
    """Write each /proc/sys/NAME in the calling thread's network namespace.
    Not strict: returns what could not be set (an older kernel may lack a
    setting, or not have it per namespace) instead of raising; a setting of
    HIDDEN_SYSCTLS that this kernel does not show is left to _check_hidden()."""
    failed = []
    for name, value in values.items():
        if name in HIDDEN_SYSCTLS and not os.path.exists(f"/proc/sys/{name}"):
            continue
        try:
            with open(f"/proc/sys/{name}", "w") as f:
                f.write(value)
        except OSError as error:
            failed.append(f"sysctl {name.replace('/', '.')}={value}: {error.strerror}")
    if failed and strict:
        raise OSError("; ".join(failed))
    return failed


def listen_cap():
    """The backlog the kernel gives a listen() that asks for a million, in
    the calling thread's network namespace: net.core.somaxconn, by its
    effect (ss -ltn shows it as the listener's Send-Q)."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1 << 20)
        port = listener.getsockname()[1]
        out = subprocess.run(["ss", "-ltnH", f"sport = :{port}"], capture_output=True,
                             text=True, timeout=10).stdout.split()
    return int(out[2]) if len(out) > 2 else None


def _check_hidden():
    """The HIDDEN_SYSCTLS this kernel does not show here: ([names], [what is
    wrong]).  somaxconn hidden is fine while its effect is the lab's value."""
    hidden = [name for name in HIDDEN_SYSCTLS if not os.path.exists(f"/proc/sys/{name}")]
    wrong = []
    if "net/core/somaxconn" in hidden:
        cap = listen_cap()
        if str(cap) != SYSCTLS["net/core/somaxconn"]:
            wrong.append(f"net.core.somaxconn is hidden in this network namespace, and "
                         f"listen() caps at {cap}, not {SYSCTLS['net/core/somaxconn']}")
    return hidden, wrong


def _remover(folder):
    """A function that removes `folder` (made by mkdtemp) and what it holds,
    even once private_tmp() has mounted an empty /tmp over the folder's
    path: it goes through a descriptor of the folder's parent, opened now."""
    parent = os.open(os.path.dirname(folder), os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)

    def remove():
        try:
            shutil.rmtree(os.path.basename(folder), dir_fd=parent, ignore_errors=True)
        finally:
            os.close(parent)
    return remove


def _nsswitch_conf():
    """The machine's nsswitch.conf with its hosts line replaced: passwd,
    group and the rest stay as they are (ps, ss and id look users up)."""
    try:
        with open("/etc/nsswitch.conf") as f:
            lines = [line for line in f if not line.lstrip().startswith("hosts:")]
    except FileNotFoundError:
        lines = []
    return "".join(lines) + NSSWITCH_HOSTS_LINE


def hosts_name():
    """The hosts file for this run: $LAB_HOSTS, or "stock"."""
    name = os.environ.get("LAB_HOSTS") or DEFAULT_HOSTS
    if name not in HOSTS_FILES:
        raise ValueError(f"LAB_HOSTS={name!r}: the lab's hosts files are "
                         f"{', '.join(sorted(HOSTS_FILES))}")
    return name


# Set in the environment once a lab has made the run's temporary folder.
PRIVATE_TMP = "LAB_PRIVATE_TMP"

# What a learner reads where the kernel refuses the lab's user namespace.
NO_USER_NAMESPACES = (
    "no private network namespace ({error}): this machine refuses unprivileged user "
    "namespaces, which the lab is made of.  Ubuntu 23.10 and later (AppArmor): "
    "sudo sysctl kernel.apparmor_restrict_unprivileged_userns=0; a kernel with "
    "kernel.unprivileged_userns_clone (Debian before 11): sudo sysctl "
    "kernel.unprivileged_userns_clone=1; user.max_user_namespaces at 0: sudo sysctl "
    "user.max_user_namespaces=15000; in Docker, whose default seccomp profile refuses "
    "unshare: docker run --security-opt seccomp=unconfined.  Or run the tests as root")


class Lab:
    """The two-computer network, or the reason there is none."""

    def __init__(self):
        self.private = False   # are we in our own network namespace?
        self.remote = False    # is the other computer there?
        self.names = False     # do our own files answer for "localhost"?
        self.services = False  # is /etc/services the lab's (SERVICES)?
        self.hosts = None      # the name of the hosts file in use (HOSTS_FILES)
        self.reason = ""       # why not, in words a learner can act on
        self.unset_sysctls = []  # SYSCTLS this kernel would not take, and why
        self.hidden_sysctls = []  # HIDDEN_SYSCTLS this kernel does not show here
        self._hosts_fd = None  # our /etc/hosts: rewritten through this
        self._etc_folder = None  # where our /etc files live
        self._remove_etc_folder = None
        self._remote_keeper = None
        self._remote_ns = None
        self._home_ns = None
        self._top = False      # made its own user namespace (not a lab inside a lab)

    # -- making it ---------------------------------------------------------

    def _enter_private_network(self):
        uid, gid = os.getuid(), os.getgid()
        if _libc.unshare(CLONE_NEWUSER | CLONE_NEWNET | CLONE_NEWNS) == 0:
            self._top = True
            map_root(uid, gid)
        elif _libc.unshare(CLONE_NEWNET | CLONE_NEWNS) != 0:
            # Root already: real root where user namespaces are off, or a
            # process inside a lab's user namespace that has threads (a
            # pytest-xdist worker), which CLONE_NEWUSER refuses (EINVAL).
            raise _os_error("unshare(CLONE_NEWUSER|CLONE_NEWNET|CLONE_NEWNS)")
        self.private = True
        self.unset_sysctls += _write_sysctls(SYSCTLS, strict=False)
        _run(["ip", "link", "set", "lo", "up"])
        self.hidden_sysctls, wrong = _check_hidden()
        self.unset_sysctls += wrong

    def _own_name_resolution(self, hosts):
        """Bind-mount the lab's files over the machine's, in our mount namespace."""
        # First, so that nothing mounted here shows in the machine's namespace
        # (as real root without a user namespace, mounts would propagate).
        _mount("none", "/", flags=MS_REC | MS_PRIVATE)
        if self._top and not os.environ.get(PRIVATE_TMP):
            # A temporary folder of the run's own (TMPDIR), shared by the labs
            # made inside this one and by the programs it starts, a pytest run
            # by make check among them: another user's /tmp/pytest-of-root is
            # not ours to use (our uid is 0 in the lab, whoever we are).
            # Removed at exit, after whatever else cleans up in it (pytest's
            # own atexit handlers come later, so run earlier).
            folder = tempfile.mkdtemp(prefix="lab-tmp-")
            atexit.register(_remover(folder))
            os.environ["TMPDIR"] = os.environ[PRIVATE_TMP] = tempfile.tempdir = folder
        files = {"/etc/hosts": HOSTS_FILES[hosts], "/etc/nsswitch.conf": _nsswitch_conf(),
                 "/etc/gai.conf": GAI_CONF, "/etc/host.conf": HOST_CONF,
                 "/etc/resolv.conf": RESOLV_CONF, "/etc/services": SERVICES}
        # Kept until close(), not unlinked at once: a lab made inside this one
        # (a transcript's) mounts its own over ours, and a mount point whose
        # file is deleted takes no mount.
        self._etc_folder = tempfile.mkdtemp(prefix="lab-etc-")
        self._remove_etc_folder = _remover(self._etc_folder)
        for target, text in files.items():
            if not os.path.exists(target):
                if target in ("/etc/gai.conf", "/etc/host.conf", "/etc/resolv.conf"):
                    # Missing means glibc's defaults, what we want (for
                    # musl's resolv.conf, a wait of 10 s at an unknown name).
                    continue
                if target == "/etc/services":
                    continue   # no netbase: nc -v names no port (transcripts say needs=services)
                raise OSError(f"{target} does not exist, so the lab cannot put its own "
                              "in its place")
            source = os.path.join(self._etc_folder, os.path.basename(target))
            with open(source, "w") as f:
                f.write(text)
            _mount(source, target, flags=MS_BIND)
            self.services = self.services or target == "/etc/services"
            if target == "/etc/hosts":
                # Kept open: use_hosts() rewrites the file through it, never
                # through the path (which, unmounted, is the machine's).
                self._hosts_fd = os.open(source, os.O_RDWR | os.O_CLOEXEC)
        if os.path.isdir(NSCD_DIR):
            _mount("lab", NSCD_DIR, fstype="tmpfs")   # an empty folder: no nscd here
        self.hosts = hosts
        self.names = True

    def private_tmp(self, keep=()):
        """An empty /tmp of the lab's own, in its mount namespace, for what it
        runs from now on (a transcript writing /tmp/NAME never meets a file of
        another run, or of another user of this machine).  The folders in
        `keep` that are under /tmp (a clone of the course there, its build
        folder) are mounted back in it, at the same paths."""
        if not self.private:
            raise RuntimeError(f"the lab has no mount namespace of its own: {self.reason}")
        kept = {}
        for path in keep:
            path = os.path.realpath(path)
            if path.startswith("/tmp/") and os.path.isdir(path):
                kept[path] = os.open(path, os.O_PATH | os.O_CLOEXEC)
        _mount("lab-tmp", "/tmp", fstype="tmpfs")
        for path, fd in sorted(kept.items()):
            os.makedirs(path, exist_ok=True)
            _mount(f"/proc/self/fd/{fd}", path, flags=MS_BIND | MS_REC)
            os.close(fd)
        os.environ["TMPDIR"] = tempfile.tempdir = "/tmp"   # the run's folder is hidden now

    def use_hosts(self, name):
        """Make the lab's /etc/hosts the HOSTS_FILES entry `name` (from the
        next name lookup on: glibc reads the file at every lookup)."""
        if not self.names:
            raise RuntimeError(f"the lab has no /etc/hosts of its own: {self.reason}")
        data = HOSTS_FILES[name].encode()
        os.ftruncate(self._hosts_fd, 0)
        os.pwrite(self._hosts_fd, data, 0)
        self.hosts = name

    def _add_remote_computer(self):
        # The other computer is a network namespace kept alive by a child;
        # it dies with us (it exits when its stdin, our pipe, closes).
        self._remote_keeper = subprocess.Popen(
            ["unshare", "--net", "--", "sh", "-c", "echo ready; exec cat >/dev/null"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        if self._remote_keeper.stdout.readline() != b"ready\n":
            raise OSError("unshare --net: could not make the second network namespace")
        pid = str(self._remote_keeper.pid)
        self._remote_ns = os.open(f"/proc/{pid}/ns/net", os.O_RDONLY | os.O_CLOEXEC)
        # thread-self, not self: in a process with threads, the namespaces
        # made by unshare() are the calling thread's, not the whole process's.
        self._home_ns = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
        self.remote = True
        remote = ["nsenter", "-t", pid, "-n"]
        _run(remote + ["ip", "link", "set", "lo", "up"])
        with self._on_remote():
            self.unset_sysctls += [f"the other computer's {failure}"
                                   for failure in _write_sysctls(SYSCTLS, strict=False)
                                   + _check_hidden()[1]]
        _run(["ip", "link", "add", "lab0", "type", "veth", "peer", "name", "lab1",
              "netns", pid])
        _run(["ip", "addr", "add", f"{LOCAL_V4}/24", "dev", "lab0"])
        _run(["ip", "-6", "addr", "add", f"{LOCAL_V6}/64", "dev", "lab0", "nodad"])
        _run(["ip", "link", "set", "lab0", "up"])
        _run(remote + ["ip", "addr", "add", f"{REMOTE_V4}/24", "dev", "lab1"])
        _run(remote + ["ip", "-6", "addr", "add", f"{REMOTE_V6}/64", "dev", "lab1", "nodad"])
        _run(remote + ["ip", "link", "set", "lab1", "up"])

    def enter(self, hosts=None):
        """Make the lab and move this process into it; hosts: a HOSTS_FILES
        name (default: $LAB_HOSTS, else "stock")."""
        hosts = hosts or hosts_name()
        for name in ("LOCALDOMAIN", "RES_OPTIONS", "HOSTALIASES"):   # they bend lookups
            os.environ.pop(name, None)
        missing = [tool for tool in ("ip", "unshare", "nsenter") if not shutil.which(tool)]
        if missing:
            self.reason = (f"the lab needs {', '.join(missing)} (Debian: apt-get install "
                           "iproute2 util-linux)")
            return self
        try:
            self._enter_private_network()
        except OSError as error:
            self.reason = NO_USER_NAMESPACES.format(error=error)
            return self
        problems = []
        try:
            self._own_name_resolution(hosts)
        except OSError as error:
            problems.append(f"no name resolution of the lab's own: {error}")
        try:
            self._add_remote_computer()
        except (OSError, subprocess.SubprocessError) as error:
            self.remote = False
            problems.append(f"no second host: {error} (the kernel needs veth support)")
        self.reason = "; ".join(problems)
        return self

    def close(self):
        if self._remote_keeper is not None:
            self._remote_keeper.stdin.close()
            self._remote_keeper.wait(timeout=5)
        for fd in (self._remote_ns, self._home_ns, self._hosts_fd):
            if fd is not None:
                os.close(fd)
        if self._etc_folder is not None:
            self._remove_etc_folder()
            self._etc_folder = None

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

    def remote_pid(self):
        """The pid of the process that holds the other computer's network
        namespace: `nsenter -t PID -n COMMAND` runs COMMAND there."""
        if not self.remote:
            raise RuntimeError(f"the lab has no second host: {self.reason}")
        return self._remote_keeper.pid

    def remote_command(self, argv):
        """argv, to run on the other computer (for subprocess)."""
        if not self.remote:
            raise RuntimeError(f"the lab has no second host: {self.reason}")
        return ["nsenter", "-t", str(self._remote_keeper.pid), "-n", "--"] + list(argv)

    def tcp_segments(self):
        """(sent, received): the TCP segments both computers have sent and
        received so far (OutSegs + RetransSegs, InSegs of /proc/net/snmp).  Every segment
        sent in the lab is received in it, so sent > received means one is
        on its way (or addressed to nobody, as a SYN-ACK to 198.51.100.3 is)."""
        paths = ["/proc/thread-self/net/snmp"]
        if self.remote:
            paths.append(f"/proc/{self._remote_keeper.pid}/net/snmp")
        sent = received = 0
        for path in paths:
            with open(path) as f:
                names, values = [line.split() for line in f if line.startswith("Tcp:")]
            counters = dict(zip(names[1:], values[1:]))
            sent += int(counters["OutSegs"]) + int(counters["RetransSegs"])
            received += int(counters["InSegs"])
        return sent, received

    @contextlib.contextmanager
    def sysctls(self, values):
        """Other kernel settings on this computer until the block ends, then
        the lab's own again.  values: {"net/ipv4/ip_local_port_range": "..."}."""
        if not self.private:
            raise RuntimeError(f"the lab has no network of its own: {self.reason}")
        unknown = set(values) - set(SYSCTLS)
        if unknown:
            raise ValueError(f"not a setting the lab owns (SYSCTLS): {sorted(unknown)}")
        _write_sysctls(values)
        try:
            yield
        finally:
            _write_sysctls({name: SYSCTLS[name] for name in values})

    @contextlib.contextmanager
    def without_ipv6_loopback(self, timeout=5):
        """This computer as one without IPv6 on loopback: no ::1 to bind
        (net.ipv6.conf.lo.disable_ipv6=1), until the block ends."""
        try:
            with self.sysctls({"net/ipv6/conf/lo/disable_ipv6": "1"}):
                yield
        finally:
            # The kernel gives lo its ::1 back; wait until it can be bound.
            deadline = time.monotonic() + timeout
            while True:
                with socket.socket(socket.AF_INET6) as probe:
                    try:
                        probe.bind(("::1", 0))
                        break
                    except OSError:
                        if time.monotonic() > deadline:
                            raise
                time.sleep(0.01)   # polling with a deadline

    def describe(self):
        own = (f"; /etc/hosts: {self.hosts} (localhost is "
               f"{' then '.join(LOCALHOST[self.hosts])})") if self.names else ""
        if self.names and not self.services:
            own += "; no /etc/services on this machine (netbase), so none of the lab's"
        if self.hidden_sysctls:
            own += ("; this kernel shows no " + ", no ".join(
                name.replace("/", ".") for name in self.hidden_sysctls) + " here")
        if self.unset_sysctls:
            own += f"; NOT SET (tests relying on them may differ): {'; '.join(self.unset_sysctls)}"
        if self.remote:
            return (f"lab: private network; this computer {LOCAL_V4} / {LOCAL_V6}, "
                    f"the other computer {REMOTE_V4} / {REMOTE_V6}{own}")
        if self.private:
            return f"lab: private network, loopback only ({self.reason}){own}"
        return f"lab: none, the machine's own loopback and /etc/hosts ({self.reason})"


def bare_syn(source, destination, source_port, destination_port):
    """An IPv4 packet holding a TCP SYN, checksums done (RFC 793, RFC 791),
    for a raw socket: a handshake the test starts and never completes."""
    def checksum(data):
        if len(data) % 2:
            data += b"\0"
        total = sum(struct.unpack(f"!{len(data) // 2}H", data))
        while total >> 16:
            total = (total & 0xFFFF) + (total >> 16)
        return ~total & 0xFFFF
    src, dst = socket.inet_aton(source), socket.inet_aton(destination)
    tcp = struct.pack("!HHIIBBHHH", source_port, destination_port, 1000 + source_port, 0,
                      5 << 4, 0x02, 65535, 0, 0)
    pseudo = src + dst + struct.pack("!BBH", 0, socket.IPPROTO_TCP, len(tcp))
    tcp = tcp[:16] + struct.pack("!H", checksum(pseudo + tcp)) + tcp[18:]
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(tcp), 0, 0, 64, socket.IPPROTO_TCP,
                     0, src, dst)
    return ip + tcp


_the_lab = None


def enter(hosts=None):
    """Enter the lab once per process; later calls return the same Lab."""
    global _the_lab
    if _the_lab is None:
        _the_lab = Lab().enter(hosts)
    return _the_lab
