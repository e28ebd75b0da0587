/* stats.c - see stats.h. */
#include "stats.h"

struct stats g_stats;

/* 0: no group; 1: a group, nothing counted yet; 2: a group that has counted. */
static _Thread_local int invalidation_group;

void stats_invalidation_group_begin(void) { invalidation_group = 1; }

void stats_invalidation_group_end(void) { invalidation_group = 0; }

void stats_count_invalidation(void)
{
    if (invalidation_group == 2) return;
    if (invalidation_group == 1) invalidation_group = 2;
    STATS_INC(invalidations);
}

double stats_hit_rate_percent(void)
{
    uint64_t h = STATS_GET(hits), m = STATS_GET(misses);
    if (h + m == 0) return 0.0;
    return (double)h * 100.0 / (double)(h + m);
}
