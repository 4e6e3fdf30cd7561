/*
 * Private to the hetsched command-line program: subcommand entry points and
 * the helpers they share.
 */
#ifndef HS_CLI_H
#define HS_CLI_H

#include <getopt.h>
#include <stdio.h>

#include "internal.h"

/* Exit codes: 0 success, 1 runtime failure, 2 bad usage or bad input. */
#define HS_EXIT_OK 0
#define HS_EXIT_FAIL 1
#define HS_EXIT_USAGE 2

int hs__cmd_devices(int argc, char **argv);
int hs__cmd_models(int argc, char **argv);
int hs__cmd_bench(int argc, char **argv);
int hs__cmd_serve(int argc, char **argv);
int hs__cmd_plan(int argc, char **argv);

/*
 * The data directory (catalogs, sample traces): $HETSCHED_DATA, else
 * ../data beside the executable, else ./data.
 */
const char *hs__cli_data_dir(void);
/* "<data dir>/<name>" in a static buffer. */
const char *hs__cli_data_path(const char *name);

/* Report a loader error on stderr as "hetsched CMD: SOURCE:LINE: PATH: TEXT".
 */
void hs__cli_error(const char *cmd, const hs_error_t *err);

/*
 * getopt_long over argv with our own messages: an unknown option or a
 * missing argument prints "hetsched CMD: ..." and returns '?'. Same
 * contract as getopt_long otherwise.
 */
int hs__cli_getopt(const char *cmd, int argc, char **argv,
		   const char *shortopts, const struct option *longopts);

/* A number from a flag's value within [lo, hi], or a usage error on stderr
 * naming the command and the flag (HS_EINVAL). */
int hs__cli_number(const char *cmd, const char *flag, const char *s, double lo,
		   double hi, double *out);

/* Print a JSON value followed by a newline; 0 or HS_EIO/HS_ENOMEM. */
int hs__cli_print_json(json_t *v);

/* Format bytes as "23.4 GiB" into buf. */
const char *hs__cli_bytes(uint64_t bytes, char *buf, size_t size);

#endif /* HS_CLI_H */
