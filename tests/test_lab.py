"""The lab itself (tests/lab.py): the environment every other test stands on.

What a test's outcome may depend on is the lab's, not the machine's: these
checks fail if the machine's /etc/hosts, nsswitch.conf, gai.conf, DNS or
kernel settings leak into it.

    python3 -m pytest tests/test_lab.py
"""

import socket

import pytest

import lab as lab_module


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
    values = {}
    for name in lab_module.SYSCTLS:
        with open(f"/proc/sys/{name}") as f:
            values[name] = " ".join(f.read().split())
    return values


def test_kernel_settings_are_the_labs_on_both_computers(remote_lab):
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
