/* PostgreSQL side of the regression detector: loads a track's day series
 * from the core tables, stores daily reports (migration 0002_detector.sql)
 * and implements the "coordinator detect" command.
 *
 * Valid run = a job's final result that is not infra_error, harness_error or
 * cancelled; pass = resolved. Excluded finals are counted per day; jobs with
 * no final result yet count as planned but neither valid nor excluded.
 */
#ifndef DW_DETECTOR_STORE_H
#define DW_DETECTOR_STORE_H

#include <libpq-fe.h>

#include "dw_detector.h"

/* Days of one track, in order, ready for dw_detector_add_day. */
typedef struct {
    dw_detector_day_t *days;
    size_t count;
} dw_detector_series_t;

/* Load TRACK's days up to and including DAY (YYYY-MM-DD) and register its
 * tasks in DETECTOR (by instance id). When a track has several runs on one
 * day, the newest run (highest id) is used. Returns 0 and a series to free
 * with dw_detector_series_destroy (possibly with 0 days), or -1 with ERR. */
int dw_detector_store_load (PGconn *conn, const char *track, const char *day,
                            dw_detector_t *detector, dw_detector_series_t **series,
                            char *err, size_t errlen);

void dw_detector_series_destroy (dw_detector_series_t **self_p);

/* Insert or replace the report of TRACK for REPORT's day. SETTINGS names
 * the detector settings it was computed with. Returns 0 or -1 with ERR. */
int dw_detector_store_save (PGconn *conn, const char *track, const char *config_hash,
                            const char *settings, const dw_detector_report_t *report,
                            char *err, size_t errlen);

/* Fill CACHE with callbacks that keep calibrated thresholds in the
 * detector_calibrations table of CONN. */
void dw_detector_store_cache (PGconn *conn, dw_detector_cache_t *cache);

/* "coordinator detect [--track NAME] [--date YYYY-MM-DD] [--json] [--alpha A]
 *  [--baseline-days B] [--baseline-min-runs N] [--calibration-years N]
 *  [--seed S]": replay each track up to the date, store the daily reports,
 * print the date's report and return an exit code: DW_DETECT_EXIT_OK (no
 * new alarm), _DEGRADATION, _IMPROVEMENT, _BOTH (new alarms on that date),
 * _USAGE or _RUNTIME. ARGV[0] is the command word. */
int dw_detector_command (PGconn *conn, int argc, char **argv);

#endif
