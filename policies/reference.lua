-- policies/reference.lua - reference data that rarely changes.
--
-- Shared across users and cached for an hour.  A request that carries Authorization or
-- a Cookie still bypasses these routes: their keys do not depend on the credential, and
-- the gateway never answers a credentialed request from a shared entry.

route "GET /categories" { key = "categories:{query}", ttl = 3600, stale_if_error = 86400 }
route "GET /locations" { key = "locations:{query}", ttl = 3600, stale_if_error = 86400 }

-- Other ideas to copy:
--
--   route "* /admin/*" { bypass = true }                -- never cache, any method
--   route "GET /search" {                               -- a key computed in Lua
--       key = function(req) return "search:" .. (req.query.q or "") end,
--       ttl = 10,
--       bypass = function(req) return req.header["x-debug"] ~= nil end,
--   }
