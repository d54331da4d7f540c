-- Step 6: a frame loop -- the server as an engine's INIT and FRAME scripts;
-- the Lua twin of steps/06_frame_loop/main.c.
--
--     -- every frame, 60 times a second:
--     local ready = socket.select(clients_and_server, clients_with_output, 0)
--
-- A demo engine runs its Lua in two parts: INIT once, FRAME every frame,
-- and FRAME must never wait, or the picture freezes.  INIT creates the
-- server, on every address HOST names, with settimeout(0): accept() then
-- says nil, "timeout" at once when nobody waits.  Every FRAME asks
-- socket.select() with a timeout of 0 which sockets are ready NOW, serves
-- them (connections.lua: accept, read, echo what the socket takes, keep the
-- rest for a later frame, drop who left), and returns.  The time is the
-- host's (its clock times the frames); the server itself needs none.
--
-- host.lua stands in for the engine: it calls init() once, frame(dt) 60
-- times a second, and prints step 6's report once a second.
--
--     lua5.4 docs/lua/host.lua docs/lua/06_frame_loop.lua   listening on 127.0.0.1:7777
--     nc localhost 7777  (several at once)                  each gets its own lines back
--
-- Options (host.lua reads them), as the C step 6 takes them:
-- [--quiet] [--fps N] [HOST [PORT [BACKLOG]]].  Ctrl-C ends it.
--
-- Which clients FRAME asks about: connections.watch() leaves out, already
-- here, a client owed 64 KiB and one whose input ended, and asks about
-- writing only for a client owed output, as step 7 does.  The C step 6 asks
-- every client for POLLIN (its read just does not read a full one), and a
-- frame that only looks would not mind; but socket.select() would say a
-- client whose input ended is readable every frame, for nothing.  One
-- watch() for both twins, then: what step 7 adds is the sleep, not the lists.
local socket = require "socket"
local listeners = require "listeners"
local connections = require "connections"
local log = require "log"

local servers, clients   -- what INIT makes and FRAME uses

-- INIT: once, before the first frame.  nil and why if it cannot serve.
local function init(args)
    local list, skipped = listeners.open(args.host, args.port, args.backlog)
    if not list then return nil, skipped end
    if skipped ~= "" then
        io.stderr:write(("%s: skipped, not on this computer: %s\n"):format(arg[0], skipped))
    end
    servers = {}
    for _, listener in ipairs(list) do
        listener.server:settimeout(0)   -- accept() must never wait for a client
        servers[#servers + 1] = listener.server
    end
    clients = connections.new(args, servers)
    for _, listener in ipairs(list) do log.line("listening on " .. listener.address) end
    return true
end

-- FRAME: every frame.  Looks, serves what is ready, returns: never waits.
-- dt, the seconds since the last frame, is what an engine hands every
-- FRAME; an echo server has nothing to time with it.
local function frame(dt) -- luacheck: no unused args
    connections.start_turn(clients)
    local readers, writers = connections.watch(clients)
    local readable, writable = socket.select(readers, writers, 0)   -- 0: look, never wait
    connections.serve(clients, readable, writable)
end

-- Ctrl-C: every client is told goodbye, then the listening sockets go.
local function stop()
    connections.free(clients)
    for _, server in ipairs(servers) do server:close() end
end

return { init = init, frame = frame, stop = stop,
         clients = function() return clients.count end }
