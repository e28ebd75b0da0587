-- policies/users.lua - user records and their derived views.
--
-- Copy this file as a starting point for your own API.  Every `route` line says, for one
-- method + path pattern, which cache key a response is stored under and for how long
-- (seconds), or which keys a write makes stale.  The full guide is docs/policies.md;
-- tests/lua/policies_users_spec.lua proves what this file does.

-- The user list, one entry per page: {query} is the normalised query string (params
-- sorted, tracking params such as utm_* dropped), so ?limit=5&offset=10 and
-- ?offset=10&limit=5 share an entry.
route "GET /users" { key = "users_list:{query}", ttl = 300 }

-- One user.  ":id" is a path param; "{id}" puts it in the key, so /users/42 is stored
-- under "users:42" and PUT /users/42 below can drop exactly that entry.
route "GET /users/:id" {
    key = "users:{id}",
    ttl = 300,
    -- A missing user is worth remembering too, but not for five minutes: the hook runs
    -- after the upstream answers and may shorten the ttl or refuse to store.
    on_response = function(req, res)
        if res.status == 404 then return { ttl = 30 } end
    end,
}

-- The profile (it also counts the user's posts: see posts.lua for why post writes drop
-- profiles).
route "GET /users/:id/profile" { key = "user_profile:{id}", ttl = 180 }

-- A user's posts, one entry per page.
route "GET /users/:id/posts" { key = "posts_user:{id}:{query}", ttl = 120 }

-- Writes.  Invalidations run after the upstream answers 2xx.  Plain strings are exact
-- keys (templates are expanded with the write's own params); a trailing "*" makes a
-- prefix.
route "POST /users" { invalidate = { "users_list:*" } }
route "PUT /users/:id" { invalidate = { "users:{id}", "user_profile:{id}", "users_list:*" } }
route "PATCH /users/:id" { invalidate = { "users:{id}", "user_profile:{id}", "users_list:*" } }
route "DELETE /users/:id" { invalidate = { "users:{id}", "user_profile:{id}", "users_list:*" } }
