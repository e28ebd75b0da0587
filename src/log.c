/* log.c - see log.h. */
#include "log.h"

#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

static atomic_int log_level_ = LOG_INFO;

static const char *const LEVEL_NAMES[] = {"DEBUG", "INFO", "WARN", "ERROR"};

int log_level_parse(const char *name)
{
    if (name == NULL) return -1;
    if (strcasecmp(name, "debug") == 0) return LOG_DEBUG;
    if (strcasecmp(name, "info") == 0) return LOG_INFO;
    if (strcasecmp(name, "warn") == 0 || strcasecmp(name, "warning") == 0) return LOG_WARN;
    if (strcasecmp(name, "error") == 0) return LOG_ERROR;
    return -1;
}

void log_set_level(enum log_level level) { atomic_store(&log_level_, (int)level); }

enum log_level log_get_level(void) { return (enum log_level)atomic_load(&log_level_); }

void log_msg(enum log_level level, const char *fmt, ...)
{
    if ((int)level < atomic_load(&log_level_)) return;

    char line[2048];
    struct timeval tv;
    struct tm tm;
    gettimeofday(&tv, NULL);
    gmtime_r(&tv.tv_sec, &tm);
    int n = (int)strftime(line, sizeof line, "%Y-%m-%dT%H:%M:%S", &tm);
    n += snprintf(line + n, sizeof line - (size_t)n, ".%03dZ %-5s ", (int)(tv.tv_usec / 1000),
                  LEVEL_NAMES[level]);

    va_list ap;
    va_start(ap, fmt);
    int m = vsnprintf(line + n, sizeof line - (size_t)n - 1, fmt, ap);
    va_end(ap);
    if (m < 0) m = 0;
    size_t len = (size_t)n + (size_t)m;
    if (len > sizeof line - 2) len = sizeof line - 2;
    /* Keep one event on one line even if a message carries a newline. */
    for (size_t i = (size_t)n; i < len; i++)
        if (line[i] == '\n' || line[i] == '\r') line[i] = ' ';
    line[len++] = '\n';
    ssize_t w = write(STDERR_FILENO, line, len);
    (void)w;
}
