/*
 * redis_slot - the Redis Cluster hash slot of a key, exactly as the cluster
 * specification computes it: CRC16 (XMODEM: polynomial 0x1021, initial value
 * 0) of the key modulo 16384, where a key holding "{...}" with at least one
 * byte between the first '{' and the next '}' hashes only those bytes (a hash
 * tag: "cachegw:{inv}:seq" and "cachegw:{inv}:p" share a slot).
 *
 * redis_slot_of_command tells which key of a command decides its node, for
 * the commands the gateway sends (see docs/design.md, "Redis Cluster and
 * Sentinel").
 *
 * Thread-safety: pure functions, no state.
 */
#ifndef CACHEGW_REDIS_SLOT_H
#define CACHEGW_REDIS_SLOT_H

#include <stddef.h>
#include <stdint.h>

#define REDIS_SLOTS 16384

uint16_t redis_crc16(const char *buf, size_t len);
/* The slot (0..16383) of key. */
int redis_slot(const char *key, size_t len);

/* The slot a command must go to: that of its first key (GET/SET/DEL/UNLINK/
 * HGETALL/HMGET/..., argv[1]; EVAL/EVALSHA, argv[3] when numkeys > 0).
 * Returns REDIS_SLOT_ANY for a command without keys (PING, PUBLISH, SCAN,
 * EVAL with no key: any node will do), or REDIS_SLOT_CROSS when a multi-key
 * command (DEL/UNLINK/MGET/EXISTS with several keys, EVAL) names keys of
 * different slots, which a cluster refuses. */
#define REDIS_SLOT_ANY (-1)
#define REDIS_SLOT_CROSS (-2)
int redis_slot_of_command(int argc, const char **argv, const size_t *lens);

#endif
