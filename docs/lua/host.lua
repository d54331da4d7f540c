-- host.lua -- runs a script the way a demo engine runs its Lua: INIT once,
-- FRAME every frame.  It stands in for the engine, so the script is what you
-- would paste into one; it plays the part of steps/06_frame_loop/main.c's
-- loop, and 06_frame_loop.lua the part of the server in it.
--
--     lua5.4 docs/lua/host.lua docs/lua/06_frame_loop.lua [OPTIONS] [HOST [PORT [BACKLOG]]]
--     frames: 60/s, clients: 0, late frames: 0          (once a second)
--
-- The script returns its parts:
--
--     return { init = init,        -- init(args): once; nil, err to give up
--              frame = frame,      -- frame(dt): every frame; must never wait
--              stop = stop,        -- stop(): on Ctrl-C
--              clients = clients } -- clients(): how many, for the report
--
-- The host owns the clock.  Frames are due every 1/fps s from the start,
-- absolute deadlines, so the time a frame's work takes is not added on top
-- and the rate does not drift.  A frame that ends after the next one was
-- due is "late": the missed deadlines are skipped, not rushed.  Once a
-- second (unless --quiet) it prints the report step 6 prints.
--
-- The clock is common.clock(): socket.gettime() is the wall clock, which
-- jumps when someone sets the time; a deadline on it could be an hour away.
-- Every wait is at most 0.1 s, so that Ctrl-C is seen (common.lua).  The
-- options are the C step 6's: --quiet --fps N.  Even the report must never
-- hold up a frame: it goes through log.lua, which never waits for stdout.
local script_path = arg[1]
local here = arg[0]:match("^(.-)[^/]*$")
package.path = here .. "?.lua;" .. (script_path or ""):match("^(.-)[^/]*$") .. "?.lua;"
               .. package.path
local socket = require "socket"
local common = require "common"
local log = require "log"

if not script_path or script_path:sub(1, 2) == "--" then
    io.stderr:write(("usage: lua5.4 %s SCRIPT [OPTIONS] [HOST [PORT [BACKLOG]]]\n"):format(arg[0]))
    os.exit(2)
end

-- The script sees the command line as if it were the program: arg[0] is it.
local script_arg = { [0] = script_path }
for i = 2, #arg do script_arg[i - 1] = arg[i] end
local args = common.parse_args(script_arg, { quiet = true, fps = true })
local script = dofile(script_path)

common.run(function()
    local ok, err = script.init(args)
    if not ok then return common.fail(err) end

    local clock = common.clock()
    local frame_seconds = 1 / args.fps
    local next_frame = clock()
    local last_frame = next_frame
    local since, frames, late_frames = next_frame, 0, 0
    local ok_run, stopped = pcall(function()
        while true do
            local now = clock()
            script.frame(now - last_frame)          -- the script's turn
            last_frame = now

            if now - since >= 1 then                -- the host's own work
                if not args.quiet then
                    log.line(("frames: %.0f/s, clients: %d, late frames: %d"):format(
                        frames / (now - since), script.clients(), late_frames))
                end
                since, frames, late_frames = now, 0, 0
            end
            frames = frames + 1

            next_frame = next_frame + frame_seconds  -- sleep until the next is due
            now = clock()
            if now >= next_frame then
                late_frames = late_frames + 1
                next_frame = next_frame + math.ceil((now - next_frame) / frame_seconds
                                                    + 1e-9) * frame_seconds
            end
            local left = next_frame - now
            while left > 0 do
                socket.sleep(math.min(left, 0.1))
                left = next_frame - clock()
            end
        end
    end)
    if not ok_run and not common.is_interrupt(stopped) then error(stopped, 0) end
    log.line("stopping on SIGINT")
    script.stop()
    log.close()
    return 0
end)
