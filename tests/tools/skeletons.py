"""The learner's starting point for each step: the reference program with the
lesson's code cut out and a TODO in its place.

A skeleton is made from steps/NN_name/main.c (and, from step 6 on, from the
common/ files the step teaches) each time it is needed, never stored, so it
cannot drift from the reference: LESSONS below names the exact text of each
cut, and apply_cuts() refuses (SkeletonError) when a cut is no longer found.
tests/course/test_workspace.py checks, for every step, that the skeleton builds with
the course's flags (-Werror), that the step's tests fail against it, that
they pass against the reference, that an untouched skeleton stops naming its
TODO, and, for each idea of Part 2, that the tests LESSONS names fail in
plain words while that one idea is missing or wrong.

Each cut leaves a placeholder that compiles and, when reached, stops the
program with one line and exit status 3:
"workspace/03_bind/main.c:86: TODO step 3: bind(): not written yet".

A new step gets its entry here: the lines its lesson is about, and a TODO
that says what to write and which manual page to read.
"""

import os
import re

from tests import ROOT


class SkeletonError(Exception):
    pass


def _cut(find, todo, keep="", caught_by=None, says=None, wrong=None, wrong_says=None,
         wrong_caught_by=None):
    """Replace `find` (exact text of the reference, whole lines) with the
    TODO comment, indented like `find`, followed by `keep` (placeholder code).

    For the cuts of Part 2 (steps 6-9), which teach one idea each, also:
      caught_by   the tests (a pytest -k expression) that must fail, in plain
                  words, while the TODO is not written;
      says        a regular expression their failure report must match;
      wrong, wrong_says, wrong_caught_by   a plausible but wrong version of
                  the same code (what a learner might write), what the report
                  says about it, and which tests catch it (default: caught_by).
    tests/course/test_workspace.py checks all of it."""
    return {"find": find, "todo": todo, "keep": keep, "caught_by": caught_by,
            "says": says, "wrong": wrong, "wrong_says": wrong_says,
            "wrong_caught_by": wrong_caught_by or caught_by}


def _todo(what):
    """A placeholder statement: the program stops there, naming the TODO."""
    return f'TODO_NOT_WRITTEN("{what}")'


# step -> file -> cuts.  `find` is copied verbatim from the reference.  A
# file named "main.c" is the step's own (steps/NN_name/main.c); a file named
# "common/connections.c" is copied from common/ into the workspace with its
# cuts, so the learner writes that part of the shared code too, and the
# workspace's copy replaces common/'s in the program the learner builds.
#
# Every placeholder stops the program with one line naming its TODO
# (TODO_NOT_WRITTEN, defined by the banner), so an untouched skeleton can
# never pass for a working program.
LESSONS = {
    "01_socket": {"main.c": [
        _cut("        listen_fd = socket(ai->ai_family, ai->ai_socktype, ai->ai_protocol);\n",
             """TODO step 1: ask the kernel for a TCP socket and keep its descriptor in
listen_fd.  socket() takes three numbers: the address family, the socket
type and the protocol.  getaddrinfo() already chose all three for this
address: ai->ai_family, ai->ai_socktype, ai->ai_protocol.  It returns the
new descriptor, or -1 on failure (the check below handles that).
Read: man 2 socket.  Then replace the placeholder line below.""",
             keep=f'        listen_fd = {_todo("step 1: socket()")};   /* placeholder */\n'),
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
Read: man 2 setsockopt, and SO_REUSEADDR in man 7 socket.
Then replace the two placeholder lines below.""",
             keep=f'        else                                   /* placeholder */\n'
                  f'            {_todo("step 2: setsockopt(SO_REUSEADDR)")};\n'),
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
Read: man 2 bind.  Then replace the two placeholder lines below.""",
             keep=f'        else                                   /* placeholder */\n'
                  f'            {_todo("step 3: bind()")};\n'),
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
Read: man 2 listen.  Then replace the two placeholder lines below.""",
             keep=f'        else                                   /* placeholder */\n'
                  f'            {_todo("step 4: listen()")};\n'),
    ]},
    "05_accept": {"main.c": [
        _cut("        int client_fd = accept(listen_fd, (struct sockaddr *)&peer, &peer_len);\n",
             """TODO step 5: take the next finished connection off listen_fd's queue.
accept() waits until there is one and returns a new descriptor for that
client (or -1).  Give it &peer and &peer_len, cast to the pointer types
its manual shows, so it fills in who connected: the lines below print it.
Read: man 2 accept.  Then replace the placeholder line below.""",
             keep=f'        int client_fd = {_todo("step 5: accept()")};   /* placeholder */\n'),
    ]},
    "06_frame_loop": {
        "main.c": [
            _cut("        int ready = poll(fds, count, 0);   /* 0: look, never wait */\n",
                 """TODO step 6 (1. in the comment at the top): ask the kernel which of the
`count` sockets in fds are ready NOW, without waiting: poll() with a
timeout of 0.  It fills in each fds[i].revents and returns how many are
ready (0: none this frame), or -1 (errno EINTR when a stop signal came:
the check below handles it).
Read: man 2 poll.  Then replace the placeholder line below.""",
                 keep=f'        int ready = {_todo("step 6: poll(), in main.c")};   /* placeholder */\n'),
        ],
        "common/connections.c": [
            _cut("""        int fd = accept_client(listen_fd, &peer, &peer_len);
        if (fd == -1) {
            int errnum = errno;
            if (errnum == EAGAIN || errnum == EWOULDBLOCK || errnum == EINTR)
                return NULL;       /* nobody waiting, or a signal to look at */
""",
                 """TODO step 6, idea 1: accept without waiting.  The listening socket is
non-blocking (main.c made it so), so accept() never waits: with nobody
in the queue it fails with EAGAIN (or EWOULDBLOCK: the same on Linux).
Call accept_client(listen_fd, &peer, &peer_len) (above: accept(), with
the new socket made non-blocking too: idea 2), keeping the descriptor in
fd.  When it fails (fd == -1), keep errno in errnum, and return NULL if errnum says
nobody is waiting (EAGAIN, EWOULDBLOCK) or a signal came (EINTR): the
loop calls this function until it returns NULL, so that ends one round
of accepting.  Any other errnum falls through to the code below.
Read: man 2 accept (EAGAIN, and "Error handling").
Then replace the three placeholder lines below.""",
                 keep=f'        int fd = {_todo("step 6, idea 1: accept() in connection_accept()")};\n'
                      '        (void)accept_client;                   /* placeholder */\n'
                      '        if (fd == -1) {                        /* placeholder */\n'
                      '            int errnum = errno;                /* placeholder */\n',
                 caught_by="test_many_clients_at_once and local",
                 says=r"TODO step 6, idea 1"),
            _cut("""    return accept4(listen_fd, (struct sockaddr *)peer, peer_len, SOCK_NONBLOCK | SOCK_CLOEXEC);
""",
                 """TODO step 6, idea 2: the client's socket must never wait either.  A
socket accept() returns is blocking, whatever the listening socket is,
and one read() on it that waits for a silent client would stop every
other client and the whole frame.  accept4() is accept() with a fourth
argument, flags for the new socket: SOCK_NONBLOCK makes it non-blocking
in the same system call (no fcntl() after it), and SOCK_CLOEXEC keeps it
from leaking into any program we might exec.  Return what accept4()
returns, with both flags.
Read: man 2 accept (accept4), man 7 socket.
Then replace the placeholder line below.""",
                 keep="    return accept(listen_fd, (struct sockaddr *)peer, peer_len);   /* placeholder: blocking */\n",
                 caught_by="test_frame_loop_never_waits_for_a_silent_or_stuck_client",
                 says=r"silent|stuck|froze|waited"),
            _cut("""    char *buffer = owed_buffer(table, c);
    while (!c->input_ended && output_owed(c) < OUTPUT_LIMIT) {
        if (c->output_end == OUTPUT_LIMIT) {
            /* Room only at the front: slide the owed bytes down. */
            memmove(buffer, buffer + c->output_start, output_owed(c));
            c->output_end -= c->output_start;
            c->output_start = 0;
        }
        size_t room = OUTPUT_LIMIT - c->output_end;
        ssize_t received = read(c->fd, buffer + c->output_end, room);
        if (received > 0) {
            c->output_end += (size_t)received;
            mark_active(table, c);
            if ((size_t)received < room)
                return 0;   /* it gave all it had: skip the read that says EAGAIN */
        } else if (received == 0) {
            c->input_ended = true;     /* closed, or half-closed: we still owe it */
        } else if (errno == EAGAIN || errno == EWOULDBLOCK) {
""" + """            return 0;
        } else if (errno != EINTR) {
            close_on_error(table, c, errno);
            return -1;
        }
    }
    return 0;
""",
                 """TODO step 6, idea 3: read what has arrived.
The bytes go to buffer = owed_buffer(table, c): while c is owed nothing
that is the table's input buffer, shared by every client (the echo is
sent from it at once, and keep_owed() moves what the socket would not
take into a buffer of c's own); else it is c->output.  Either way it
has OUTPUT_LIMIT bytes, and the bytes owed to the client are
buffer[output_start..output_end): read() appends at output_end.  When
output_end reaches OUTPUT_LIMIT but output_start is past 0, slide the
owed bytes to the front first (memmove).  Then loop, while the client's
input has not ended and the buffer is not full (output_owed(c) <
OUTPUT_LIMIT):
  read() > 0   the bytes are in: move output_end and call
               mark_active(table, c) (the idle timeout counts from it).
               If read() gave fewer bytes than there was room for, the
               socket is empty: you may return 0 at once and save the
               read() that would only say EAGAIN;
  read() == 0  the client will send no more (it closed, or only shut
               its sending side): set c->input_ended, but keep c: we
               may still owe it bytes;
  -1, EAGAIN or EWOULDBLOCK   nothing more for now: return 0;
  -1, EINTR    a signal: just read again;
  -1, other    (ECONNRESET: the client reset) close_on_error(table, c,
               errno) and return -1.
Read: man 2 read (RETURN VALUE), man 7 tcp (ECONNRESET).
Then replace the placeholder lines below.""",
                 keep=f'    (void)owed_buffer;                         /* placeholder */\n'
                      f'    (void)mark_active;                         /* placeholder */\n'
                      f'    (void)table;                               /* placeholder */\n'
                      f'    (void)c;                                   /* placeholder */\n'
                      f'    return {_todo("step 6, idea 3: read_input() in connections.c")};\n',
                 caught_by="test_many_clients_at_once and local",
                 says=r"TODO step 6, idea 3",
                 wrong="""    char *buffer = owed_buffer(table, c);
    ssize_t received = read(c->fd, buffer + c->output_end, OUTPUT_LIMIT - c->output_end);
    if (received > 0) {
        c->output_end += (size_t)received;
        mark_active(table, c);
    } else if (received == -1 && errno != EAGAIN && errno != EWOULDBLOCK) {
        close_on_error(table, c, errno);
        return -1;
    }
    return 0;   /* wrong: read() == 0 (the client sent its last byte) is ignored */
""",
                 wrong_says=r"read\(\) return(ed|ing) 0",
                 wrong_caught_by="test_disconnect_half_close and local"),
            _cut("""    const char *buffer = owed_buffer(table, c);
    while (output_owed(c) > 0) {
        /* MSG_NOSIGNAL: a vanished client gives EPIPE, not a fatal SIGPIPE. */
        ssize_t sent = send(c->fd, buffer + c->output_start, output_owed(c),
                            MSG_NOSIGNAL);
        if (sent >= 0) {
            c->output_start += (size_t)sent;
            mark_active(table, c);
        } else if (errno == EAGAIN || errno == EWOULDBLOCK) {
            return 0;
        } else if (errno != EINTR) {
            close_on_error(table, c, errno);
            return -1;
        }
    }
""",
                 """TODO step 6, idea 4: send what the socket takes, keep the rest.
The bytes owed are buffer[output_start..output_end), output_owed(c) of
them, in buffer = owed_buffer(table, c) (see idea 3).  Loop while any
are owed: send() them with flags MSG_NOSIGNAL
(a client that has gone then gives EPIPE instead of SIGPIPE, whose
default action would kill the whole server: man 2 send).
  send() >= 0  it may have taken FEWER bytes than you gave it (a partial
               write: its buffer is full): move output_start past what
               it took, call mark_active(table, c), and loop for the
               rest;
  -1, EAGAIN or EWOULDBLOCK   the socket's buffer is full: return 0 and
               keep the rest for later (poll() says POLLOUT when there
               is room; connection_wants() asks for it);
  -1, EINTR    a signal: try again;
  -1, other    (EPIPE, ECONNRESET) close_on_error(table, c, errno) and
               return -1.
Read: man 2 send.  Then delete the placeholder lines below.""",
                 keep=f'    (void)table;                               /* placeholder */\n'
                      f'    if (output_owed(c) > 0)                    /* placeholder */\n'
                      f'        return {_todo("step 6, idea 4: write_output() in connections.c")};\n',
                 caught_by="test_many_clients_at_once and local",
                 says=r"TODO step 6, idea 4",
                 wrong="""    const char *buffer = owed_buffer(table, c);
    ssize_t sent = send(c->fd, buffer + c->output_start, output_owed(c), MSG_NOSIGNAL);
    if (sent == -1 && errno != EAGAIN && errno != EWOULDBLOCK) {
        close_on_error(table, c, errno);
        return -1;
    }
    c->output_start = c->output_end;   /* wrong: what send() did not take is dropped */
""",
                 wrong_says=r"took only part",
                 wrong_caught_by="test_large_transfer and local"),
        ],
    },
    "07_poll": {
        "main.c": [
            _cut("        int ready = poll(fds, count, timeout_ms);\n",
                 """TODO step 7: sleep in poll() until one of the `count` sockets in fds is
ready, or timeout_ms milliseconds pass (-1: no limit).  poll() fills in
each fds[i].revents and returns how many are ready, 0 on a timeout, or
-1 (errno EINTR when a stop signal came: the check below handles it).
Read: man 2 poll.  Then replace the two placeholder lines below.""",
                 keep=f'        int ready = {_todo("step 7: poll(), in main.c")};   /* placeholder */\n'
                      "        (void)timeout_ms; /* placeholder: your poll() uses it */\n"),
        ],
        "common/connections.c": [
            _cut("""    unsigned wants = 0;
    if (!c->input_ended && output_owed(c) < OUTPUT_LIMIT)
        wants |= CONNECTION_READ;
    if (output_owed(c) > 0)
        wants |= CONNECTION_WRITE;
    return wants;
""",
                 """TODO step 7, idea 5: backpressure.  Say what c's socket should be
watched for now.  CONNECTION_WRITE while bytes are owed to it
(output_owed(c) > 0): poll() then says when the socket has room.
CONNECTION_READ only while the client may send more (its input has not
ended) AND its buffer has room (output_owed(c) < OUTPUT_LIMIT).  That
second condition is backpressure: a client that sends and never reads
fills its buffer, we stop reading it, its bytes wait in the kernel's
buffers, TCP's window closes, and ITS send() blocks, not our memory.
Ask for READ while the buffer is full and poll() reports "readable"
again at once, every time: the server spins at 100% CPU.
Return an or (|) of the two, or 0.
Then replace the two placeholder lines below.""",
                 keep="    (void)c;                                   /* placeholder */\n"
                      f'    return (unsigned){_todo("step 7, idea 5: connection_wants() in connections.c")};\n',
                 caught_by="test_a_client_that_stops_reading",
                 says=r"TODO step 7, idea 5",
                 wrong="""    /* wrong: always asks to read, even with a full buffer */
    return CONNECTION_READ | (output_owed(c) > 0 ? CONNECTION_WRITE : 0);
""",
                 wrong_says=r"backpressure"),
            _cut("""    if (c->input_ended && output_owed(c) == 0)
        connection_close(table, c, "client closed");
""",
                 """TODO step 7, idea 6: half-close.  read() returning 0 only said the
client will SEND no more (c->input_ended): it may still be reading,
waiting for the rest of its echo (shutdown(SHUT_WR) does exactly that).
So close the connection only when its input has ended AND nothing is
owed any more (output_owed(c) == 0), with the reason "client closed"
(connection_close() logs it).  Closing at once would cut off its echo;
never closing would keep a dead client in the table forever.
Read: man 2 shutdown, man 2 read (end of file).""",
                 caught_by="test_disconnect_half_close and local",
                 says=r"half-close"),
        ],
        "common/signals.c": [
            _cut("""    ssize_t written = write(stop_pipe[1], "", 1);
    (void)written;
""",
                 """TODO step 7, idea 7: the self-pipe trick.  Setting stop_signal is not
enough for a loop that sleeps in poll() without a time limit: a signal
that lands after the loop tested stop_requested() but before poll()
started sleeping interrupts nothing, and the server sleeps on.  So also
write one byte into the pipe's write end, stop_pipe[1]: its read end
is in poll()'s list (stop_signal_fd()), so poll() wakes whenever the
signal came.  write() is async-signal-safe (man 7 signal-safety); the
pipe is non-blocking, so this can never block inside the handler; if
the pipe is full it is readable already, so ignore write()'s result
(assign it to a variable and cast that to void: -Werror).
Read: man 2 pipe, man 7 signal-safety.""",
                 caught_by="test_a_stop_signal_wakes_the_loop_through_the_stop_pipe",
                 says=r"self-pipe|stop pipe"),
        ],
    },
    "08_epoll": {
        "main.c": [
            _cut("        int ready = epoll_wait(epoll_fd, events, MAX_EVENTS, timeout_ms);\n",
                 """TODO step 8: sleep in epoll_wait() until sockets registered with
epoll_fd (by epoll_ctl, above and in watch()) are ready, or timeout_ms
milliseconds pass (-1: no limit).  It fills in at most MAX_EVENTS entries
of events, each carrying the data.ptr given to epoll_ctl, and returns how
many it filled, 0 on a timeout, or -1 (errno EINTR when a stop signal
came: the check below handles it).
Read: man 2 epoll_wait, and man 7 epoll.  Then replace the two
placeholder lines below.""",
                 keep=f'        int ready = {_todo("step 8: epoll_wait(), in main.c")};   /* placeholder */\n'
                      "        (void)timeout_ms; /* placeholder: your epoll_wait() uses it */\n"),
        ],
        "common/connections.c": [
            _cut("""        if (c == NULL) {
            char line[80], why[64];
            snprintf(line, sizeof line, "busy: too many clients (max %d), try later\\n",
                     table->max_clients);
            snprintf(why, sizeof why, "too many clients (max %d)", table->max_clients);
            refuse(table, fd, peer_text, line, why);
            continue;
        }
""",
                 """TODO step 8, idea 8: max clients.  free_slot() returned NULL when all
max_clients slots are taken.  The client is accepted already (it has a
descriptor, fd), and leaving it unanswered would leave it hanging; so
tell it, in one line, and hang up: refuse() above sends a line, closes
fd and logs "refused PEER: why".  Line: "busy: too many clients (max N),
try later\\n"; why: "too many clients (max N)", N = table->max_clients.
Then `continue`: more clients may be waiting.
Then delete the placeholder lines below.""",
                 keep="        if (c == NULL)                         /* placeholder */\n"
                      f'            (void){_todo("step 8, idea 8: max clients in connection_accept()")};\n'
                      "        (void)refuse;                          /* placeholder */\n",
                 caught_by="test_the_client_over_max_clients",
                 says=r"TODO step 8, idea 8"),
            _cut("""    if (table->spare_fd == -1)
        return -1;
    close(table->spare_fd);
    struct sockaddr_storage peer;
    socklen_t peer_len = sizeof peer;
    int fd = accept(listen_fd, (struct sockaddr *)&peer, &peer_len);
    int outcome = fd != -1 ? 1 : (errno == EAGAIN || errno == EWOULDBLOCK) ? 0 : -1;
    if (fd != -1) {
        char peer_text[ADDRESS_TEXT_SIZE];
        format_address((struct sockaddr *)&peer, peer_len, peer_text, sizeof peer_text);
        char why[96];
        snprintf(why, sizeof why, "%s (out of descriptors)", errno_name(errnum));
        refuse(table, fd, peer_text, "busy: server out of descriptors, try later\\n", why);
    }
    table->spare_fd = open_spare();
    return outcome;
""",
                 """TODO step 8, idea 9: the spare descriptor.  accept() just failed with
EMFILE or ENFILE (errnum): no descriptor left for the client, so it
stays in the queue, the listening socket stays readable, and the loop
would spin on it.  table->spare_fd is a descriptor held open for this
moment (open_spare()).  If there is none (-1), return -1.  Otherwise
close it, accept() the waiting client (now there is a descriptor for
it), refuse() it with the line "busy: server out of descriptors, try
later\\n" and why "ENAME (out of descriptors)" (errno_name(errnum)),
then take the spare back: table->spare_fd = open_spare().
Return 1 if a client was refused, 0 if accept() said EAGAIN (nobody
was waiting), -1 if it failed otherwise.
Read: man 2 accept (EMFILE), and the comment above this function.
Then replace the placeholder lines below.""",
                 keep="    (void)table;                               /* placeholder */\n"
                      "    (void)listen_fd;                           /* placeholder */\n"
                      "    (void)errnum;                              /* placeholder */\n"
                      f'    return {_todo("step 8, idea 9: the spare descriptor, refuse_with_spare()")};\n',
                 caught_by="test_out_of_descriptors",
                 says=r"TODO step 8, idea 9",
                 wrong="    (void)table; (void)listen_fd; (void)errnum;\n"
                       "    return -1;   /* wrong: no spare: accepting just pauses */\n",
                 wrong_says=r"refused|spare"),
            _cut("""        while (table->oldest != NULL
               && table->oldest->last_active + table->idle_timeout <= now) {
            char reason[64];
            snprintf(reason, sizeof reason, "idle for %g s", table->idle_timeout);
            connection_close(table, table->oldest, reason);
        }
        if (table->oldest != NULL) {
            double deadline = table->oldest->last_active + table->idle_timeout;
            if (next_due == 0 || deadline < next_due)
                next_due = deadline;
        }
""",
                 """TODO step 8, idea 10: the idle timeout, without looking at every
client.  The table lists its clients least recently active first:
table->oldest, then each one's ->newer (mark_active() moves a client to
the end each time it moves a byte).  So the idle ones are at the front:
close them from there, while the oldest one's last_active is
idle_timeout or more before `now`, with connection_close(table, c,
reason), the reason "idle for T s" (T = table->idle_timeout, printed
with %g).  Stop at the first that is not idle: all after it moved a
byte later.  Then, if a client is left, the oldest one's deadline
(last_active + idle_timeout) is when to look again: make it next_due if
next_due is 0 (nothing due yet) or later.  10,000 clients cost no more
than 10 here.
Then replace the placeholder line below.""",
                 keep=f'        (void){_todo("step 8, idea 10: the idle timeout, in connections_expire()")};\n',
                 caught_by="test_idle_client_is_closed",
                 says=r"TODO step 8, idea 10",
                 wrong="""        if (table->oldest != NULL) {   /* wrong: says when to look again, closes nobody */
            double deadline = table->oldest->last_active + table->idle_timeout;
            if (next_due == 0 || deadline < next_due)
                next_due = deadline;
        }
""",
                 wrong_says=r"idle"),
        ],
    },
    "09_io_uring": {
        "main.c": [
            _cut("""        int ret = io_uring_submit_and_wait_timeout(&server.ring, &cqe, 1,
                                                   wait_seconds < 0 ? NULL : &timeout, NULL);
""",
                 """TODO step 9: hand the kernel every request queued since the last turn
(accepts, recvs, sends, cancels: echo.c queues them with io_uring_get_sqe)
and sleep until at least one completion is posted, or until the next idle
deadline -- in ONE system call.  io_uring_submit_and_wait_timeout() does
both: the ring (&server.ring), where to put the first completion (&cqe),
how many to wait for (1), the timeout (&timeout, or NULL when
wait_seconds < 0: no deadline) and a signal mask (NULL).  It returns how
many requests it submitted, or -errno: -ETIME when the timeout passed,
-EINTR when a signal came (the check below handles both).
Read: man io_uring_submit_and_wait_timeout, man 7 io_uring.
Then replace the two placeholder lines below.""",
                 keep=f'        int ret = {_todo("step 9: io_uring_submit_and_wait_timeout(), in main.c")};   /* placeholder */\n'
                      "        (void)timeout; /* placeholder: your call uses it */\n"),
        ],
        "echo.c": [
            _cut("""    if (!(cqe->flags & IORING_CQE_F_MORE))
        c->receiving = c->cancelling = false;   /* this request is over */
""",
                 """TODO step 9, idea 11: a multishot request that ends.  One recv request
posts a completion each time data arrives, with IORING_CQE_F_MORE set in
cqe->flags while more will come.  A completion WITHOUT it is that
request's last: after end of input (res 0), an error, our own cancel
(-ECANCELED, backpressure), an empty pool (-ENOBUFS), or a full
completion queue.  Then c has no recv any more: set c->receiving and
c->cancelling to false.  update_receiving() below then arms a new one if
c still wants to receive, and a closing client can be freed
(finish_if_done() waits for its last completion: until then the kernel
may still name it).
Read: man io_uring_prep_recv_multishot.  Then replace the placeholder lines below.""",
                 keep="    if (!(cqe->flags & IORING_CQE_F_MORE))     /* placeholder */\n"
                      f'        (void){_todo("step 9, idea 11: a multishot recv that ended, in on_recv()")};\n',
                 caught_by="test_disconnect_half_close and local",
                 says=r"TODO step 9, idea 11",
                 wrong="    (void)cqe;   /* wrong: a multishot recv is taken to last forever */\n",
                 wrong_caught_by="test_more_data_at_once",
                 wrong_says=r"never armed again"),
            _cut("""    if (c->first_sent == server->pool.length[c->first_buffer]) {
        uint16_t done = c->first_buffer;
        c->first_buffer = server->pool.next[done];
        c->first_sent = 0;
        give_back(&server->pool, done);   /* its bytes are sent: it may be filled again */
    }
""",
                 """TODO step 9, idea 12: a buffer whose bytes are all sent goes back to
the pool.  What c is owed is a queue of pool buffers, oldest first:
c->first_buffer, of which c->first_sent bytes are sent already
(server->pool.length[bid] bytes were received into buffer bid).  Once
first_sent reaches that length, the buffer is done: move first_buffer
on to the next one (server->pool.next[done]), set first_sent to 0, and
give the buffer back to the ring, give_back(&server->pool, done), so the
kernel can fill it again.  Forget to, and the pool runs dry after 512
buffers (2 MiB): every recv then ends with ENOBUFS, and nobody is echoed.
Read: man io_uring_buf_ring_add.  Then replace the placeholder lines below.""",
                 keep="    if (c->first_sent == server->pool.length[c->first_buffer])   /* placeholder */\n"
                      f'        (void){_todo("step 9, idea 12: giving a sent buffer back, in on_send()")};\n',
                 caught_by="test_interleaved and local",
                 says=r"TODO step 9, idea 12",
                 wrong="""    if (c->first_sent == server->pool.length[c->first_buffer]) {
        c->first_buffer = server->pool.next[c->first_buffer];   /* wrong: never given back */
        c->first_sent = 0;
    }
""",
                 wrong_caught_by="test_more_data_at_once",
                 wrong_says=r"given back"),
        ],
    },
}


def _comment(text, indent):
    lines = text.splitlines()
    out = [f"{indent}/* {lines[0]}"] + [f"{indent} * {line}" if line else f"{indent} *"
                                         for line in lines[1:]]
    return "\n".join(out) + " */\n"


BANNER_END = " * --- the course's code starts below ---\n */\n"


def banner(step, name, reference, code=""):
    """The lines above a skeleton: whose file it is, and the placeholder
    helper.  A static inline function costs no warning when unused, so the
    file still builds with -Werror once every placeholder is gone.  The
    helper's #includes come before the course's code, so they get the
    feature-test macros `code` defines first (#define _GNU_SOURCE, for
    accept4), repeated here; an identical second #define is allowed."""
    features = "".join(line + "\n" for line in code.splitlines()
                       if re.fullmatch(r"#define _[A-Z0-9_]+_SOURCE\b.*", line))
    return (f"/*\n"
            f" * YOUR VERSION of {reference}, for step {step}: workspace/{step}/{name}\n"
            f" *\n"
            f" * The code this step teaches is missing: look for TODO.  Each TODO\n"
            f" * says what to write; its placeholder stops the program with a line\n"
            f" * naming the TODO until you replace it.  Build and test it with\n"
            f" *     make check STEP={step}\n"
            f" * The reference solution is {reference}: try before you peek.\n"
            f" */\n"
            + features +
            f"#include <stdio.h>\n"
            f"#include <stdlib.h>\n"
            f"static inline int todo_not_written(const char *file, int line, const char *what)\n"
            f"{{\n"
            f"    fprintf(stderr, \"%s:%d: TODO %s: not written yet\\n\", file, line, what);\n"
            f"    exit(3);\n"
            f"}}\n"
            f"#define TODO_NOT_WRITTEN(what) todo_not_written(__FILE__, __LINE__, (what))\n"
            f"/*\n"
            + BANNER_END)


def strip_banner(text):
    """A workspace file without its banner: the code as the course wrote it."""
    head, found, rest = text.partition(BANNER_END)
    return rest if found else text


def apply_cuts(text, cuts, where, only=None, wrong=False):
    """text with its lesson cuts made (only: just cut number `only`; wrong:
    put that cut's wrong version in instead of its TODO)."""
    for number, cut in enumerate(cuts):
        if only is not None and number != only:
            continue
        count = text.count(cut["find"])
        if count != 1:
            first = cut["find"].strip().splitlines()[0]
            raise SkeletonError(
                f"{where}: the lesson cut starting {first!r} is found {count} times "
                "(must be exactly once): update LESSONS in tests/tools/skeletons.py")
        indent = cut["find"][:len(cut["find"]) - len(cut["find"].lstrip(" "))]
        if wrong:
            replacement = cut["wrong"]
        else:
            replacement = (_comment(cut["todo"], indent) if cut["todo"] else "") + cut["keep"]
        text = text.replace(cut["find"], replacement)
    return text


def reference_path(step, name):
    """'main.c' -> steps/STEP/main.c; 'common/x.c' -> common/x.c (from ROOT)."""
    return name if "/" in name else f"steps/{step}/{name}"


def read_reference(step, name):
    with open(os.path.join(ROOT, reference_path(step, name))) as f:
        return f.read()


def step_sources(step, only=None, wrong=False, carry_from=None):
    """{workspace file name: text} for every source file of the step: the
    step's own files and the common/ files it has cuts in, with the cuts made.

    only=(name, number): make that one cut alone (wrong=True: its wrong
    version), the rest as the reference has it; tests/course/test_workspace.py
    checks each idea this way.  carry_from: the learner's workspace folder
    of an earlier step; a common/ file written there without placeholders
    left is carried forward (this step's cuts made in it) instead of the
    reference, so the learner keeps their own code.  Returns (sources,
    notes): notes are lines to show the learner."""
    if step not in LESSONS:
        raise SkeletonError(
            f"step {step} has no skeleton yet: its lesson cuts go in LESSONS in tests/tools/skeletons.py")
    folder = os.path.join(ROOT, "steps", step)
    names = sorted(name for name in os.listdir(folder) if name.endswith((".c", ".h")))
    missing = {name for name in LESSONS[step] if "/" not in name} - set(names)
    if missing:
        raise SkeletonError(f"steps/{step}: no file {sorted(missing)} (named in tests/tools/skeletons.py)")
    names += [name for name in LESSONS[step] if "/" in name]
    sources, notes = {}, []
    for name in names:
        reference = read_reference(step, name)
        cuts = LESSONS[step].get(name)
        short = os.path.basename(name)
        if cuts is None:
            sources[short] = reference
            continue
        text, origin = reference, reference_path(step, name)
        if carry_from and "/" in name and only is None:
            earlier = os.path.join(carry_from, short)
            if os.path.exists(earlier):
                with open(earlier) as f:
                    mine = strip_banner(f.read())
                try:
                    carried = apply_cuts(mine, cuts, earlier)
                except SkeletonError:
                    carried = None
                if "TODO_NOT_WRITTEN(" in mine or carried is None:
                    notes.append(f"{os.path.relpath(earlier, ROOT)} still has TODOs or differs "
                                 f"where this step's TODOs go: starting from {origin} instead")
                else:
                    notes.append(f"your {os.path.relpath(earlier, ROOT)} is carried forward, "
                                 "with this step's TODOs cut out of it")
                    sources[short] = banner(step, short, origin, carried) + carried
                    continue
        if only is not None:
            if only[0] != name:
                sources[short] = reference
                continue
            text = apply_cuts(text, cuts, origin, only=only[1], wrong=wrong)
        else:
            text = apply_cuts(text, cuts, origin)
        sources[short] = banner(step, short, origin, text) + text
    return sources, notes


def ideas(step):
    """[(name, number, cut)] for the cuts of a step that name their tests."""
    return [(name, number, cut) for name, cuts in LESSONS.get(step, {}).items()
            for number, cut in enumerate(cuts) if cut["caught_by"]]
