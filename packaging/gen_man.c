/* gen_man.c - build-time generator of the cachegw(8) man page.
 *
 * Usage: cachegw-gen-man [OUTPUT]   (stdout without OUTPUT)
 *
 * Writes the page through config_print_man, which reads the same option
 * table as --help: a new or changed option reaches the man page on the next
 * build, so the two cannot drift.  Not installed. */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "config.h"

int main(int argc, char **argv)
{
    const char *path = argc > 1 ? argv[1] : NULL;
    FILE *out = path != NULL ? fopen(path, "w") : stdout;
    if (out == NULL) {
        fprintf(stderr, "cachegw-gen-man: cannot create %s: %s\n", path, strerror(errno));
        return 1;
    }
    config_print_man(out);
    int failed = fflush(out) != 0 || ferror(out);
    if (path != NULL && fclose(out) != 0) failed = 1;
    if (failed) fprintf(stderr, "cachegw-gen-man: cannot write the man page\n");
    return failed;
}
