-- connections.lua -- the clients of an echo server that serves many at once;
-- the Lua twin of steps/06_frame_loop/connections.c and
-- steps/07_poll/connections.c, shared by the Lua steps 6 and 7.
--
-- Step 6 (a FRAME script) and step 7 (a loop blocking in socket.select())
-- differ only in WHEN they look at their sockets.  What they do once a socket
-- is ready is the same, and it is the hard part, so it lives here:
--
--   * accepting without waiting: the listening sockets have settimeout(0),
--     so accept() says nil, "timeout" when nobody waits.  An accepted client
--     does NOT inherit that (its timeout is -1: a receive() on it would
--     wait for its next byte, and the whole program with it), so each one
--     gets settimeout(0) at once.  At most ACCEPTS_PER_TURN a turn, so that
--     a flood of newcomers cannot starve the clients already connected.
--     The listening sockets share those 64, and each turn the next one goes
--     first: a flood on one address can use up only the turns it begins,
--     so a client of another address waits at most one turn per address,
--     not for as long as the flood lasts.
--     Any other failure of accept() (out of descriptors: "Too many open
--     files") ends this turn's accepting; the client stays queued and the
--     next turn tries again.  It is said once, not every turn.
--   * a client whose descriptor is 1024 or more gets one line and is closed:
--     socket.select() cannot watch it ("descriptor too large for set size",
--     FD_SETSIZE), where the C steps move on to poll() and epoll.  That is
--     select()'s own limit, not a choice: there is no --max-clients here
--     (step 8 brings it, and has no Lua twin).
--   * reading what has arrived, and keeping every byte of it: receive(n)
--     returns nil, "timeout", PARTIAL when fewer than n bytes were there,
--     and nil, "closed", PARTIAL when the client shut its side after them.
--     The data is the third value, and it is gone from LuaSocket once
--     returned.
--   * echoing what the socket takes now, keeping the rest: send() returns
--     the index of the last byte sent, or nil, "timeout", LAST when the
--     socket took only part (LAST is an index, not a count).  What is owed
--     is bounded: a client owed OUTPUT_LIMIT bytes is not read from until
--     it drains, so one that sends much and reads slowly costs bounded memory.
--   * backpressure as interest (watch): a client is asked about reading
--     only while it may send more and is owed under OUTPUT_LIMIT, and about
--     writing only while it is owed output.
--   * ending: a client that closes, or only shuts its sending side (half-
--     close), first gets everything it is owed, then is closed; a reset closes
--     it at once.  LuaSocket says "closed" for a reset and for an orderly
--     close alike, so a pending error is asked for (getoption("error"))
--     before a ready socket is read: "closed" there means the client reset
--     the connection.
--
-- The lines are the C steps' lines, on stdout through log.lua (which never
-- waits for stdout: it drops and counts what stdout will not take), unless
-- quiet:
--
--     accepted 127.0.0.1:50522 (fd 5)
--     closed 127.0.0.1:50522: client closed
--     closed 127.0.0.1:50524: ECONNRESET (Connection reset by peer)
--     refused 127.0.0.1:50530: descriptor 1024: select() watches only those below 1024
--
-- A loop, whatever tells it which sockets are ready:
--
--     local clients = connections.new(args, listening_sockets)
--     while true do
--         connections.start_turn(clients)   -- 64 more accepts; the log flushed
--         local readers, writers = connections.watch(clients)
--         local readable, writable = socket.select(readers, writers, timeout)
--         connections.serve(clients, readable, writable)
--     end
--
-- Nothing here needs the time: no client is closed for being idle (that is
-- step 8's --idle-timeout, which has no Lua twin).
local log = require "log"

local connections = {}

connections.OUTPUT_LIMIT = 64 * 1024   -- owed bytes at which reading stops
local ACCEPTS_PER_TURN = 64
local FD_SETSIZE = 1024                 -- select() watches descriptors below it
-- LuaSocket's words for the errors this file names as the C does.
local ERRNO_NAMES = { ["Too many open files"] = "EMFILE",
                      ["Too many open files in system"] = "ENFILE" }

local function log_line(clients, line)
    if not clients.quiet then log.line(line) end
end

-- An empty table of clients for these listening sockets (settimeout(0)
-- already), configured from the command line's args.
function connections.new(args, servers)
    return {
        servers = servers,
        by_socket = {},              -- socket -> its connection
        count = 0,
        quiet = args.quiet,
        accepts_this_turn = 0,
        first_server = 1,            -- servers[first_server] is served first this turn
        accept_failing = nil,        -- what accept() last failed with; nil once it works
    }
end

function connections.close(clients, c, reason)
    log_line(clients, ("closed %s: %s"):format(c.peer, reason))
    c.socket:close()
    clients.by_socket[c.socket] = nil
    clients.count = clients.count - 1
end

function connections.close_all(clients, reason)
    for _, c in pairs(clients.by_socket) do connections.close(clients, c, reason) end
end

-- "127.0.0.1:50522", "[::1]:50522"; a client that reset before we asked
-- has no address left: "(peer unknown: ...)".
local function peer_of(client)
    local addr, port, family = client:getpeername()
    if addr == nil then return ("(peer unknown: %s)"):format(port) end
    if family == "inet6" then return ("[%s]:%d"):format(addr, port) end
    return ("%s:%d"):format(addr, port)
end

-- A client select() cannot watch: one line, then close.
local function refuse_for_select(clients, client, peer)
    local fd = client:getfd()
    client:settimeout(0)
    client:send("busy: too many clients for select(), try later\n")   -- a fresh socket takes it
    client:close()
    log_line(clients, ("refused %s: descriptor %d: select() watches only those below %d"):format(
        peer, fd, FD_SETSIZE))
end

-- accept() failed in a way that is not about one client: the client stays
-- queued; the next turn tries again.  Said once, not every turn.
local function accept_failed(clients, err)
    if clients.accept_failing ~= err then
        local name = ERRNO_NAMES[err]
        io.stderr:write(("accept: %s; trying again next turn\n"):format(
            name and ("%s (%s)"):format(name, err) or err))
    end
    clients.accept_failing = err
end

-- Takes the clients waiting on `server`, as many as this turn allows.
local function accept_clients(clients, server)
    while clients.accepts_this_turn < ACCEPTS_PER_TURN do
        clients.accepts_this_turn = clients.accepts_this_turn + 1
        -- LuaSocket's accept() retries EINTR and says "timeout" for EAGAIN
        -- and for ECONNABORTED (a client gone while queued) alike.
        local client, err = server:accept()
        if not client then
            if err ~= "timeout" then accept_failed(clients, err) end
            return
        end
        clients.accept_failing = nil
        local peer = peer_of(client)
        if client:getfd() >= FD_SETSIZE then
            refuse_for_select(clients, client, peer)
        else
            client:settimeout(0)   -- not inherited from the server: set it
            clients.by_socket[client] = { socket = client, peer = peer, owed = "",
                                          input_ended = false }
            clients.count = clients.count + 1
            log_line(clients, ("accepted %s (fd %d)"):format(peer, client:getfd()))
        end
    end
end

-- Starts a turn of the loop: ACCEPTS_PER_TURN more accepts, the next
-- listening socket first, and the log's waiting lines tried again.
function connections.start_turn(clients)
    clients.accepts_this_turn = 0
    clients.first_server = clients.first_server % #clients.servers + 1
    log.flush()
end

-- The sockets to ask about: the listening ones, every client that may send
-- more and is owed under OUTPUT_LIMIT (READ), and those owed output (WRITE).
-- Step 7 sleeps in socket.select() on these lists, so a client watched for
-- what it will not be given (reading when full, or after its input ended:
-- it is readable for good) would wake it at once, forever.
function connections.watch(clients)
    local readers, writers = {}, {}
    for _, server in ipairs(clients.servers) do readers[#readers + 1] = server end
    for client, c in pairs(clients.by_socket) do
        if not c.input_ended and #c.owed < connections.OUTPUT_LIMIT then
            readers[#readers + 1] = client
        end
        if #c.owed > 0 then writers[#writers + 1] = client end
    end
    return readers, writers
end

-- Reads what has arrived, up to the limit.  False if it closed c.
local function read_input(clients, c)
    -- A reset leaves an error pending on the socket, which receive() would
    -- turn into "closed", just as it does an orderly close.
    local pending = c.socket:getoption("error")
    if pending then
        connections.close(clients, c, pending == "closed"
            and "ECONNRESET (Connection reset by peer)" or pending)
        return false
    end
    local room = connections.OUTPUT_LIMIT - #c.owed
    if c.input_ended or room == 0 then return true end   -- full: it waits until c drains
    local data, err, partial = c.socket:receive(room)
    data = data or partial
    if #data > 0 then c.owed = c.owed .. data end
    if err == "closed" then
        c.input_ended = true   -- closed, or half-closed: we still owe it
    elseif err and err ~= "timeout" then
        connections.close(clients, c, err)
        return false
    end
    return true
end

-- Sends what the socket takes; keeps the rest.  False if it closed c.
local function write_output(clients, c)
    local last, err, partial_last = c.socket:send(c.owed)
    last = last or partial_last
    if last > 0 then c.owed = c.owed:sub(last + 1) end
    if err == "closed" then
        -- A reset or a vanished reader: LuaSocket says "closed" for both.
        connections.close(clients, c, "ECONNRESET or EPIPE (LuaSocket says: closed)")
        return false
    elseif err and err ~= "timeout" then
        connections.close(clients, c, err)
        return false
    end
    return true
end

-- Serves what socket.select() said is ready: readable and writable, the
-- lists it returned.  Clients first, then the newcomers.
function connections.serve(clients, readable, writable)
    local ready = {}
    for _, sock in ipairs(readable) do ready[sock] = "read" end
    for _, sock in ipairs(writable) do ready[sock] = ready[sock] or "write" end
    for sock, what in pairs(ready) do
        local c = clients.by_socket[sock]
        if c then
            local open = true
            if what == "read" then open = read_input(clients, c) end
            -- Send even when select() did not say "writable": the socket
            -- usually has room for what we just read.
            if open and #c.owed > 0 then open = write_output(clients, c) end
            if open and c.input_ended and #c.owed == 0 then
                connections.close(clients, c, "client closed")
            end
        end
    end
    local servers = clients.servers
    for i = 0, #servers - 1 do   -- this turn's first, then round the list
        local server = servers[(clients.first_server - 1 + i) % #servers + 1]
        if ready[server] then accept_clients(clients, server) end
    end
end

-- Closes every client.
function connections.free(clients)
    connections.close_all(clients, "server stopping")
end

return connections
