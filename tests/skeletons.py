"""The learner's starting point for each step: the reference program with the
lesson's calls cut out and a TODO in their place.

A skeleton is made from steps/NN_name/main.c each time it is needed, never
stored, so it cannot drift from the reference: LESSONS below names the exact
text of each cut, and skeleton() refuses (SkeletonError) when a cut is no
longer found in the reference.  tests/test_workspace.py checks, for every
step, that the skeleton builds with the course's flags (-Werror), that the
step's tests fail against it, and that they pass against the reference.

A cut that removes an assignment leaves a placeholder (`= -1` and
`errno = ENOSYS`), so the skeleton compiles and, when run, says which call is
missing: "socket 127.0.0.1:7777: ENOSYS (Function not implemented)".

A new step gets its entry here: the lines its lesson is about, and a TODO
that says what to write and which manual page to read.
"""

import os

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class SkeletonError(Exception):
    pass


def _cut(find, todo, keep=""):
    """Replace `find` (exact text of the reference, whole lines) with the
    TODO comment, indented like `find`, followed by `keep` (placeholder code)."""
    return {"find": find, "todo": todo, "keep": keep}


# step -> file -> cuts.  `find` is copied verbatim from the reference.
LESSONS = {
    "01_socket": {"main.c": [
        _cut("        listen_fd = socket(ai->ai_family, ai->ai_socktype, ai->ai_protocol);\n",
             """TODO step 1: ask the kernel for a TCP socket and keep its descriptor in
listen_fd.  socket() takes three numbers: the address family, the socket
type and the protocol.  getaddrinfo() already chose all three for this
address: ai->ai_family, ai->ai_socktype, ai->ai_protocol.  It returns the
new descriptor, or -1 on failure (the check below handles that).
Read: man 2 socket.  Then delete the two placeholder lines below.""",
             keep="        listen_fd = -1;\n"
                  "        errno = ENOSYS;   /* placeholder: \"Function not implemented\" */\n"),
    ]},
    "02_reuseaddr": {"main.c": [
        _cut("        const int on = 1;\n", "", ""),
        _cut("""        else if (args.reuseaddr
                 && setsockopt(listen_fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof on) == -1)
            failed_call = "setsockopt SO_REUSEADDR";
""",
             """TODO step 2: turn SO_REUSEADDR on for listen_fd, unless the user said
--no-reuseaddr (then args.reuseaddr is false).  setsockopt() takes the
socket, the level (SOL_SOCKET), the option (SO_REUSEADDR), a pointer to
an int that holds 1, and the size of that int.  It returns -1 on failure:
then set failed_call = "setsockopt SO_REUSEADDR", the way the socket()
check above sets failed_call = "socket" (continue its if / else if).
Read: man 2 setsockopt, and SO_REUSEADDR in man 7 socket."""),
    ]},
    "03_bind": {"main.c": [
        _cut("""        else if (bind(listen_fd, ai->ai_addr, ai->ai_addrlen) == -1)
            failed_call = "bind";
""",
             """TODO step 3: once the calls above succeeded, bind listen_fd to this
address: getaddrinfo() made it from HOST and PORT, and it is in
ai->ai_addr, with its length in ai->ai_addrlen.  bind() returns -1 on
failure (port in use, address not on this computer ...): then set
failed_call = "bind", continuing the if / else if chain above.
Read: man 2 bind."""),
    ]},
    "04_listen": {"main.c": [
        _cut("""        else if (listen(listen_fd, args.backlog) == -1)
            failed_call = "listen";
""",
             """TODO step 4: once bound, make listen_fd a listening socket, so the kernel
completes clients' connections and queues them.  listen() takes the
socket and the queue's length, the backlog: the user's is in
args.backlog.  It returns -1 on failure: then set failed_call = "listen",
continuing the if / else if chain above.
Read: man 2 listen."""),
    ]},
    "05_accept": {"main.c": [
        _cut("        int client_fd = accept(listen_fd, (struct sockaddr *)&peer, &peer_len);\n",
             """TODO step 5: take the next finished connection off listen_fd's queue.
accept() waits until there is one and returns a new descriptor for that
client (or -1).  Give it &peer and &peer_len, cast to the pointer types
its manual shows, so it fills in who connected: the lines below print it.
Read: man 2 accept.  Then delete the two placeholder lines below.""",
             keep="        int client_fd = -1;\n"
                  "        errno = ENOSYS;   /* placeholder: \"Function not implemented\" */\n"),
    ]},
    "06_frame_loop": {"main.c": [
        _cut("        int ready = poll(fds, count, 0);   /* 0: look, never wait */\n",
             """TODO step 6 (1. in the comment at the top): ask the kernel which of the
`count` sockets in fds are ready NOW, without waiting: poll() with a
timeout of 0.  It fills in each fds[i].revents and returns how many are
ready (0: none this frame), or -1 (errno EINTR when a stop signal came:
the check below handles it).
Read: man 2 poll.  Then delete the two placeholder lines below.""",
             keep="        int ready = -1;\n"
                  "        errno = ENOSYS;   /* placeholder: \"Function not implemented\" */\n"),
    ]},
    "07_poll": {"main.c": [
        _cut("        int ready = poll(fds, count, timeout_ms);\n",
             """TODO step 7: sleep in poll() until one of the `count` sockets in fds is
ready, or timeout_ms milliseconds pass (-1: no limit).  poll() fills in
each fds[i].revents and returns how many are ready, 0 on a timeout, or
-1 (errno EINTR when a stop signal came: the check below handles it).
Read: man 2 poll.  Then delete the three placeholder lines below.""",
             keep="        int ready = -1;\n"
                  "        errno = ENOSYS;   /* placeholder: \"Function not implemented\" */\n"
                  "        (void)timeout_ms; /* placeholder: your poll() uses it */\n"),
    ]},
    "08_epoll": {"main.c": [
        _cut("        int ready = epoll_wait(epoll_fd, events, MAX_EVENTS, timeout_ms);\n",
             """TODO step 8: sleep in epoll_wait() until sockets registered with
epoll_fd (by epoll_ctl, above and in watch()) are ready, or timeout_ms
milliseconds pass (-1: no limit).  It fills in at most MAX_EVENTS entries
of events, each carrying the data.ptr given to epoll_ctl, and returns how
many it filled, 0 on a timeout, or -1 (errno EINTR when a stop signal
came: the check below handles it).
Read: man 2 epoll_wait, and man 7 epoll.  Then delete the three
placeholder lines below.""",
             keep="        int ready = -1;\n"
                  "        errno = ENOSYS;   /* placeholder: \"Function not implemented\" */\n"
                  "        (void)timeout_ms; /* placeholder: your epoll_wait() uses it */\n"),
    ]},
}


def _comment(text, indent):
    lines = text.splitlines()
    out = [f"{indent}/* {lines[0]}"] + [f"{indent} * {line}" if line else f"{indent} *"
                                         for line in lines[1:]]
    return "\n".join(out) + " */\n"


def banner(step, name):
    return (f"/*\n"
            f" * YOUR VERSION of step {step}: workspace/{step}/{name}\n"
            f" *\n"
            f" * The calls this step teaches are missing: look for TODO.  Build and\n"
            f" * test it with   make check STEP={step}\n"
            f" * The reference solution is steps/{step}/{name}: try before you peek.\n"
            f" */\n")


def skeleton(step, name, reference_text):
    """The skeleton of one file of a step, made from the reference text."""
    cuts = LESSONS.get(step, {}).get(name)
    if cuts is None:
        raise SkeletonError(f"steps/{step}/{name} has no lesson cuts in tests/skeletons.py")
    text = reference_text
    for cut in cuts:
        count = text.count(cut["find"])
        if count != 1:
            first = cut["find"].strip().splitlines()[0]
            raise SkeletonError(
                f"steps/{step}/{name}: the lesson cut starting {first!r} is found {count} times "
                "(must be exactly once): update LESSONS in tests/skeletons.py")
        indent = cut["find"][:len(cut["find"]) - len(cut["find"].lstrip(" "))]
        replacement = (_comment(cut["todo"], indent) if cut["todo"] else "") + cut["keep"]
        text = text.replace(cut["find"], replacement)
    return banner(step, name) + text


def step_sources(step):
    """{file name: skeleton text} for every source file of the step."""
    folder = os.path.join(ROOT, "steps", step)
    if step not in LESSONS:
        raise SkeletonError(
            f"step {step} has no skeleton yet: its lesson cuts go in LESSONS in tests/skeletons.py")
    sources = {}
    for name in sorted(os.listdir(folder)):
        if not name.endswith((".c", ".h")):
            continue
        with open(os.path.join(folder, name)) as f:
            reference = f.read()
        sources[name] = skeleton(step, name, reference) if name in LESSONS[step] else reference
    missing = set(LESSONS[step]) - set(sources)
    if missing:
        raise SkeletonError(f"steps/{step}: no file {sorted(missing)} (named in tests/skeletons.py)")
    return sources
