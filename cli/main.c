/* hetsched: the command-line program. */
#include <errno.h>
#include <libgen.h>
#include <math.h>
#include <limits.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli.h"

static const struct {
	const char *name;
	int (*run)(int argc, char **argv);
	const char *help;
} commands[] = {
	{"devices", hs__cmd_devices,
	 "the node's inventory: CPUs (hwloc), OpenCL devices, power"},
	{"models", hs__cmd_models, "the model catalog and derived sizes"},
	{"bench", hs__cmd_bench,
	 "replay a workload against every policy and compare them"},
	{"serve", hs__cmd_serve,
	 "the node agent: HTTP job API, real execution, power, metrics"},
	{"plan", hs__cmd_plan,
	 "which devices, how many, where; cost per million tokens"},
};

static void usage(FILE *f)
{
	size_t i;

	fprintf(f, "usage: hetsched COMMAND [OPTIONS]\n"
		   "\n"
		   "A scheduler for LLM inference on mixed hardware.\n"
		   "\n"
		   "Commands:\n");
	for (i = 0; i < HS_ARRAY_SIZE(commands); i++)
		fprintf(f, "  %-10s %s\n", commands[i].name, commands[i].help);
	fprintf(f,
		"\n"
		"Every command takes --help and --json.\n"
		"  --version  print the version\n"
		"Environment: HETSCHED_DATA, the data directory "
		"(default: %s)\n",
		hs__cli_data_dir());
}

static int dir_exists(const char *path)
{
	struct stat st;

	return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

const char *hs__cli_data_dir(void)
{
	static char dir[PATH_MAX];
	char exe[PATH_MAX];
	const char *env;
	ssize_t n;

	if (dir[0])
		return dir;
	env = getenv("HETSCHED_DATA");
	if (env && env[0]) {
		hs__strlcpy(dir, env, sizeof(dir));
		return dir;
	}
	n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
	if (n > 0) {
		exe[n] = '\0';
		char real[PATH_MAX];

		snprintf(dir, sizeof(dir), "%s/../data", dirname(exe));
		if (dir_exists(dir)) {
			/* Paths in reports read better without "build/..". */
			if (realpath(dir, real))
				hs__strlcpy(dir, real, sizeof(dir));
			return dir;
		}
	}
	hs__strlcpy(dir, "data", sizeof(dir));
	return dir;
}

const char *hs__cli_data_path(const char *name)
{
	static char path[PATH_MAX + 64];

	snprintf(path, sizeof(path), "%s/%s", hs__cli_data_dir(), name);
	return path;
}

void hs__cli_error(const char *cmd, const hs_error_t *err)
{
	char buf[1024];

	fprintf(stderr, "hetsched %s: %s\n", cmd,
		hs_error_format(err, buf, sizeof(buf)));
}

int hs__cli_getopt(const char *cmd, int argc, char **argv,
		   const char *shortopts, const struct option *longopts)
{
	char opts[64];
	const char *arg;
	int c;

	/* A leading ':' makes getopt tell a missing value from an unknown
	 * option. */
	snprintf(opts, sizeof(opts), ":%s", shortopts);
	opterr = 0;
	c = getopt_long(argc, argv, opts, longopts, NULL);
	if (c != ':' && c != '?')
		return c;
	arg = optind > 0 && optind <= argc ? argv[optind - 1] : "";
	if (c == ':')
		fprintf(stderr, "hetsched %s: option '%s' needs a value\n", cmd,
			arg);
	else if (optopt)
		fprintf(stderr, "hetsched %s: unknown option '-%c'\n", cmd,
			optopt);
	else
		fprintf(stderr, "hetsched %s: unknown option '%s'\n", cmd, arg);
	fprintf(stderr, "Try 'hetsched %s --help'.\n", cmd);
	return '?';
}

int hs__cli_number(const char *cmd, const char *flag, const char *s, double lo,
		   double hi, double *out)
{
	char *end;
	double v;

	errno = 0;
	v = strtod(s, &end);
	if (errno || end == s || *end || !isfinite(v) || v < lo || v > hi) {
		fprintf(stderr,
			"hetsched %s: %s: '%s' is not a number in [%g, %g]\n",
			cmd, flag, s, lo, hi);
		return HS_EINVAL;
	}
	*out = v;
	return 0;
}

int hs__cli_print_json(json_t *v)
{
	if (!v)
		return HS_ENOMEM;
	if (json_dumpf(v, stdout, JSON_INDENT(2) | JSON_REAL_PRECISION(10)))
		return HS_EIO;
	fputc('\n', stdout);
	return 0;
}

const char *hs__cli_bytes(uint64_t bytes, char *buf, size_t size)
{
	static const char *const units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
	double v = (double)bytes;
	size_t u = 0;

	while (v >= 1024.0 && u + 1 < HS_ARRAY_SIZE(units)) {
		v /= 1024.0;
		u++;
	}
	snprintf(buf, size, u ? "%.1f %s" : "%.0f %s", v, units[u]);
	return buf;
}

int main(int argc, char **argv)
{
	size_t i;

	if (argc < 2) {
		usage(stderr);
		return HS_EXIT_USAGE;
	}
	if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") ||
	    !strcmp(argv[1], "help")) {
		usage(stdout);
		return HS_EXIT_OK;
	}
	if (!strcmp(argv[1], "--version") || !strcmp(argv[1], "-V")) {
		printf("hetsched %s\n", HS_VERSION_STRING);
		return HS_EXIT_OK;
	}
	for (i = 0; i < HS_ARRAY_SIZE(commands); i++)
		if (!strcmp(argv[1], commands[i].name))
			return commands[i].run(argc - 1, argv + 1);
	fprintf(stderr,
		"hetsched: unknown command '%s'\nTry 'hetsched --help'.\n",
		argv[1]);
	return HS_EXIT_USAGE;
}
