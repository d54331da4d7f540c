-- Step 1: socket() -- the Lua twin of steps/01_socket/main.c.
--
--     local server, err = socket.tcp()       -- createTCPServer, line 1
--
-- But socket.tcp() makes no socket yet: LuaSocket waits for bind() to learn
-- IPv4 or IPv6, and server:getfd() says -1 until then.  socket.tcp4() and
-- socket.tcp6() make it at once, as C's socket() does, so we pick by HOST.
--
--     lua5.4 docs/lua/01_socket.lua            socket fd 3 (IPv4 TCP)
--     ls -l /proc/$(pgrep -f 01_socket)/fd     3 -> socket:[...]
--
-- Usage: 01_socket.lua [HOST [PORT [BACKLOG]]]    Ctrl-C ends it.
-- (SIGTERM kills it: Lua cannot catch it; the C exits 0.)
package.path = arg[0]:match("^(.-)[^/]*$") .. "?.lua;" .. package.path
local common = require "common"

-- For one address: the socket, or nil, the call that failed and why.
local function open(address)
    local server, err = common.new_socket(address.family)     -- socket()
    if not server then return nil, "socket", err end
    return server
end

common.run(function()
    local args = common.parse_args(arg)
    local addresses, err = common.resolve(args.host, args.port)
    if not addresses then return common.fail(err) end

    -- Try each address HOST resolved to until every call succeeds.
    local server, address, failed_call
    for _, candidate in ipairs(addresses) do
        address = candidate
        server, failed_call, err = open(address)
        if server then break end
    end
    if not server then
        return common.fail(("%s %s: %s"):format(failed_call,
            common.format_address(address.addr, args.port, address.family), err))
    end

    print(("socket fd %d (%s TCP)"):format(server:getfd(), common.family_name[address.family]))
    io.stdout:flush()

    common.wait_for_stop_signal()
end)
