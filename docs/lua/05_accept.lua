-- Step 5: accept() -- an iterative echo server; the Lua twin of steps/05_accept/main.c.
--
--     local server = assert(createTCPServer(host, port, backlog))
--     while true do local client = server:accept() ... end
--
-- Steps 1 to 4 are one call now: createCheckedTCPServer(), the classic
-- helper with every return checked (createCheckedTCPServer.lua).  accept()
-- takes the oldest connection off the queue and returns a new socket for
-- it; the listening socket stays ready for the next client.  One client at
-- a time: the next one waits in the queue until this one hangs up.
--
--     lua5.4 docs/lua/05_accept.lua            listening on [::1]:7777 (stock /etc/hosts)
--     nc localhost 7777                        type a line: it comes back
--
-- Usage: 05_accept.lua [HOST [PORT [BACKLOG]]]    Ctrl-C ends it.
-- Every wait is at most 0.1 s, so that Ctrl-C is seen (common.lua).
package.path = arg[0]:match("^(.-)[^/]*$") .. "?.lua;" .. package.path
local socket = require "socket"
local common = require "common"
local createCheckedTCPServer = require "createCheckedTCPServer"

-- send() may take less than we give it: loop until all is sent.
local function send_all(client, data)
    local sent = 0
    while sent < #data do
        local last, err, last_partial = client:send(data, sent + 1)
        if not last and err ~= "timeout" then return err end
        sent = last or last_partial
        if sent < #data then socket.select(nil, { client }, 0.1) end
    end
end

-- Echo until the client hangs up; returns why the connection ended.
local function echo_until_closed(client)
    client:settimeout(0)   -- receive() returns what has come; select() waits
    while true do
        socket.select({ client }, nil, 0.1)
        local data, err, partial = client:receive(4096)
        err = send_all(client, data or partial) or err
        -- LuaSocket says "closed" for a FIN, and for ECONNRESET and EPIPE too.
        if err == "closed" then return "client closed" end
        if err ~= nil and err ~= "timeout" then return err end
    end
end

common.run(function()
    local args = common.parse_args(arg)
    local server, err = createCheckedTCPServer(args.host, args.port, args.backlog)
    if not server then return common.fail(err) end
    print("listening on " .. common.format_address(server:getsockname()))
    io.stdout:flush()

    server:settimeout(0.1)   -- accept() gives up now and then: see Ctrl-C
    while true do
        local client, why = server:accept()
        if client then
            local peer = common.format_address(client:getpeername())
            print(("accepted %s (fd %d)"):format(peer, client:getfd()))
            io.stdout:flush()

            local finished, result = pcall(echo_until_closed, client)
            client:close()
            print(("closed %s: %s"):format(peer, finished and result or "server stopping"))
            io.stdout:flush()
            if not finished then error(result, 0) end   -- Ctrl-C: on to common.run
        elseif why ~= "timeout" then
            return common.fail("accept: " .. why)
        end
    end
end, "stopping on SIGINT")
