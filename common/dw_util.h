/* Small helpers shared by every driftwatch program: clocks, files, hashing.
 * All functions return 0 / -1 or NULL on failure and leave errno set.
 */
#ifndef DW_UTIL_H
#define DW_UTIL_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* Wall-clock time in milliseconds since the Unix epoch. */
uint64_t dw_now_ms (void);

/* Monotonic time in milliseconds, for timeouts and durations. */
uint64_t dw_mono_ms (void);

/* Create PATH and its missing parents with MODE. Existing directories are fine. */
int dw_mkdir_p (const char *path, mode_t mode);

/* Remove PATH recursively, without following symlinks. A missing PATH is fine. */
int dw_rm_rf (const char *path);

/* Read a whole file into a NUL-terminated heap buffer of at most MAX bytes.
 * Fails with errno EFBIG when the file is larger. LEN may be NULL. */
char *dw_read_file (const char *path, size_t max, size_t *len);

/* Write DATA to PATH atomically and durably: temporary file, fsync, rename,
 * fsync of the directory. */
int dw_write_file_atomic (const char *path, const void *data, size_t len, mode_t mode);

/* printf into a new heap string (caller frees). */
char *dw_strdup_printf (const char *fmt, ...) __attribute__ ((format (printf, 1, 2)));

/* Lower-case hex SHA-1 of DATA into OUT (41 bytes with the NUL). */
void dw_sha1_hex (const void *data, size_t len, char out[41]);

/* Directory holding the running executable, or "." if it cannot be found. */
const char *dw_self_dir (void);

/* Return today's date in local time as YYYY-MM-DD into OUT. */
void dw_today (char out[11]);

/* Return 0 if TEXT is a valid calendar date YYYY-MM-DD. */
int dw_parse_day (const char *text);

#endif
