-- Step 3: bind() -- the Lua twin of steps/03_bind/main.c.
--
--     server:bind(host, port)                -- createTCPServer, line 3
--
-- bind() claims HOST:PORT: "localhost" for this computer only, "*" for every
-- interface.  Port 0 lets the kernel pick; getsockname() says which.  Bound
-- is not listening: a client that connects now is refused.
-- LuaSocket takes PORT modulo 65536 (99999 binds 34463): the command line
-- refuses anything above 65535 first, as the C does.
--
--     lua5.4 docs/lua/03_bind.lua '*' 0        bound to 0.0.0.0:41237
--
-- Usage: 03_bind.lua [--no-reuseaddr] [HOST [PORT [BACKLOG]]]    Ctrl-C ends it.
package.path = arg[0]:match("^(.-)[^/]*$") .. "?.lua;" .. package.path
local common = require "common"

-- For one address: the socket, or nil, the call that failed and why.
local function open(address, args)
    local server, err = common.new_socket(address.family)     -- socket()
    if not server then return nil, "socket", err end
    local ok
    if args.reuseaddr then
        ok, err = server:setoption("reuseaddr", true)         -- setsockopt()
        if not ok then server:close() return nil, "setsockopt SO_REUSEADDR", err end
    end
    ok, err = server:bind(address.addr, args.port)            -- bind()
    if not ok then server:close() return nil, "bind", err end
    return server
end

common.run(function()
    local args = common.parse_args(arg, { no_reuseaddr = true })
    local addresses, err = common.resolve(args.host, args.port)
    if not addresses then return common.fail(err) end

    -- Try each address HOST resolved to until every call succeeds.
    local server, address, failed_call
    for _, candidate in ipairs(addresses) do
        address = candidate
        server, failed_call, err = open(address, args)
        if server then break end
    end
    if not server then
        return common.fail(("%s %s: %s"):format(failed_call,
            common.format_address(address.addr, args.port, address.family), err))
    end

    print(("socket fd %d (%s TCP)"):format(server:getfd(), common.family_name[address.family]))

    local reuseaddr, why = server:getoption("reuseaddr")           -- getsockopt()
    if reuseaddr == nil then return common.fail("getsockopt SO_REUSEADDR: " .. why) end
    print(("SO_REUSEADDR = %d"):format(reuseaddr and 1 or 0))

    print("bound to " .. common.format_address(server:getsockname())) -- getsockname()
    io.stdout:flush()

    common.wait_for_stop_signal()
end)
