-- createCheckedTCPServer.lua -- the classic helper with every return checked:
-- the Lua twin of tcp_server_create() in common/tcp_server.c.
--
--     local createCheckedTCPServer = require "createCheckedTCPServer"
--     local server, err = createCheckedTCPServer("localhost", 7777, 128)
--     -- err: "bind 127.0.0.1:7777: address already in use"
--
-- What changed from createTCPServer.lua, and why:
--   * socket.tcp4() or socket.tcp6(), not socket.tcp(): the socket exists at
--     once, so setoption("reuseaddr", true) reaches it before bind().
--   * setoption's return is checked like every other call.
--   * A port outside 0-65535 is refused: LuaSocket would wrap it.
--   * Each address HOST resolves to is tried in turn, as the C does, and the
--     message names the call and the address that failed.
local common = require "common"

-- Steps 1 to 4 on one address: the listening socket, or nil, the call that
-- failed and why.  A socket that fails half-way is closed, not leaked.
local function listen_on(address, port, backlog)
    local server, err = common.new_socket(address.family)   -- step 1: socket()
    if not server then return nil, "socket", err end
    local ok
    ok, err = server:setoption("reuseaddr", true)          -- step 2: setsockopt()
    if not ok then server:close() return nil, "setsockopt SO_REUSEADDR", err end
    ok, err = server:bind(address.addr, port)              -- step 3: bind()
    if not ok then server:close() return nil, "bind", err end
    ok, err = server:listen(backlog)                       -- step 4: listen()
    if not ok then server:close() return nil, "listen", err end
    return server
end

local function createCheckedTCPServer(host, port, backlog)
    if math.type(port) ~= "integer" or port < 0 or port > 65535 then
        return nil, ("port %s: out of range (0-65535)"):format(port)
    end
    local addresses, err = common.resolve(host, port)
    if not addresses then return nil, err end
    local message
    for _, address in ipairs(addresses) do
        local server, failed_call, why = listen_on(address, port, backlog)
        if server then return server end
        message = ("%s %s: %s"):format(failed_call,
            common.format_address(address.addr, port, address.family), why)
    end
    return nil, message   -- what the last address met
end

return createCheckedTCPServer
