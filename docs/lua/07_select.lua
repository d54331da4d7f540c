-- Step 7: select() -- an event-driven echo server; the Lua twin of
-- steps/07_poll/main.c, with the only waiting call LuaSocket has.
--
--     local readable, writable = socket.select(clients_and_server, clients_with_output, timeout)
--
-- Step 6 was a guest in an engine's frame loop and asked, 60 times a
-- second, "anything for me?" with a timeout of 0.  A program whose only job
-- is serving can do better: hand socket.select() the list of sockets and
-- sleep in it until one of them is ready.  No frames: it answers as soon as
-- a byte arrives instead of at the next frame.  What it does with a ready
-- socket is step 6's (connections.lua); the difference is the timeout.
-- A sleep makes the lists matter (backpressure as interest): each client is
-- watched only for what it can take now -- reading while it may send more
-- and is owed under 64 KiB, writing while it is owed output.  A socket
-- watched for what it will not be given (a client whose input ended is
-- readable for good) would end every sleep at once: a loop that spins
-- instead of sleeping.  connections.watch() makes these lists, for step 6's
-- twin as well (06_frame_loop.lua says why).
--
-- Two limits of LuaSocket shape it, where the C step 7 has neither:
--   * socket.select() is select(), which watches descriptors below 1024
--     (FD_SETSIZE) and raises an error for any other: connections.lua turns
--     away a client whose descriptor would be 1024 or more.  The C moves on
--     to poll() for this, and LuaSocket has no poll().
--   * a Ctrl-C is noticed only between two calls, and socket.select() goes
--     back to waiting after a signal: every wait is at most 0.1 s, so the
--     server wakes 10 times a second even with nothing to do (the C sleeps,
--     and a pipe its signal handler writes to wakes it: LuaSocket has no
--     signal handler to write one).
--
-- Its lines go through log.lua, which never waits for stdout: where print()
-- would stop the server once nobody reads its output, it drops and counts
-- them, as the C steps do; every turn tries the waiting ones again.
--
--     lua5.4 docs/lua/07_select.lua          listening on 127.0.0.1:7777
--     nc localhost 7777  (several at once)   each gets its own lines back
--
-- Usage: 07_select.lua [--quiet] [HOST [PORT [BACKLOG]]]     Ctrl-C ends it.
package.path = arg[0]:match("^(.-)[^/]*$") .. "?.lua;" .. package.path
local socket = require "socket"
local common = require "common"
local listeners = require "listeners"
local connections = require "connections"
local log = require "log"

local LONGEST_WAIT = 0.1   -- seconds: how late a Ctrl-C may be seen

local args = common.parse_args(arg, { quiet = true })

common.run(function()
    local list, skipped = listeners.open(args.host, args.port, args.backlog)
    if not list then return common.fail(skipped) end
    if skipped ~= "" then common.fail("skipped, not on this computer: " .. skipped) end
    local servers = {}
    for _, listener in ipairs(list) do
        listener.server:settimeout(0)   -- accept() must never wait for a client
        servers[#servers + 1] = listener.server
    end
    local clients = connections.new(args, servers)

    local ok, err = pcall(function()
        for _, listener in ipairs(list) do log.line("listening on " .. listener.address) end
        while true do
            connections.start_turn(clients)
            local readers, writers = connections.watch(clients)
            -- Sleep until a socket is ready, but never longer than
            -- LONGEST_WAIT: nothing else is ever due.
            local readable, writable = socket.select(readers, writers, LONGEST_WAIT)
            connections.serve(clients, readable, writable)
        end
    end)
    if not ok and not common.is_interrupt(err) then error(err, 0) end
    log.line("stopping on SIGINT")
    connections.free(clients)
    listeners.close_all(list)
    log.close()
    return 0
end)
