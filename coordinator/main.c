/* coordinator: the driftwatch coordinator's command line.
 *
 *   coordinator [run] --date today|YYYY-MM-DD [options]   run (or resume) a day
 *   coordinator import SUITE_FILE [--name NAME]           store a task suite
 *   coordinator detect [options]                          regression report
 *   coordinator migrate                                   create/upgrade the schema
 *
 * The database comes from --db, DATABASE_URL or the libpq PG* variables; with
 * none of them, the coordinator starts a private PostgreSQL cluster in its
 * data directory and stops it on exit.
 */
#include <errno.h>
#include <getopt.h>
#include <jansson.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "dw_broker.h"
#include "dw_config.h"
#include "dw_coordinator.h"
#include "dw_log.h"
#include "dw_util.h"
#include "dw_version.h"

static void usage (FILE *out)
{
    fprintf (out,
             "usage: coordinator [run] --date today|YYYY-MM-DD [options]\n"
             "       coordinator import SUITE_FILE [--name NAME] [--db CONNINFO]\n"
             "       coordinator detect [--track NAME] [--date YYYY-MM-DD] [--json] ...\n"
             "       coordinator migrate [--db CONNINFO]\n"
             "       coordinator keygen [--data-dir DIR] [--force]\n"
             "\n"
             "Run options:\n"
             "  --date DAY            day to run: today or YYYY-MM-DD (required)\n"
             "  --suite NAME|FILE     task suite: a JSONL file, a name imported before, or\n"
             "                        \"demo\" for the bundled demo suite (default demo)\n"
             "  --panel N|FILE        the first N tasks of the suite's fixed order, or the\n"
             "                        instance ids listed in FILE (default: every task)\n"
             "  --repeats R           runs of each panel task per day (default 1)\n"
             "  --track NAME          series the detector follows (default \"default\")\n"
             "  --local-workers N     start N workers on this machine (default 0)\n"
             "  --bind ENDPOINT       ZeroMQ endpoint for workers (default tcp://127.0.0.1:*\n"
             "                        with local workers, else tcp://0.0.0.0:7555)\n"
             "  --agent KIND          claude-code (default) | stub (replays the gold patch\n"
             "                        with a per-task probability) | command\n"
             "  --agent-command CMD   program run as the agent for --agent command\n"
             "  --model NAME          model passed to the agent\n"
             "  --cli-version V       Claude Code version workers must run; a worker with\n"
             "                        another version takes no jobs (default " DW_CLAUDE_CODE_VERSION ")\n"
             "  --max-turns N         agent turn limit (default 50)\n"
             "  --wall-seconds S      agent wall-clock limit per attempt (default 1800)\n"
             "  --grade-seconds S     hidden-test wall-clock limit (default 600)\n"
             "  --max-attempts N      attempts per job for infrastructure failures (default 3)\n"
             "  --infra-policy P      exclude | fail | reject-day: how infrastructure errors\n"
             "                        enter pass rates (default exclude)\n"
             "  --heartbeat-ms MS     heartbeat interval (default 1000)\n"
             "  --upstream URL        model API base URL for local workers; with --agent\n"
             "                        claude-code and no ANTHROPIC_API_KEY, local workers use\n"
             "                        the bundled scripted model server instead\n"
             "  --insecure            no CURVE encryption or worker keys; allowed only when\n"
             "                        binding a loopback endpoint\n"
             "  --baseline-days N     detector baseline length in valid days (default 14)\n"
             "  --baseline-min-runs N detector baseline size in valid runs (default 1500)\n"
             "\n"
             "Workers authenticate with CURVE: 'coordinator keygen' creates the coordinator's\n"
             "key in DATA_DIR/keys; a worker's public certificate (from 'worker keygen') copied\n"
             "into DATA_DIR/keys/workers/ admits it, without a restart. Local workers get\n"
             "keys automatically.\n"
             "\n"
             "Common options:\n"
             "  --db CONNINFO         PostgreSQL connection string (else DATABASE_URL, PG*\n"
             "                        variables, or a private cluster in the data directory)\n"
             "  --data-dir DIR        coordinator state (default /var/lib/driftwatch as root,\n"
             "                        else ~/.local/share/driftwatch)\n"
             "  --version             print the version and exit\n"
             "\n"
             "Logs go to stderr: warnings and errors on a terminal, everything from INFO up\n"
             "otherwise; DW_LOG_LEVEL=debug|info|warn|error sets the level.\n"
             "\n"
             "Exit status: 0 done, 1 error, 2 usage, 3 harness failure, 4 interrupted\n"
             "(resumable), 10 new degradation alarm, 11 new improvement alarm, 12 both.\n");
}

static void default_data_dir (char *out, size_t size)
{
    const char *env = getenv ("DRIFTWATCH_DATA_DIR");
    if (env && *env)
        snprintf (out, size, "%s", env);
    else if (geteuid () == 0)
        snprintf (out, size, "/var/lib/driftwatch");
    else if (getenv ("XDG_DATA_HOME"))
        snprintf (out, size, "%s/driftwatch", getenv ("XDG_DATA_HOME"));
    else
        snprintf (out, size, "%s/.local/share/driftwatch",
                  getenv ("HOME") ? getenv ("HOME") : "/tmp");
}

static int parse_uint (const char *text, const char *option, long min, long max, long *out)
{
    char *end = NULL;
    errno = 0;
    long value = strtol (text, &end, 10);
    if (errno || !end || *end || value < min || value > max) {
        fprintf (stderr, "coordinator: invalid %s '%s': use a number from %ld to %ld\n", option,
                 text, min, max);
        return -1;
    }
    *out = value;
    return 0;
}

int main (int argc, char **argv)
{
    /* On a terminal, progress and the summary are the output; routine INFO
     * log lines would bury them. Services and CI keep INFO (DW_LOG_LEVEL
     * overrides both). */
    dw_log_init ("coordinator", isatty (STDERR_FILENO) ? DW_LOG_WARN : DW_LOG_INFO);
    /* A closed stdout (coordinator ... | head) must not kill the process
     * before it stops its private cluster. */
    signal (SIGPIPE, SIG_IGN);
    dw_broker_handle_signals ();

    static char data_dir[PATH_MAX];
    default_data_dir (data_dir, sizeof data_dir);
    dw_options_t opts = {
        .data_dir = data_dir,
        .suite = "demo",
        .repeats = 1,
        .track = "default",
        .agent_kind = "claude-code",
        .agent_command = "",
        .model = "",
        .max_turns = 50,
        .wall_seconds = 1800,
        .grade_seconds = 600,
        .max_attempts = 3,
        .infra_policy = "exclude",
        .heartbeat_ms = 1000,
        .cli_version = DW_CLAUDE_CODE_VERSION,
    };

    /* The command word is optional for "run". */
    const char *command = "run";
    if (argc > 1 && argv[1][0] != '-') {
        command = argv[1];
        argv++;
        argc--;
    }
    if (strcmp (command, "detect") == 0)
        return dw_coordinator_detect (&opts, argc, argv);

    enum { OPT_DATE = 256, OPT_SUITE, OPT_PANEL, OPT_REPEATS, OPT_TRACK, OPT_LOCAL, OPT_BIND,
           OPT_AGENT, OPT_AGENT_CMD, OPT_MODEL, OPT_TURNS, OPT_WALL, OPT_GRADE, OPT_ATTEMPTS,
           OPT_POLICY, OPT_HB, OPT_DB, OPT_DATA, OPT_NAME, OPT_VERSION, OPT_INSECURE,
           OPT_BASE_DAYS, OPT_BASE_RUNS, OPT_FORCE, OPT_UPSTREAM, OPT_CLI_VERSION };
    static const struct option options[] = {
        { "date", required_argument, NULL, OPT_DATE },
        { "suite", required_argument, NULL, OPT_SUITE },
        { "panel", required_argument, NULL, OPT_PANEL },
        { "repeats", required_argument, NULL, OPT_REPEATS },
        { "track", required_argument, NULL, OPT_TRACK },
        { "local-workers", required_argument, NULL, OPT_LOCAL },
        { "bind", required_argument, NULL, OPT_BIND },
        { "agent", required_argument, NULL, OPT_AGENT },
        { "agent-command", required_argument, NULL, OPT_AGENT_CMD },
        { "model", required_argument, NULL, OPT_MODEL },
        { "max-turns", required_argument, NULL, OPT_TURNS },
        { "wall-seconds", required_argument, NULL, OPT_WALL },
        { "grade-seconds", required_argument, NULL, OPT_GRADE },
        { "max-attempts", required_argument, NULL, OPT_ATTEMPTS },
        { "infra-policy", required_argument, NULL, OPT_POLICY },
        { "heartbeat-ms", required_argument, NULL, OPT_HB },
        { "db", required_argument, NULL, OPT_DB },
        { "data-dir", required_argument, NULL, OPT_DATA },
        { "name", required_argument, NULL, OPT_NAME },
        { "version", no_argument, NULL, OPT_VERSION },
        { "insecure", no_argument, NULL, OPT_INSECURE },
        { "baseline-days", required_argument, NULL, OPT_BASE_DAYS },
        { "baseline-min-runs", required_argument, NULL, OPT_BASE_RUNS },
        { "force", no_argument, NULL, OPT_FORCE },
        { "upstream", required_argument, NULL, OPT_UPSTREAM },
        { "cli-version", required_argument, NULL, OPT_CLI_VERSION },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };

    int opt;
    long value = 0;
    while ((opt = getopt_long (argc, argv, "h", options, NULL)) != -1) {
        switch (opt) {
        case OPT_DATE: opts.date = optarg; break;
        case OPT_SUITE: opts.suite = optarg; break;
        case OPT_PANEL: opts.panel = optarg; break;
        case OPT_REPEATS:
            if (parse_uint (optarg, "--repeats", 1, 100, &value) != 0)
                return 2;
            opts.repeats = (int) value;
            break;
        case OPT_TRACK: opts.track = optarg; break;
        case OPT_LOCAL:
            if (parse_uint (optarg, "--local-workers", 0, 64, &value) != 0)
                return 2;
            opts.local_workers = (int) value;
            break;
        case OPT_BIND: opts.bind = optarg; break;
        case OPT_AGENT: opts.agent_kind = optarg; break;
        case OPT_AGENT_CMD: opts.agent_command = optarg; break;
        case OPT_MODEL: opts.model = optarg; break;
        case OPT_TURNS:
            if (parse_uint (optarg, "--max-turns", 1, 10000, &value) != 0)
                return 2;
            opts.max_turns = (int) value;
            break;
        case OPT_WALL:
            if (parse_uint (optarg, "--wall-seconds", 1, 86400, &value) != 0)
                return 2;
            opts.wall_seconds = (int) value;
            break;
        case OPT_GRADE:
            if (parse_uint (optarg, "--grade-seconds", 1, 86400, &value) != 0)
                return 2;
            opts.grade_seconds = (int) value;
            break;
        case OPT_ATTEMPTS:
            if (parse_uint (optarg, "--max-attempts", 1, 20, &value) != 0)
                return 2;
            opts.max_attempts = (int) value;
            break;
        case OPT_POLICY: opts.infra_policy = optarg; break;
        case OPT_HB:
            if (parse_uint (optarg, "--heartbeat-ms", 100, 60000, &value) != 0)
                return 2;
            opts.heartbeat_ms = (int) value;
            break;
        case OPT_DB: opts.db = optarg; break;
        case OPT_DATA: snprintf (data_dir, sizeof data_dir, "%s", optarg); break;
        case OPT_NAME: opts.suite_name = optarg; break;
        case OPT_VERSION: printf ("%s\n", dw_version_string ()); return 0;
        case OPT_INSECURE: opts.insecure = 1; break;
        case OPT_BASE_DAYS:
            if (parse_uint (optarg, "--baseline-days", 1, 3650, &value) != 0)
                return 2;
            opts.baseline_days = optarg;
            break;
        case OPT_BASE_RUNS:
            if (parse_uint (optarg, "--baseline-min-runs", 1, 100000000, &value) != 0)
                return 2;
            opts.baseline_min_runs = optarg;
            break;
        case OPT_FORCE: opts.force = 1; break;
        case OPT_UPSTREAM: opts.upstream = optarg; break;
        case OPT_CLI_VERSION: opts.cli_version = optarg; break;
        case 'h': usage (stdout); return 0;
        default: usage (stderr); return 2;
        }
    }

    if (strcmp (command, "import") == 0) {
        if (optind != argc - 1) {
            fprintf (stderr, "coordinator: import needs exactly one SUITE_FILE\n");
            return 2;
        }
        return dw_coordinator_import (&opts, argv[optind]);
    }
    if (optind < argc) {
        fprintf (stderr, "coordinator: unexpected argument '%s'; see coordinator --help\n",
                 argv[optind]);
        return 2;
    }
    if (strcmp (command, "migrate") == 0)
        return dw_coordinator_migrate (&opts);
    if (strcmp (command, "keygen") == 0)
        return dw_coordinator_keygen (&opts);
    if (strcmp (command, "run") != 0) {
        fprintf (stderr, "coordinator: unknown command '%s'; use run, import, detect, migrate or "
                         "keygen\n",
                 command);
        return 2;
    }

    if (!opts.date) {
        fprintf (stderr, "coordinator: --date today|YYYY-MM-DD is required\n");
        return 2;
    }
    if (strcmp (opts.infra_policy, "exclude") != 0 && strcmp (opts.infra_policy, "fail") != 0
        && strcmp (opts.infra_policy, "reject-day") != 0) {
        fprintf (stderr, "coordinator: invalid --infra-policy '%s': use exclude, fail or "
                         "reject-day\n",
                 opts.infra_policy);
        return 2;
    }
    if (strcmp (opts.agent_kind, "stub") != 0 && strcmp (opts.agent_kind, "claude-code") != 0
        && strcmp (opts.agent_kind, "command") != 0) {
        fprintf (stderr, "coordinator: invalid --agent '%s': use stub, claude-code or command\n",
                 opts.agent_kind);
        return 2;
    }
    if (strcmp (opts.agent_kind, "command") == 0 && !*opts.agent_command) {
        fprintf (stderr, "coordinator: --agent command needs --agent-command CMD\n");
        return 2;
    }
    return dw_coordinator_run (&opts);
}
