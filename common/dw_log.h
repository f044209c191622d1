/* One-line-per-event logging shared by the coordinator and the worker.
 *
 * Every line is "TIMESTAMP PROGRAM[PID] LEVEL message", written to stderr
 * with a single write so lines from threads never interleave. Messages use
 * stable key=value ids (worker=... job=... attempt=...). Never pass a secret.
 */
#ifndef DW_LOG_H
#define DW_LOG_H

#include <stdarg.h>

typedef enum {
    DW_LOG_DEBUG = 0,
    DW_LOG_INFO = 1,
    DW_LOG_WARN = 2,
    DW_LOG_ERROR = 3
} dw_log_level_t;

/* Maximum length of one log line; longer messages are truncated. */
#define DW_LOG_LINE_MAX 2048

/* Set the program name and the lowest level that is printed. The level can
 * also come from DW_LOG_LEVEL (debug, info, warn, error), which wins. */
void dw_log_init (const char *program, dw_log_level_t min_level);

/* Write one log line at LEVEL. */
void dw_log (dw_log_level_t level, const char *fmt, ...)
    __attribute__ ((format (printf, 2, 3)));

void dw_logv (dw_log_level_t level, const char *fmt, va_list args);

/* Return nonzero when LEVEL would be printed. */
int dw_log_enabled (dw_log_level_t level);

#define dw_debug(...) dw_log (DW_LOG_DEBUG, __VA_ARGS__)
#define dw_info(...) dw_log (DW_LOG_INFO, __VA_ARGS__)
#define dw_warn(...) dw_log (DW_LOG_WARN, __VA_ARGS__)
#define dw_error(...) dw_log (DW_LOG_ERROR, __VA_ARGS__)

#endif
