"""What the learner is asked to write in each step, region by region.

The reference source marks the code of each idea with two one-line
comments, /* idea LABEL */ and /* end of idea LABEL */ (tests/tools/cutter.py);
LABEL is a registry idea (tests/lib/registry.py), or IDEA:PART where one
idea has several places.  `make workspace STEP=N` cuts out the regions of
step N's own ideas and puts in each:

  ask          the TODO comment: what the code must achieve, the cases that
               matter, the manual pages.  Never the code itself;
  placeholder  code that compiles (-Werror) and, when reached, stops the
               program with exit status 3 and a line naming the TODO
               (TODO_NOT_WRITTEN, defined by the workspace file's banner);

and `make hint STEP=N` prints each region's `hint`: the detailed version,
for when the learner asks for it.

tests/course/test_workspace.py checks, for each region with `caught_by`
(a pytest -k expression over the checks' names, without the step's name),
that those checks fail while that region alone is cut out, with a report
matching `says`; and, for each MISTAKES entry, that the reference with that
patch applied (a plausible wrong version: tests/mistakes/NAME.patch) fails
the `caught_by` checks with a report matching `says`.
"""

from dataclasses import dataclass


@dataclass(frozen=True)
class Todo:
    label: str
    ask: str
    hint: str
    placeholder: str
    caught_by: str = ""
    says: str = ""


@dataclass(frozen=True)
class Mistake:
    name: str             # tests/mistakes/STEP-NAME.patch
    what: str             # the mistake, in a few words
    caught_by: str
    says: str


def _stop(what):
    return f'TODO_NOT_WRITTEN("{what}")'


TODOS = {
    "01_socket": [
        Todo("socket",
             """TODO step 1: ask the kernel for a TCP socket for this address, and keep
its descriptor in listen_fd (-1 on failure: the check below handles it).
getaddrinfo() has already chosen the three numbers socket() needs.
Read: man 2 socket, man 3 getaddrinfo (struct addrinfo).""",
             """socket(ai->ai_family, ai->ai_socktype, ai->ai_protocol): the address
family, the socket type and the protocol getaddrinfo() chose for this
address.  It returns the new descriptor, or -1 with errno set.""",
             f"listen_fd = {_stop('step 1: socket()')};   /* placeholder */\n"),
    ],
    "02_reuseaddr": [
        Todo("reuseaddr",
             """TODO step 2: unless the user said --no-reuseaddr (args.reuseaddr is
false), turn SO_REUSEADDR on for listen_fd, continuing the if / else if
chain above; on failure set failed_call = "setsockopt SO_REUSEADDR".
Read: man 2 setsockopt, SO_REUSEADDR in man 7 socket.""",
             """else if (args.reuseaddr && setsockopt(listen_fd, SOL_SOCKET,
SO_REUSEADDR, &on, sizeof on) == -1) failed_call = "...": the level is
SOL_SOCKET, the value an int that holds 1 (`on`, above), and its size.""",
             "else if (args.reuseaddr && on)        /* placeholder */\n"
             f"    {_stop('step 2: setsockopt(SO_REUSEADDR)')};\n"),
    ],
    "03_bind": [
        Todo("bind",
             """TODO step 3: once the calls above succeeded, bind listen_fd to this
address (getaddrinfo() made it from HOST and PORT), continuing the if /
else if chain; on failure (port in use, address not on this computer)
set failed_call = "bind".
Read: man 2 bind.""",
             """else if (bind(listen_fd, ai->ai_addr, ai->ai_addrlen) == -1)
failed_call = "bind";""",
             "else                                   /* placeholder */\n"
             f"    {_stop('step 3: bind()')};\n"),
    ],
    "04_listen": [
        Todo("listen",
             """TODO step 4: once bound, make listen_fd a listening socket, so that the
kernel completes clients' connections and queues them, with the queue
length the user asked for (args.backlog); on failure set
failed_call = "listen", continuing the if / else if chain.
Read: man 2 listen.""",
             """else if (listen(listen_fd, args.backlog) == -1) failed_call = "listen";""",
             "else                                   /* placeholder */\n"
             f"    {_stop('step 4: listen()')};\n"),
    ],
    "05_accept": [
        Todo("accept",
             """TODO step 5: take the next finished connection off listen_fd's queue,
waiting until there is one, and learn who connected (the lines below
print peer).  client_fd is the new descriptor, or -1.
Read: man 2 accept.""",
             """int client_fd = accept(listen_fd, (struct sockaddr *)&peer, &peer_len);
peer_len must hold sizeof peer before the call; accept() sets it to the
size of the address it wrote.""",
             f"int client_fd = {_stop('step 5: accept()')};   /* placeholder */\n"),
    ],
    "06_frame_loop": [
        Todo("frame_loop:poll",
             """TODO step 6 (the frame loop, 1-2 in the comment at the top): one frame's
turn of the server.  The pollfd list: each listening socket, then each
client on the table's list (oldest first), watched for what it can use
now; list->clients[i] is the client of list->fds[i] (poll_list_reserve()
makes room).  Ask which are ready WITHOUT waiting; serve each ready client
(connection_handle() may close and free it), then accept on each ready
listening socket (connection_accept() until NULL), another one first each
frame.  Cases: no client; a signal during poll(); a client closed this
frame; 64+ clients queued on one listening socket every frame, one on another.
Read: man 2 poll (events, revents, a timeout of 0).""",
             """fds[l] = { listener fd, POLLIN } for each listener; for each client c,
{ c->fd, POLLIN | (connection_owes(c) ? POLLOUT : 0) }, clients[i] = c.
poll(list->fds, count, 0): -1 with EINTR is a signal (return 0: the loop
test decides), other -1 returns -1.  For each client entry with revents
!= 0, connection_handle(table, client, ready_from(revents)); for each
listener with POLLIN in revents, while (connection_accept(...) != NULL),
from l = first_listener (advanced by one, modulo the count, each frame).""",
             "(void)list; (void)listeners; (void)table; (void)poll_list_reserve;\n"
             "(void)ready_from;\n"
             f"return {_stop('step 6: the frame: the pollfd list and poll(), in main.c')};\n",
             caught_by="many_clients_at_once and local", says=r"TODO step 6: the frame"),
        Todo("frame_loop",
             """TODO step 6 (the frame loop, 4 in the comment at the top): sleep until
the next frame is due, frame_seconds after the last one's deadline, so
the rate never drifts however long the frame's work took.  A frame that
ends after its successor was due is late: count it (counter.late_frames)
and skip the deadlines already missed, never rush through them.
Cases: a frame that took longer than one frame, or ten; a signal
during the sleep (EINTR: the loop test decides); a real sleep error.
Read: man 2 clock_nanosleep (TIMER_ABSTIME), sleep_until() above.""",
             """next_frame += frame_seconds; now = monotonic_seconds(); if now >=
next_frame: late_frames++ and add frame_seconds until next_frame > now.
Then sleep_until(next_frame): an error other than 0 and EINTR is
reported (print_call_error "clock_nanosleep") and ends the loop.""",
             "(void)frame_seconds; (void)sleep_until;\n"
             f"{_stop('step 6: the sleep until the next frame, in main.c')};\n",
             caught_by="frame_rate_holds_while_clients_come_and_go",
             says=r"TODO step 6: the sleep"),
        Todo("accept_until_eagain",
             """TODO step 6, idea 1: accept every client that is waiting, never waiting
for one: return each new client (add_client()), NULL once nobody is
left, and at most ACCEPTS_PER_TURN a turn (table->accepts_this_turn) so
that a flood of connections cannot hold the frame up.
Cases: nobody waiting (EAGAIN, EWOULDBLOCK); a signal (EINTR); a client
that gave up while queued (accept_error_is_temporary(): try the next);
out of descriptors or memory (accept_failed(): stop for this turn).
Read: man 2 accept (EAGAIN, and "Error handling").""",
             """while (accepts_this_turn < ACCEPTS_PER_TURN) { accepts_this_turn++;
fd = accept_client(listen_fd, &peer, &peer_len); if fd != -1 return
add_client(table, fd, &peer, peer_len); EAGAIN/EWOULDBLOCK/EINTR: return
NULL; temporary: continue; else accept_failed(table, errno), return NULL. }""",
             "(void)table; (void)listen_fd; (void)accept_client; (void)add_client;\n"
             "(void)accept_failed;\n"
             f"(void){_stop('step 6, idea 1: accepting, in connections.c')};\n"
             "return NULL;\n",
             caught_by="many_clients_at_once and local", says=r"TODO step 6, idea 1"),
        Todo("nonblocking_clients",
             """TODO step 6, idea 2: the client's socket must never wait either: a
socket from accept() is blocking, whatever the listening socket is, and
one read() that waits for a silent client stops every other client and
the frame.  Return the next client's socket, non-blocking and
close-on-exec, from as few system calls as you can.
Read: man 2 accept (accept4), man 2 fcntl (O_NONBLOCK, FD_CLOEXEC).""",
             """accept4(listen_fd, (struct sockaddr *)peer, peer_len,
SOCK_NONBLOCK | SOCK_CLOEXEC): one call.  Without accept4 (macOS):
accept(), then fcntl F_SETFL O_NONBLOCK and F_SETFD FD_CLOEXEC.""",
             "(void)listen_fd; (void)peer; (void)peer_len;\n"
             f"return {_stop('step 6, idea 2: the client socket non-blocking, in connections.c')};\n",
             caught_by="frame_loop_never_waits_for_a_silent_or_stuck_client",
             says=r"TODO step 6, idea 2"),
        Todo("read",
             """TODO step 6, idea 3: read what has arrived into buffer (c is owed
nothing: the bytes go at buffer[output_end], output_end starting at 0),
`limit` bytes in all at most, until the socket has no more.
Cases: data (maybe less than there was room for); nothing more now; the
end of the client's input, which does NOT mean it is gone (half-close:
it may still read its echo); a signal; a reset or other error (close c,
saying why, and return -1).
Read: man 2 read (RETURN VALUE), man 2 shutdown, man 7 tcp.""",
             """Loop while !c->input_ended && output_owed(c) < limit: read() into
buffer + output_end, room = limit - output_end.  > 0: move output_end
(fewer than room: return 0, the socket is empty).  0: set
c->input_ended (do NOT close: half_close decides).  -1 EAGAIN: return 0.
-1 EINTR: again.  -1 other: close_on_error(table, c, errno), return -1.""",
             "(void)buffer; (void)limit; (void)c; (void)close_on_error;\n"
             f"return {_stop('step 6, idea 3: reading, in connections.c')};\n",
             caught_by="many_clients_at_once and local", says=r"TODO step 6, idea 3"),
        Todo("send",
             """TODO step 6, idea 4: send the owed bytes (buffer[output_start..
output_end)) for as long as the socket takes them; what it does not take
stays owed for a later turn.  A client that has vanished must not kill
the server.
Cases: the socket takes all, part (a partial write), or nothing now; a
signal; a client that is gone (EPIPE) or reset (close c, return -1).
Read: man 2 send (MSG_NOSIGNAL, EAGAIN), man 7 signal (SIGPIPE).""",
             """While output_owed(c) > 0: send(c->fd, buffer + output_start,
output_owed(c), MSG_NOSIGNAL).  >= 0: output_start += sent, loop.  -1
EAGAIN/EWOULDBLOCK: return 0 (poll says POLLOUT later).  EINTR: again.
Other: close_on_error(table, c, errno), return -1.  MSG_NOSIGNAL is a
second guard: every step also ignores SIGPIPE (common/signals.c).""",
             "(void)buffer;\n"
             f"return {_stop('step 6, idea 4: sending, in connections.c')};\n",
             caught_by="many_clients_at_once and local", says=r"TODO step 6, idea 4"),
        Todo("send:keep",
             """TODO step 6, idea 4 (keeping the rest): after reading and sending, the
bytes still owed are in the table's input buffer, which the next client
reads into: they move to a buffer of c's own, just their size (c is not
read until they are sent), and a client owed nothing holds no buffer at
all (10,000 idle clients).  Out of memory: close c (ENOMEM), return -1.
Read: man 3 malloc, owed_buffer() above.""",
             """owed == 0: free(c->output), NULL, start = end = 0.  Else if c->output
is NULL: malloc(owed) (NULL: close_on_error ENOMEM, -1), memcpy
from table->input + output_start, start = 0, end = owed.""",
             "(void)table; (void)c;\n"
             f"return {_stop('step 6, idea 4: keeping what is owed, in connections.c')};\n",
             caught_by="large_transfer and local", says=r"TODO step 6, idea 4"),
        Todo("half_close",
             """TODO step 6, idea 5: when is the client done with?  Its input ended
(read() gave 0) says only that it will SEND no more: it may still be
reading its echo (shutdown(SHUT_WR) does exactly that).  Close it (reason
"client closed") and return -1 once nothing more can happen for it;
otherwise return 0.  Closing too early cuts off its echo; never closing
keeps a dead client forever.
Read: man 2 shutdown, man 2 read (end of file).""",
             """if (c->input_ended && output_owed(c) == 0) { connection_close(table, c,
"client closed"); return -1; } return 0;""",
             f"return {_stop('step 6, idea 5: half-close, in connections.c')};\n",
             caught_by="disconnect_half_close and local", says=r"TODO step 6, idea 5"),
    ],
    "07_poll": [
        Todo("sleeping_wait",
             """TODO step 7: one turn of the loop, as step 6's frame was, but sleeping
in poll() until something is ready or timeout_ms passes (-1: no bound).
The list: each listening socket, the stop pipe's read end (stop_pipe_fd()),
then each client watched for exactly what it wants now
(connection_wants()): a socket watched for what it will not be given
makes poll() return at once, forever.
Cases: as in step 6, plus the stop pipe readable (nothing to serve: the
loop test ends the loop) and a timeout (0 ready).
Read: man 2 poll (a negative timeout; POLLHUP and POLLERR).""",
             """As step 6's frame_loop:poll, with first_client = listeners + 1, the
stop pipe at fds[first_client - 1] with POLLIN, each client's events
poll_events(connection_wants(c)), and poll(list->fds, count, timeout_ms).""",
             "(void)list; (void)listeners; (void)table; (void)timeout_ms;\n"
             "(void)poll_list_reserve; (void)ready_from; (void)poll_events;\n"
             f"return {_stop('step 7: the sleeping poll(), in main.c')};\n",
             caught_by="many_clients_at_once and local", says=r"TODO step 7: the sleeping"),
        Todo("backpressure",
             """TODO step 7, idea 6: what should c's socket be watched for now?  Only
what the server can act on: room to send while it owes c bytes; input
only while c may send more and is owed nothing (connection_handle()
reads no other).  A client that sends and never reads must end up
costing a bounded buffer and no CPU: its bytes wait in the kernel, and
TCP slows it down.
Read: man 2 poll (POLLIN, POLLOUT), the backpressure section of lesson 7.""",
             """wants = 0; if (!c->input_ended && output_owed(c) == 0) wants
|= CONNECTION_READ; if (output_owed(c) > 0) wants |= CONNECTION_WRITE;
return wants.""",
             "(void)c;\n"
             f"return (unsigned){_stop('step 7, idea 6: backpressure, in connections.c')};\n",
             caught_by="a_client_that_stops_reading", says=r"TODO step 7, idea 6"),
        Todo("stop_pipe:handler",
             """TODO step 7, idea 7 (the handler): note the signal (note_stop_signal(),
common/signals.h) and make sure a poll() that is asleep, or about to
sleep, wakes up because of it.  Only async-signal-safe calls here; the
handler must leave errno as it found it, and must never block.
Read: man 7 signal-safety, man 2 pipe, man 2 write.""",
             """saved = errno; note_stop_signal(signal_number); write one byte to
stop_pipe[1] (non-blocking; ignore the result: assign it and cast to
void); errno = saved.""",
             "(void)signal_number;\n"
             f"{_stop('step 7, idea 7: the stop pipe handler, in stop_pipe.c')};\n",
             caught_by="a_stop_signal_wakes_the_loop_through_the_stop_pipe",
             says=r"stop pipe|self-pipe"),
        Todo("stop_pipe:open",
             """TODO step 7, idea 7 (the pipe): make the pipe whose read end the loop
watches, in an order that leaves no moment when a signal finds no pipe.
Neither end may ever block, and neither should leak into a program we
exec.  On failure: err = "CALL: ENAME (what it means)", return -1.
Read: man 2 pipe (pipe2), handle_stop_signals() in common/signals.h.""",
             """pipe2(stop_pipe, O_NONBLOCK | O_CLOEXEC) first (on -1: snprintf err
"pipe2: %s (%s)" with errno_name and strerror, return -1), then return
handle_stop_signals(on_stop_signal, err, err_size).""",
             "(void)on_stop_signal; (void)err; (void)err_size;\n"
             f"return {_stop('step 7, idea 7: the stop pipe, in stop_pipe.c')};\n",
             caught_by="a_stop_signal_wakes_the_loop_through_the_stop_pipe",
             says=r"TODO step 7, idea 7"),
    ],
    "08_epoll": [
        Todo("epoll:watch",
             """TODO step 8 (the interest list): tell the kernel what c wants now
(connection_wants()), op being EPOLL_CTL_ADD for a new client and
EPOLL_CTL_MOD when its wants changed, so that each event leads straight
to c.  Remember what it was told (c->watched).  If the kernel refuses,
c cannot be served: close it, saying why ("epoll_ctl: ENAME").
Read: man 2 epoll_ctl (data.ptr), man 7 epoll.""",
             """event = { epoll_events(wants), .data.ptr = c }; epoll_ctl(epoll_fd, op,
c->fd, &event) == -1: connection_close(table, c, "epoll_ctl: ENAME"),
return; else c->watched = wants.""",
             "(void)table; (void)epoll_fd; (void)op; (void)c; (void)epoll_events;\n"
             f"{_stop('step 8: the epoll interest list, in main.c')};\n",
             caught_by="many_clients_at_once and local", says=r"TODO step 8: the epoll"),
        Todo("epoll:dispatch",
             """TODO step 8 (the events): serve each of the `ready` events: the stop
pipe (nothing to do: the loop test ends it), a listening socket
(listener_at(): accept until NULL, and watch each new client), or a
client's slot (handle it; if it is still open and now wants something
else than it is watched for, tell the kernel).
Read: man 2 epoll_wait, man 7 epoll (level-triggered).""",
             """for i < ready: data.ptr == &stop_event: continue.  listener_at(...) !=
NULL: while ((c = connection_accept(...))) watch(..., EPOLL_CTL_ADD, c).
Else c = data.ptr; connection_handle(table, c, ready_from(events));
if c->fd != -1 && connection_wants(c) != c->watched: watch(.., MOD, c).""",
             "(void)events; (void)ready; (void)ready_from; (void)watch;\n"
             f"{_stop('step 8: serving the epoll events, in main.c')};\n",
             caught_by="many_clients_at_once and local", says=r"TODO step 8: serving"),
        Todo("max_clients",
             """TODO step 8, idea 8: a slot for a new client, or NULL when all
max_clients are taken, without a search: a full table must answer as
fast as an empty one.  Slots given back are on table->free_slots
(linked by ->newer); slots[0..slots_used) have been used.
Read: struct connection_table in steps/08_epoll/connections.h (it has no
TODO, so your workspace builds with the course's).""",
             """c = free_slots; if c: free_slots = c->newer, c->newer = NULL, return c.
If slots_used < max_clients: return &slots[slots_used++].  Else NULL.""",
             "(void)table;\n"
             f"(void){_stop('step 8, idea 8: max clients, in connections.c')};\n"
             "return NULL;\n",
             caught_by="the_client_over_max_clients", says=r"TODO step 8, idea 8"),
        Todo("spare_descriptor",
             """TODO step 8, idea 9: accept() failed with EMFILE or ENFILE: the client
stays queued, the listening socket stays readable, and the loop spins.
Use the descriptor kept for this moment (table->spare_fd) to take the
waiting client off the queue and refuse it ("busy: server out of
descriptors, try later"), then keep a spare again.  Return 1 if a
client was refused, 0 if nobody was waiting, -1 if the spare cannot help.
The refused client's socket is like any other: non-blocking and
close-on-exec (accept_client() above).
Read: man 2 accept (EMFILE), refuse() above.""",
             """No spare (-1): return -1.  close(spare); fd = accept_client(); outcome 1, or 0
for EAGAIN, else -1; if fd != -1: refuse(table, fd, peer text, the line,
"ENAME (out of descriptors)").  table->spare_fd = open_spare().""",
             "(void)table; (void)listen_fd; (void)errnum;\n"
             f"return {_stop('step 8, idea 9: the spare descriptor, in connections.c')};\n",
             caught_by="out_of_descriptors", says=r"TODO step 8, idea 9"),
        Todo("idle_timeout",
             """TODO step 8, idea 10: close the clients idle for idle_timeout or more
(reason "idle for T s", T printed with %g), without looking at every
client: 10,000 clients must cost no more than 10.  Then make next_due
the earliest time a remaining client could become idle, unless something
else is due sooner.
Read: the list order in steps/08_epoll/connections.h, mark_active().""",
             """while (oldest && oldest->last_active + idle_timeout <= now) close it.
If a client is left: deadline = oldest->last_active + idle_timeout; if
next_due == 0 || deadline < next_due: next_due = deadline.""",
             f"{_stop('step 8, idea 10: the idle timeout, in connections.c')};\n",
             caught_by="idle_client_is_closed", says=r"TODO step 8, idea 10"),
        Todo("idle_timeout:activity",
             """TODO step 8, idea 10 (the list's order): c just moved a byte.  Keep
the list ordered by last activity, least recent first, in a few pointer
moves whatever the number of clients.
Read: unlink_client() and append_client() above.""",
             """c->last_active = monotonic_seconds(); if table->newest != c:
unlink_client(table, c), append_client(table, c).""",
             "(void)table; (void)c;\n"
             f"{_stop('step 8, idea 10: the activity list, in connections.c')};\n",
             caught_by="idle_client_is_closed", says=r"TODO step 8, idea 10"),
    ],
    "09_io_uring": [
        Todo("io_uring",
             """TODO step 9: one turn of the submission and completion loop.  Hand the
kernel every request queued since the last turn and sleep until at least
one completion is posted or wait_seconds pass (no bound when
wait_seconds < 0) -- in ONE system call.  Then do what each completion
posted by now says (server_handle()), in order, and tell the kernel
their slots in the completion queue are free.  Return 0, or -1 when
waiting failed (say so: print_call_error()).
Cases: the timeout (-ETIME), a signal (-EINTR), completions waiting in
the kernel for room in a full completion queue (-EBUSY): none of them
is a failure; no completion at all; many at once.
Read: man io_uring_submit_and_wait_timeout, man io_uring_for_each_cqe,
man io_uring_cq_advance, man 7 io_uring.""",
             """timeout = timespec_from(wait_seconds); ret =
io_uring_submit_and_wait_timeout(&server->ring, &cqe, 1, wait_seconds < 0
? NULL : &timeout, NULL); ret < 0 other than -ETIME, -EINTR, -EBUSY:
print_call_error(server->program, "io_uring_submit_and_wait_timeout", -ret), return -1.
Then io_uring_for_each_cqe(&server->ring, head, cqe) { server_handle(server,
cqe); seen++; } and io_uring_cq_advance(&server->ring, seen); return 0.""",
             "(void)server; (void)wait_seconds; (void)timespec_from;\n"
             f"return {_stop('step 9: the submission and completion loop, in turn(), main.c')};\n",
             caught_by="many_clients_at_once and local", says=r"TODO step 9: the submission"),
        Todo("multishot_receive",
             """TODO step 9, idea 11: a multishot recv posts a completion each time
data arrives, while more will come.  When one is that request's LAST
(end of input, an error, our cancel, an empty pool, a full completion
queue), c has no recv any more: say so, so that update_receiving() arms
a new one if c still wants to receive, and a closing c can be freed.
Read: man io_uring_prep_recv_multishot (IORING_CQE_F_MORE).""",
             """if (!(cqe->flags & IORING_CQE_F_MORE)) c->receiving = c->cancelling =
false;""",
             "if (!(cqe->flags & IORING_CQE_F_MORE))     /* placeholder */\n"
             f"    (void){_stop('step 9, idea 11: a multishot recv that ended, in on_recv()')};\n",
             caught_by="disconnect_half_close and local", says=r"TODO step 9, idea 11"),
        Todo("buffer_pool",
             """TODO step 9, idea 12: once every byte of c's oldest owed buffer
(c->first_buffer; c->first_sent of server->pool.length[bid] sent) is
sent, that buffer must go back to the pool for the kernel to fill again,
and c's queue move on.  Forget it and the pool runs dry after 512
buffers: every recv ends with ENOBUFS.
Read: man io_uring_buf_ring_add.""",
             """if (c->first_sent == pool.length[first_buffer]) { done = first_buffer;
first_buffer = pool.next[done]; first_sent = 0; give_back(&pool, done); }""",
             "if (c->first_sent == server->pool.length[c->first_buffer])   /* placeholder */\n"
             f"    (void){_stop('step 9, idea 12: giving a sent buffer back, in on_send()')};\n",
             caught_by="interleaved and local", says=r"TODO step 9, idea 12"),
    ],
}

# Plausible wrong versions (tests/mistakes/STEP-NAME.patch, made against the
# step's own files), each caught by checks whose report names the idea.
MISTAKES = {
    "06_frame_loop": [
        # Closing at read() == 0 with the short-read shortcut loses nothing:
        # a client owed bytes is not read, and a short read ends the loop, so
        # the end of input is only ever read with nothing owed.
        Mistake("close_at_eof_no_shortcut",
                "closes a client as soon as read() says 0, reading until EAGAIN "
                "(no short-read shortcut), bytes still owed",
                "half_close", r"half-close|read\(\) return(ed|ing) 0"),
        Mistake("accept_blocking", "plain accept(): a client socket that blocks",
                "frame_loop_never_waits_for_a_silent_or_stuck_client",
                r"non-blocking|idea 2"),
        Mistake("poll_waits", "poll() with a 10 ms timeout in the frame",
                "an_idle_frame_loop_wakes_every_frame", r"zero timeout"),
        Mistake("drop_unsent", "what send() did not take is dropped",
                "large_transfer and local", r"took only part|idea 4"),
        Mistake("listeners_same_order", "the same listening socket first, every frame",
                "a_flood_on_one_address", r"same order every turn"),
    ],
    "07_poll": [
        Mistake("read_always", "watches every client for reading, full or not",
                "a_client_that_stops_reading", r"backpressure"),
        Mistake("handler_no_write", "the handler sets the flag but writes nothing",
                "a_stop_signal_wakes_the_loop_through_the_stop_pipe", r"stop pipe|self-pipe"),
        Mistake("pipe_not_polled", "the pipe is written but not in the poll() list",
                "a_stop_signal_wakes_the_loop_through_the_stop_pipe", r"stop pipe"),
    ],
    "08_epoll": [
        Mistake("idle_never_closes", "computes the next deadline but closes nobody",
                "idle_client_is_closed", r"idle"),
        Mistake("idle_no_deadline", "closes idle clients but never bounds the wait",
                "lone_idle_client", r"idea 10"),
        Mistake("activity_not_moved", "stamps the time but never moves the client",
                "idle_client_is_closed", r"idea 10"),
    ],
}


def for_step(step):
    """{label: Todo} for the regions step `step` cuts out."""
    return {todo.label: todo for todo in TODOS.get(step, [])}
