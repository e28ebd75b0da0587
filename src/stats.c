/* stats.c - see stats.h. */
#include "stats.h"

struct stats g_stats;

double stats_hit_rate_percent(void)
{
    uint64_t h = STATS_GET(hits), m = STATS_GET(misses);
    if (h + m == 0) return 0.0;
    return (double)h * 100.0 / (double)(h + m);
}
