-- policies/posts.lua - posts, post lists and the personal feed.
--
-- Lists and single posts use different key families ("posts:" and "post:") so that an
-- edit can drop one post exactly while every list that may show it goes by prefix.

-- The public list.  stale_while_revalidate: for 30 s after the ttl the stale list is
-- served while one request refreshes it in the background; stale_if_error: for 5 min
-- after the ttl a stale list beats an upstream error.
route "GET /posts" {
    key = "posts:{query}",
    ttl = 60,
    stale_while_revalidate = 30,
    stale_if_error = 300,
}

route "GET /posts/:id" { key = "post:{id}", ttl = 60 }

-- The feed differs per user, so its key carries the credential: {auth_hash} is a short
-- hash of the Authorization header (or of the Cookie).  That makes the route per-user:
-- requests with credentials are cached (each user under their own key) and the
-- upstream's `Cache-Control: private` does not stop storage.  x-user-id is in the key
-- only for readability of the keys; it is never trusted on its own.
route "GET /feed" {
    key = "feed:{auth_hash}:{header.x-user-id}:{query}",
    ttl = 30,
    per_user = true,
}

-- A new post shows up in the public lists, in its author's list and in feeds.
route "POST /posts" { invalidate = { "posts:*", "feed:*", "posts_user:*" } }

-- Editing or deleting a post changes that post and every list it can appear in.
route "PUT /posts/:id" { invalidate = { "post:{id}", "posts:*", "feed:*", "posts_user:*" } }
route "PATCH /posts/:id" { invalidate = { "post:{id}", "posts:*", "feed:*", "posts_user:*" } }
route "DELETE /posts/:id" { invalidate = { "post:{id}", "posts:*", "feed:*", "posts_user:*" } }
