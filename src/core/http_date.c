/* http_date.c - see http_date.h. */
#include "http_date.h"

#include <stdio.h>
#include <string.h>

static const char *const DAYS[7] = {"Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"};
static const char *const LONG_DAYS[7] = {"Monday", "Tuesday",  "Wednesday", "Thursday",
                                         "Friday", "Saturday", "Sunday"};
static const char *const MONTHS[12] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                       "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};

/* Reads exactly n digits; returns -1 if any is not a digit. */
static int digits(const char *p, int n)
{
    int v = 0;
    for (int i = 0; i < n; i++) {
        if (p[i] < '0' || p[i] > '9') return -1;
        v = v * 10 + (p[i] - '0');
    }
    return v;
}

static int month_of(const char *p)
{
    for (int i = 0; i < 12; i++)
        if (strncmp(p, MONTHS[i], 3) == 0) return i;
    return -1;
}

static bool is_leap(int y) { return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0; }

/* Days from 1970-01-01 to y-m-d (m 0-based), proleptic Gregorian. */
static int64_t days_from_civil(int y, int m, int d)
{
    static const int CUM[12] = {0, 31, 59, 90, 120, 151, 181, 212, 243, 273, 304, 334};
    int64_t days = 0;
    for (int yy = 1970; yy < y; yy++) days += is_leap(yy) ? 366 : 365;
    days += CUM[m] + (m > 1 && is_leap(y) ? 1 : 0) + (d - 1);
    return days;
}

static bool valid_date(int y, int m, int d, int hh, int mm, int ss)
{
    static const int MDAYS[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    if (y < 1970 || y > 9999 || m < 0 || d < 1) return false;
    int md = MDAYS[m] + (m == 1 && is_leap(y) ? 1 : 0);
    /* RFC 9110 allows a leap second (60). */
    return d <= md && hh >= 0 && hh <= 23 && mm >= 0 && mm <= 59 && ss >= 0 && ss <= 60;
}

/* "hh:mm:ss" at p; returns false unless exactly that shape. */
static bool time_of(const char *p, int *hh, int *mm, int *ss)
{
    if (p[2] != ':' || p[5] != ':') return false;
    *hh = digits(p, 2);
    *mm = digits(p + 3, 2);
    *ss = digits(p + 6, 2);
    return *hh >= 0 && *mm >= 0 && *ss >= 0;
}

static bool finish(int y, int m, int d, int hh, int mm, int ss, int64_t *out)
{
    if (!valid_date(y, m, d, hh, mm, ss)) return false;
    *out = days_from_civil(y, m, d) * 86400 + hh * 3600 + mm * 60 + ss;
    return true;
}

/* IMF-fixdate: "Sun, 06 Nov 1994 08:49:37 GMT" (29 bytes). */
static bool imf_fixdate(const char *p, size_t n, int64_t *out)
{
    if (n != 29 || p[3] != ',' || p[4] != ' ' || p[7] != ' ' || p[11] != ' ' || p[16] != ' ' ||
        p[25] != ' ' || strncmp(p + 26, "GMT", 3) != 0)
        return false;
    bool day_ok = false;
    for (int i = 0; i < 7; i++) day_ok |= strncmp(p, DAYS[i], 3) == 0;
    int d = digits(p + 5, 2), m = month_of(p + 8), y = digits(p + 12, 4), hh, mm, ss;
    if (!day_ok || d < 0 || m < 0 || y < 0 || !time_of(p + 17, &hh, &mm, &ss)) return false;
    return finish(y, m, d, hh, mm, ss, out);
}

/* rfc850-date: "Sunday, 06-Nov-94 08:49:37 GMT". */
static bool rfc850_date(const char *p, size_t n, int64_t *out)
{
    const char *comma = memchr(p, ',', n);
    if (comma == NULL) return false;
    size_t dl = (size_t)(comma - p);
    bool day_ok = false;
    for (int i = 0; i < 7; i++)
        day_ok |= strlen(LONG_DAYS[i]) == dl && strncmp(p, LONG_DAYS[i], dl) == 0;
    const char *q = comma + 1;
    if (!day_ok || (size_t)(p + n - q) != 23 || q[0] != ' ' || q[3] != '-' || q[7] != '-' ||
        q[10] != ' ' || q[19] != ' ' || strncmp(q + 20, "GMT", 3) != 0)
        return false;
    int d = digits(q + 1, 2), m = month_of(q + 4), yy = digits(q + 8, 2), hh, mm, ss;
    if (d < 0 || m < 0 || yy < 0 || !time_of(q + 11, &hh, &mm, &ss)) return false;
    /* Two-digit years: RFC 9110 says to read one more than 50 years ahead as the past. */
    return finish(yy < 70 ? 2000 + yy : 1900 + yy, m, d, hh, mm, ss, out);
}

/* asctime-date: "Sun Nov  6 08:49:37 1994" (24 bytes; a one-digit day is space-padded). */
static bool asctime_date(const char *p, size_t n, int64_t *out)
{
    if (n != 24 || p[3] != ' ' || p[7] != ' ' || p[10] != ' ' || p[19] != ' ') return false;
    bool day_ok = false;
    for (int i = 0; i < 7; i++) day_ok |= strncmp(p, DAYS[i], 3) == 0;
    int m = month_of(p + 4);
    int d = p[8] == ' ' ? digits(p + 9, 1) : digits(p + 8, 2);
    int y = digits(p + 20, 4), hh, mm, ss;
    if (!day_ok || m < 0 || d < 0 || y < 0 || !time_of(p + 11, &hh, &mm, &ss)) return false;
    return finish(y, m, d, hh, mm, ss, out);
}

bool http_date_parse(const char *s, int64_t *out)
{
    if (s == NULL) return false;
    while (*s == ' ' || *s == '\t') s++;
    size_t n = strlen(s);
    while (n > 0 && (s[n - 1] == ' ' || s[n - 1] == '\t')) n--;
    if (n < 24) return false;
    return imf_fixdate(s, n, out) || asctime_date(s, n, out) || rfc850_date(s, n, out);
}

int http_date_format(int64_t s, char *buf, size_t cap)
{
    if (cap < 30 || s < 0 || s > 253402300799LL) return -1; /* 9999-12-31T23:59:59 */
    int64_t days = s / 86400, rem = s % 86400;
    const char *wday = DAYS[(days + 3) % 7]; /* 1970-01-01 was a Thursday (DAYS[3]) */
    /* Civil from days (Howard Hinnant's algorithm), exact for the range above. */
    int64_t z = days + 719468, era = z / 146097, doe = z - era * 146097;
    int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    int64_t y = yoe + era * 400, doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    int64_t mp = (5 * doy + 2) / 153, d = doy - (153 * mp + 2) / 5 + 1;
    int64_t m = mp < 10 ? mp + 3 : mp - 9;
    if (m <= 2) y++;
    snprintf(buf, cap, "%s, %02d %s %04d %02d:%02d:%02d GMT", wday, (int)d, MONTHS[m - 1],
             (int)y, (int)(rem / 3600), (int)(rem / 60 % 60), (int)(rem % 60));
    return 0;
}
