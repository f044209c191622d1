/* worker: the driftwatch worker daemon. Parses the command line and runs
 * dw_worker_run; see dw_worker.h for what the daemon does. */
#include <getopt.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "dw_config.h"
#include "dw_log.h"
#include "dw_util.h"
#include "dw_version.h"
#include "dw_worker.h"

static void usage (FILE *out)
{
    fprintf (out,
             "usage: worker --coordinator ENDPOINT [options]\n"
             "\n"
             "Runs coding-agent jobs for a driftwatch coordinator.\n"
             "\n"
             "  --coordinator ENDPOINT  coordinator address, e.g. tcp://10.0.0.5:7555 (required)\n"
             "  --slots N               jobs run at once (default 1, max %d)\n"
             "  --data-dir DIR          worker state: id, spool, git cache, workspaces\n"
             "                          (default /var/lib/driftwatch-worker as root,\n"
             "                          else ~/.local/share/driftwatch-worker)\n"
             "  --id NAME               worker id (default: generated once, kept in DATA_DIR)\n"
             "  --stub-agent PATH       program for jobs of agent kind \"stub\"\n"
             "  --heartbeat-ms MS       heartbeat interval before registration (default 1000)\n"
             "  --drain-seconds S       on SIGTERM, wait S seconds for running jobs before\n"
             "                          handing them back (default 30)\n"
             "  --exit-on-drain         exit when the coordinator ends the run\n"
             "  --keep-workspaces       keep each attempt's directories (debugging)\n"
             "  --version               print the version and exit\n",
             DW_WORKER_MAX_SLOTS);
}

/* Default stub agent: next to the source tree when run from a build tree,
 * else the installed copy. */
static const char *default_stub_agent (void)
{
    static char path[PATH_MAX];
    snprintf (path, sizeof path, "%s/tests/fixtures/demo/stub-agent", DW_SOURCE_DIR);
    if (access (path, X_OK) == 0)
        return path;
    snprintf (path, sizeof path, "%s/demo/stub-agent", DW_DATADIR);
    return path;
}

static void default_data_dir (char *out, size_t size)
{
    const char *env = getenv ("DRIFTWATCH_WORKER_DIR");
    if (env && *env)
        snprintf (out, size, "%s", env);
    else if (geteuid () == 0)
        snprintf (out, size, "/var/lib/driftwatch-worker");
    else if (getenv ("XDG_DATA_HOME"))
        snprintf (out, size, "%s/driftwatch-worker", getenv ("XDG_DATA_HOME"));
    else
        snprintf (out, size, "%s/.local/share/driftwatch-worker",
                  getenv ("HOME") ? getenv ("HOME") : "/tmp");
}

int main (int argc, char **argv)
{
    dw_log_init ("worker", DW_LOG_INFO);

    static char data_dir[PATH_MAX];
    dw_worker_config_t config = {
        .slots = 1,
        .heartbeat_ms = 1000,
        .liveness = 5,
        .drain_seconds = 30,
    };
    default_data_dir (data_dir, sizeof data_dir);
    config.data_dir = data_dir;
    config.stub_agent = default_stub_agent ();

    enum { OPT_SLOTS = 256, OPT_DATA, OPT_ID, OPT_STUB, OPT_HB, OPT_DRAIN, OPT_EXIT, OPT_KEEP,
           OPT_VERSION };
    static const struct option options[] = {
        { "coordinator", required_argument, NULL, 'c' },
        { "slots", required_argument, NULL, OPT_SLOTS },
        { "data-dir", required_argument, NULL, OPT_DATA },
        { "id", required_argument, NULL, OPT_ID },
        { "stub-agent", required_argument, NULL, OPT_STUB },
        { "heartbeat-ms", required_argument, NULL, OPT_HB },
        { "drain-seconds", required_argument, NULL, OPT_DRAIN },
        { "exit-on-drain", no_argument, NULL, OPT_EXIT },
        { "keep-workspaces", no_argument, NULL, OPT_KEEP },
        { "version", no_argument, NULL, OPT_VERSION },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    int opt;
    while ((opt = getopt_long (argc, argv, "c:h", options, NULL)) != -1) {
        char *end = NULL;
        switch (opt) {
        case 'c': config.coordinator = optarg; break;
        case OPT_SLOTS:
            config.slots = (int) strtol (optarg, &end, 10);
            if (*end || config.slots < 1 || config.slots > DW_WORKER_MAX_SLOTS) {
                fprintf (stderr, "worker: invalid --slots '%s': use a number from 1 to %d\n",
                         optarg, DW_WORKER_MAX_SLOTS);
                return 2;
            }
            break;
        case OPT_DATA: snprintf (data_dir, sizeof data_dir, "%s", optarg); break;
        case OPT_ID: config.worker_id = optarg; break;
        case OPT_STUB: config.stub_agent = optarg; break;
        case OPT_HB:
            config.heartbeat_ms = (uint32_t) strtoul (optarg, &end, 10);
            if (*end || config.heartbeat_ms < 100 || config.heartbeat_ms > 60000) {
                fprintf (stderr,
                         "worker: invalid --heartbeat-ms '%s': use 100 to 60000 milliseconds\n",
                         optarg);
                return 2;
            }
            break;
        case OPT_DRAIN:
            config.drain_seconds = (uint32_t) strtoul (optarg, &end, 10);
            if (*end) {
                fprintf (stderr, "worker: invalid --drain-seconds '%s': use a number\n", optarg);
                return 2;
            }
            break;
        case OPT_EXIT: config.exit_on_drain = 1; break;
        case OPT_KEEP: config.keep_workspaces = 1; break;
        case OPT_VERSION: printf ("%s\n", dw_version_string ()); return 0;
        case 'h': usage (stdout); return 0;
        default: usage (stderr); return 2;
        }
    }
    if (optind < argc) {
        fprintf (stderr, "worker: unexpected argument '%s'\n", argv[optind]);
        usage (stderr);
        return 2;
    }
    if (!config.coordinator) {
        fprintf (stderr, "worker: --coordinator ENDPOINT is required, e.g. "
                         "--coordinator tcp://127.0.0.1:7555\n");
        return 2;
    }
    return dw_worker_run (&config);
}
