/* Logging: see dw_log.h. */
#include "dw_log.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

static char s_program[32] = "driftwatch";
static dw_log_level_t s_min_level = DW_LOG_INFO;

static const char *level_name (dw_log_level_t level)
{
    switch (level) {
    case DW_LOG_DEBUG: return "DEBUG";
    case DW_LOG_INFO: return "INFO";
    case DW_LOG_WARN: return "WARN";
    default: return "ERROR";
    }
}

void dw_log_init (const char *program, dw_log_level_t min_level)
{
    if (program)
        snprintf (s_program, sizeof s_program, "%s", program);
    s_min_level = min_level;

    const char *env = getenv ("DW_LOG_LEVEL");
    if (!env)
        return;
    if (strcasecmp (env, "debug") == 0)
        s_min_level = DW_LOG_DEBUG;
    else if (strcasecmp (env, "info") == 0)
        s_min_level = DW_LOG_INFO;
    else if (strcasecmp (env, "warn") == 0)
        s_min_level = DW_LOG_WARN;
    else if (strcasecmp (env, "error") == 0)
        s_min_level = DW_LOG_ERROR;
}

int dw_log_enabled (dw_log_level_t level)
{
    return level >= s_min_level;
}

void dw_logv (dw_log_level_t level, const char *fmt, va_list args)
{
    if (!dw_log_enabled (level))
        return;

    struct timeval now;
    gettimeofday (&now, NULL);
    struct tm tm;
    gmtime_r (&now.tv_sec, &tm);

    char line[DW_LOG_LINE_MAX];
    int n = snprintf (line, sizeof line, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ %s[%d] %s ",
                      tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min,
                      tm.tm_sec, (int) (now.tv_usec / 1000), s_program, (int) getpid (),
                      level_name (level));
    if (n < 0 || (size_t) n >= sizeof line)
        return;
    int m = vsnprintf (line + n, sizeof line - (size_t) n - 1, fmt, args);
    size_t len = (size_t) n + (m < 0 ? 0 : (size_t) m);
    if (len > sizeof line - 2)
        len = sizeof line - 2;

    /* Keep one event on one line even if a value contains a newline. */
    for (size_t i = (size_t) n; i < len; i++)
        if (line[i] == '\n' || line[i] == '\r')
            line[i] = ' ';
    line[len++] = '\n';

    /* One write(2) per line, so concurrent threads never interleave. */
    ssize_t rc = write (STDERR_FILENO, line, len);
    (void) rc;
}

void dw_log (dw_log_level_t level, const char *fmt, ...)
{
    va_list args;
    va_start (args, fmt);
    dw_logv (level, fmt, args);
    va_end (args);
}
