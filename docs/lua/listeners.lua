-- listeners.lua -- steps 6 and 7: a listening socket on EVERY address HOST
-- names; the Lua twin of common/listeners.c.
--
--     local listeners = require "listeners"
--     local list, skipped = listeners.open("localhost", 7777, 128)
--     -- list: { { server = <tcp{server}>, address = "[::1]:7777" }, ... }
--
-- createCheckedTCPServer() listens on the first address that works.  Under
-- the stock /etc/hosts of Debian, Fedora or Docker that is [::1] alone for
-- "localhost", and a client of 127.0.0.1 is refused (lesson 3).  So:
--   * one socket per address, in getaddrinfo()'s order; "*" is 0.0.0.0 and
--     :: both, and every IPv6 socket is IPv6-only (LuaSocket's tcp6() sets
--     IPV6_V6ONLY already; we set it again, so the page does not depend on it);
--   * an address listed twice (/etc/hosts may give a name 127.0.0.1 on two
--     lines) gets one socket: a second one would find the port taken;
--   * one port for all: with PORT 0 the kernel picks it for the first
--     address and the others bind the same; if it is taken on a later
--     address, the kernel picks again (PORT_TRIES times), the rejected socket
--     held open meanwhile so that it cannot pick the same port again;
--   * an address this computer lacks (no IPv6 at all, no ::1) is skipped,
--     and `skipped` says so; anything else fails it all, closing what it
--     opened: a server on half of "localhost" is worse than none.
local common = require "common"

local listeners = {}

local PORT_TRIES = 10
-- LuaSocket passes these texts through from strerror(): "not on this computer".
local NOT_HERE = {
    ["Cannot assign requested address"] = true,            -- EADDRNOTAVAIL
    ["Address family not supported by protocol"] = true,   -- EAFNOSUPPORT
}

-- Steps 1-4 on one address: the server, or nil, the call that failed, why.
local function listen_on(address, port, backlog)
    local server, err = common.new_socket(address.family)
    if not server then return nil, "socket", err end
    local ok
    ok, err = server:setoption("reuseaddr", true)
    if ok and address.family == "inet6" then
        ok, err = server:setoption("ipv6-v6only", true)
        if not ok then server:close() return nil, "setsockopt IPV6_V6ONLY", err end
    end
    if not ok then server:close() return nil, "setsockopt SO_REUSEADDR", err end
    ok, err = server:bind(address.addr, port)
    if not ok then server:close() return nil, "bind", err end
    ok, err = server:listen(backlog)
    if not ok then server:close() return nil, "listen", err end
    return server
end

local function close_all(list)
    for _, listener in ipairs(list) do listener.server:close() end
end

-- One try with one port: the list, or nil and the error line; when `port`
-- is 0 and the port picked for the first address is taken on a later one,
-- also the first socket (to hold while the kernel picks again).
local function try_every_address(addresses, port, backlog)
    local list, skipped, port_for_all = {}, {}, port
    for _, address in ipairs(addresses) do
        local where = common.format_address(address.addr, port_for_all, address.family)
        local server, call, why = listen_on(address, port_for_all, backlog)
        if server then
            local addr, bound_port, family = server:getsockname()
            port_for_all = math.tointeger(bound_port)
            list[#list + 1] = { server = server,
                                address = common.format_address(addr, port_for_all, family) }
        elseif NOT_HERE[why] then
            skipped[#skipped + 1] = ("%s %s: %s"):format(call, where, why)
        elseif port == 0 and #list > 0 and call == "bind" and why == "address already in use" then
            local first = table.remove(list, 1)
            close_all(list)
            return nil, ("%s %s: %s"):format(call, where, why), first.server
        else
            close_all(list)
            return nil, ("%s %s: %s"):format(call, where, why)
        end
    end
    if #list == 0 then return nil, skipped[#skipped] or "no address to listen on" end
    return list, table.concat(skipped, "; ")
end

-- The addresses without the ones listed before (the same family and text:
-- an IPv6 address's scope, "fe80::1%eth0", is part of its text).
local function each_once(addresses)
    local seen, once = {}, {}
    for _, address in ipairs(addresses) do
        local key = address.family .. " " .. address.addr
        if not seen[key] then
            seen[key] = true
            once[#once + 1] = address
        end
    end
    return once
end

-- Every address of host, listening on one port: the list and the addresses
-- skipped ("" if none), or nil and one line naming the call and the address.
function listeners.open(host, port, backlog)
    local addresses, err = common.resolve(host, port)
    if not addresses then return nil, err end
    addresses = each_once(addresses)
    local held, why = {}, nil
    for _ = 1, PORT_TRIES do
        local list, skipped, rejected = try_every_address(addresses, port, backlog)
        if not rejected then
            close_all(held)
            return list, skipped
        end
        held[#held + 1], why = { server = rejected }, skipped
    end
    close_all(held)
    return nil, ("%s (the kernel picked %d ports, each taken on another address)"):format(
        why, PORT_TRIES)
end

listeners.close_all = close_all

return listeners
