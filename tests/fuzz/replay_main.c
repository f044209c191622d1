/* Replays fuzzer inputs without libFuzzer: every file named on the command
 * line, or found directly inside a named directory, goes through
 * LLVMFuzzerTestOneInput once. Built with AddressSanitizer and
 * UndefinedBehaviorSanitizer where the compiler has them, so ctest finds a
 * regression in any input of the committed corpus. Exits 1 when an argument
 * cannot be read or no input was found. */
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* Largest input replayed; the wire limit is 8 MiB and corpus files are small. */
#define REPLAY_INPUT_MAX (16 * 1024 * 1024)

int LLVMFuzzerTestOneInput (const uint8_t *data, size_t size);

static int replay_file (const char *path)
{
    FILE *file = fopen (path, "rb");
    if (!file) {
        fprintf (stderr, "cannot open %s\n", path);
        return -1;
    }
    uint8_t *data = malloc (REPLAY_INPUT_MAX);
    size_t size = data ? fread (data, 1, REPLAY_INPUT_MAX, file) : 0;
    int failed = !data || ferror (file);
    fclose (file);
    if (failed) {
        fprintf (stderr, "cannot read %s\n", path);
        free (data);
        return -1;
    }

    /* A copy of exactly SIZE bytes lets AddressSanitizer catch reads past
     * the end of the input. */
    uint8_t *exact = malloc (size ? size : 1);
    memcpy (exact, data, size);
    free (data);
    LLVMFuzzerTestOneInput (exact, size);
    free (exact);
    return 0;
}

static int replay_dir (const char *dir, size_t *count)
{
    DIR *handle = opendir (dir);
    if (!handle) {
        fprintf (stderr, "cannot open directory %s\n", dir);
        return -1;
    }
    int rc = 0;
    struct dirent *entry;
    while ((entry = readdir (handle)) != NULL) {
        if (entry->d_name[0] == '.')
            continue;
        char path[4096];
        snprintf (path, sizeof path, "%s/%s", dir, entry->d_name);
        struct stat st;
        if (stat (path, &st) != 0 || !S_ISREG (st.st_mode))
            continue;
        if (replay_file (path) != 0)
            rc = -1;
        else
            (*count)++;
    }
    closedir (handle);
    return rc;
}

int main (int argc, char **argv)
{
    if (argc < 2) {
        fprintf (stderr, "usage: %s DIR_OR_FILE...\n", argv[0]);
        return 2;
    }

    size_t count = 0;
    int rc = 0;
    for (int i = 1; i < argc; i++) {
        struct stat st;
        if (stat (argv[i], &st) != 0) {
            fprintf (stderr, "%s not found\n", argv[i]);
            rc = -1;
        }
        else if (S_ISDIR (st.st_mode))
            rc |= replay_dir (argv[i], &count);
        else if (replay_file (argv[i]) == 0)
            count++;
        else
            rc = -1;
    }

    if (count == 0) {
        fprintf (stderr, "no inputs found in the given paths\n");
        return 1;
    }
    printf ("replayed %zu inputs\n", count);
    return rc == 0 ? 0 : 1;
}
