-- createTCPServer.lua -- the classic helper, as the course it came from has
-- it, bugs included.  Do not copy it: use createCheckedTCPServer.lua.
--
--     local createTCPServer = require "createTCPServer"
--     local server, err = createTCPServer("localhost", 7777, 128)
--
-- Two bugs, both silent (tests/lua/test_lua.py shows them):
--   * socket.tcp() makes no socket until bind(), so the setoption() below
--     fails with nil, "setsockopt failed"; nobody looks, and the server runs
--     without SO_REUSEADDR: a restart during TIME_WAIT fails to bind with
--     "address already in use".
--   * LuaSocket takes the port modulo 65536: 99999 binds port 34463.
local socket = require "socket"

local function createTCPServer(host, port, backlog)
    local server, err = socket.tcp()             -- step 1: socket()
    if not server then return nil, err end
    server:setoption("reuseaddr", true)          -- step 2: setsockopt()
    local ok, err = server:bind(host, port)      -- step 3: bind()
    if not ok then return nil, err end
    ok, err = server:listen(backlog)             -- step 4: listen()
    if not ok then return nil, err end
    return server
end

return createTCPServer
