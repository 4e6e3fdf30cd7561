/* The settings of `hetsched serve`: one table for flags, config and help. */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "agent.h"

#define OFF(field) offsetof(hs__agent_config_t, field)
#define U64MAX 18446744073709551615.0

const hs__agent_key_t hs__agent_keys[] = {
	{"listen", HS__KEY_STR, OFF(listen), 0, 0, "HOST:PORT",
	 "address to listen on; port 0 picks a free one (default "
	 "127.0.0.1:8080)"},
	{"token-file", HS__KEY_STR, OFF(token_file), 0, 0, "FILE",
	 "require 'Authorization: Bearer <token>' with the token in FILE on "
	 "every route but /healthz and /readyz (default: no token)"},
	{"fleet", HS__KEY_STR, OFF(fleet), 0, 0, "FILE.json",
	 "serve on the sim devices of an inventory, in real time (default: "
	 "the local devices)"},
	{"topology", HS__KEY_STR, OFF(topology), 0, 0, "FILE.xml",
	 "serve on the devices of an hwloc XML topology, as sim devices"},
	{"catalog", HS__KEY_STR, OFF(catalog), 0, 0, "FILE",
	 "device profiles (default: data/devices.json)"},
	{"models", HS__KEY_STR, OFF(models), 0, 0, "FILE",
	 "model catalog (default: data/models.json)"},
	{"no-opencl", HS__KEY_BOOL, OFF(no_opencl), 0, 0, NULL,
	 "do not use the node's OpenCL devices"},
	{"state-dir", HS__KEY_STR, OFF(state_dir), 0, 0, "DIR",
	 "journal, lock and calibration live here (default ./hetsched-state)"},
	{"journal", HS__KEY_STR, OFF(journal), 0, 0, "FILE",
	 "job journal, 'off' for none (default STATE-DIR/journal.jsonl)"},
	{"journal-max-bytes", HS__KEY_UINT, OFF(journal_max_bytes), 4096,
	 U64MAX, "N",
	 "compact the journal when it grows past N bytes "
	 "(default 268435456)"},
	{"journal-sync", HS__KEY_STR, OFF(journal_sync), 0, 0, "MODE",
	 "when a job's 202 goes out: 'always' (default) once its accept line "
	 "is written and fdatasync'ed, so it survives a power cut; "
	 "'interval' once the line is written, so it survives kill -9 and a "
	 "crash of the agent, with an fdatasync every journal-sync-ms: a "
	 "power cut may lose the jobs accepted in the last interval"},
	{"journal-sync-ms", HS__KEY_UINT, OFF(journal_sync_ms), 1, 10000, "MS",
	 "with journal-sync 'interval': fdatasync the journal every MS "
	 "milliseconds (default 10)"},
	{"keep-finished", HS__KEY_UINT, OFF(keep_finished), 1, 1e9, "N",
	 "finished jobs kept for GET /v1/jobs/{id} (default 10000)"},
	{"policy", HS__KEY_STR, OFF(policy), 0, 0, "P",
	 "scheduling policy: fifo, rr, eft, tpw, lp (default eft)"},
	{"power-budget", HS__KEY_NUM, OFF(power_budget), 0, 1e9, "W",
	 "node power budget in watts, 0 for none (default 0); PUT /v1/power "
	 "changes it live and is journaled: after a restart the lower of "
	 "the two holds"},
	{"max-batch", HS__KEY_UINT, OFF(max_batch), 1, 65536, "N",
	 "jobs per device batch (default 32)"},
	{"max-wait-ms", HS__KEY_NUM, OFF(max_wait_ms), 0, 3.6e6, "MS",
	 "longest a partial batch waits (default 50)"},
	{"power-lease-ms", HS__KEY_NUM, OFF(power_lease_ms), 0, 3.6e6, "MS",
	 "under a budget, a device keeps the power level it was granted "
	 "this long while its batch has work (default 1000; 0: the budget "
	 "is divided again at every step)"},
	{"max-queue", HS__KEY_UINT, OFF(max_queue), 1, 1e9, "N",
	 "jobs queued or running before new ones get 429 (default 100000)"},
	{"max-body", HS__KEY_UINT, OFF(max_body), 64, 1073741824, "BYTES",
	 "largest request body; more gets 413 (default 1048576)"},
	{"max-connections", HS__KEY_UINT, OFF(max_connections), 1, 1e6, "N",
	 "open connections; more are closed at once (default 4096)"},
	{"header-timeout", HS__KEY_NUM, OFF(header_timeout), 0.01, 3600, "S",
	 "a request's headers must arrive within S seconds, else 408 "
	 "(default 10)"},
	{"request-timeout", HS__KEY_NUM, OFF(request_timeout), 0.01, 3600, "S",
	 "a whole request must arrive within S seconds, else 408 "
	 "(default 30)"},
	{"idle-timeout", HS__KEY_NUM, OFF(idle_timeout), 0.01, 86400, "S",
	 "close keep-alive connections idle for S seconds (default 60)"},
	{"drain-timeout", HS__KEY_NUM, OFF(drain_timeout), 0, 86400, "S",
	 "on SIGTERM, wait at most S seconds for running jobs; the rest stay "
	 "in the journal (default 30)"},
	{"seed", HS__KEY_UINT, OFF(seed), 0, U64MAX, "N",
	 "seed of sim noise and skew and of synthetic weights (default 1)"},
	{"noise", HS__KEY_NUM, OFF(noise), 0, 1, "X",
	 "sim devices: relative spread of step times (default 0)"},
	{"skew", HS__KEY_NUM, OFF(skew), 0, 0.9, "X",
	 "sim devices: max error of a device's profile (default 0)"},
	{"sim-mode", HS__KEY_STR, OFF(sim_mode), 0, 0, "MODE",
	 "sim steps end on a loop timer ('timer', default) or on a worker "
	 "thread that sleeps through them ('thread')"},
	{"kernel-dir", HS__KEY_STR, OFF(kernel_dir), 0, 0, "DIR",
	 "OpenCL kernels (default $HETSCHED_KERNELS, else devices/kernels)"},
	{"cpu-threads", HS__KEY_UINT, OFF(cpu_threads), 0, 4096, "N",
	 "cpu executor threads per device, 0 for one per core (default 0)"},
};

const size_t hs__agent_n_keys = HS_ARRAY_SIZE(hs__agent_keys);

static char **str_field(hs__agent_config_t *cfg, const hs__agent_key_t *k)
{
	return (char **)(void *)((char *)cfg + k->offset);
}

static int set_str(hs__agent_config_t *cfg, const char *field,
		   const char *value)
{
	size_t i;

	for (i = 0; i < hs__agent_n_keys; i++) {
		const hs__agent_key_t *k = &hs__agent_keys[i];
		char **p, *dup;

		if (strcmp(k->name, field))
			continue;
		p = str_field(cfg, k);
		dup = hs__strdup(value);
		if (!dup)
			return HS_ENOMEM;
		hs__free(*p);
		*p = dup;
		return 0;
	}
	return HS_ENOENT;
}

int hs__agent_config_init(hs__agent_config_t *cfg)
{
	memset(cfg, 0, sizeof(*cfg));
	cfg->journal_max_bytes = 256ull << 20;
	cfg->journal_sync_ms = 10;
	cfg->keep_finished = 10000;
	cfg->max_batch = 32;
	cfg->max_wait_ms = 50;
	cfg->power_lease_ms = 1000;
	cfg->max_queue = 100000;
	cfg->max_body = 1 << 20;
	cfg->max_connections = 4096;
	cfg->header_timeout = 10;
	cfg->request_timeout = 30;
	cfg->idle_timeout = 60;
	cfg->drain_timeout = 30;
	cfg->seed = 1;
	if (set_str(cfg, "listen", "127.0.0.1:8080") ||
	    set_str(cfg, "state-dir", "./hetsched-state") ||
	    set_str(cfg, "policy", "eft") ||
	    set_str(cfg, "journal-sync", "always") ||
	    set_str(cfg, "sim-mode", "timer")) {
		hs__agent_config_release(cfg);
		return HS_ENOMEM;
	}
	return 0;
}

void hs__agent_config_release(hs__agent_config_t *cfg)
{
	size_t i;

	for (i = 0; i < hs__agent_n_keys; i++) {
		const hs__agent_key_t *k = &hs__agent_keys[i];

		if (k->type == HS__KEY_STR) {
			char **p = str_field(cfg, k);

			hs__free(*p);
			*p = NULL;
		}
	}
}

static int set_number(hs__agent_config_t *cfg, const hs__agent_key_t *k,
		      double v, const char *source, const char *text,
		      hs_error_t *err)
{
	void *p = (char *)cfg + k->offset;

	if (!isfinite(v) || v < k->min || v > k->max)
		return hs__error_set(err, HS_ERANGE, source, 0, k->name,
				     "%s is out of range [%g, %g]", text,
				     k->min, k->max);
	if (k->type == HS__KEY_UINT) {
		if (v != floor(v))
			return hs__error_set(err, HS_ETYPE, source, 0, k->name,
					     "%s is not a whole number", text);
		*(uint64_t *)p = v >= U64MAX ? UINT64_MAX : (uint64_t)v;
	} else {
		*(double *)p = v;
	}
	return 0;
}

int hs__agent_config_set(hs__agent_config_t *cfg, const hs__agent_key_t *k,
			 const char *value, hs_error_t *err)
{
	char flag[80];
	char *end;
	double v;

	snprintf(flag, sizeof(flag), "--%s", k->name);
	switch (k->type) {
	case HS__KEY_STR:
		if (!value[0])
			return hs__error_set(err, HS_EINVAL, "flags", 0, flag,
					     "must not be empty");
		return set_str(cfg, k->name, value)
			       ? hs__error_set(err, HS_ENOMEM, "flags", 0, flag,
					       "out of memory")
			       : 0;
	case HS__KEY_BOOL:
		*(bool *)(void *)((char *)cfg + k->offset) = true;
		return 0;
	case HS__KEY_NUM:
	case HS__KEY_UINT:
		errno = 0;
		v = strtod(value, &end);
		if (errno || end == value || *end)
			return hs__error_set(err, HS_EPARSE, "flags", 0, flag,
					     "'%s' is not a number", value);
		return set_number(cfg, k, v, "flags", value, err);
	}
	return HS_EINVAL;
}

int hs__agent_config_load(hs__agent_config_t *cfg, const char *path,
			  hs_error_t *err)
{
	hs__jv_t jv = {.source = path, .err = err, .path = "$"};
	const char *key;
	json_t *root, *v;
	int rc = 0;

	root = hs__json_load_file(path, err);
	if (!root)
		return err ? err->code : HS_EPARSE;
	if ((rc = hs__jv_expect_object(&jv, root)))
		goto out;
	json_object_foreach (root, key, v) {
		const hs__agent_key_t *k = NULL;
		char text[64];
		size_t i;

		for (i = 0; i < hs__agent_n_keys; i++)
			if (!strcmp(hs__agent_keys[i].name, key))
				k = &hs__agent_keys[i];
		if (!k) {
			rc = hs__error_set(err, HS_EUNKNOWN_KEY, path, 0, key,
					   "unknown key (hetsched serve --help "
					   "lists them)");
			goto out;
		}
		switch (k->type) {
		case HS__KEY_STR:
			if (!json_is_string(v) || !json_string_length(v)) {
				rc = hs__error_set(err, HS_ETYPE, path, 0, key,
						   "expected a non-empty "
						   "string");
				goto out;
			}
			if (set_str(cfg, key, json_string_value(v))) {
				rc = hs__error_set(err, HS_ENOMEM, path, 0, key,
						   "out of memory");
				goto out;
			}
			break;
		case HS__KEY_BOOL:
			if (!json_is_boolean(v)) {
				rc = hs__error_set(err, HS_ETYPE, path, 0, key,
						   "expected true or false");
				goto out;
			}
			*(bool *)(void *)((char *)cfg + k->offset) =
				json_is_true(v);
			break;
		case HS__KEY_NUM:
		case HS__KEY_UINT:
			if (!json_is_number(v)) {
				rc = hs__error_set(err, HS_ETYPE, path, 0, key,
						   "expected a number");
				goto out;
			}
			snprintf(text, sizeof(text), "%g",
				 json_number_value(v));
			if ((rc = set_number(cfg, k, json_number_value(v), path,
					     text, err)))
				goto out;
			break;
		}
	}
out:
	json_decref(root);
	return rc;
}

int hs__agent_config_check(const hs__agent_config_t *cfg, hs_error_t *err)
{
	if (cfg->fleet && cfg->topology)
		return hs__error_set(err, HS_EINVAL, "settings", 0, "fleet",
				     "--fleet and --topology exclude each "
				     "other");
	if (strcmp(cfg->sim_mode, "timer") && strcmp(cfg->sim_mode, "thread"))
		return hs__error_set(err, HS_EINVAL, "settings", 0, "sim-mode",
				     "'%s' is neither 'timer' nor 'thread'",
				     cfg->sim_mode);
	if (strcmp(cfg->journal_sync, "always") &&
	    strcmp(cfg->journal_sync, "interval"))
		return hs__error_set(err, HS_EINVAL, "settings", 0,
				     "journal-sync",
				     "'%s' is neither 'always' nor 'interval'",
				     cfg->journal_sync);
	if (!strchr(cfg->listen, ':'))
		return hs__error_set(err, HS_EINVAL, "settings", 0, "listen",
				     "'%s' is not HOST:PORT", cfg->listen);
	return 0;
}

/* Print text from column `indent`, wrapped before column 79. */
static void wrap(FILE *f, const char *text, int col, int indent)
{
	const char *p = text;

	while (*p) {
		const char *w = p;
		int len;

		while (*w && *w != ' ')
			w++;
		len = (int)(w - p);
		if (col > indent && col + 1 + len > 79) {
			fprintf(f, "\n%*s", indent, "");
			col = indent;
		} else if (col > indent) {
			fputc(' ', f);
			col++;
		}
		fwrite(p, 1, (size_t)len, f);
		col += len;
		p = *w ? w + 1 : w;
	}
	fputc('\n', f);
}

void hs__agent_config_help(FILE *f)
{
	size_t i;

	for (i = 0; i < hs__agent_n_keys; i++) {
		const hs__agent_key_t *k = &hs__agent_keys[i];
		char left[64];
		int n;

		n = snprintf(left, sizeof(left), "  --%s%s%s", k->name,
			     k->arg ? " " : "", k->arg ? k->arg : "");
		if (n > 26) {
			fprintf(f, "%s\n%*s", left, 28, "");
		} else {
			fprintf(f, "%-28s", left);
		}
		wrap(f, k->help, 28, 28);
	}
}
