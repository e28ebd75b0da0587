-- policies/users.lua - user records and their derived views.
--
-- Copy this file as a starting point for your own API.  Every `route` line says, for one
-- method + path pattern, which cache key a response is stored under and for how long
-- (seconds), or which keys a write makes stale.  The full guide is docs/policies.md;
-- tests/lua/policies_users_spec.lua proves what this file does.

-- A user record.  ":id" is a path param; "{id}" puts it in the key, so /users/42 is
-- stored under "users:42" and PUT /users/42 below can drop exactly that entry.
route "GET /users/:id" {
    key = "users:{id}",
    ttl = 300,
    -- A missing user is worth remembering too, but not for five minutes: the hook runs
    -- after the upstream answers and may shorten the ttl or refuse to store.
    on_response = function(req, res)
        if res.status == 404 then return { ttl = 30 } end
    end,
}

route "GET /users/:id/profile" { key = "user_profile:{id}", ttl = 180 }

-- A user's posts, one entry per page/filter: {query} is the normalised query string
-- (params sorted, tracking params such as utm_* dropped), so ?page=2&sort=new and
-- ?sort=new&page=2 share an entry.
route "GET /users/:id/posts" { key = "posts_user:{id}:{query}", ttl = 120 }

-- Writes.  Invalidations run after the upstream answers 2xx.  Plain strings are exact
-- keys (templates are expanded with the write's own params); a trailing "*" makes a
-- prefix.
route "PUT /users/:id" { invalidate = { "users:{id}", "user_profile:{id}" } }
route "PATCH /users/:id" { invalidate = { "users:{id}", "user_profile:{id}" } }

-- Deleting a user also removes their posts from every list.
route "DELETE /users/:id" {
    invalidate = { "users:{id}", "user_profile:{id}", "posts_user:{id}:*", "posts:*", "post:*",
                   "feed:*" },
}

-- A new user appears in no cached response yet: forward it, drop nothing.
route "POST /users" { bypass = true }
