/* hetsched bench: replay a workload against every policy and compare. */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "bench.h"
#include "cli.h"
#include "devices-internal.h"

#define DEFAULT_TRACE "traces/azure-llm-2023-conv.csv"
#define DEFAULT_FLEET "fleets/default.json"
#define DEFAULT_MODEL "Llama-3.1-8B"
/* The default fleet under a budget below its full draw, and the trace
 * compressed to load it: the comparison is then about something. */
#define DEFAULT_BUDGET_W 1800
#define DEFAULT_RATE_SCALE 4
#define LOCAL_MODEL "tiny-15m"
#define LOCAL_MAX_JOBS 120

static void usage(FILE *f)
{
	fprintf(f,
		"usage: hetsched bench [options]\n"
		"\n"
		"Replay a workload against every scheduling policy on the same "
		"simulated\n"
		"fleet, with the same jobs and seed, and compare them. With no "
		"options: the\n"
		"Azure LLM conversation trace (1 hour, 19,365 requests) at %dx "
		"its rate,\n"
		"served as %s by the default mixed fleet (%s)\n"
		"under a %d W budget. Power is modeled (no sensor measures a "
		"sim device).\n"
		"\n"
		"Workload:\n"
		"  --trace FILE            a trace (default: %s)\n"
		"  --format F              azure, mooncake, burstgpt or jsonl "
		"(default: detect)\n"
		"  --model NAME            the model of jobs the trace does "
		"not name\n"
		"  --model-mix N:W,...     or a weighted mix of models\n"
		"  --synthetic KIND        poisson or gamma arrivals instead "
		"of a trace, with\n"
		"    --rate R              jobs per second\n"
		"    --duration S          seconds\n"
		"    --ctx DIST --gen DIST token counts: const:N, "
		"uniform:LO:HI,\n"
		"                          lognormal:MEDIAN:SIGMA, exp:MEAN\n"
		"    --cv X                gamma's coefficient of variation "
		"(default 2)\n"
		"  --rate-scale X          X times the arrival rate (default "
		"%d with the\n"
		"                          default trace, else 1)\n"
		"  --max-jobs N            only the first N jobs\n"
		"  --skip-bad-rows         count malformed rows instead of "
		"stopping\n"
		"Fleet:\n"
		"  --fleet FILE.json       an inventory of sim devices "
		"(default: %s)\n"
		"  --topology FILE.xml     the GPUs of an hwloc XML topology, "
		"as sim devices\n"
		"  --local                 this machine's devices (CPU cores "
		"and OpenCL\n"
		"                          devices), running every step for "
		"real: the model\n"
		"                          must be runnable (default "
		"tiny-15m), jobs are\n"
		"                          scaled to fit it (context /16, "
		"generated /8) and\n"
		"                          the first %d are replayed unless "
		"--max-jobs says\n"
		"                          otherwise; steps run one at a time "
		"and their\n"
		"                          measured times make the virtual "
		"timeline\n"
		"  --catalog FILE          device profiles (default: "
		"data/devices.json)\n"
		"Scheduling:\n"
		"  --policy P,...|all      policies to compare (default: all)\n"
		"  --power-budget W        watts; 0 for none (default: %d with "
		"the default\n"
		"                          fleet, else none)\n"
		"  --max-batch N           jobs per batch (default 32)\n"
		"  --power-lease-ms MS     a device keeps its power level this "
		"long while\n"
		"                          its batch has work (default 1000; "
		"0: "
		"every step)\n"
		"  --seed N                seed of the mix, the noise and the "
		"skew (default 1)\n"
		"  --noise X               relative spread of sim step times "
		"(default 0.05)\n"
		"  --skew X                max error of a sim device's profile "
		"(default 0.1)\n"
		"  --time-limit S          stop each run after S simulated "
		"seconds\n"
		"  --slo-ttft MS --slo-tpot MS   report the fraction of jobs "
		"meeting them\n"
		"Output:\n"
		"  --out DIR               write report.json, report.md, "
		"report.html there\n"
		"  --json                  the report as JSON on stdout\n"
		"  --help                  this text\n",
		DEFAULT_RATE_SCALE, DEFAULT_MODEL, DEFAULT_FLEET,
		DEFAULT_BUDGET_W, DEFAULT_TRACE, DEFAULT_RATE_SCALE,
		DEFAULT_FLEET, LOCAL_MAX_JOBS, DEFAULT_BUDGET_W);
}

typedef struct args_s {
	const char *trace, *format, *model, *mix, *synthetic, *ctx, *gen;
	const char *fleet, *topology, *catalog, *policy, *out;
	double rate, duration, cv, rate_scale, budget, time_limit;
	double noise, skew, slo_ttft, slo_tpot;
	long max_batch;
	double lease_ms;
	unsigned long long seed, max_jobs;
	bool json, skip_bad, budget_set, rate_scale_set, local;
} args_t;

static int number(const char *flag, const char *s, double lo, double hi,
		  double *out)
{
	return hs__cli_number("bench", flag, s, lo, hi, out);
}

static int parse_args(int argc, char **argv, args_t *a)
{
	static const struct option longopts[] = {
		{"trace", required_argument, NULL, 't'},
		{"format", required_argument, NULL, 'F'},
		{"model", required_argument, NULL, 'm'},
		{"model-mix", required_argument, NULL, 'M'},
		{"synthetic", required_argument, NULL, 'S'},
		{"rate", required_argument, NULL, 'r'},
		{"duration", required_argument, NULL, 'd'},
		{"ctx", required_argument, NULL, 'c'},
		{"gen", required_argument, NULL, 'g'},
		{"cv", required_argument, NULL, 'v'},
		{"rate-scale", required_argument, NULL, 'x'},
		{"max-jobs", required_argument, NULL, 'J'},
		{"skip-bad-rows", no_argument, NULL, 'k'},
		{"fleet", required_argument, NULL, 'f'},
		{"topology", required_argument, NULL, 'T'},
		{"catalog", required_argument, NULL, 'C'},
		{"local", no_argument, NULL, 'l'},
		{"policy", required_argument, NULL, 'p'},
		{"power-budget", required_argument, NULL, 'b'},
		{"max-batch", required_argument, NULL, 'B'},
		{"power-lease-ms", required_argument, NULL, 'P'},
		{"seed", required_argument, NULL, 's'},
		{"noise", required_argument, NULL, 'n'},
		{"skew", required_argument, NULL, 'w'},
		{"time-limit", required_argument, NULL, 'L'},
		{"slo-ttft", required_argument, NULL, '1'},
		{"slo-tpot", required_argument, NULL, '2'},
		{"out", required_argument, NULL, 'o'},
		{"json", no_argument, NULL, 'j'},
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0},
	};
	double v;
	int c;

	a->cv = 2;
	a->rate_scale = 1;
	a->noise = 0.05;
	a->skew = 0.1;
	a->seed = 1;
	a->max_batch = 32;
	a->lease_ms = 1000;
	while ((c = hs__cli_getopt("bench", argc, argv, "h", longopts)) != -1) {
		int rc = 0;

		switch (c) {
		case 't':
			a->trace = optarg;
			break;
		case 'F':
			a->format = optarg;
			break;
		case 'm':
			a->model = optarg;
			break;
		case 'M':
			a->mix = optarg;
			break;
		case 'S':
			a->synthetic = optarg;
			break;
		case 'c':
			a->ctx = optarg;
			break;
		case 'g':
			a->gen = optarg;
			break;
		case 'f':
			a->fleet = optarg;
			break;
		case 'T':
			a->topology = optarg;
			break;
		case 'C':
			a->catalog = optarg;
			break;
		case 'p':
			a->policy = optarg;
			break;
		case 'o':
			a->out = optarg;
			break;
		case 'j':
			a->json = true;
			break;
		case 'k':
			a->skip_bad = true;
			break;
		case 'l':
			a->local = true;
			break;
		case 'r':
			rc = number("--rate", optarg, 1e-6, 1e9, &a->rate);
			break;
		case 'd':
			rc = number("--duration", optarg, 1e-3, 1e9,
				    &a->duration);
			break;
		case 'v':
			rc = number("--cv", optarg, 0.01, 100, &a->cv);
			break;
		case 'x':
			rc = number("--rate-scale", optarg, 1e-6, 1e6,
				    &a->rate_scale);
			a->rate_scale_set = true;
			break;
		case 'b':
			rc = number("--power-budget", optarg, 0, 1e9,
				    &a->budget);
			a->budget_set = true;
			break;
		case 'n':
			rc = number("--noise", optarg, 0, 0.9, &a->noise);
			break;
		case 'w':
			rc = number("--skew", optarg, 0, 0.9, &a->skew);
			break;
		case 'L':
			rc = number("--time-limit", optarg, 1e-3, 1e9,
				    &a->time_limit);
			break;
		case '1':
			rc = number("--slo-ttft", optarg, 1e-3, 1e9,
				    &a->slo_ttft);
			break;
		case '2':
			rc = number("--slo-tpot", optarg, 1e-3, 1e9,
				    &a->slo_tpot);
			break;
		case 'B':
			rc = number("--max-batch", optarg, 1, 4096, &v);
			a->max_batch = (long)v;
			break;
		case 'P':
			rc = number("--power-lease-ms", optarg, 0, 3.6e6,
				    &a->lease_ms);
			break;
		case 's':
			rc = number("--seed", optarg, 0, 9007199254740992.0,
				    &v);
			a->seed = (unsigned long long)v;
			break;
		case 'J':
			rc = number("--max-jobs", optarg, 1, 1e12, &v);
			a->max_jobs = (unsigned long long)v;
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
	if (optind < argc) {
		fprintf(stderr, "hetsched bench: unexpected argument '%s'\n",
			argv[optind]);
		return HS_EINVAL;
	}
#define EXCLUSIVE(x, y, nx, ny)                                   \
	if ((x) && (y)) {                                         \
		fprintf(stderr,                                   \
			"hetsched bench: %s and %s exclude each " \
			"other\n",                                \
			nx, ny);                                  \
		return HS_EINVAL;                                 \
	}
	EXCLUSIVE(a->trace, a->synthetic, "--trace", "--synthetic");
	EXCLUSIVE(a->model, a->mix, "--model", "--model-mix");
	EXCLUSIVE(a->fleet, a->topology, "--fleet", "--topology");
	EXCLUSIVE(a->local, a->fleet || a->topology, "--local",
		  "--fleet/--topology");
#undef EXCLUSIVE
	if (a->synthetic && (a->rate <= 0 || a->duration <= 0)) {
		fprintf(stderr, "hetsched bench: --synthetic needs --rate and "
				"--duration\n");
		return HS_EINVAL;
	}
	if (!a->synthetic &&
	    (a->rate > 0 || a->duration > 0 || a->ctx || a->gen)) {
		fprintf(stderr, "hetsched bench: --rate, --duration, --ctx and "
				"--gen go with --synthetic\n");
		return HS_EINVAL;
	}
	return 0;
}

/* Split "a,b,c" or "all" into a NULL-terminated list of known policies. */
static int parse_policies(const char *spec, const char **out, size_t max,
			  char *buf, size_t size)
{
	const char *const *all = hs_policy_names();
	size_t n = 0, i;
	char *tok, *save = NULL;

	if (!spec || !strcmp(spec, "all")) {
		for (i = 0; all[i] && n + 1 < max; i++)
			out[n++] = all[i];
		out[n] = NULL;
		return 0;
	}
	hs__strlcpy(buf, spec, size);
	for (tok = strtok_r(buf, ",", &save); tok;
	     tok = strtok_r(NULL, ",", &save)) {
		for (i = 0; all[i]; i++)
			if (!strcmp(all[i], tok))
				break;
		if (!all[i]) {
			fprintf(stderr,
				"hetsched bench: --policy: unknown policy "
				"'%s' (known:",
				tok);
			for (i = 0; all[i]; i++)
				fprintf(stderr, " %s", all[i]);
			fprintf(stderr, ")\n");
			return HS_EINVAL;
		}
		if (n + 1 >= max)
			return HS_EINVAL;
		out[n++] = all[i];
	}
	out[n] = NULL;
	return n ? 0 : HS_EINVAL;
}

/* The fleet: every device that has a profile (a sim device needs one). */
static int load_fleet(const args_t *a, const hs_profile_catalog_t *profiles,
		      hs_device_t **devs, size_t *n, char *label, size_t size,
		      hs_error_t *err)
{
	hs_discover_opts_t opts = {.profiles = profiles, .no_opencl = true};
	hs_node_t *node = NULL;
	size_t i, k = 0;
	int rc;

	if (a->local) {
		/* Two genuinely different OpenCL devices when the user did
		 * not choose: PoCL's multi-core and single-core ones. */
		setenv("POCL_DEVICES", "pthread basic", 0);
		opts.no_opencl = false;
		hs__strlcpy(label, "local", size);
	} else if (a->topology) {
		opts.topology_xml = a->topology;
		hs__strlcpy(label, a->topology, size);
	} else {
		opts.inventory = a->fleet ? a->fleet
					  : hs__cli_data_path(DEFAULT_FLEET);
		hs__strlcpy(label, a->fleet ? a->fleet : "default", size);
	}
	rc = hs_node_discover(&node, &opts, err);
	if (rc)
		return rc;
	*devs = hs__calloc(hs_node_device_count(node) + 1, sizeof(**devs));
	if (!*devs) {
		hs_node_free(node);
		return hs__error_set(err, HS_ENOMEM, NULL, 0, NULL,
				     "out of memory");
	}
	for (i = 0; i < hs_node_device_count(node); i++) {
		const hs_device_t *d = hs_node_device(node, i);

		if (!d->profile[0]) {
			fprintf(stderr,
				"hetsched bench: warning: %s has no device "
				"profile; left out of the fleet\n",
				d->name);
			continue;
		}
		(*devs)[k] = *d;
		if (!a->local) {
			(*devs)[k].backend = HS_BACKEND_SIM;
			(*devs)[k].sensor = HS_SENSOR_NONE;
		}
		(*devs)[k].id = (int)k;
		k++;
	}
	hs_node_free(node);
	*n = k;
	if (!k)
		return hs__error_set(err, HS_ENODEV, label, 0, NULL,
				     "no device with a profile to simulate");
	return 0;
}

/* Jobs shrunk for the small models that run here: contexts / 16 and
 * generated tokens / 8, so a real trace's shape fits a 1024-token model. */
static void scale_to_fit(hs_workload_t *w)
{
	size_t i;

	for (i = 0; i < w->n_jobs; i++) {
		hs_sim_job_t *j = &w->jobs[i];

		j->ctx_tokens = j->ctx_tokens / 16 ? j->ctx_tokens / 16 : 1;
		j->gen_tokens = j->gen_tokens / 8 ? j->gen_tokens / 8 : 1;
	}
}

static int load_workload(const args_t *a, const hs_model_catalog_t *models,
			 hs_workload_t *w, hs_bench_inputs_t *in,
			 hs_error_t *err)
{
	hs_model_mix_t mix;
	const char *mix_spec = a->mix	  ? a->mix
			       : a->model ? a->model
			       : a->local ? LOCAL_MODEL
					  : DEFAULT_MODEL;
	int rc;

	rc = hs_model_mix_parse(&mix, mix_spec, models, err);
	if (rc) {
		if (err && !err->source[0])
			hs__strlcpy(err->source,
				    a->mix ? "--model-mix" : "--model",
				    sizeof(err->source));
		return rc;
	}
	hs__strlcpy(in->models, mix_spec, sizeof(in->models));
	if (a->synthetic) {
		hs_synth_opts_t so = {.rate = a->rate,
				      .duration_s = a->duration,
				      .gamma_cv = a->cv,
				      .mix = &mix,
				      .seed = a->seed};

		if (!strcmp(a->synthetic, "poisson")) {
			so.arrival = HS_ARRIVAL_POISSON;
		} else if (!strcmp(a->synthetic, "gamma")) {
			so.arrival = HS_ARRIVAL_GAMMA;
		} else {
			return hs__error_set(err, HS_EINVAL, "--synthetic", 0,
					     NULL,
					     "unknown arrival process '%s' "
					     "(poisson or gamma)",
					     a->synthetic);
		}
		if ((rc = hs_dist_parse(&so.ctx,
					a->ctx ? a->ctx : "lognormal:800:1",
					"--ctx", err)) ||
		    (rc = hs_dist_parse(&so.gen,
					a->gen ? a->gen : "lognormal:150:0.8",
					"--gen", err)))
			return rc;
		rc = hs_synth_generate(w, &so, err);
		snprintf(in->trace, sizeof(in->trace),
			 "synthetic %s, %g jobs/s for %g s, ctx %s, gen %s",
			 a->synthetic, a->rate, a->duration,
			 a->ctx ? a->ctx : "lognormal:800:1",
			 a->gen ? a->gen : "lognormal:150:0.8");
		hs__strlcpy(in->format, "synthetic", sizeof(in->format));
	} else {
		hs_trace_opts_t to = {.models = models,
				      .mix = &mix,
				      .rate_scale = in->rate_scale,
				      .seed = a->seed,
				      .skip_bad_rows = a->skip_bad,
				      .max_jobs = a->max_jobs};
		const char *path = a->trace ? a->trace
					    : hs__cli_data_path(DEFAULT_TRACE);

		to.format = HS_TRACE_AUTO;
		if (a->format && hs_trace_format_parse(a->format, &to.format))
			return hs__error_set(err, HS_EINVAL, "--format", 0,
					     NULL,
					     "unknown trace format '%s' "
					     "(azure, mooncake, burstgpt, "
					     "jsonl)",
					     a->format);
		if (a->local && !to.max_jobs)
			to.max_jobs = LOCAL_MAX_JOBS;
		rc = hs_trace_load(w, path, &to, err);
		hs__strlcpy(in->trace, path, sizeof(in->trace));
		if (!rc) {
			hs__strlcpy(in->format, hs_trace_format_name(w->format),
				    sizeof(in->format));
			if (w->skipped)
				fprintf(stderr,
					"hetsched bench: %s: skipped %zu "
					"rows (%zu failed requests)\n",
					path, w->skipped, w->skipped_failed);
		}
	}
	if (!rc && a->local)
		scale_to_fit(w);
	return rc;
}

int hs__cmd_bench(int argc, char **argv)
{
	const char *policies[16];
	char pbuf[256];
	args_t a = {0};
	hs_model_catalog_t *models = NULL;
	hs_profile_catalog_t *profiles = NULL;
	hs_device_t *devs = NULL;
	const struct hs_executor_ops **execs = NULL;
	hs_workload_t w = {0};
	hs_bench_config_t cfg = {0};
	hs_bench_report_t rep = {0};
	hs_error_t err = {0};
	int status = HS_EXIT_USAGE, rc;
	bool defaults;

	rc = parse_args(argc, argv, &a);
	if (rc)
		return rc > 0 ? HS_EXIT_OK : HS_EXIT_USAGE;
	if (parse_policies(a.policy, policies, HS_ARRAY_SIZE(policies), pbuf,
			   sizeof(pbuf)))
		return HS_EXIT_USAGE;
	defaults = !a.trace && !a.synthetic && !a.fleet && !a.topology &&
		   !a.local;
	cfg.inputs.rate_scale = a.rate_scale_set ? a.rate_scale
				: defaults	 ? DEFAULT_RATE_SCALE
						 : 1;
	cfg.inputs.power_budget_w = a.budget_set ? a.budget
				    : defaults	 ? DEFAULT_BUDGET_W
						 : 0;

	if (hs_model_catalog_load(&models, hs__cli_data_path("models.json"),
				  &err) ||
	    hs_profile_catalog_load(
		    &profiles,
		    a.catalog ? a.catalog : hs__cli_data_path("devices.json"),
		    &err))
		goto out_err;
	if (load_fleet(&a, profiles, &devs, &cfg.n_devices, cfg.inputs.fleet,
		       sizeof(cfg.inputs.fleet), &err))
		goto out_err;
	if (load_workload(&a, models, &w, &cfg.inputs, &err))
		goto out_err;

	if (a.local) {
		size_t i;

		execs = hs__calloc(cfg.n_devices, sizeof(*execs));
		if (!execs) {
			hs__error_set(&err, HS_ENOMEM, NULL, 0, NULL,
				      "out of memory");
			goto out_err;
		}
		for (i = 0; i < cfg.n_devices; i++)
			execs[i] = hs__executor_for(&devs[i]);
		cfg.executors = execs;
		cfg.noise = 0;
	}
	cfg.models = models;
	cfg.devices = devs;
	cfg.workload = &w;
	cfg.policies = policies;
	hs_sched_config_init(&cfg.sched);
	cfg.sched.max_batch_jobs = (uint32_t)a.max_batch;
	cfg.sched.power_lease_ns = (int64_t)(a.lease_ms * 1e6);
	cfg.sched.power_budget_w = cfg.inputs.power_budget_w;
	cfg.noise = a.local ? 0 : a.noise;
	cfg.skew = a.local ? 0 : a.skew;
	cfg.seed = a.seed;
	cfg.time_limit_s = a.time_limit;
	cfg.slo_ttft_ms = a.slo_ttft;
	cfg.slo_tpot_ms = a.slo_tpot;
	cfg.progress = isatty(STDERR_FILENO) && !a.json;
	cfg.inputs.n_jobs = w.n_jobs;
	cfg.inputs.n_devices = cfg.n_devices;
	cfg.inputs.time_limit_s = a.time_limit;
	cfg.inputs.seed = a.seed;
	cfg.inputs.slo_ttft_ms = a.slo_ttft;
	cfg.inputs.slo_tpot_ms = a.slo_tpot;
	hs__strlcpy(cfg.inputs.version, HS_VERSION_STRING,
		    sizeof(cfg.inputs.version));

	if (hs_bench_run(&cfg, &rep, &err)) {
		status = HS_EXIT_FAIL;
		goto out_err;
	}
	if (a.out && hs_bench_report_write(&rep, a.out, &err)) {
		status = HS_EXIT_FAIL;
		goto out_err;
	}
	if (a.json) {
		json_t *j = hs_bench_report_json(&rep, false);

		status = hs__cli_print_json(j) ? HS_EXIT_FAIL : HS_EXIT_OK;
		json_decref(j);
	} else {
		hs_bench_report_table(&rep, stdout);
		if (a.local) {
			size_t i;

			printf("\nperformance model: mean relative error of "
			       "its step-time predictions against measured "
			       "steps\n  %-5s %12s %16s\n",
			       "", "whole run", "after warm-up");
			for (i = 0; i < rep.n_runs; i++)
				printf("  %-5s %11.1f%% %15.1f%%\n",
				       rep.runs[i].policy,
				       rep.runs[i].perf_mean_rel_error * 100,
				       rep.runs[i].perf_calibrated_error * 100);
		}
		if (a.out)
			printf("\nreport: %s/report.html, report.md, "
			       "report.json\n",
			       a.out);
		status = HS_EXIT_OK;
	}
	goto out;
out_err:
	hs__cli_error("bench", &err);
out:
	hs_bench_report_release(&rep);
	hs_workload_release(&w);
	hs__free(execs);
	hs__free(devs);
	hs_profile_catalog_free(profiles);
	hs_model_catalog_free(models);
	return status;
}
