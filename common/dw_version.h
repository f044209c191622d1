/* Version of the driftwatch programs, reported at registration and in logs. */
#ifndef DW_VERSION_H
#define DW_VERSION_H

/* "driftwatch X.Y.Z" for the program that links this. */
const char *dw_version_string (void);

#endif
