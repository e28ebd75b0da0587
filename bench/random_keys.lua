-- bench/random_keys.lua - wrk script: each request is PREFIX..i for a uniformly random i in
-- 1..N (the measured phase of the keys10k, keys1m and users100k scenarios; the keys are
-- warmed first with bench/warm.lua).
--
-- Usage:  wrk -t1 -c64 -d8s --latency -s bench/random_keys.lua URL -- PREFIX N [SEED]
-- No response() callback, so wrk stays on its fast path (it does not parse answers into Lua).

local prefix, n

function init(args)
    prefix, n = args[1], tonumber(args[2])
    if not prefix or not n or n < 1 then
        error("usage: -- PREFIX N [SEED]")
    end
    math.randomseed(tonumber(args[3] or tostring(os.time())))
end

function request()
    return wrk.format("GET", prefix .. math.random(1, n))
end
