/* test_redis_slot.c - key slots against CLUSTER KEYSLOT answers of a real
 * redis-server 7, and which key of a command routes it. */
#include "redis_slot.h"
#include "test.h"

TEST(known_slots)
{
    /* Each pair was asked of redis-server 7.0 (CLUSTER KEYSLOT). */
    static const struct {
        const char *key;
        int slot;
    } K[] = {
        {"foo", 12182},
        {"bar", 5061},
        {"cachegw:{inv}:seq", 13198},
        {"cachegw:{inv}:p", 13198},
        {"{user1000}.following", 3443},
        {"foo{}{bar}", 8363},   /* "{}" is no tag: the whole key */
        {"foo{{bar}}zap", 4015}, /* the tag is "{bar" */
        {"foo{bar}{zap}", 5061}, /* the first tag only: "bar" */
        {"", 0},
        {"cachegw:c:GET/a?x=1", 9060},
        {"123456789", 12739},
    };
    for (size_t i = 0; i < sizeof K / sizeof K[0]; i++) {
        int got = redis_slot(K[i].key, strlen(K[i].key));
        if (got != K[i].slot) fprintf(stderr, "  %s: %d != %d\n", K[i].key, got, K[i].slot);
        CHECK_EQ_INT(got, K[i].slot);
    }
    /* The CRC16 check value of the XMODEM variant. */
    CHECK_EQ_INT(redis_crc16("123456789", 9), 0x31C3);
}

static int slot_of(int argc, const char **argv)
{
    size_t lens[16];
    for (int i = 0; i < argc; i++) lens[i] = strlen(argv[i]);
    return redis_slot_of_command(argc, argv, lens);
}

TEST(command_routing)
{
    const char *get[] = {"GET", "foo"};
    CHECK_EQ_INT(slot_of(2, get), 12182);
    const char *set[] = {"set", "bar", "v", "PX", "100"};
    CHECK_EQ_INT(slot_of(5, set), 5061);
    const char *pub[] = {"PUBLISH", "foo", "m"};
    CHECK_EQ_INT(slot_of(3, pub), REDIS_SLOT_ANY);
    const char *scan[] = {"SCAN", "0", "MATCH", "x*"};
    CHECK_EQ_INT(slot_of(4, scan), REDIS_SLOT_ANY);
    const char *ping[] = {"PING"};
    CHECK_EQ_INT(slot_of(1, ping), REDIS_SLOT_ANY);
    const char *eval[] = {"EVAL", "return 1", "2", "cachegw:{inv}:seq", "cachegw:{inv}:p", "a"};
    CHECK_EQ_INT(slot_of(6, eval), 13198);
    const char *eval0[] = {"EVAL", "return 1", "0", "foo"};
    CHECK_EQ_INT(slot_of(4, eval0), REDIS_SLOT_ANY);
    const char *cross[] = {"EVAL", "return 1", "2", "cachegw:{inv}:seq", "foo"};
    CHECK_EQ_INT(slot_of(5, cross), REDIS_SLOT_CROSS);
    const char *unlink[] = {"UNLINK", "foo", "bar"};
    CHECK_EQ_INT(slot_of(3, unlink), REDIS_SLOT_CROSS);
    const char *unlink1[] = {"UNLINK", "{t}a", "{t}b"};
    CHECK_EQ_INT(slot_of(3, unlink1), redis_slot("t", 1));
    const char *hm[] = {"HMGET", "cachegw:{inv}:seq", "epoch", "seq"};
    CHECK_EQ_INT(slot_of(4, hm), 13198);
}

int main(void)
{
    RUN(known_slots);
    RUN(command_routing);
    return TEST_SUMMARY();
}
