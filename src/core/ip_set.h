/*
 * ip_set - a set of IP addresses and CIDR ranges (IPv4 and IPv6), such as the
 * TRUSTED_PROXIES option.
 *
 * Ownership: ip_set_parse returns a set the caller frees with ip_set_free.
 * Thread-safety: immutable after parsing; query from any thread.
 */
#ifndef CACHEGW_IP_SET_H
#define CACHEGW_IP_SET_H

#include <stdbool.h>
#include <stddef.h>

struct ip_set;

/* Parses a comma- or space-separated list of addresses and CIDR ranges (NULL or
 * "" = empty).  Returns 0 and *out (NULL for an empty list), or -1 with the
 * offending element copied into bad (or "out of memory"). */
int ip_set_parse(const char *list, struct ip_set **out, char *bad, size_t bad_len);
void ip_set_free(struct ip_set *set);
/* True when ip (text form) is in the set; false for a NULL set or a non-address. */
bool ip_set_contains(const struct ip_set *set, const char *ip);

#endif
