"""Issue 8, items 1, 2, 3, 4, 11, 12, 17 and 23: cache poisoning and cross-user leaks.

The rule under test: the stored key and the stored response are derived from
exactly the request that was forwarded.  Each test plays an attacker then a
victim and checks, with the reflector's record, that the victim gets the answer
the upstream gives to the victim's own request.
"""

import json
import time
import unittest

from secharness import Reply, SecTestCase, echo, get_request, wait_until


def body_of(r):
    return r.json()


class FragmentTest(SecTestCase):
    """Item 1: a '#' in the request-target."""

    POLICY = {"posts.lua": 'route "GET /posts" { key = "posts:{query}", ttl = 60 }\n'}

    def test_fragment_is_400_and_nothing_forwarded(self):
        gw = self.start(self.POLICY)
        for extra in ([], [("Cache-Control", "no-cache")]):
            with self.subTest(headers=extra):
                r, _ = self.raw(gw, get_request("/posts?utm_source=#&user_id=2", extra))
                self.assertIsNotNone(r, "no answer")
                self.assertEqual(r.status, 400, r)
        time.sleep(0.1)
        self.assertNothingForwarded(0, "fragment")

    def test_fragment_cannot_overwrite_a_fresh_entry(self):
        gw = self.start(self.POLICY)
        r = self.get(gw, "/posts?user_id=2")
        self.assertEqual(body_of(r)["target"], "/posts?user_id=2")
        self.raw(gw, get_request("/posts?utm_source=#&user_id=2", [("Cache-Control", "no-cache")]))
        r = self.get(gw, "/posts?user_id=2")
        self.assertEqual(r.status, 200)
        self.assertEqual(body_of(r)["target"], "/posts?user_id=2", r)
        self.assertEqual(self.refl.count(), 1, self.refl.requests())


class VariantInjectionTest(SecTestCase):
    """Item 2: request data must never produce the internal variant-key syntax."""

    POLICY = {"vary.lua": (
        'route "GET /vary" { key = "vary:{header.x-tenant}", ttl = 60 }\n'
        'route "GET /varyq" { key = "varyq:{query.t}", ttl = 60 }\n')}

    def setUp(self):
        super().setUp()

        def lang(rec):
            return echo(rec, headers=[("Vary", "Accept-Language")],
                        extra={"lang": rec.header("accept-language")})
        self.refl.on("/vary", lang)

    def test_fragment_form_is_400(self):
        gw = self.start(self.POLICY)
        r, _ = self.raw(gw, get_request("/vary#vary|accept-language=en",
                                        [("Accept-Language", "fr")]))
        self.assertIsNotNone(r, "no answer")
        self.assertEqual(r.status, 400, r)
        time.sleep(0.1)
        self.assertNothingForwarded(0, "fragment")

    def test_en_variant_survives_injection_through_placeholders(self):
        injections = [
            ("/vary", [("X-Tenant", "#vary|accept-language=en")]),
            ("/vary", [("X-Tenant", "#vary|accept-language=en|")]),
            ("/varyq?t=%23vary%7Caccept-language%3Den", []),
            ("/varyq?t=%23vary|accept-language=en", []),
            ("/varyq?t=%00%23vary%7Caccept-language%3Den", []),
            ("/varyq?t=%1F%23vary%7Caccept-language%3Den", []),
            ("/varyq?t=%23vary%7Caccept-language%3Den%00", []),
            ("/varyq?t=%23VARY%7Caccept-language%3Den", []),
        ]
        for target, headers in injections:
            with self.subTest(target=target, headers=headers):
                # A fresh gateway per case: one poisoning must not hide another.
                gw = self.start(self.POLICY)
                path = target.split("?")[0]
                r = self.get(gw, path, [("Accept-Language", "en")])
                self.assertEqual(body_of(r)["lang"], "en")
                self.assertEqual(self.get(gw, path, [("Accept-Language", "en")])
                                 .header("x-cache"), "HIT")
                self.get(gw, target, headers + [("Accept-Language", "fr"),
                                                ("Cache-Control", "no-cache")])
                self.get(gw, target, headers + [("Accept-Language", "fr")])
                r = self.get(gw, path, [("Accept-Language", "en")])
                self.assertEqual(r.status, 200, r)
                self.assertEqual(body_of(r)["lang"], "en", r)


class ConnectionNamedHeaderTest(SecTestCase):
    """Item 3: headers named in Connection, and hop-by-hop headers, neither reach
    the upstream nor key the entry."""

    POLICY = {"feed.lua": 'route "GET /feed" { key = "feed:{header.x-user-id}", ttl = 60 }\n'}

    def setUp(self):
        super().setUp()

        def per_user(rec):
            return echo(rec, headers=[("Vary", "X-User-Id")],
                        extra={"user": rec.header("x-user-id") or "none"})
        self.refl.on("/feed", per_user)
        self.refl.on("/vfeed", per_user)

    def check_not_poisoned(self, gw, path, connection, user="5"):
        before = self.refl.count()
        r = self.get(gw, path, [("X-User-Id", user), ("Connection", connection)])
        self.assertEqual(r.status, 200, r)
        # The attacker may be answered from an entry (the one for "no X-User-Id"), but
        # what reached the upstream for it never carried the header.
        for rec in self.refl.requests()[before:]:
            self.assertNotIn("x-user-id", rec.names(), rec)
        self.assertEqual(body_of(r)["user"], "none")
        victim = self.get(gw, path, [("X-User-Id", user)])
        self.assertEqual(victim.status, 200, victim)
        self.assertEqual(body_of(victim)["user"], user,
                         f"user {user} got the poisoned answer (Connection: {connection}) {victim}")

    def test_connection_named_header_does_not_key_policy(self):
        gw = self.start(self.POLICY)
        self.check_not_poisoned(gw, "/feed", "x-user-id")

    def test_connection_named_header_does_not_key_vary(self):
        gw = self.start(self.POLICY)
        self.check_not_poisoned(gw, "/vfeed", "x-user-id")

    def test_connection_lists_with_other_tokens(self):
        gw = self.start(self.POLICY)
        for i, conn in enumerate(["keep-alive, x-user-id", "close,X-User-Id", "te, X-USER-ID",
                                  "trailer ,x-user-id", "upgrade, x-user-id",
                                  "proxy-connection, x-user-id"]):
            with self.subTest(connection=conn):
                # A user of its own per case: one poisoned entry must not hide the next.
                self.check_not_poisoned(gw, f"/feed?case={i}", conn, user=str(10 + i))
                self.check_not_poisoned(gw, f"/vfeed?case={i}", conn, user=str(10 + i))

    def test_long_field_names_are_forwarded_keyed_and_can_be_named_in_connection(self):
        # Names of 128 bytes and more were dropped silently (a stack buffer's size),
        # and a Connection line naming one had nothing to act on.
        long_name = "X-" + "u" * 198
        policy = {"lfeed.lua": 'route "GET /lfeed" { key = "lfeed:{header.%s}", ttl = 60 }\n'
                  % long_name.lower()}
        self.refl.on("/lfeed", lambda rec: echo(rec, extra={"user": rec.header(long_name)
                                                            or "none"}))
        gw = self.start(policy)
        for user in ("1", "2"):
            with self.subTest(user=user):
                r = self.get(gw, "/lfeed", [(long_name, user)])
                self.assertEqual(body_of(r)["user"], user, r)
                self.assertEqual(self.refl.last(path="/lfeed").values(long_name), [user])
        # The key used the field: each user's answer is a hit of its own.
        for user in ("1", "2"):
            r = self.get(gw, "/lfeed", [(long_name, user)])
            self.assertEqual(r.header("x-cache"), "HIT", r)
            self.assertEqual(body_of(r)["user"], user, r)
        self.assertEqual(self.refl.count(path="/lfeed"), 2)
        # Named in Connection, it is neither forwarded nor keyed, however long.
        before = self.refl.count()
        r = self.get(gw, "/lfeed?c=1", [(long_name, "5"), ("Connection", long_name.lower())])
        self.assertEqual(body_of(r)["user"], "none", r)
        for rec in self.refl.requests()[before:]:
            self.assertNotIn(long_name.lower(), rec.names(), rec)
        victim = self.get(gw, "/lfeed?c=1", [(long_name, "5")])
        self.assertEqual(body_of(victim)["user"], "5", victim)

    def test_hop_by_hop_headers_are_not_forwarded_and_do_not_key(self):
        gw = self.start(self.POLICY)
        hop = {"Keep-Alive": "timeout=5", "TE": "trailers", "Trailer": "X-T",
               "Upgrade": "websocket", "Proxy-Connection": "keep-alive",
               "Proxy-Authenticate": "Basic", "Proxy-Authorization": "Basic eDp5"}

        def varies(rec):
            name = rec.path.rsplit("/", 1)[1]
            return echo(rec, headers=[("Vary", name)], extra={"seen": rec.header(name)})
        self.refl.on("/hop/", varies)
        for name, value in hop.items():
            with self.subTest(header=name):
                path = "/hop/" + name
                r = self.get(gw, path, [(name, value)])
                rec = self.refl.last(path=path)
                self.assertIsNotNone(rec, r)
                self.assertNotIn(name.lower(), rec.names(), rec)
                self.assertIsNone(body_of(r)["seen"])
                # A plain client gets the answer a plain request gets.
                plain = self.get(gw, path)
                self.assertEqual(plain.status, 200, plain)
                self.assertIsNone(body_of(plain)["seen"])
                if not name.startswith("Proxy-Auth"):
                    # The key did not use the header: the plain request shares the entry.
                    self.assertEqual(self.refl.count(path=path), 1,
                                     f"{name} keyed the entry: {self.refl.requests(path=path)}")


class RepeatedResponseFieldsTest(SecTestCase):
    """Item 4: repeated Cache-Control and Vary response lines are one list."""

    def test_second_cache_control_line_private_is_honoured(self):
        self.refl.on("/cc2", lambda rec: Reply(200, [
            ("Content-Type", "application/json"), ("Cache-Control", "public, max-age=60"),
            ("Cache-Control", "private")], json.dumps({"seq": rec.seq})))
        gw = self.start()
        a = self.get(gw, "/cc2")
        b = self.get(gw, "/cc2")
        self.assertEqual(self.refl.count(path="/cc2"), 2, "a private answer was shared")
        self.assertNotEqual(a.json()["seq"], b.json()["seq"])
        self.assertNotEqual(b.header("x-cache"), "HIT", b)

    def test_second_cache_control_line_no_store_is_honoured(self):
        self.refl.on("/cc3", lambda rec: Reply(200, [
            ("Content-Type", "application/json"), ("Cache-Control", "max-age=60"),
            ("Cache-Control", "no-store")], json.dumps({"seq": rec.seq})))
        gw = self.start()
        self.get(gw, "/cc3")
        self.get(gw, "/cc3")
        self.assertEqual(self.refl.count(path="/cc3"), 2, "a no-store answer was stored")

    def test_second_vary_line_is_honoured(self):
        self.refl.on("/v2", lambda rec: Reply(200, [
            ("Content-Type", "application/json"), ("Cache-Control", "public, max-age=60"),
            ("Vary", "Accept-Encoding"), ("Vary", "X-User-Id")],
            json.dumps({"user": rec.header("x-user-id")})))
        gw = self.start()
        a = self.get(gw, "/v2", [("X-User-Id", "1")])
        b = self.get(gw, "/v2", [("X-User-Id", "2")])
        self.assertEqual(a.json()["user"], "1")
        self.assertEqual(b.json()["user"], "2", "user 2 got user 1's answer")
        c = self.get(gw, "/v2", [("X-User-Id", "1")])
        self.assertEqual(c.json()["user"], "1")


class AuthHashTest(SecTestCase):
    """Item 11: {auth_hash} covers Authorization and Cookie."""

    POLICY = {"me.lua": 'route "GET /me" { key = "me:{auth_hash}", ttl = 60, per_user = true }\n'}

    def test_same_authorization_different_cookie_are_different_users(self):
        self.refl.on("/me", lambda rec: echo(rec, cache_control="private, max-age=60",
                                             extra={"cookie": rec.header("cookie")}))
        gw = self.start(self.POLICY)
        auth = ("Authorization", "Bearer shared-api-key")
        a = self.get(gw, "/me", [auth, ("Cookie", "session=alice")])
        self.assertEqual(a.json()["cookie"], "session=alice")
        b = self.get(gw, "/me", [auth, ("Cookie", "session=bob")])
        self.assertEqual(b.json()["cookie"], "session=bob", "bob got alice's answer")
        # Per-user caching still works: alice again is a hit on her own entry.
        a2 = self.get(gw, "/me", [auth, ("Cookie", "session=alice")])
        self.assertEqual(a2.json()["cookie"], "session=alice")
        self.assertEqual(self.refl.count(path="/me"), 2)


class KeysMatchForwardedTest(SecTestCase):
    """Item 17: keys that differ from what the upstream sees."""

    POLICY = {"k.lua": (
        'route "GET /shared" { key = "shared", ttl = 60 }\n'
        'route "GET /dup" { key = "dup:{query}", ttl = 60 }\n'
        'route "GET /xa" { key = "xa:{header.x-a}", ttl = 60 }\n')}

    def test_empty_authorization_is_a_credential(self):
        gw = self.start(self.POLICY)
        for path in ("/shared", "/noroute"):
            with self.subTest(path=path):
                self.get(gw, path)
                self.assertEqual(self.get(gw, path).header("x-cache"), "HIT")
                before = self.refl.count(path=path)
                r = self.get(gw, path, [("Authorization", "")])
                self.assertNotEqual(r.header("x-cache"), "HIT", r)
                self.assertEqual(self.refl.count(path=path), before + 1,
                                 "a request with an empty Authorization got a shared entry")

    def test_duplicate_query_params_in_different_order_are_different_entries(self):
        gw = self.start(self.POLICY)
        for path in ("/dup", "/noroute"):
            with self.subTest(path=path):
                a = self.get(gw, path + "?a=1&a=2")
                b = self.get(gw, path + "?a=2&a=1")
                self.assertEqual(a.json()["target"], path + "?a=1&a=2")
                self.assertEqual(b.json()["target"], path + "?a=2&a=1", b)
                # Each spelling is cached under its own entry.
                self.assertEqual(self.get(gw, path + "?a=2&a=1").json()["target"],
                                 path + "?a=2&a=1")

    def test_duplicate_header_lines_forward_and_key_as_one(self):
        gw = self.start(self.POLICY)
        r = self.get(gw, "/xa", [("X-A", "1"), ("X-A", "2")])
        self.assertEqual(r.status, 200, r)
        rec = self.refl.last(path="/xa")
        self.assertEqual(rec.values("x-a"), ["1, 2"], rec)
        # The same value sent as one line is the same entry ...
        same = self.get(gw, "/xa", [("X-A", "1, 2")])
        self.assertEqual(same.header("x-cache"), "HIT", same)
        # ... and the first line alone is a different one.
        first = self.get(gw, "/xa", [("X-A", "1")])
        self.assertNotEqual(first.header("x-cache"), "HIT", first)
        self.assertEqual(self.refl.last(path="/xa").values("x-a"), ["1"])
        self.assertEqual(self.refl.count(path="/xa"), 2)


class FreshnessOverflowTest(SecTestCase):
    """Item 23: huge delta-seconds saturate (no crash, sensible answers)."""

    HUGE = "9999999999999999"

    def test_huge_request_max_age_and_min_fresh(self):
        gw = self.start()
        self.get(gw, "/fresh")
        r = self.get(gw, "/fresh", [("Cache-Control", "max-age=" + self.HUGE)])
        self.assertEqual(r.status, 200)
        self.assertEqual(r.header("x-cache"), "HIT", "a huge max-age must allow a hit")
        r = self.get(gw, "/fresh", [("Cache-Control", "min-fresh=" + self.HUGE)])
        self.assertEqual(r.status, 200)
        self.assertNotEqual(r.header("x-cache"), "HIT", "a huge min-fresh must not be a hit")
        for cc in ("max-stale=" + self.HUGE, "max-age=99999999999999999999999",
                   "min-fresh=-" + self.HUGE, "max-age=" + self.HUGE + ", min-fresh=1"):
            with self.subTest(cc=cc):
                r = self.get(gw, "/fresh", [("Cache-Control", cc)])
                self.assertIn(r.status, (200, 400), r)
        self.assertTrue(gw.alive())

    def test_huge_response_lifetimes(self):
        cases = {
            "/r1": [("Cache-Control", "max-age=" + self.HUGE)],
            "/r2": [("Cache-Control", "s-maxage=" + self.HUGE)],
            "/r3": [("Cache-Control", "max-age=60"), ("Age", self.HUGE)],
            "/r4": [("Cache-Control", "max-age=60, stale-while-revalidate=" + self.HUGE
                     + ", stale-if-error=" + self.HUGE)],
            "/r5": [("Expires", "Fri, 31 Dec 9999 23:59:59 GMT")],
        }
        for path, headers in cases.items():
            self.refl.on(path, lambda rec, h=headers: Reply(
                200, [("Content-Type", "application/json")] + h, json.dumps({"seq": rec.seq})))
        gw = self.start()
        for path in cases:
            with self.subTest(path=path):
                self.assertEqual(self.get(gw, path).status, 200)
                self.assertEqual(self.get(gw, path, [("Cache-Control", "max-age=" + self.HUGE)])
                                 .status, 200)
        # A huge max-age is a long lifetime, not a negative one.
        self.assertEqual(self.get(gw, "/r1").header("x-cache"), "HIT")
        # An Age past any lifetime makes the answer stale on arrival.
        self.assertNotEqual(self.get(gw, "/r3").header("x-cache"), "HIT")
        self.assertTrue(gw.alive())


class PurgeBookkeepingTest(SecTestCase):
    """Item 12: admin purges cannot delete the invalidation bookkeeping."""

    POLICY = {"items.lua": (
        'route "GET /items/:id" { key = "items:{id}", ttl = 300 }\n'
        'route "POST /items" { invalidate = { "items:*" } }\n')}

    def admin(self, port, token, kind, value):
        body = json.dumps({kind: value}).encode()
        data = get_request("/purge/" + kind, [("Authorization", "Bearer " + token),
                                              ("Content-Type", "application/json")],
                           method="POST", host="127.0.0.1", body=body)
        from secharness import exchange
        r, _ = exchange(port, data)
        return r

    def test_prefix_invalidations_still_reach_other_instances(self):
        redis = self.start_redis()
        token = "sec-admin-token-12"
        from secharness import free_port
        admin_port = free_port()
        env = {"REDIS_URL": redis.url, "REDIS_PREFIX": "sec12:"}
        a = self.start(self.POLICY, env=dict(env, ADMIN_TOKEN=token, ADMIN_PORT=admin_port))
        b = self.start(self.POLICY, env=env)
        wait_until(lambda: self.admin(admin_port, token, "key", "nothing").status == 200,
                   timeout=5, what="the admin listener")
        for gw in (a, b):
            wait_until(lambda gw=gw: gw.get("/health/cache").json()["stats"]["redis_available"],
                       timeout=10, what="Redis connected")
        wait_until(lambda: redis.cmd("PUBSUB", "NUMSUB", "sec12:invalidate")[1] >= 2,
                   timeout=10, what="both instances subscribed")
        # Some history, so the global sequence is past its start.
        for _ in range(3):
            self.assertEqual(self.get(a, "/items", method="POST", body=b"{}").status, 200)
        time.sleep(0.3)
        for kind, value in (("prefix", "i"), ("prefix", "in"), ("prefix", "inv"),
                            ("key", "inv:seq"), ("prefix", "inv:"), ("key", "inv:floor")):
            r = self.admin(admin_port, token, kind, value)
            self.assertIsNotNone(r)
            self.assertIn(r.status, (200, 400), r)
        time.sleep(0.3)
        # Both instances cache item 1 (B from Redis or the upstream, then from memory).
        old = self.get(a, "/items/1").json()["seq"]
        self.get(b, "/items/1")
        self.assertEqual(self.get(b, "/items/1").json()["seq"], old)
        # A write on A drops items:* everywhere: B must not serve the old answer again
        # (it may serve the new one A stored in Redis).
        self.assertEqual(self.get(a, "/items", method="POST", body=b"{}").status, 200)
        time.sleep(0.5)
        ra = self.get(a, "/items/1")
        rb = self.get(b, "/items/1")
        self.assertNotEqual(ra.json()["seq"], old, "A ignored its own invalidation")
        self.assertNotEqual(rb.json()["seq"], old,
                            "B ignored the prefix invalidation after the purges")


if __name__ == "__main__":
    unittest.main()
