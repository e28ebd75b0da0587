-- bench/warm.lua - wrk script that walks a key space once, in a shuffled order, to fill a
-- cache before it is measured.
--
-- Usage (bench.py runs it):  wrk -t1 -c64 -d900s -s bench/warm.lua URL -- PREFIX N MARKER [SEED]
-- Requests PREFIX..i for every i in 1..N exactly once, in a Fisher-Yates permutation
-- (seeded, so a run is repeatable), then keeps repeating the walk (those are hits).
-- wrk cannot end after a request count, so once N + SLACK answers have arrived the script
-- writes "OK BAD" (answers 200 / other among the first N) to MARKER; bench.py waits for that
-- file and stops wrk with SIGINT.  The SLACK answers past N make sure that the walk's last
-- requests, still in flight when the N-th answer arrives, have finished before wrk stops
-- (otherwise a proxy could see the client leave and not store them).
-- One wrk thread only (-t1): the walk is per thread.

local SLACK = 1024
local prefix, n, marker
local order = {}
local sent, answered, ok, bad = 0, 0, 0, 0

function init(args)
    prefix, n, marker = args[1], tonumber(args[2]), args[3]
    if not prefix or not n or n < 1 or not marker then
        error("usage: -- PREFIX N MARKER [SEED]")
    end
    math.randomseed(tonumber(args[4] or "1"))
    for i = 1, n do order[i] = i end
    for i = n, 2, -1 do
        local j = math.random(i)
        order[i], order[j] = order[j], order[i]
    end
end

function request()
    sent = sent + 1
    return wrk.format("GET", prefix .. order[(sent - 1) % n + 1])
end

function response(status)
    answered = answered + 1
    if answered <= n then
        if status == 200 then ok = ok + 1 else bad = bad + 1 end
    end
    if answered == n + SLACK then
        local f = assert(io.open(marker, "w"))
        f:write(ok, " ", bad, "\n")
        f:close()
    end
end
