-- policies/messaging.lua - messages, conversations and notifications: private data.
--
-- Every route here is per-user: the key starts with {auth_hash}, the hash of the
-- caller's credential, so one user's cached answer can never be served to another.
-- The example API marks these answers `Cache-Control: private`; a per-user route may
-- store them (that is what per-user keys are for), a shared route never would.
-- Short ttls keep the inbox fresh.

route "GET /messages" {
    key = "messages:{auth_hash}:{header.x-user-id}:{query}",
    ttl = 30,
    per_user = true,
}

route "GET /conversations" {
    key = "conversations:{auth_hash}:{header.x-user-id}:{query}",
    ttl = 60,
    per_user = true,
}

route "GET /notifications" {
    key = "notifications:{auth_hash}:{header.x-user-id}:{query}",
    ttl = 30,
    per_user = true,
}

-- Sending a message changes the sender's and the recipient's views.  The recipient's
-- credential is unknown here, so the whole families go (they are short-lived anyway).
route "POST /messages" { invalidate = { "messages:*", "conversations:*", "notifications:*" } }
