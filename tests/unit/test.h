/*
 * test.h - a minimal assertion harness for the C unit tests.
 *
 * Each tests/unit/test_<module>.c defines TEST(name) functions and lists them in
 * main() with RUN(name).  A failed CHECK prints file:line and the expression and
 * marks the test failed; main returns non-zero if any test failed.
 * Confined to one thread (the counters are plain globals of the test process).
 */
#ifndef CACHEGW_TEST_H
#define CACHEGW_TEST_H

#include <stdio.h>
#include <string.h>

static int test_failures_;
static int test_current_failed_;
static int test_passed_;
static int test_failed_;

#define TEST(name) static void test_##name(void)

#define CHECK(expr)                                                                  \
    do {                                                                             \
        if (!(expr)) {                                                               \
            fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #expr); \
            test_current_failed_ = 1;                                                \
            test_failures_++;                                                        \
        }                                                                            \
    } while (0)

#define CHECK_EQ_INT(a, b)                                                           \
    do {                                                                             \
        long long a_ = (long long)(a), b_ = (long long)(b);                          \
        if (a_ != b_) {                                                              \
            fprintf(stderr, "%s:%d: CHECK failed: %s == %s (%lld != %lld)\n",        \
                    __FILE__, __LINE__, #a, #b, a_, b_);                             \
            test_current_failed_ = 1;                                                \
            test_failures_++;                                                        \
        }                                                                            \
    } while (0)

#define CHECK_EQ_STR(a, b)                                                           \
    do {                                                                             \
        const char *a_ = (a), *b_ = (b);                                             \
        if (a_ == NULL || b_ == NULL || strcmp(a_, b_) != 0) {                       \
            fprintf(stderr, "%s:%d: CHECK failed: %s == %s (\"%s\" != \"%s\")\n",    \
                    __FILE__, __LINE__, #a, #b, a_ ? a_ : "(null)",                  \
                    b_ ? b_ : "(null)");                                             \
            test_current_failed_ = 1;                                                \
            test_failures_++;                                                        \
        }                                                                            \
    } while (0)

#define RUN(name)                                                                    \
    do {                                                                             \
        test_current_failed_ = 0;                                                    \
        test_##name();                                                               \
        if (test_current_failed_) {                                                  \
            test_failed_++;                                                          \
            fprintf(stderr, "FAIL %s\n", #name);                                     \
        } else {                                                                     \
            test_passed_++;                                                          \
            fprintf(stderr, "ok   %s\n", #name);                                     \
        }                                                                            \
    } while (0)

#define TEST_SUMMARY()                                                               \
    (fprintf(stderr, "%d passed, %d failed\n", test_passed_, test_failed_),          \
     test_failed_ ? 1 : 0)

#endif
