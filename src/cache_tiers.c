/* cache_tiers.c - see cache_tiers.h. */
#include "cache_tiers.h"

#include <string.h>

#include "log.h"
#include "stats.h"
#include "store_l1.h"

void cache_tiers_invalidate_key(struct gateway *gw, const char *key)
{
    STATS_INC(invalidations);
    if (gw->l1) store_l1_delete(gw->l1, key, strlen(key));
    LOG_D("invalidated key %s", key);
}

void cache_tiers_invalidate_prefix(struct gateway *gw, const char *prefix)
{
    STATS_INC(invalidations);
    size_t n = gw->l1 ? store_l1_delete_prefix(gw->l1, prefix, strlen(prefix)) : 0;
    LOG_D("invalidated prefix %s (%zu entries in memory)", prefix, n);
}
