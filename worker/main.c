/* worker: the driftwatch worker daemon. Parses the command line and runs
 * dw_worker_run; see dw_worker.h for what the daemon does. */
#include <errno.h>
#include <getopt.h>
#include <pwd.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "dw_config.h"
#include "dw_curve.h"
#include "dw_jobrun.h"
#include "dw_log.h"
#include "dw_util.h"
#include "dw_version.h"
#include "dw_worker.h"

static void usage (FILE *out)
{
    fprintf (out,
             "usage: worker --coordinator ENDPOINT --server-key KEY|FILE [options]\n"
             "       worker keygen [--data-dir DIR] [--id NAME] [--force]\n"
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
             "  --server-key KEY|FILE   the coordinator's public key (Z85 text) or its\n"
             "                          certificate file (required unless --insecure)\n"
             "  --key FILE              this worker's secret certificate\n"
             "                          (default DATA_DIR/worker.cert_secret)\n"
             "  --insecure              no CURVE; allowed only for a loopback coordinator\n"
             "  --force                 keygen: replace an existing key\n"
             "  --sandbox KIND          bwrap (default) | podman | none (development only:\n"
             "                          agents run unconfined)\n"
             "  --sandbox-user USER     unprivileged host user for sandboxed runs when the\n"
             "                          worker runs as root (default nobody)\n"
             "  --claude PATH           Claude Code CLI (default " DW_JOBRUN_CLAUDE_PATH ")\n"
             "  --upstream URL          model API base URL the gateway forwards to\n"
             "                          (default https://api.anthropic.com)\n"
             "  --api-key-file FILE     file holding the model API key (else the\n"
             "                          ANTHROPIC_API_KEY variable); only the gateway uses it\n"
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

/* Create this worker's CURVE key pair in DATA_DIR and say how to admit it. */
static int keygen (const char *data_dir, const char *name, int force)
{
    char host[64] = "worker";
    if (!name) {
        gethostname (host, sizeof host - 1);
        name = host;
    }
    if (dw_mkdir_p (data_dir, 0700) != 0) {
        fprintf (stderr, "worker: cannot create %s: %s\n", data_dir, strerror (errno));
        return 1;
    }
    char public_path[PATH_MAX], err[512], key[DW_CURVE_KEY_TEXT_SIZE];
    if (snprintf (public_path, sizeof public_path, "%s/worker.cert", data_dir)
        >= (int) sizeof public_path) {
        fprintf (stderr, "worker: --data-dir path too long: %s\n", data_dir);
        return 1;
    }
    if (dw_curve_keygen (public_path, "worker", name, force, err, sizeof err) != 0
        || dw_curve_load_public (public_path, key, err, sizeof err) != 0) {
        fprintf (stderr, "worker: %s\n", err);
        return 1;
    }
    printf ("created %s and %s_secret\n", public_path, public_path);
    printf ("worker public key: %s\n", key);
    printf ("admit this worker: copy %s into the coordinator's DATA_DIR/keys/workers/\n",
            public_path);
    return 0;
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
           OPT_VERSION, OPT_SERVER_KEY, OPT_KEY, OPT_INSECURE, OPT_FORCE, OPT_SANDBOX,
           OPT_SANDBOX_USER, OPT_CLAUDE, OPT_UPSTREAM, OPT_KEY_FILE };
    const char *sandbox_user = "nobody";
    const char *api_key_file = NULL;
    const char *command = NULL;
    if (argc > 1 && argv[1][0] != '-') {
        command = argv[1];
        argv++;
        argc--;
    }
    int force = 0;
    static char key_path[PATH_MAX + 32];
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
        { "server-key", required_argument, NULL, OPT_SERVER_KEY },
        { "key", required_argument, NULL, OPT_KEY },
        { "insecure", no_argument, NULL, OPT_INSECURE },
        { "force", no_argument, NULL, OPT_FORCE },
        { "sandbox", required_argument, NULL, OPT_SANDBOX },
        { "sandbox-user", required_argument, NULL, OPT_SANDBOX_USER },
        { "claude", required_argument, NULL, OPT_CLAUDE },
        { "upstream", required_argument, NULL, OPT_UPSTREAM },
        { "api-key-file", required_argument, NULL, OPT_KEY_FILE },
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
        case OPT_SERVER_KEY: config.server_key = optarg; break;
        case OPT_KEY: snprintf (key_path, sizeof key_path, "%s", optarg); break;
        case OPT_INSECURE: config.insecure = 1; break;
        case OPT_FORCE: force = 1; break;
        case OPT_SANDBOX:
            if (strcmp (optarg, "bwrap") != 0 && strcmp (optarg, "podman") != 0
                && strcmp (optarg, "none") != 0) {
                fprintf (stderr, "worker: invalid --sandbox '%s': use bwrap, podman or none\n",
                         optarg);
                return 2;
            }
            config.sandbox = optarg;
            break;
        case OPT_SANDBOX_USER: sandbox_user = optarg; break;
        case OPT_CLAUDE: config.claude_path = optarg; break;
        case OPT_UPSTREAM: config.upstream_url = optarg; break;
        case OPT_KEY_FILE: api_key_file = optarg; break;
        case 'h': usage (stdout); return 0;
        default: usage (stderr); return 2;
        }
    }
    if (optind < argc) {
        fprintf (stderr, "worker: unexpected argument '%s'\n", argv[optind]);
        usage (stderr);
        return 2;
    }
    if (command && strcmp (command, "keygen") == 0)
        return keygen (data_dir, config.worker_id, force);
    if (command) {
        fprintf (stderr, "worker: unknown command '%s'; the only command is keygen\n", command);
        return 2;
    }
    if (!key_path[0])
        snprintf (key_path, sizeof key_path, "%s/worker.cert_secret", data_dir);
    config.curve_secret_path = key_path;

    if (geteuid () == 0) {
        struct passwd *user = getpwnam (sandbox_user);
        char *end = NULL;
        long uid = strtol (sandbox_user, &end, 10);
        if (user)
            config.sandbox_uid = user->pw_uid;
        else if (end && *end == '\0' && uid > 0)
            config.sandbox_uid = (uid_t) uid;
        else {
            fprintf (stderr, "worker: --sandbox-user '%s' not found: create the user or give a "
                             "numeric uid\n",
                     sandbox_user);
            return 2;
        }
    }

    /* The API key stays in this process only: read it, then remove it from
     * the environment so no child can inherit it. */
    static char api_key[512];
    if (api_key_file) {
        char *text = dw_read_file (api_key_file, sizeof api_key - 1, NULL);
        if (!text) {
            fprintf (stderr, "worker: cannot read --api-key-file %s: %s\n", api_key_file,
                     strerror (errno));
            return 2;
        }
        text[strcspn (text, "\r\n")] = '\0';
        snprintf (api_key, sizeof api_key, "%s", text);
        memset (text, 0, strlen (text));
        free (text);
    }
    else if (getenv ("ANTHROPIC_API_KEY"))
        snprintf (api_key, sizeof api_key, "%s", getenv ("ANTHROPIC_API_KEY"));
    unsetenv ("ANTHROPIC_API_KEY");
    config.api_key = api_key[0] ? api_key : NULL;
    if (!config.coordinator) {
        fprintf (stderr, "worker: --coordinator ENDPOINT is required, e.g. "
                         "--coordinator tcp://127.0.0.1:7555\n");
        return 2;
    }
    return dw_worker_run (&config);
}
