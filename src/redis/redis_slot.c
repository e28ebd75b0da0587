/* redis_slot.c - see redis_slot.h. */
#include "redis_slot.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

uint16_t redis_crc16(const char *buf, size_t len)
{
    uint16_t crc = 0;
    for (size_t i = 0; i < len; i++) {
        crc ^= (uint16_t)((uint8_t)buf[i] << 8);
        for (int b = 0; b < 8; b++)
            crc = (crc & 0x8000) ? (uint16_t)((crc << 1) ^ 0x1021) : (uint16_t)(crc << 1);
    }
    return crc;
}

int redis_slot(const char *key, size_t len)
{
    const char *open = memchr(key, '{', len);
    if (open != NULL) {
        size_t off = (size_t)(open - key) + 1;
        const char *close = memchr(key + off, '}', len - off);
        /* "{}" is no tag: the whole key hashes, as Redis does. */
        if (close != NULL && close > key + off)
            return redis_crc16(key + off, (size_t)(close - (key + off))) & (REDIS_SLOTS - 1);
    }
    return redis_crc16(key, len) & (REDIS_SLOTS - 1);
}

static bool cmd_is(const char *a, size_t len, const char *name)
{
    return strlen(name) == len && strncasecmp(a, name, len) == 0;
}

/* The slot shared by argv[first..first+n), step apart, or REDIS_SLOT_CROSS. */
static int common_slot(const char **argv, const size_t *lens, int first, int n, int step)
{
    int slot = REDIS_SLOT_ANY;
    for (int i = 0; i < n; i++) {
        int k = first + i * step;
        int s = redis_slot(argv[k], lens[k]);
        if (slot == REDIS_SLOT_ANY)
            slot = s;
        else if (s != slot)
            return REDIS_SLOT_CROSS;
    }
    return slot;
}

int redis_slot_of_command(int argc, const char **argv, const size_t *lens)
{
    if (argc < 2) return REDIS_SLOT_ANY;
    const char *c = argv[0];
    size_t cl = lens[0];
    if (cmd_is(c, cl, "PING") || cmd_is(c, cl, "PUBLISH") || cmd_is(c, cl, "SCAN") ||
        cmd_is(c, cl, "INFO") || cmd_is(c, cl, "CLUSTER") || cmd_is(c, cl, "SUBSCRIBE") ||
        cmd_is(c, cl, "ROLE") || cmd_is(c, cl, "SCRIPT") || cmd_is(c, cl, "DBSIZE") ||
        cmd_is(c, cl, "FLUSHALL") || cmd_is(c, cl, "FLUSHDB"))
        return REDIS_SLOT_ANY;
    if (cmd_is(c, cl, "EVAL") || cmd_is(c, cl, "EVALSHA") || cmd_is(c, cl, "EVAL_RO") ||
        cmd_is(c, cl, "EVALSHA_RO")) {
        if (argc < 3) return REDIS_SLOT_ANY;
        char num[12];
        if (lens[2] == 0 || lens[2] >= sizeof num) return REDIS_SLOT_ANY;
        memcpy(num, argv[2], lens[2]);
        num[lens[2]] = '\0';
        long n = strtol(num, NULL, 10);
        if (n <= 0) return REDIS_SLOT_ANY;
        if (n > argc - 3) n = argc - 3;
        return common_slot(argv, lens, 3, (int)n, 1);
    }
    if (cmd_is(c, cl, "DEL") || cmd_is(c, cl, "UNLINK") || cmd_is(c, cl, "MGET") ||
        cmd_is(c, cl, "EXISTS") || cmd_is(c, cl, "TOUCH"))
        return common_slot(argv, lens, 1, argc - 1, 1);
    if (cmd_is(c, cl, "MSET")) return common_slot(argv, lens, 1, (argc - 1) / 2, 2);
    return redis_slot(argv[1], lens[1]);
}
