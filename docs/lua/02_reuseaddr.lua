-- Step 2: setsockopt(SO_REUSEADDR) -- the Lua twin of steps/02_reuseaddr/main.c.
--
--     server:setoption("reuseaddr", true)    -- createTCPServer, line 2
--
-- With socket.tcp() this line fails, nil, "setsockopt failed": there is no
-- socket until bind().  The classic helper never looks, so its server runs
-- without the option.  Here the socket exists (socket.tcp4/tcp6), the return
-- is checked, and we read the option back rather than trust the call.
--
--     lua5.4 docs/lua/02_reuseaddr.lua                   SO_REUSEADDR = 1
--     lua5.4 docs/lua/02_reuseaddr.lua --no-reuseaddr    SO_REUSEADDR = 0
--
-- Usage: 02_reuseaddr.lua [--no-reuseaddr] [HOST [PORT [BACKLOG]]]    Ctrl-C ends it.
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
    io.stdout:flush()

    common.wait_for_stop_signal()
end)
