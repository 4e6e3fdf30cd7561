/* hetsched plan: which devices, how many, where, and what a million
 * tokens costs. */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "plan.h"

#define DEFAULT_SCENARIO "scenarios/two-sites.json"

static void usage(FILE *f)
{
	fprintf(f,
		"usage: hetsched plan [options] [SCENARIO.json]\n"
		"\n"
		"Plan a fleet for a demand: measure what one device of each "
		"type sustains\n"
		"within the SLO by running the scheduler core in simulation, "
		"pick device\n"
		"counts per site with a MILP (GLPK) that minimises hourly cost "
		"(capital +\n"
		"energy x PUE) under each site's power budget, then simulate "
		"the chosen\n"
		"fleet on the demand with the lp policy. Power is modeled.\n"
		"Default scenario: data/%s.\n"
		"\n"
		"  --probe-s S         simulated seconds per capacity probe "
		"(default 60)\n"
		"  --probe-iters N     bisection steps per capacity (default "
		"8)\n"
		"  --no-validate       skip the validation run\n"
		"  --validate-s S      validate on the first S seconds of "
		"demand only\n"
		"  --validate-policy P policy of the validation run (default "
		"lp)\n"
		"  --seed N            (default 1)\n"
		"  --catalog FILE      device profiles (default: "
		"data/devices.json)\n"
		"  --out DIR           write report.json, report.md, "
		"report.html there\n"
		"  --json              the report as JSON on stdout\n"
		"  --help              this text\n",
		DEFAULT_SCENARIO);
}

typedef struct args_s {
	const char *scenario, *catalog, *out;
	hs_plan_opts_t opts;
	bool json;
} args_t;

static int number(const char *flag, const char *s, double lo, double hi,
		  double *out)
{
	return hs__cli_number("plan", flag, s, lo, hi, out);
}

static int parse_args(int argc, char **argv, args_t *a)
{
	static const struct option longopts[] = {
		{"probe-s", required_argument, NULL, 'p'},
		{"probe-iters", required_argument, NULL, 'i'},
		{"no-validate", no_argument, NULL, 'N'},
		{"validate-s", required_argument, NULL, 'V'},
		{"validate-policy", required_argument, NULL, 'P'},
		{"seed", required_argument, NULL, 's'},
		{"catalog", required_argument, NULL, 'C'},
		{"out", required_argument, NULL, 'o'},
		{"json", no_argument, NULL, 'j'},
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0},
	};
	double v;
	int c;

	a->opts.probe_s = 60;
	a->opts.probe_iters = 8;
	a->opts.seed = 1;
	a->opts.validate = true;
	while ((c = hs__cli_getopt("plan", argc, argv, "h", longopts)) != -1) {
		int rc = 0;

		switch (c) {
		case 'p':
			rc = number("--probe-s", optarg, 1, 1e5,
				    &a->opts.probe_s);
			break;
		case 'i':
			rc = number("--probe-iters", optarg, 1, 40, &v);
			a->opts.probe_iters = (unsigned)v;
			break;
		case 'N':
			a->opts.validate = false;
			break;
		case 'V':
			rc = number("--validate-s", optarg, 1e-3, 1e9,
				    &a->opts.validate_max_s);
			break;
		case 's':
			rc = number("--seed", optarg, 0, 9007199254740992.0,
				    &v);
			a->opts.seed = (uint64_t)v;
			break;
		case 'P':
			a->opts.validate_policy = optarg;
			break;
		case 'C':
			a->catalog = optarg;
			break;
		case 'o':
			a->out = optarg;
			break;
		case 'j':
			a->json = true;
			break;
		case 'h':
			usage(stdout);
			return 1;
		default:
			return HS_EINVAL;
		}
		if (rc)
			return rc;
	}
	if (optind + 1 < argc) {
		fprintf(stderr, "hetsched plan: unexpected argument '%s'\n",
			argv[optind + 1]);
		return HS_EINVAL;
	}
	if (optind < argc)
		a->scenario = argv[optind];
	return 0;
}

int hs__cmd_plan(int argc, char **argv)
{
	args_t a = {0};
	hs_model_catalog_t *models = NULL;
	hs_profile_catalog_t *profiles = NULL;
	hs_plan_scenario_t *sc = NULL;
	hs_plan_result_t *r = NULL;
	hs_error_t err = {0};
	char scenario[1024];
	int status = HS_EXIT_USAGE, rc;

	rc = parse_args(argc, argv, &a);
	if (rc)
		return rc > 0 ? HS_EXIT_OK : HS_EXIT_USAGE;
	hs__strlcpy(scenario,
		    a.scenario ? a.scenario
			       : hs__cli_data_path(DEFAULT_SCENARIO),
		    sizeof(scenario));
	sc = hs__calloc(1, sizeof(*sc));
	r = hs__calloc(1, sizeof(*r));
	if (!sc || !r) {
		hs__error_set(&err, HS_ENOMEM, NULL, 0, NULL, "out of memory");
		status = HS_EXIT_FAIL;
		goto out_err;
	}
	if (hs_model_catalog_load(&models, hs__cli_data_path("models.json"),
				  &err) ||
	    hs_profile_catalog_load(
		    &profiles,
		    a.catalog ? a.catalog : hs__cli_data_path("devices.json"),
		    &err) ||
	    hs_plan_scenario_load(sc, scenario, hs__cli_data_dir(), profiles,
				  models, &err))
		goto out_err;
	status = HS_EXIT_FAIL;
	if (hs_plan_run(sc, models, &a.opts, r, &err))
		goto out_err;
	if (a.out && hs_plan_report_write(sc, r, a.out, &err))
		goto out_err;
	if (a.json) {
		json_t *j = hs_plan_report_json(sc, r);

		status = hs__cli_print_json(j) ? HS_EXIT_FAIL : HS_EXIT_OK;
		json_decref(j);
	} else {
		hs_plan_report_table(sc, r, stdout);
		if (a.out)
			printf("\nreport: %s/report.html, report.md, "
			       "report.json\n",
			       a.out);
		status = HS_EXIT_OK;
	}
	/* A plan that fails its own validation is still a plan, but not
	 * one to buy: say so in the exit status too. */
	if (status == HS_EXIT_OK && r->validated && !r->meets_slo)
		status = HS_EXIT_FAIL;
	goto out;
out_err:
	hs__cli_error("plan", &err);
out:
	if (sc)
		hs_plan_scenario_release(sc);
	hs__free(sc);
	hs__free(r);
	hs_profile_catalog_free(profiles);
	hs_model_catalog_free(models);
	return status;
}
