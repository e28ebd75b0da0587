-- bench/create_users.lua - wrk script that creates users in the example API (POST /users,
-- which appends one user with the next id), so that /users/1..N exist for the users100k
-- scenario.  The example API seeds 100 users; bench.py asks for N - 100 more.
--
-- Usage:  wrk -t1 -c64 -d900s -s bench/create_users.lua URL -- COUNT MARKER
-- Writes "CREATED FAILED" to MARKER once COUNT answers have arrived (requests in flight
-- then may create a few more users than COUNT: harmless, the ids past N are never read);
-- bench.py waits for the file, stops wrk and checks that /users/N exists.

local count, marker, req
local answered, created, failed = 0, 0, 0

function init(args)
    count, marker = tonumber(args[1]), args[2]
    if not count or count < 1 or not marker then
        error("usage: -- COUNT MARKER")
    end
    req = wrk.format("POST", "/users", {["Content-Type"] = "application/json"},
                     '{"name":"Bench User","bio":"created by bench/create_users.lua"}')
end

function request()
    return req
end

function response(status)
    answered = answered + 1
    if status == 201 or status == 200 then created = created + 1 else failed = failed + 1 end
    if answered == count then
        local f = assert(io.open(marker, "w"))
        f:write(created, " ", failed, "\n")
        f:close()
    end
end
