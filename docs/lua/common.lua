-- common.lua -- what two or more Lua steps share: the Lua twin of common/.
--
-- The command line (common/args.c), addresses as text (common/address.c) and
-- stopping on Ctrl-C (common/signals.c), so each step script shows only the
-- LuaSocket calls it teaches.  Every script finds this file beside itself.
local socket = require "socket"

local common = {}

local DEFAULT_HOST, DEFAULT_PORT, DEFAULT_BACKLOG = "localhost", 7777, 128
local DEFAULT_FPS = 60   -- frames a second
local INT_MAX = 2147483647

-- The command line -------------------------------------------------------

-- The value as an error line may show it: control bytes as \t, \n, \x01,
-- so that the message stays one line, as common/args.c shows them.
local function shown(text)
    local names = { ["\t"] = "\\t", ["\n"] = "\\n", ["\\"] = "\\\\" }
    return (text:gsub("[%c\\]", function(byte)
        return names[byte] or ("\\x%02x"):format(byte:byte())
    end))
end

local function usage_error(program, what, value, why)
    io.stderr:write(("%s: %s '%s': %s (see %s --help)\n"):format(
        program, what, shown(value), why, program))
    os.exit(2)
end

-- A whole decimal number in [min, max], or a usage error naming `what`.
local function parse_number(program, what, text, min, max)
    if not text:match("^%d+$") then
        usage_error(program, what, text, "not a whole number")
    end
    local value = tonumber(text)   -- a float when too big for an integer
    if value < min or value > max then
        usage_error(program, what, text, ("out of range (%d-%d)"):format(min, max))
    end
    return math.tointeger(value)
end

-- The options a step takes, as steps/*/main.c give them to parse_server_args():
-- { no_reuseaddr = true } for steps 2-4, { quiet = true, fps = true } for
-- step 6, { quiet = true } for step 7.  (common/args.c has --max-clients and
-- --idle-timeout as well: step 8's, which has no Lua twin.)
local OPTION_HELP = {
    { "no_reuseaddr", " [--no-reuseaddr]" }, { "quiet", " [--quiet]" },
    { "fps", " [--fps N]" },
}

-- The long options a step may take: the name after "--", the `accepted`
-- key, and for one that takes a value, what parses it.
local LONG_OPTIONS = {
    ["no-reuseaddr"] = { key = "no_reuseaddr" },
    quiet = { key = "quiet" },
    fps = { key = "fps", needs = "needs a number",
            parse = function(program, text)
                return parse_number(program, "frames per second", text, 1, 1000)
            end },
}

local function print_usage(program, accepted)
    local usage = {}
    for _, entry in ipairs(OPTION_HELP) do
        if accepted[entry[1]] then usage[#usage + 1] = entry[2] end
    end
    io.stdout:write(("usage: %s%s [HOST [PORT [BACKLOG]]]\n"):format(
        program, table.concat(usage)),
        "  HOST     localhost (default), * for every interface, or an address\n",
        ("  PORT     0-65535, default %d; 0 lets the kernel pick\n"):format(DEFAULT_PORT),
        ("  BACKLOG  length of the accept queue, default %d\n"):format(DEFAULT_BACKLOG))
    os.exit(0)
end

-- PROGRAM [OPTIONS] [HOST [PORT [BACKLOG]]], with the rules of common/args.c
-- (getopt_long()): options anywhere, before or after HOST; --name=value or
-- --name value; -h or --help; whole names only (no abbreviations); "--"
-- ends the options, so "-- localhost -1" makes -1 the port (and refuses
-- it), where "localhost -1" is an unknown option -1.  Bad input prints one
-- line and exits 2, before any socket exists.  `accepted` says which
-- options this step takes (none when nil).
function common.parse_args(argv, accepted)
    accepted = accepted or {}
    local program = argv[0]
    local args = { host = DEFAULT_HOST, port = DEFAULT_PORT,
                   backlog = DEFAULT_BACKLOG, reuseaddr = true, quiet = false,
                   fps = DEFAULT_FPS }
    local positional = {}
    local i, options_ended = 1, false
    while argv[i] do
        local text = argv[i]
        i = i + 1
        if options_ended or text == "-" or text:sub(1, 1) ~= "-" then
            positional[#positional + 1] = text
        elseif text == "--" then
            options_ended = true
        elseif text:sub(1, 2) == "--" then
            local name, equals, value = text:match("^%-%-([^=]*)(=?)(.*)$")
            local option = LONG_OPTIONS[name]
            if name == "help" and equals == "" then print_usage(program, accepted) end
            if not option or not accepted[option.key] or (equals ~= "" and not option.parse) then
                usage_error(program, "option", text, "unknown option")
            end
            if option.parse then
                if equals == "" then
                    value = argv[i]
                    if not value then usage_error(program, "option", "--" .. name, option.needs) end
                    i = i + 1
                end
                args[option.key] = option.parse(program, value)
            elseif option.key == "no_reuseaddr" then
                args.reuseaddr = false
            else
                args[option.key] = true
            end
        else   -- -h, or a letter (or digit) no step has
            for letter in text:sub(2):gmatch(".") do
                if letter == "h" then print_usage(program, accepted) end
                usage_error(program, "option", "-" .. letter, letter:match("%d")
                            and "unknown option (no number here is negative)"
                            or "unknown option")
            end
        end
    end
    local host, port, backlog, extra = positional[1], positional[2], positional[3], positional[4]
    if extra then
        usage_error(program, "argument", extra, "too many arguments (HOST PORT BACKLOG at most)")
    end
    if host == "" then
        usage_error(program, "host", host, "empty (use * for every interface)")
    end
    args.host = host or args.host
    -- Checked here, because LuaSocket would wrap 99999 to 34463 and bind it.
    if port then args.port = parse_number(program, "port", port, 0, 65535) end
    if backlog then args.backlog = parse_number(program, "backlog", backlog, 0, INT_MAX) end
    return args
end

-- Addresses --------------------------------------------------------------

-- Every address HOST stands for, in the order to try them: a list of
-- { family = "inet" or "inet6", addr = "..." }, or nil and why.
function common.resolve(host, port)
    if host == "*" then   -- every interface, as getaddrinfo(NULL, AI_PASSIVE)
        return { { family = "inet", addr = "0.0.0.0" }, { family = "inet6", addr = "::" } }
    end
    local addresses, err = socket.dns.getaddrinfo(host)
    if not addresses then
        return nil, ("getaddrinfo %s:%s: %s"):format(host, port, err)
    end
    return addresses
end

-- A socket of that family, made now.  socket.tcp() would make none until
-- bind(), so options set before bind() would not reach it.
function common.new_socket(family)
    if family == "inet6" then return socket.tcp6() end
    return socket.tcp4()
end

common.family_name = { inet = "IPv4", inet6 = "IPv6" }

-- "127.0.0.1:7777" or "[::1]:7777", from what getsockname() or
-- getpeername() returns.  LuaSocket's accept() keeps no peer address, so a
-- client that is gone before getpeername() leaves only nil and why.
function common.format_address(addr, port, family)
    if addr == nil then return ("(peer unknown: %s)"):format(port) end
    if family == "inet6" then return ("[%s]:%d"):format(addr, port) end
    return ("%s:%d"):format(addr, port)
end

-- Time ------------------------------------------------------------------

-- Steps of the wall clock bigger than this (or backwards) are the clock
-- being set, not time passing: every caller reads the clock at least every
-- second.  (A program stopped longer than this loses that time too.)
local CLOCK_JUMP = 2

-- A clock for deadlines: a function returning seconds that never go back
-- and never leap.  Standard Lua and LuaSocket have no monotonic clock
-- (C's CLOCK_MONOTONIC); socket.gettime() is the wall clock, which jumps
-- when NTP or a person sets the time: back an hour, and a frame "due at
-- now + 1/60" would wait an hour.  So a jump is taken out: time runs on from
-- where it was.
function common.clock()
    local last_wall = socket.gettime()
    local offset = 0
    return function()
        local wall = socket.gettime()
        local step = wall - last_wall
        if step < 0 or step > CLOCK_JUMP then offset = offset - step end
        last_wall = wall
        return wall + offset
    end
end

-- Failing and stopping ---------------------------------------------------

-- Prints "PROGRAM: message" to stderr; returns the exit status 1.
function common.fail(message)
    io.stderr:write(("%s: %s\n"):format(arg[0], message))
    return 1
end

-- lua5.4 turns Ctrl-C (SIGINT) into the error "interrupted!", raised at the
-- next Lua instruction.  A C function that blocks delays it, so every wait
-- in these scripts is short.  SIGTERM cannot be caught from Lua at all
-- (LuaSocket has no signal handling): it kills the process at once.
function common.is_interrupt(err)
    return type(err) == "string" and err:match("interrupted!$") ~= nil
end

-- Steps 1 to 4 sit here until Ctrl-C.
function common.wait_for_stop_signal()
    while true do socket.sleep(0.1) end
end

-- Runs main(); exits with what it returns, or 0 after Ctrl-C (saying
-- `on_stop` first, when given).  Any other error goes on as an error.
function common.run(main, on_stop)
    local ok, result = pcall(main)
    if ok then os.exit(result or 0, true) end
    if not common.is_interrupt(result) then error(result, 0) end
    if on_stop then
        print(on_stop)
        io.stdout:flush()
    end
    os.exit(0, true)
end

return common
