-- policies/jobs.lua - job listings.
--
-- Route matching prefers literal segments, so GET /jobs/stats below wins over
-- GET /jobs/:id whatever the order of the two lines.

route "GET /jobs" { key = "jobs:{query}", ttl = 300, stale_if_error = 600 }

route "GET /jobs/stats" { key = "jobs_stats", ttl = 600 }

-- Only successful answers are worth five minutes; a 5xx is not stored at all.
route "GET /jobs/:id" {
    key = "job:{id}",
    ttl = 300,
    on_response = function(req, res)
        if res.status >= 500 then return { store = false } end
    end,
}

-- A new job changes every listing and the statistics ("jobs:*" does not match
-- "jobs_stats", so it is named on its own).
route "POST /jobs" { invalidate = { "jobs:*", "jobs_stats" } }
