"""The lab itself (tests/lib/lab.py): the environment every other test stands on.

What a test's outcome may depend on is the lab's, not the machine's: these
checks fail if the machine's /etc/hosts, nsswitch.conf, gai.conf, DNS or
kernel settings leak into it.

    python3 -m pytest tests/course/test_lab.py
"""

import json
import os
import socket
import subprocess
import sys

import pytest

from tests import ROOT
from tests.lib import lab as lab_module


def resolve(host):
    """The addresses getaddrinfo() lists for a server on host, in its order."""
    return tuple(info[4][0] for info in socket.getaddrinfo(
        host, 7777, socket.AF_UNSPEC, socket.SOCK_STREAM, 0, socket.AI_PASSIVE))


def test_the_hosts_file_is_the_labs(hosts, lab):
    with open("/etc/hosts") as f:
        text = f.read()
    assert text == lab_module.HOSTS_FILES[lab.hosts], (
        f"/etc/hosts in the lab should be its {lab.hosts!r} file, not the machine's; "
        f"it reads:\n{text}")


def test_localhost_resolves_as_the_hosts_file_says(hosts):
    assert resolve("localhost") == hosts, (
        f"getaddrinfo('localhost') should list {hosts} under the lab's /etc/hosts; it lists "
        f"{resolve('localhost')}: the machine's gai.conf, nsswitch.conf or nscd answered")


def test_star_is_ipv4_then_ipv6_whatever_the_hosts_file(hosts):
    assert resolve(None) == ("0.0.0.0", "::"), (
        f"getaddrinfo(NULL, AI_PASSIVE) should list 0.0.0.0 then :: (glibc); it lists "
        f"{resolve(None)}")


def test_names_are_never_looked_up_in_dns(lab):
    if not lab.names:
        pytest.skip(f"needs the lab's own name resolution: {lab.reason}")
    with pytest.raises(socket.gaierror) as error:
        resolve("no-such-host.invalid")
    assert error.value.errno == socket.EAI_NONAME, (
        f"an unknown name should be 'not known' at once (nsswitch: files only), not "
        f"{error.value}: was DNS asked?")


def read_sysctls():
    """The lab's SYSCTLS as this network namespace has them: those the kernel
    does not show here (HIDDEN_SYSCTLS, on older kernels) left out."""
    values = {}
    for name in lab_module.SYSCTLS:
        try:
            with open(f"/proc/sys/{name}") as f:
                values[name] = " ".join(f.read().split())
        except FileNotFoundError:
            assert name in lab_module.HIDDEN_SYSCTLS, f"/proc/sys/{name} does not exist"
    return values


def test_kernel_settings_are_the_labs_on_both_computers(remote_lab, kernel_has):
    assert not remote_lab.unset_sysctls, (
        f"the lab could not set these, so tests relying on them may give other answers on "
        f"this kernel: {remote_lab.unset_sysctls}")
    here = read_sysctls()
    with remote_lab._on_remote():
        there = read_sysctls()
    for computer, values in (("this computer", here), ("the other computer", there)):
        wrong = {name: value for name, value in values.items()
                 if value != lab_module.SYSCTLS[name]}
        assert not wrong, f"on {computer}, these differ from the lab's SYSCTLS: {wrong}"
    # A setting the kernel hides is a feature it lacks (tests/lib/kernel.py),
    # and the tests that need it know: the two lists agree.
    hidden = {lab_module.HIDDEN_SYSCTLS[name] for name in remote_lab.hidden_sysctls}
    lacking = {name for name in lab_module.HIDDEN_SYSCTLS.values() if kernel_has[name] is False}
    assert hidden == lacking, (
        f"the lab found these settings hidden: {sorted(hidden)}; the kernel's probe says it "
        f"lacks {sorted(lacking)}")


def test_a_changed_setting_comes_back(private_lab):
    name = "net/ipv4/ip_local_port_range"
    with private_lab.sysctls({name: "61000 61003"}):
        assert read_sysctls()[name] == "61000 61003"
    assert read_sysctls()[name] == lab_module.SYSCTLS[name]


def test_without_ipv6_loopback_there_is_no_1_and_then_it_is_back(private_lab):
    with private_lab.without_ipv6_loopback():
        with socket.socket(socket.AF_INET6) as probe:
            with pytest.raises(OSError):
                probe.bind(("::1", 0))
    with socket.socket(socket.AF_INET6) as probe:
        probe.bind(("::1", 0))


def test_a_bad_lab_hosts_name_is_refused(monkeypatch):
    monkeypatch.setenv("LAB_HOSTS", "mine")
    with pytest.raises(ValueError, match="stock"):
        lab_module.hosts_name()
    monkeypatch.delenv("LAB_HOSTS")
    assert lab_module.hosts_name() == "stock"


# -- labs inside the lab: what lets pytest-xdist workers run side by side --------
#
# Each worker makes a lab of its own (tests/lib/lab.py, "Labs inside a lab"), so a
# test that binds port 7777, changes a sysctl, counts packets, reads `ss` or
# switches /etc/hosts (the `hosts` fixture) cannot meet another worker's.

NESTED_LAB = r"""
import json, os, socket, sys, threading
# Like a pytest-xdist worker: a process with threads, which cannot make a
# user namespace of its own.
threading.Thread(target=threading.Event().wait, daemon=True).start()
from tests.lib import lab
made = lab.enter(sys.argv[1])
with open("/etc/hosts") as f:
    hosts = f.read()
with made.socket(socket.AF_INET) as listener:
    listener.bind((lab.LOCAL_V4, 7777))
    listener.listen()
    with made.socket(socket.AF_INET, "remote") as client:
        client.settimeout(5)
        client.connect((lab.LOCAL_V4, 7777))
print(json.dumps({"threads": len(os.listdir("/proc/self/task")), "remote": made.remote,
                  "net": os.readlink("/proc/thread-self/ns/net"),
                  "hosts_file": list(os.stat("/etc/hosts")[1:3]), "hosts": hosts}))
"""


def namespaces_and_hosts(pid="thread-self"):
    return (os.readlink(f"/proc/{pid}/ns/net"), os.readlink(f"/proc/{pid}/ns/mnt"),
            tuple(os.stat(f"/proc/{pid}/root/etc/hosts")[1:3]))


def other_pytest_processes():
    """Under pytest-xdist: the process that started this worker, and the
    other workers (its children running the same Python); else none."""
    if not os.environ.get("PYTEST_XDIST_WORKER"):
        return []
    parent = os.getppid()
    children = []
    for task in os.listdir(f"/proc/{parent}/task"):
        with open(f"/proc/{parent}/task/{task}/children") as f:
            children += [int(pid) for pid in f.read().split()]
    python = os.readlink("/proc/self/exe")
    others = [parent] + [pid for pid in children if pid != os.getpid()]
    found = []
    for pid in others:
        try:
            if os.readlink(f"/proc/{pid}/exe") == python:
                found.append(pid)
        except FileNotFoundError:   # a worker that has just finished
            pass
    return found


def test_a_process_with_threads_makes_a_lab_of_its_own_inside_this_one(lab, remote_lab):
    mine = namespaces_and_hosts()
    other_file = "ipv4-only" if lab.hosts == "stock" else "stock"
    with open("/etc/hosts") as f:
        before = f.read()
    result = subprocess.run([sys.executable, "-c", NESTED_LAB, other_file], cwd=ROOT,
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, (
        f"a process with threads, inside this lab, should make a lab of its own (as each "
        f"pytest-xdist worker does): exit {result.returncode}, stderr {result.stderr[-2000:]}")
    nested = json.loads(result.stdout)
    assert nested["threads"] > 1 and nested["remote"], (
        f"the nested lab, made by a process with threads, has its second computer: {nested}")
    assert nested["net"] != mine[0], (
        "the nested lab should have a network of its own (it bound port 7777 and connected "
        f"from its own second computer): it shares ours, {mine[0]}")
    assert tuple(nested["hosts_file"]) != mine[2] \
            and nested["hosts"] == lab_module.HOSTS_FILES[other_file], (
        f"the nested lab's /etc/hosts should be its own file, {other_file!r}: {nested}")
    with open("/etc/hosts") as f:
        after = f.read()
    assert after == before == lab_module.HOSTS_FILES[lab.hosts], (
        f"our /etc/hosts should not change when a nested lab uses {other_file!r}: "
        f"before {before!r}, after {after!r}")


def test_every_pytest_worker_has_its_own_network_and_hosts_file(lab):
    # Serial (pytest without -n) there is no other process to compare with.
    if not lab.names:
        pytest.skip(f"needs the lab's own name resolution: {lab.reason}")
    mine = namespaces_and_hosts()
    for pid in other_pytest_processes():
        try:
            theirs = namespaces_and_hosts(pid)
        except FileNotFoundError:   # it finished while we looked
            continue
        shared = [what for what, a, b in zip(("network namespace", "mount namespace",
                                              "/etc/hosts file"), mine, theirs) if a == b]
        assert not shared, (
            f"pytest process {pid} shares our {', '.join(shared)}: tests running there at "
            "the same time could see this worker's ports, sysctls or hosts file")


REFUSED_LAB = r"""
from tests.lib import lab
made = lab.enter()
print(made.describe())
"""


def test_where_user_namespaces_are_refused_the_lab_says_what_to_enable(lab):
    # Ubuntu 24.04's AppArmor restriction and Docker's seccomp profile make
    # unshare(CLONE_NEWUSER) fail with EPERM; strace plays that kernel.
    result = subprocess.run(
        ["strace", "-f", "-o", os.devnull, "-e", "trace=unshare",
         "-e", "inject=unshare:error=EPERM", sys.executable, "-c", REFUSED_LAB],
        cwd=ROOT, capture_output=True, text=True, timeout=30)
    said = result.stdout.strip()
    assert result.returncode == 0 and said.startswith("lab: none") and all(
        advice in said for advice in ("apparmor_restrict_unprivileged_userns=0",
                                      "unprivileged_userns_clone=1", "seccomp=unconfined",
                                      "as root")), (
        "where the kernel refuses a user namespace, the lab should say so and what to "
        f"enable (Ubuntu's AppArmor, Debian's old sysctl, Docker's seccomp, root): it said "
        f"{said!r} (exit {result.returncode}, stderr {result.stderr[-500:]!r})")
