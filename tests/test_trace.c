/*
 * Trace loaders on small hand-checked files of every format and on the
 * shipped Azure trace; model mixes, token distributions and synthetic
 * workloads; allocation failures. Bad traces live in tests/cases/trace-*.
 */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "testutil.h"
#include "trace.h"

#define S 1000000000ll
#define MS 1000000ll
#define DIR "tests/data/traces/"
#define AZURE_REAL "data/traces/azure-llm-2023-conv.csv"

static hs_model_catalog_t *models;
static hs_model_mix_t one_model; /* Llama-3.1-8B */

static uint32_t model_index(const char *name)
{
	const hs_model_t *m = hs_model_catalog_find(models, name);

	assert_non_null(m);
	return (uint32_t)(m - hs_model_catalog_get(models, 0));
}

static hs_trace_opts_t opts_for(hs_trace_format_t format)
{
	hs_trace_opts_t o = {
		.format = format,
		.models = models,
		.mix = &one_model,
		.rate_scale = 1,
		.seed = 1,
	};

	return o;
}

static void load_ok(hs_workload_t *w, const char *path,
		    const hs_trace_opts_t *o)
{
	char msg[512];
	hs_error_t err;
	int rc;

	rc = hs_trace_load(w, path, o, &err);
	if (rc)
		fail_msg("%s: %s", path,
			 hs_error_format(&err, msg, sizeof(msg)));
	assert_int_equal(err.code, 0);
}

/* Load, expect failure, return the formatted error in msg. */
static int load_bad(const char *path, const hs_trace_opts_t *o, char *msg,
		    size_t size)
{
	hs_workload_t w;
	hs_error_t err;
	int rc;

	rc = hs_trace_load(&w, path, o, &err);
	assert_int_not_equal(rc, 0);
	assert_int_equal(rc, err.code);
	assert_null(w.jobs);
	assert_int_equal(w.n_jobs, 0);
	hs_error_format(&err, msg, size);
	return rc;
}

static void assert_job(const hs_sim_job_t *j, int64_t arrival, uint32_t ctx,
		       uint32_t gen, uint32_t model, int32_t prio)
{
	assert_int_equal(j->arrival_ns, arrival);
	assert_int_equal(j->ctx_tokens, ctx);
	assert_int_equal(j->gen_tokens, gen);
	assert_int_equal(j->model, model);
	assert_int_equal(j->priority, prio);
}

static int setup(void **state)
{
	hs_error_t err;

	if (hs_model_catalog_load(&models, "data/models.json", &err))
		return -1;
	return hs_model_mix_parse(&one_model, "Llama-3.1-8B", models, &err);
}

static int teardown(void **state)
{
	hs_model_catalog_free(models);
	return 0;
}

static void test_format_names(void **state)
{
	static const char *const names[] = {"azure", "mooncake", "burstgpt",
					    "jsonl"};
	hs_trace_format_t f;
	size_t i;

	for (i = 0; i < HS_ARRAY_SIZE(names); i++) {
		assert_int_equal(hs_trace_format_parse(names[i], &f), 0);
		assert_string_equal(hs_trace_format_name(f), names[i]);
	}
	assert_int_equal(hs_trace_format_parse("csv", &f), HS_EINVAL);
	assert_int_equal(hs_trace_format_parse("Azure", &f), HS_EINVAL);
	assert_string_equal(hs_trace_format_name(HS_TRACE_AUTO), "auto");
}

/* 7 fraction digits, CRLF, equal timestamps, a midnight crossing. */
static void test_azure_fraction(void **state)
{
	hs_trace_opts_t o = opts_for(HS_TRACE_AZURE);
	uint32_t m = model_index("Llama-3.1-8B");
	hs_workload_t w;

	load_ok(&w, DIR "azure-frac.csv", &o);
	assert_int_equal(w.format, HS_TRACE_AZURE);
	assert_int_equal(w.n_jobs, 4);
	assert_int_equal(w.skipped, 0);
	assert_job(&w.jobs[0], 0, 374, 44, m, 0);
	assert_job(&w.jobs[1], 4314579000ll, 396, 109, m, 0);
	assert_job(&w.jobs[2], 4314579000ll, 879, 55, m, 0);
	/* 18:15:46.6805900 to 00:00:01.0000001 the next day, to 100 ns */
	assert_job(&w.jobs[3], 20654319410100ll, 91, 16, m, 0);
	hs_workload_release(&w);
	assert_null(w.jobs);
}

/* Whole seconds, a leap day, a byte order mark and blank lines. */
static void test_azure_whole_seconds(void **state)
{
	hs_trace_opts_t o = opts_for(HS_TRACE_AZURE);
	hs_workload_t w;

	load_ok(&w, DIR "azure-whole.csv", &o);
	assert_int_equal(w.n_jobs, 3);
	assert_int_equal(w.jobs[0].arrival_ns, 0);
	assert_int_equal(w.jobs[1].arrival_ns, 1 * S);
	assert_int_equal(w.jobs[2].arrival_ns, 86401 * S);
	assert_int_equal(w.jobs[2].ctx_tokens, 300);
	hs_workload_release(&w);
}

static void test_rate_scale(void **state)
{
	hs_trace_opts_t o = opts_for(HS_TRACE_AUTO);
	hs_workload_t w1, w2;
	char msg[512];
	size_t i;

	load_ok(&w1, DIR "azure-frac.csv", &o);
	o.rate_scale = 2;
	load_ok(&w2, DIR "azure-frac.csv", &o);
	assert_int_equal(w1.n_jobs, w2.n_jobs);
	for (i = 0; i < w1.n_jobs; i++) {
		assert_int_equal(w2.jobs[i].arrival_ns,
				 w1.jobs[i].arrival_ns / 2);
		assert_int_equal(w2.jobs[i].ctx_tokens, w1.jobs[i].ctx_tokens);
	}
	hs_workload_release(&w2);
	o.rate_scale = 0.5;
	load_ok(&w2, DIR "azure-frac.csv", &o);
	assert_int_equal(w2.jobs[3].arrival_ns, w1.jobs[3].arrival_ns * 2);
	hs_workload_release(&w2);
	hs_workload_release(&w1);

	o.rate_scale = 0;
	assert_int_equal(load_bad(DIR "azure-frac.csv", &o, msg, sizeof(msg)),
			 HS_EINVAL);
	assert_non_null(strstr(msg, "rate_scale"));
	o.rate_scale = -1;
	load_bad(DIR "azure-frac.csv", &o, msg, sizeof(msg));
	o.rate_scale = 1e-12;
	assert_int_equal(load_bad(DIR "azure-frac.csv", &o, msg, sizeof(msg)),
			 HS_ERANGE);
}

/* Extra keys (hash_ids) are ignored; milliseconds; rebased to 0. */
static void test_mooncake(void **state)
{
	hs_trace_opts_t o = opts_for(HS_TRACE_MOONCAKE);
	uint32_t m = model_index("Llama-3.1-8B");
	hs_workload_t w;

	load_ok(&w, DIR "mooncake.jsonl", &o);
	assert_int_equal(w.format, HS_TRACE_MOONCAKE);
	assert_int_equal(w.n_jobs, 3);
	assert_job(&w.jobs[0], 0, 6955, 52, m, 0);
	assert_job(&w.jobs[1], 0, 6472, 26, m, 0);
	assert_job(&w.jobs[2], 26482 * MS, 6551, 14, m, 0);
	hs_workload_release(&w);
}

/* Failed requests (0 response tokens) are skipped and counted. */
static void test_burstgpt(void **state)
{
	hs_trace_opts_t o = opts_for(HS_TRACE_BURSTGPT);
	uint32_t m = model_index("Llama-3.1-8B");
	hs_workload_t w;

	load_ok(&w, DIR "burstgpt.csv", &o);
	assert_int_equal(w.format, HS_TRACE_BURSTGPT);
	assert_int_equal(w.n_jobs, 3);
	assert_int_equal(w.skipped, 2);
	assert_int_equal(w.skipped_failed, 2);
	assert_job(&w.jobs[0], 0, 472, 18, m, 0);
	assert_job(&w.jobs[1], 113500 * MS, 417, 276, m, 0);
	assert_job(&w.jobs[2], 136 * S, 999, 12, m, 0);
	hs_workload_release(&w);

	/* Columns found by name, in any order, quoted or not. */
	load_ok(&w, DIR "burstgpt-reordered.csv", &o);
	assert_int_equal(w.n_jobs, 2);
	assert_job(&w.jobs[0], 0, 472, 18, m, 0);
	assert_job(&w.jobs[1], S + 1, 10, 7, m, 0);
	hs_workload_release(&w);
}

/* Ours: a model, a priority and fractional seconds per job. */
static void test_jsonl(void **state)
{
	hs_trace_opts_t o = opts_for(HS_TRACE_JSONL);
	hs_workload_t w;

	o.mix = NULL;
	load_ok(&w, DIR "jobs.jsonl", &o);
	assert_int_equal(w.format, HS_TRACE_JSONL);
	assert_int_equal(w.n_jobs, 3);
	assert_job(&w.jobs[0], 0, 100, 10, model_index("Llama-3.1-70B"), 0);
	assert_job(&w.jobs[1], 750 * MS, 7, 3, model_index("tiny-test"), -5);
	assert_job(&w.jobs[2], 750 * MS, 1, 1, model_index("Qwen2.5-7B"), 1000);
	hs_workload_release(&w);
}

static void test_autodetect(void **state)
{
	static const struct {
		const char *file;
		hs_trace_format_t format;
		size_t n_jobs;
	} cases[] = {
		{DIR "azure-frac.csv", HS_TRACE_AZURE, 4},
		{DIR "azure-whole.csv", HS_TRACE_AZURE, 3},
		{DIR "mooncake.jsonl", HS_TRACE_MOONCAKE, 3},
		{DIR "burstgpt.csv", HS_TRACE_BURSTGPT, 3},
		{DIR "burstgpt-reordered.csv", HS_TRACE_BURSTGPT, 2},
		{DIR "jobs.jsonl", HS_TRACE_JSONL, 3},
	};
	hs_trace_opts_t o = opts_for(HS_TRACE_AUTO);
	hs_workload_t w;
	size_t i;

	for (i = 0; i < HS_ARRAY_SIZE(cases); i++) {
		load_ok(&w, cases[i].file, &o);
		assert_int_equal(w.format, cases[i].format);
		assert_int_equal(w.n_jobs, cases[i].n_jobs);
		hs_workload_release(&w);
	}
}

/* A format given by hand that does not match the file. */
static void test_wrong_format(void **state)
{
	hs_trace_opts_t o = opts_for(HS_TRACE_AZURE);
	char msg[512];

	load_bad(DIR "burstgpt.csv", &o, msg, sizeof(msg));
	assert_non_null(strstr(msg, "burstgpt.csv:1: the azure header has "
				    "no column \"ContextTokens\""));
	load_bad(DIR "jobs.jsonl", &o, msg, sizeof(msg));
	o.format = HS_TRACE_BURSTGPT;
	load_bad(DIR "azure-frac.csv", &o, msg, sizeof(msg));
	assert_non_null(strstr(msg, "the burstgpt header has no column "
				    "\"Request tokens\""));
	o.format = HS_TRACE_MOONCAKE;
	load_bad(DIR "jobs.jsonl", &o, msg, sizeof(msg));
	assert_non_null(strstr(msg, "jobs.jsonl:1: $: missing required key "
				    "\"timestamp\""));
	o.format = HS_TRACE_JSONL;
	load_bad(DIR "mooncake.jsonl", &o, msg, sizeof(msg));
	assert_non_null(strstr(msg, "mooncake.jsonl:1: $: unknown key"));
	load_bad(DIR "azure-frac.csv", &o, msg, sizeof(msg));
	assert_non_null(strstr(msg, "azure-frac.csv:1:"));
}

static void test_missing_inputs(void **state)
{
	hs_trace_opts_t o = opts_for(HS_TRACE_AUTO);
	char msg[512];

	assert_int_equal(load_bad(DIR "nope.csv", &o, msg, sizeof(msg)),
			 HS_EIO);
	assert_non_null(strstr(msg, "nope.csv: cannot open"));
	o.mix = NULL;
	assert_int_equal(load_bad(DIR "azure-frac.csv", &o, msg, sizeof(msg)),
			 HS_EINVAL);
	assert_non_null(strstr(msg, "needs a model or a model mix"));
	o = opts_for(HS_TRACE_AUTO);
	o.models = NULL;
	assert_int_equal(load_bad(DIR "jobs.jsonl", &o, msg, sizeof(msg)),
			 HS_EINVAL);
}

static void test_skip_bad_rows(void **state)
{
	hs_trace_opts_t o = opts_for(HS_TRACE_AUTO);
	hs_workload_t w;
	hs_error_t err;
	char msg[512];

	assert_int_equal(load_bad(DIR "azure-dirty.csv", &o, msg, sizeof(msg)),
			 HS_EPARSE);
	assert_non_null(strstr(msg, "azure-dirty.csv:3: ContextTokens:"));

	o.skip_bad_rows = true;
	assert_int_equal(hs_trace_load(&w, DIR "azure-dirty.csv", &o, &err), 0);
	assert_int_equal(err.code, 0);
	assert_int_equal(w.n_jobs, 2);
	assert_int_equal(w.skipped, 5);
	assert_int_equal(w.skipped_failed, 0);
	assert_int_equal(w.jobs[1].arrival_ns, 5 * S);
	assert_int_equal(w.jobs[1].ctx_tokens, 20);
	hs_workload_release(&w);
}

static void test_max_jobs(void **state)
{
	hs_trace_opts_t o = opts_for(HS_TRACE_AUTO);
	hs_workload_t w;

	o.max_jobs = 2;
	load_ok(&w, DIR "azure-frac.csv", &o);
	assert_int_equal(w.n_jobs, 2);
	hs_workload_release(&w);
	/* The bad rows after the limit are never read. */
	o.max_jobs = 1;
	load_ok(&w, DIR "azure-dirty.csv", &o);
	assert_int_equal(w.n_jobs, 1);
	hs_workload_release(&w);
}

/* Write a temporary file; the caller unlinks it. */
static void write_tmp(char *path, const char *head, size_t pad,
		      const char *tail)
{
	FILE *f;
	int fd;

	strcpy(path, "/tmp/hs-trace-XXXXXX");
	fd = mkstemp(path);
	assert_true(fd >= 0);
	f = fdopen(fd, "w");
	assert_non_null(f);
	fputs(head, f);
	while (pad--)
		fputc('7', f);
	fputs(tail, f);
	fclose(f);
}

static void test_long_line(void **state)
{
	hs_trace_opts_t o = opts_for(HS_TRACE_AUTO);
	char path[64], msg[512];
	hs_workload_t w;
	size_t fill;

	/* 65536 bytes is the most a line may hold. */
	fill = 65536 - strlen("2023-11-16 18:15:46,1,");
	write_tmp(path,
		  "TIMESTAMP,ContextTokens,GeneratedTokens\n"
		  "2023-11-16 18:15:46,1,",
		  fill, "\n");
	load_bad(path, &o, msg, sizeof(msg));
	assert_non_null(strstr(msg, ":2: GeneratedTokens: "));
	unlink(path);
	write_tmp(path,
		  "TIMESTAMP,ContextTokens,GeneratedTokens\n"
		  "2023-11-16 18:15:46,1,",
		  fill + 1, "\n");
	assert_int_equal(load_bad(path, &o, msg, sizeof(msg)), HS_EPARSE);
	assert_non_null(strstr(msg, ":2: line longer than 64 KiB"));
	unlink(path);
	/* Even when skipping: the file is not a trace. */
	o.skip_bad_rows = true;
	write_tmp(path, "", 100000, "\n");
	load_bad(path, &o, msg, sizeof(msg));
	assert_non_null(strstr(msg, ":1: line longer than 64 KiB"));
	unlink(path);
	/* A last row without a newline still counts. */
	write_tmp(path,
		  "TIMESTAMP,ContextTokens,GeneratedTokens\r\n"
		  "2023-11-16 18:15:46,1,3",
		  0, "");
	load_ok(&w, path, &o);
	assert_int_equal(w.n_jobs, 1);
	assert_int_equal(w.jobs[0].gen_tokens, 3);
	hs_workload_release(&w);
	unlink(path);
}

static void test_mix_parse(void **state)
{
	hs_model_mix_t mix;
	hs_error_t err;
	char msg[512];

	assert_int_equal(hs_model_mix_parse(&mix, "Qwen2.5-7B", models, &err),
			 0);
	assert_int_equal(mix.n, 1);
	assert_int_equal(mix.models[0], model_index("Qwen2.5-7B"));
	assert_true(mix.weights[0] == 1.0);

	assert_int_equal(hs_model_mix_parse(&mix,
					    "Llama-3.1-8B:3, Qwen2.5-7B:1",
					    models, &err),
			 0);
	assert_int_equal(mix.n, 2);
	assert_int_equal(mix.models[0], model_index("Llama-3.1-8B"));
	assert_int_equal(mix.models[1], model_index("Qwen2.5-7B"));
	assert_true(mix.weights[0] == 0.75 && mix.weights[1] == 0.25);

	assert_int_equal(hs_model_mix_parse(&mix, "GPT-5", models, &err),
			 HS_ENOENT);
	assert_string_equal(hs_error_format(&err, msg, sizeof(msg)),
			    "unknown model \"GPT-5\" (see hetsched models)");
	assert_int_equal(
		hs_model_mix_parse(&mix, "Llama-3.1-8B:0", models, &err),
		HS_EINVAL);
	assert_non_null(strstr(err.text, "bad weight \"0\""));
	assert_int_equal(
		hs_model_mix_parse(&mix, "Llama-3.1-8B:-1", models, &err),
		HS_EINVAL);
	assert_int_equal(
		hs_model_mix_parse(&mix, "Llama-3.1-8B:inf", models, &err),
		HS_EINVAL);
	assert_int_equal(
		hs_model_mix_parse(&mix, "Llama-3.1-8B:nan", models, &err),
		HS_EINVAL);
	assert_int_equal(
		hs_model_mix_parse(&mix, "Llama-3.1-8B:2x", models, &err),
		HS_EINVAL);
	assert_int_equal(hs_model_mix_parse(&mix, "", models, &err), HS_EINVAL);
	assert_int_equal(
		hs_model_mix_parse(&mix, "Llama-3.1-8B,", models, &err),
		HS_EINVAL);
	assert_int_equal(
		hs_model_mix_parse(&mix, "tiny-test,tiny-test", models, &err),
		HS_EEXIST);
}

static void test_mix_limit(void **state)
{
	char json[4096] = "{\"models\": [", spec[512] = "", name[16];
	hs_model_catalog_t *cat;
	hs_model_mix_t mix;
	hs_error_t err;
	int i;

	/* A catalog of 17 small models: one more than a mix holds. */
	for (i = 0; i < 17; i++) {
		snprintf(name, sizeof(name), "m%d", i);
		snprintf(json + strlen(json), sizeof(json) - strlen(json),
			 "%s{\"name\": \"%s\", \"layers\": 1, "
			 "\"d_model\": 8, \"n_heads\": 1, \"n_kv_heads\": 1, "
			 "\"d_ff\": 8, \"vocab\": 8, \"max_context\": 64}",
			 i ? ", " : "", name);
		strcat(spec, i ? ",m" : "m");
		snprintf(spec + strlen(spec), sizeof(spec) - strlen(spec),
			 "%d:%d", i, i + 1);
	}
	strcat(json, "]}");
	assert_int_equal(hs_model_catalog_parse(&cat, json, "<17>", &err), 0);
	assert_int_equal(hs_model_mix_parse(&mix, spec, cat, &err), HS_ERANGE);
	assert_non_null(strstr(err.text, "at most 16 models"));
	*strrchr(spec, ',') = '\0';
	assert_int_equal(hs_model_mix_parse(&mix, spec, cat, &err), 0);
	assert_int_equal(mix.n, 16);
	assert_int_equal(mix.models[15], 15);
	assert_true(fabs(mix.weights[15] - 16.0 / 136) < 1e-12);
	hs_model_catalog_free(cat);
}

static void mix_synth(hs_workload_t *w, const hs_model_mix_t *mix,
		      uint64_t seed, double duration)
{
	hs_synth_opts_t o = {
		.arrival = HS_ARRIVAL_POISSON,
		.rate = 1000,
		.duration_s = duration,
		.ctx = {.kind = HS_DIST_CONST, .a = 100},
		.gen = {.kind = HS_DIST_CONST, .a = 10},
		.mix = mix,
		.seed = seed,
	};
	hs_error_t err;

	assert_int_equal(hs_synth_generate(w, &o, &err), 0);
}

/* 3:1 over 4000 jobs within 5%; the same seed draws the same models. */
static void test_mix_draws(void **state)
{
	hs_trace_opts_t o = opts_for(HS_TRACE_AUTO);
	hs_workload_t w1, w2;
	hs_model_mix_t mix;
	uint32_t llama;
	size_t i, n_llama = 0, diff = 0;
	hs_error_t err;

	assert_int_equal(hs_model_mix_parse(&mix, "Llama-3.1-8B:3,Qwen2.5-7B:1",
					    models, &err),
			 0);
	llama = model_index("Llama-3.1-8B");
	mix_synth(&w1, &mix, 7, 4.0);
	assert_true(w1.n_jobs > 3600 && w1.n_jobs < 4400);
	for (i = 0; i < w1.n_jobs; i++)
		n_llama += w1.jobs[i].model == llama;
	assert_true(fabs((double)n_llama / w1.n_jobs - 0.75) < 0.75 * 0.05);
	hs_workload_release(&w1);

	/* The trace loader draws the same way. */
	o.mix = &mix;
	o.seed = 42;
	load_ok(&w1, AZURE_REAL, &o);
	load_ok(&w2, AZURE_REAL, &o);
	assert_int_equal(w1.n_jobs, w2.n_jobs);
	assert_memory_equal(w1.jobs, w2.jobs, w1.n_jobs * sizeof(*w1.jobs));
	for (i = n_llama = 0; i < w1.n_jobs; i++)
		n_llama += w1.jobs[i].model == llama;
	assert_true(fabs((double)n_llama / w1.n_jobs - 0.75) < 0.75 * 0.05);
	hs_workload_release(&w2);
	o.seed = 43;
	load_ok(&w2, AZURE_REAL, &o);
	for (i = 0; i < w1.n_jobs; i++)
		diff += w1.jobs[i].model != w2.jobs[i].model;
	assert_true(diff > w1.n_jobs / 10);
	hs_workload_release(&w2);
	hs_workload_release(&w1);
}

static void test_dist_parse(void **state)
{
	static const struct {
		const char *spec;
		int kind;
		double a, b;
	} good[] = {
		{"const:512", HS_DIST_CONST, 512, 0},
		{"uniform:1:1000000", HS_DIST_UNIFORM, 1, 1000000},
		{"lognormal:1000:0.8", HS_DIST_LOGNORMAL, 1000, 0.8},
		{"exp:250", HS_DIST_EXP, 250, 0},
	};
	static const struct {
		const char *spec, *text;
	} bad[] = {
		{"", "expected const:N"},
		{"gauss:5", "expected const:N, uniform:LO:HI"},
		{"const", "expected const:N"},
		{"const:", "bad number"},
		{"const:0", "whole N in [1, 1000000]"},
		{"const:1.5", "whole N"},
		{"const:2000000", "whole N in [1, 1000000]"},
		{"const:5:6", "const takes 1 value"},
		{"uniform:5", "uniform takes 2 values, got 1"},
		{"uniform:9:3", "1 <= LO <= HI"},
		{"uniform:0:3", "1 <= LO <= HI"},
		{"lognormal:100:-1", "SIGMA in [0, 10]"},
		{"lognormal:nan:1", "bad number"},
		{"exp:0", "MEAN in [1, 1000000]"},
		{"exp:1e", "bad number"},
	};
	char msg[512];
	hs_error_t err;
	hs_dist_t d;
	size_t i;

	for (i = 0; i < HS_ARRAY_SIZE(good); i++) {
		assert_int_equal(hs_dist_parse(&d, good[i].spec, "--ctx", &err),
				 0);
		assert_int_equal(d.kind, good[i].kind);
		assert_true(d.a == good[i].a && d.b == good[i].b);
	}
	for (i = 0; i < HS_ARRAY_SIZE(bad); i++) {
		assert_int_equal(hs_dist_parse(&d, bad[i].spec, "--gen", &err),
				 HS_EINVAL);
		hs_error_format(&err, msg, sizeof(msg));
		if (strncmp(msg, "--gen: ", 7) || !strstr(msg, bad[i].text))
			fail_msg("\"%s\": \"%s\" lacks \"%s\"", bad[i].spec,
				 msg, bad[i].text);
	}
}

static hs_synth_opts_t synth_opts(void)
{
	hs_synth_opts_t o = {
		.arrival = HS_ARRIVAL_POISSON,
		.rate = 100,
		.duration_s = 200,
		.ctx = {.kind = HS_DIST_CONST, .a = 128},
		.gen = {.kind = HS_DIST_CONST, .a = 16},
		.mix = &one_model,
		.seed = 1,
	};

	return o;
}

/* Mean and coefficient of variation of the inter-arrival times. */
static void gaps(const hs_workload_t *w, double *mean, double *cv)
{
	double s = 0, s2 = 0, g;
	size_t i, n = w->n_jobs - 1;
	int64_t d;

	for (i = 1; i < w->n_jobs; i++) {
		d = w->jobs[i].arrival_ns - w->jobs[i - 1].arrival_ns;
		assert_true(d >= 0);
		g = (double)d / S;
		s += g;
		s2 += g * g;
	}
	*mean = s / n;
	*cv = sqrt(s2 / n - *mean * *mean) / *mean;
}

static void test_synth_poisson(void **state)
{
	hs_synth_opts_t o = synth_opts();
	hs_workload_t w, w2;
	double mean, cv;
	hs_error_t err;

	assert_int_equal(hs_synth_generate(&w, &o, &err), 0);
	assert_true(w.n_jobs > 19000 && w.n_jobs < 21000);
	assert_int_equal(w.jobs[0].arrival_ns, 0);
	assert_true(w.jobs[w.n_jobs - 1].arrival_ns < 200 * S);
	gaps(&w, &mean, &cv);
	assert_true(fabs(mean - 0.01) < 0.01 * 0.05);
	assert_true(fabs(cv - 1.0) < 0.05);
	assert_int_equal(w.jobs[5].ctx_tokens, 128);
	assert_int_equal(w.jobs[5].gen_tokens, 16);
	assert_int_equal(w.jobs[5].model, model_index("Llama-3.1-8B"));

	/* Same seed, same jobs; another seed, other jobs. */
	assert_int_equal(hs_synth_generate(&w2, &o, &err), 0);
	assert_int_equal(w.n_jobs, w2.n_jobs);
	assert_memory_equal(w.jobs, w2.jobs, w.n_jobs * sizeof(*w.jobs));
	hs_workload_release(&w2);
	o.seed = 2;
	assert_int_equal(hs_synth_generate(&w2, &o, &err), 0);
	assert_true(w2.jobs[1].arrival_ns != w.jobs[1].arrival_ns);
	hs_workload_release(&w2);
	/* The token draws do not disturb the arrivals. */
	o.seed = 1;
	o.ctx.kind = HS_DIST_EXP;
	o.ctx.a = 300;
	assert_int_equal(hs_synth_generate(&w2, &o, &err), 0);
	assert_int_equal(w.n_jobs, w2.n_jobs);
	assert_int_equal(w2.jobs[w.n_jobs - 1].arrival_ns,
			 w.jobs[w.n_jobs - 1].arrival_ns);
	hs_workload_release(&w2);
	hs_workload_release(&w);
}

static void test_synth_gamma(void **state)
{
	static const double cvs[] = {0.5, 2.0, 4.0};
	hs_synth_opts_t o = synth_opts();
	double mean, cv;
	hs_workload_t w;
	hs_error_t err;
	size_t i;

	o.arrival = HS_ARRIVAL_GAMMA;
	o.duration_s = 2000; /* bursty gaps need more of them */
	for (i = 0; i < HS_ARRAY_SIZE(cvs); i++) {
		o.gamma_cv = cvs[i];
		o.seed = 10 + i;
		assert_int_equal(hs_synth_generate(&w, &o, &err), 0);
		gaps(&w, &mean, &cv);
		if (fabs(mean - 0.01) > 0.01 * 0.05 ||
		    fabs(cv - cvs[i]) > cvs[i] * 0.10)
			fail_msg("cv %g: mean gap %g s, cv %g", cvs[i], mean,
				 cv);
		hs_workload_release(&w);
	}
}

static int cmp_u32(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;

	return (x > y) - (x < y);
}

/* Every kind of distribution, sampled: bounds, means, medians. */
static void test_dist_sampling(void **state)
{
	hs_synth_opts_t o = synth_opts();
	uint32_t *v, lo = UINT32_MAX, hi = 0;
	double sum = 0;
	hs_workload_t w;
	hs_error_t err;
	size_t i, n;

	assert_int_equal(hs_dist_parse(&o.ctx, "uniform:10:20", "--ctx", &err),
			 0);
	assert_int_equal(hs_dist_parse(&o.gen, "exp:200", "--gen", &err), 0);
	assert_int_equal(hs_synth_generate(&w, &o, &err), 0);
	n = w.n_jobs;
	for (i = 0; i < n; i++) {
		uint32_t c = w.jobs[i].ctx_tokens;

		lo = c < lo ? c : lo;
		hi = c > hi ? c : hi;
		sum += c;
	}
	assert_int_equal(lo, 10);
	assert_int_equal(hi, 20);
	assert_true(fabs(sum / n - 15) < 0.1);
	for (i = 0, sum = 0; i < n; i++)
		sum += w.jobs[i].gen_tokens;
	assert_true(fabs(sum / n - 200) < 200 * 0.03);
	hs_workload_release(&w);

	assert_int_equal(
		hs_dist_parse(&o.ctx, "lognormal:1000:1", "--ctx", &err), 0);
	assert_int_equal(hs_dist_parse(&o.gen, "lognormal:3:3", "--gen", &err),
			 0);
	assert_int_equal(hs_synth_generate(&w, &o, &err), 0);
	n = w.n_jobs;
	v = malloc(n * sizeof(*v));
	assert_non_null(v);
	for (i = 0; i < n; i++)
		v[i] = w.jobs[i].ctx_tokens;
	qsort(v, n, sizeof(*v), cmp_u32);
	assert_true(fabs(v[n / 2] - 1000.0) < 1000 * 0.05);
	/* A wide spread is clamped to [1, 1M], never 0. */
	for (i = 0; i < n; i++)
		v[i] = w.jobs[i].gen_tokens;
	qsort(v, n, sizeof(*v), cmp_u32);
	assert_int_equal(v[0], 1);
	assert_true(v[n - 1] <= 1000000);
	free(v);
	hs_workload_release(&w);
}

static void test_synth_errors(void **state)
{
	hs_synth_opts_t o = synth_opts();
	hs_workload_t w;
	hs_error_t err;

	o.rate = 0;
	assert_int_equal(hs_synth_generate(&w, &o, &err), HS_EINVAL);
	assert_string_equal(err.path, "rate");
	assert_null(w.jobs);
	o = synth_opts();
	o.duration_s = -1;
	assert_int_equal(hs_synth_generate(&w, &o, &err), HS_EINVAL);
	o = synth_opts();
	o.rate = 1e9;
	o.duration_s = 1e3;
	assert_int_equal(hs_synth_generate(&w, &o, &err), HS_ERANGE);
	o = synth_opts();
	o.arrival = HS_ARRIVAL_GAMMA;
	o.gamma_cv = 0;
	assert_int_equal(hs_synth_generate(&w, &o, &err), HS_EINVAL);
	o = synth_opts();
	o.mix = NULL;
	assert_int_equal(hs_synth_generate(&w, &o, &err), HS_EINVAL);
	o = synth_opts();
	o.gen.a = 0;
	assert_int_equal(hs_synth_generate(&w, &o, &err), HS_EINVAL);
	assert_string_equal(err.path, "gen");
}

/* The shipped trace: every row, the published means. */
static void test_azure_real(void **state)
{
	hs_trace_opts_t o = opts_for(HS_TRACE_AUTO);
	double ctx = 0, gen = 0;
	hs_workload_t w;
	size_t i;

	load_ok(&w, AZURE_REAL, &o);
	assert_int_equal(w.format, HS_TRACE_AZURE);
	/* 19,366 rows: `wc -l` says one less, as the last has no newline. */
	assert_int_equal(w.n_jobs, 19366);
	assert_int_equal(w.skipped, 0);
	assert_int_equal(w.jobs[0].arrival_ns, 0);
	assert_job(&w.jobs[0], 0, 374, 44, model_index("Llama-3.1-8B"), 0);
	/* 18:15:46.6805900 to 19:14:08.4025270 */
	assert_int_equal(w.jobs[w.n_jobs - 1].arrival_ns, 3501721937000ll);
	for (i = 0; i < w.n_jobs; i++) {
		if (i)
			assert_true(w.jobs[i].arrival_ns >=
				    w.jobs[i - 1].arrival_ns);
		ctx += w.jobs[i].ctx_tokens;
		gen += w.jobs[i].gen_tokens;
	}
	ctx /= w.n_jobs;
	gen /= w.n_jobs;
	assert_true(fabs(ctx - 1155) < 1155 * 0.01);
	assert_true(fabs(gen - 211) < 211 * 0.01);
	hs_workload_release(&w);
}

/* Every allocation that can fail, fails once: nothing leaks. */
static void alloc_loop(const char *path, const hs_trace_opts_t *o)
{
	hs_workload_t w;
	hs_error_t err;
	bool json = strstr(path, ".jsonl") != NULL;
	long n, nomem = 0;
	int rc;

	for (n = 0;; n++) {
		hs_test_alloc_install(n);
		rc = hs_trace_load(&w, path, o, &err);
		if (rc) {
			/* jansson reports some of its failures as syntax
			 * errors, as the catalog tests also see. */
			assert_true(rc == HS_ENOMEM ||
				    (json && rc == HS_EPARSE));
			assert_int_equal(err.code, rc);
			assert_null(w.jobs);
			nomem += rc == HS_ENOMEM;
		}
		hs_workload_release(&w);
		assert_int_equal(hs_test_alloc_live(), 0);
		hs_test_alloc_uninstall();
		if (!rc)
			break;
	}
	assert_true(nomem > 0);
}

static void test_alloc_failures(void **state)
{
	hs_trace_opts_t o = opts_for(HS_TRACE_AUTO);
	hs_synth_opts_t so = synth_opts();
	hs_workload_t w;
	hs_error_t err;
	long n;
	int rc;

	alloc_loop(DIR "azure-frac.csv", &o);
	alloc_loop(DIR "mooncake.jsonl", &o);
	alloc_loop(DIR "jobs.jsonl", &o);
	so.duration_s = 1;
	for (n = 0;; n++) {
		hs_test_alloc_install(n);
		rc = hs_synth_generate(&w, &so, &err);
		assert_true(rc == 0 || rc == HS_ENOMEM);
		hs_workload_release(&w);
		assert_int_equal(hs_test_alloc_live(), 0);
		hs_test_alloc_uninstall();
		if (!rc)
			break;
	}
	assert_true(n > 2);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_format_names),
		cmocka_unit_test(test_azure_fraction),
		cmocka_unit_test(test_azure_whole_seconds),
		cmocka_unit_test(test_rate_scale),
		cmocka_unit_test(test_mooncake),
		cmocka_unit_test(test_burstgpt),
		cmocka_unit_test(test_jsonl),
		cmocka_unit_test(test_autodetect),
		cmocka_unit_test(test_wrong_format),
		cmocka_unit_test(test_missing_inputs),
		cmocka_unit_test(test_skip_bad_rows),
		cmocka_unit_test(test_max_jobs),
		cmocka_unit_test(test_long_line),
		cmocka_unit_test(test_mix_parse),
		cmocka_unit_test(test_mix_limit),
		cmocka_unit_test(test_mix_draws),
		cmocka_unit_test(test_dist_parse),
		cmocka_unit_test(test_synth_poisson),
		cmocka_unit_test(test_synth_gamma),
		cmocka_unit_test(test_dist_sampling),
		cmocka_unit_test(test_synth_errors),
		cmocka_unit_test(test_azure_real),
		cmocka_unit_test(test_alloc_failures),
	};

	return cmocka_run_group_tests_name("trace", tests, setup, teardown);
}
