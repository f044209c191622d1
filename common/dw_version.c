/* Version string: compiled into each program library so a stale static
 * library never reports another version. */
#include "dw_version.h"
#include "dw_config.h"

const char *dw_version_string (void)
{
    return "driftwatch " DW_VERSION;
}
