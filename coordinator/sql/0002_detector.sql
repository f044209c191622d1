-- Regression detector: one report per track and day, and a cache of
-- calibrated thresholds. The migration runner wraps this file in a
-- transaction, so it contains no BEGIN or COMMIT of its own.

CREATE TABLE detector_reports (
    track text NOT NULL,
    day date NOT NULL,
    -- Configuration of the day's run (NULL when the track had no run that day).
    config_hash text,
    -- insufficient_data | baseline | no_change | degradation | improvement | data_incident
    status text NOT NULL,
    -- True only on the day an alarm is raised; later days of the same alarm are false.
    alarm_new boolean NOT NULL DEFAULT false,
    -- Active alarm: 1 degradation, -1 improvement, 0 none.
    alarm_direction int NOT NULL DEFAULT 0,
    s_down double precision,
    s_up double precision,
    threshold double precision,
    -- Detector settings the report was computed with (alpha, baseline, calibration, seed).
    settings text NOT NULL,
    report jsonb NOT NULL,
    computed_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (track, day)
);

CREATE INDEX detector_reports_new_alarms ON detector_reports (day) WHERE alarm_new;

-- Thresholds from simulated null years, keyed by a SHA-1 of every input of
-- the simulation (task rates, repeats, baseline days, horizon, day effect,
-- loss rate, years, alpha, seed), so replaying a series does not recalibrate.
CREATE TABLE detector_calibrations (
    key text PRIMARY KEY,
    threshold double precision NOT NULL,
    years int NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
