/* hetsched serve: the node agent. */
#include <string.h>

#include "../agent/agent.h"
#include "cli.h"

#define OPT_CONFIG 1
#define OPT_HELP 'h'
#define OPT_KEY 1000

static void usage(FILE *f)
{
	fprintf(f,
		"usage: hetsched serve [--listen HOST:PORT] [--config "
		"FILE.json] [options]\n"
		"\n"
		"The node agent: an HTTP/JSON job API in front of the "
		"scheduler, running\n"
		"jobs on the node's devices (or, with --fleet/--topology, on "
		"sim devices\n"
		"in real time) under a live power budget, with Prometheus "
		"metrics. Every\n"
		"accepted job is journaled before it is acknowledged; after a "
		"crash the\n"
		"jobs accepted and not finished run again. SIGTERM or SIGINT "
		"drains:\n"
		"new jobs get 503, running ones finish (at most "
		"--drain-timeout), exit 0.\n"
		"\n"
		"Options (each is also a key of the --config file, without the "
		"dashes;\n"
		"flags win over the file):\n"
		"  --config FILE.json        settings as a JSON object, e.g.\n"
		"                            {\"listen\": \"0.0.0.0:8080\", "
		"\"max-queue\": 5000}\n");
	hs__agent_config_help(f);
	fprintf(f,
		"  --help                    this text\n"
		"\n"
		"API (JSON; errors are {\"error\": {\"code\", \"message\"}}):\n"
		"  POST   /v1/jobs        {model, prompt | prompt_tokens, "
		"max_tokens,\n"
		"                         priority?, deadline_ms?} -> 202 {id, "
		"state}\n"
		"  GET    /v1/jobs/ID     the job, its tokens and timings\n"
		"  DELETE /v1/jobs/ID     cancel it\n"
		"  POST   /v1/completions OpenAI's shape; \"stream\": true for "
		"server-sent "
		"events\n"
		"  GET    /v1/devices, /v1/models, /v1/stats\n"
		"  GET    /v1/power       PUT /v1/power {budget_w} changes it "
		"live\n"
		"  GET    /metrics        Prometheus text, with vLLM's gauge "
		"names\n"
		"  GET    /healthz, /readyz (no token needed)\n"
		"Status: 400 malformed, 401 token, 404 no such route or job, "
		"405 method,\n"
		"409 already finished, 413 body too large, 422 unknown model "
		"or fits no\n"
		"device, 429 queue full (Retry-After), 503 draining.\n"
		"\n"
		"Prompts given as text are byte-level tokens (the vocab-256 "
		"models).\n"
		"Files: the state directory holds journal.jsonl (JSON lines: "
		"accept,\n"
		"cancel, end), lock and perf.json (calibrated step-time "
		"models).\n");
}

static int set_key(hs__agent_config_t *cfg, const char *name, const char *value)
{
	size_t i;

	for (i = 0; i < hs__agent_n_keys; i++)
		if (!strcmp(hs__agent_keys[i].name, name))
			return hs__agent_config_set(cfg, &hs__agent_keys[i],
						    value, NULL);
	return HS_ENOENT;
}

static int exit_code(int rc)
{
	switch (rc) {
	case HS_ENOMEM:
	case HS_EIO:
	case HS_EBACKEND:
	case HS_ESTATE:
	case HS_ENODEV:
		return HS_EXIT_FAIL;
	default:
		return HS_EXIT_USAGE;
	}
}

int hs__cmd_serve(int argc, char **argv)
{
	struct option *longopts;
	hs__agent_config_t cfg;
	const char *config = NULL;
	const char **values;
	hs_error_t err;
	size_t i, n = hs__agent_n_keys;
	int status = HS_EXIT_USAGE, c, rc;

	hs__error_clear(&err);
	longopts = hs__calloc(n + 3, sizeof(*longopts));
	values = hs__calloc(n, sizeof(*values));
	if (!longopts || !values || hs__agent_config_init(&cfg)) {
		hs__free(longopts);
		hs__free(values);
		fprintf(stderr, "hetsched serve: out of memory\n");
		return HS_EXIT_FAIL;
	}
	for (i = 0; i < n; i++) {
		longopts[i].name = hs__agent_keys[i].name;
		longopts[i].has_arg = hs__agent_keys[i].type == HS__KEY_BOOL
					      ? no_argument
					      : required_argument;
		longopts[i].val = OPT_KEY + (int)i;
	}
	longopts[n] =
		(struct option){"config", required_argument, NULL, OPT_CONFIG};
	longopts[n + 1] = (struct option){"help", no_argument, NULL, OPT_HELP};

	/* Flags are kept aside and applied after the file: they win. */
	while ((c = hs__cli_getopt("serve", argc, argv, "h", longopts)) != -1) {
		if (c == OPT_HELP) {
			usage(stdout);
			status = HS_EXIT_OK;
			goto out;
		} else if (c == OPT_CONFIG) {
			config = optarg;
		} else if (c >= OPT_KEY && c < OPT_KEY + (int)n) {
			values[c - OPT_KEY] = optarg ? optarg : "";
		} else {
			goto out;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "hetsched serve: unexpected argument '%s'\n",
			argv[optind]);
		goto out;
	}
	if (config && hs__agent_config_load(&cfg, config, &err)) {
		hs__cli_error("serve", &err);
		goto out;
	}
	for (i = 0; i < n; i++) {
		if (!values[i])
			continue;
		if (hs__agent_config_set(&cfg, &hs__agent_keys[i], values[i],
					 &err)) {
			hs__cli_error("serve", &err);
			goto out;
		}
	}
	if ((!cfg.catalog &&
	     set_key(&cfg, "catalog", hs__cli_data_path("devices.json"))) ||
	    (!cfg.models &&
	     set_key(&cfg, "models", hs__cli_data_path("models.json")))) {
		fprintf(stderr, "hetsched serve: out of memory\n");
		status = HS_EXIT_FAIL;
		goto out;
	}
	if (hs__agent_config_check(&cfg, &err)) {
		hs__cli_error("serve", &err);
		goto out;
	}
	rc = hs__agent_run(&cfg, &err);
	if (rc) {
		hs__cli_error("serve", &err);
		status = exit_code(rc);
		goto out;
	}
	status = HS_EXIT_OK;
out:
	hs__agent_config_release(&cfg);
	hs__free(longopts);
	hs__free(values);
	return status;
}
