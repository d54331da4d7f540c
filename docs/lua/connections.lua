-- connections.lua -- the clients of an echo server that serves many at once;
-- the Lua twin of common/connections.c, shared by steps 6 and 7.
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
--   * the client over max_clients gets one line and is closed; so is one
--     whose descriptor is 1024 or more, which socket.select() refuses
--     ("descriptor too large for set size", FD_SETSIZE), where the C steps
--     move on to poll() and epoll.  Out of descriptors, accept() fails with
--     "Too many open files": a spare descriptor (an open /dev/null) is given
--     up to take the waiting client off the queue, tell it, and close it.
--   * reading what has arrived, and keeping every byte of it: receive(n)
--     returns nil, "timeout", PARTIAL when fewer than n bytes were there,
--     and nil, "closed", PARTIAL when the client shut its side after them.
--     The data is the third value, and it is gone from LuaSocket once
--     returned.
--   * echoing what the socket takes now, keeping the rest: send() returns
--     the index of the last byte sent, or nil, "timeout", LAST when the
--     socket took only part (LAST is an index, not a count).
--   * backpressure: a client owed OUTPUT_LIMIT bytes is not read from until
--     it drains, so one that sends much and reads slowly costs bounded memory.
--   * ending: a client that closes, or only shuts its sending side (half-
--     close), first gets everything it is owed, then is closed; a reset closes
--     it at once; so does --idle-timeout.  LuaSocket says "closed" for a
--     reset and for an orderly close alike, so a pending error is asked for
--     (getoption("error")) before a ready socket is read: "closed" there
--     means the client reset the connection.
--
-- The lines are the C steps' lines, on stdout, unless quiet:
--
--     accepted 127.0.0.1:50522 (fd 5)
--     closed 127.0.0.1:50522: client closed
--     closed 127.0.0.1:50524: ECONNRESET (Connection reset by peer)
--     closed 127.0.0.1:50526: idle for 10 s
--     refused 127.0.0.1:50530: too many clients (max 1000)
--     refused 312 more clients (one line a second at most)
--
-- A loop, whatever tells it which sockets are ready:
--
--     local clients = connections.new(args, listening_sockets)
--     while true do
--         local wait = connections.turn(clients, now)   -- idle clients go
--         local readers, writers = connections.watch(clients, now)
--         local readable, writable = socket.select(readers, writers, timeout)
--         connections.serve(clients, readable, writable, now)
--     end
--
-- Time is what the caller says it is (`now`, in seconds): the FRAME script
-- adds up the dt its host gives it; step 7 asks its own clock.
local socket = require "socket"

local connections = {}

connections.OUTPUT_LIMIT = 64 * 1024   -- owed bytes at which reading stops
local ACCEPTS_PER_TURN = 64
local FD_SETSIZE = 1024                 -- select() watches descriptors below it
local ACCEPT_PAUSE = 0.5                -- seconds, when even the spare cannot help
-- LuaSocket's words for the errors this file names as the C does.
local ERRNO_NAMES = { ["Too many open files"] = "EMFILE",
                      ["Too many open files in system"] = "ENFILE" }

local function log(clients, line)
    if not clients.quiet then print(line) end
end

-- An empty table of clients for these listening sockets (settimeout(0)
-- already), configured from the command line's args.
function connections.new(args, servers)
    return {
        servers = servers,
        by_socket = {},              -- socket -> its connection
        count = 0,
        max_clients = args.max_clients,
        idle_timeout = args.idle_timeout,
        quiet = args.quiet,
        spare = io.open("/dev/null"),   -- given up when descriptors run out
        accept_paused_until = -math.huge,
        accepts_this_turn = 0,
        refusals = { next_line = -math.huge, not_logged = 0 },
    }
end

function connections.close(clients, c, reason)
    log(clients, ("closed %s: %s"):format(c.peer, reason))
    c.socket:close()
    clients.by_socket[c.socket] = nil
    clients.count = clients.count - 1
    if not clients.spare then clients.spare = io.open("/dev/null") end
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

-- One line to a client we will not serve, then close.  A "refused" line a
-- second at most; the others are counted, and turn() sums them up.
local function refuse(clients, client, peer, line, why, now)
    client:settimeout(0)
    client:send(line)   -- a fresh socket's buffer is empty: it takes the line
    client:close()
    local refusals = clients.refusals
    if now >= refusals.next_line then
        log(clients, ("refused %s: %s"):format(peer, why))
        refusals.next_line = now + 1
    else
        refusals.not_logged = refusals.not_logged + 1
    end
end

-- accept() failed for want of a descriptor: give up the spare, take the
-- waiting client off the queue, tell it, take the spare back.  True if
-- that made room to go on.
local function refuse_with_spare(clients, server, why, now)
    if not clients.spare then return false end
    clients.spare:close()
    clients.spare = nil
    local client = server:accept()
    if client then
        refuse(clients, client, peer_of(client), "busy: server out of descriptors, try later\n",
               ("%s (out of descriptors)"):format(why), now)
    end
    clients.spare = io.open("/dev/null")
    return client ~= nil
end

-- Takes the clients waiting on `server`, as many as this turn allows.
local function accept_clients(clients, server, now)
    while now >= clients.accept_paused_until and clients.accepts_this_turn < ACCEPTS_PER_TURN do
        clients.accepts_this_turn = clients.accepts_this_turn + 1
        local client, err = server:accept()
        if not client then
            if err == "timeout" then return end          -- nobody waiting
            local name = ERRNO_NAMES[err] or err
            local why = ("%s (%s)"):format(name, err)
            if not (ERRNO_NAMES[err] and refuse_with_spare(clients, server, why, now)) then
                io.stderr:write(("accept: %s; pausing accept for %g s\n"):format(why, ACCEPT_PAUSE))
                clients.accept_paused_until = now + ACCEPT_PAUSE
                return
            end
        else
            local peer = peer_of(client)
            if clients.count >= clients.max_clients then
                refuse(clients, client, peer, ("busy: too many clients (max %d), try later\n"):format(
                    clients.max_clients), ("too many clients (max %d)"):format(clients.max_clients), now)
            elseif client:getfd() >= FD_SETSIZE then
                refuse(clients, client, peer, "busy: too many clients for select(), try later\n",
                       ("descriptor %d: select() watches only those below %d"):format(
                           client:getfd(), FD_SETSIZE), now)
            else
                client:settimeout(0)   -- not inherited from the server: set it
                clients.by_socket[client] = { socket = client, peer = peer, owed = "",
                                              input_ended = false, last_active = now }
                clients.count = clients.count + 1
                log(clients, ("accepted %s (fd %d)"):format(peer, client:getfd()))
            end
        end
    end
end

-- Does what the clock says is due: closes clients idle for idle_timeout,
-- sums up refusals, lets accept() try again.  Call it once per turn, first.
-- Returns the seconds until something is due again, or nil.
function connections.turn(clients, now)
    clients.accepts_this_turn = 0
    local next_due = nil
    local function due(when)
        if not next_due or when < next_due then next_due = when end
    end
    if clients.accept_paused_until > now then due(clients.accept_paused_until) end
    local refusals = clients.refusals
    if refusals.not_logged > 0 then
        if now >= refusals.next_line then
            log(clients, ("refused %d more clients (one line a second at most)"):format(
                refusals.not_logged))
            refusals.not_logged = 0
        else
            due(refusals.next_line)
        end
    end
    if clients.idle_timeout > 0 then
        -- A scan of every client: fine for the hundreds select() can watch.
        -- (common/connections.c keeps them in order of activity instead.)
        for _, c in pairs(clients.by_socket) do
            local deadline = c.last_active + clients.idle_timeout
            if deadline <= now then
                connections.close(clients, c, ("idle for %g s"):format(clients.idle_timeout))
            else
                due(deadline)
            end
        end
    end
    return next_due and math.max(0, next_due - now)
end

-- The sockets to ask about: the listening ones (unless accepting is paused),
-- every client that may send more (READ), and those owed output (WRITE).
function connections.watch(clients, now)
    local readers, writers = {}, {}
    if now >= clients.accept_paused_until then
        for _, server in ipairs(clients.servers) do readers[#readers + 1] = server end
    end
    for client, c in pairs(clients.by_socket) do
        if not c.input_ended and #c.owed < connections.OUTPUT_LIMIT then
            readers[#readers + 1] = client
        end
        if #c.owed > 0 then writers[#writers + 1] = client end
    end
    return readers, writers
end

-- Reads what has arrived, up to the limit.  False if it closed c.
local function read_input(clients, c, now)
    -- A reset leaves an error pending on the socket, which receive() would
    -- turn into "closed", just as it does an orderly close.
    local pending = c.socket:getoption("error")
    if pending then
        connections.close(clients, c, pending == "closed"
            and "ECONNRESET (Connection reset by peer)" or pending)
        return false
    end
    local data, err, partial = c.socket:receive(connections.OUTPUT_LIMIT - #c.owed)
    data = data or partial
    if #data > 0 then
        c.owed = c.owed .. data
        c.last_active = now
    end
    if err == "closed" then
        c.input_ended = true   -- closed, or half-closed: we still owe it
    elseif err and err ~= "timeout" then
        connections.close(clients, c, err)
        return false
    end
    return true
end

-- Sends what the socket takes; keeps the rest.  False if it closed c.
local function write_output(clients, c, now)
    local last, err, partial_last = c.socket:send(c.owed)
    last = last or partial_last
    if last > 0 then
        c.owed = c.owed:sub(last + 1)
        c.last_active = now
    end
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
function connections.serve(clients, readable, writable, now)
    local ready = {}
    for _, sock in ipairs(readable) do ready[sock] = "read" end
    for _, sock in ipairs(writable) do ready[sock] = ready[sock] or "write" end
    for sock, what in pairs(ready) do
        local c = clients.by_socket[sock]
        if c then
            local open = true
            if what == "read" then open = read_input(clients, c, now) end
            -- Send even when select() did not say "writable": the socket
            -- usually has room for what we just read.
            if open and #c.owed > 0 then open = write_output(clients, c, now) end
            if open and c.input_ended and #c.owed == 0 then
                connections.close(clients, c, "client closed")
            end
        end
    end
    for _, server in ipairs(clients.servers) do
        if ready[server] then accept_clients(clients, server, now) end
    end
end

-- Closes every client and lets go of the spare.
function connections.free(clients)
    connections.close_all(clients, "server stopping")
    if clients.spare then clients.spare:close() end
    clients.spare = nil
end

return connections
