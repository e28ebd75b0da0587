-- policies/posts.lua - posts, post lists and the personal feed.
--
-- Lists and single posts use different key families ("posts:" and "post:") so that an
-- edit can drop one post exactly while every list that may show it goes by prefix.

-- The public list (?offset=&limit=&user_id=).  stale_while_revalidate: for 30 s after
-- the ttl the stale list is served while one request refreshes it in the background;
-- stale_if_error: for 5 min after the ttl a stale list beats an upstream error.
route "GET /posts" {
    key = "posts:{query}",
    ttl = 60,
    stale_while_revalidate = 30,
    stale_if_error = 300,
}

route "GET /posts/:id" { key = "post:{id}", ttl = 60 }

-- The feed differs per user.  The example API identifies the user by X-User-Id, so that
-- header is part of the key; {auth_hash}, a short hash of the Authorization header (or
-- of the Cookie), keys on the real credential when there is one.  Keying on the
-- credential is what makes the route per-user: requests with credentials are cached,
-- each user under their own key, and the upstream's `Cache-Control: private` does not
-- stop storage.  (A header such as X-User-Id alone is never enough for that: clients
-- can forge it.)
route "GET /feed" {
    key = "feed:{auth_hash}:{header.x-user-id}:{query}",
    ttl = 30,
    per_user = true,
}

-- A new post shows up in the public lists, its author's list, feeds and its author's
-- profile (posts_count).  The author is in the request body, which policies do not
-- see, so every profile goes.
route "POST /posts" { invalidate = { "posts:*", "posts_user:*", "feed:*", "user_profile:*" } }

-- Editing a post changes that post and every list it appears in; deleting it also
-- changes its author's posts_count.
route "PUT /posts/:id" { invalidate = { "post:{id}", "posts:*", "posts_user:*", "feed:*" } }
route "PATCH /posts/:id" { invalidate = { "post:{id}", "posts:*", "posts_user:*", "feed:*" } }
route "DELETE /posts/:id" {
    invalidate = { "post:{id}", "posts:*", "posts_user:*", "feed:*", "user_profile:*" },
}
