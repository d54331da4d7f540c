-- log.lua -- the servers' lines on stdout, never waiting for it; the Lua
-- twin of common/log.c, for steps 6 and 7 (and host.lua's report).
--
-- print() waits while stdout cannot take more: a pipe nobody reads (a
-- paused `| less`), a stuck log collector.  A server that prints a line per
-- connection then stops serving everyone, and any client can bring that
-- about: some 900 connections fill a 64 KiB pipe.  So a line goes into a
-- list of at most MOST_WAITING lines, and from there to stdout as far as
-- stdout takes it now.  A line that finds the list full is dropped and
-- counted, and once there is room again one line says how many were:
--
--     log: 1234 lines dropped (stdout was not being read)
--
-- Lua has no non-blocking write, so the log asks before each line whether
-- stdout can take it: socket.select() watches anything whose getfd()
-- returns a descriptor, so STDOUT below is descriptor 1 to it.  A blocking
-- write could still wait if the line were bigger than the room select()
-- saw; what makes that impossible on a pipe: Linux says a pipe is writable
-- only while one of its pages is free (pipe_poll() in fs/pipe.c, read in
-- the 6.x source and measured on 6.18), room for PIPE_BUF bytes (4096),
-- and every line is far shorter.  A terminal is writable with any room at
-- all (n_tty_poll()), so there a line could still wait for the rest; the C
-- log opens a non-blocking stdout of its own instead, which Lua cannot.
--
--     log.line("listening on 127.0.0.1:7777")   -- never waits
--     log.flush()                               -- each turn (connections.start_turn)
--     log.close()                               -- at the end: waits 0.5 s at most
local socket = require "socket"

local log = {}

local MOST_WAITING = 1000   -- lines kept while stdout takes none (log.c: 64 KiB)
local CLOSE_SECONDS = 0.5   -- how long close() waits for stdout
local STDOUT = { getfd = function() return 1 end }

local lines, first, last = {}, 1, 0   -- lines[first..last]: not taken yet
local dropped = 0                     -- since the last "dropped" line
-- No stdout at all (closed with >&-): say nothing.  Asked once, before any
-- socket can take descriptor 1.
local gone = not pcall(socket.select, nil, { STDOUT }, 0)
io.stdout:setvbuf("no")   -- a write() per io.stdout:write(), at once

-- Writes the first waiting line, if stdout takes it within `timeout` s.
local function write_first(timeout)
    local _, writable = socket.select(nil, { STDOUT }, timeout)
    if not writable[STDOUT] then return false end
    -- Taken off the list before it is written: Ctrl-C raises an error at
    -- whatever instruction comes next (lua.c's SIGINT hook), and one that
    -- fell between clearing lines[first] and moving `first` on left a hole
    -- that log.close() then tried to write (a nil: a crash on Ctrl-C).
    local line = lines[first]
    first = first + 1
    lines[first - 1] = nil
    local ok = io.stdout:write(line)
    if not ok then   -- for good (EPIPE: its reader is gone): never again
        gone, lines, first, last = true, {}, 1, 0
    end
    return ok
end

local function waiting() return last - first + 1 end

local function write_waiting()
    while waiting() > 0 and write_first(0) do end
end

local function add(text)
    last = last + 1
    lines[last] = text .. "\n"
end

-- Adds the count of lines dropped, if any were and `more` lines fit after it.
local function add_dropped(more)
    if dropped == 0 then return true end
    if waiting() + 1 + more > MOST_WAITING then return false end
    add(("log: %d lines dropped (stdout was not being read)"):format(dropped))
    dropped = 0
    return true
end

-- One line (no "\n": it adds one).  Never waits.
function log.line(text)
    if gone then return end
    write_waiting()   -- make what room stdout gives now
    if not add_dropped(1) or waiting() >= MOST_WAITING then
        dropped = dropped + 1
        return
    end
    add(text)
    write_waiting()
end

-- Writes what stdout takes now; once there is room, says what was dropped.
function log.flush()
    if gone then return end
    write_waiting()
    if dropped > 0 and add_dropped(0) then write_waiting() end
end

-- At the end: writes what is left, waiting at most CLOSE_SECONDS for
-- stdout.  Lines it never took count as dropped, and the count gets one
-- last chance.
function log.close()
    local deadline = socket.gettime() + CLOSE_SECONDS
    while waiting() > 0 and write_first(math.max(0, deadline - socket.gettime())) do end
    dropped = dropped + waiting()
    lines, first, last = {}, 1, 0
    log.flush()
end

return log
