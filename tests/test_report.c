/* Benchmark reports: the JSON, the table and the report directory. */
#include <dirent.h>
#include <limits.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <cmocka.h>

#include "report.h"
#include "testutil.h"

#define MODEL "llama<&>\"q'"

static const double cdf0[] = {900, 1500, 2500, 5000, 8000};
static const double cdf1[] = {40, 300, 1200, 2000, 4000};

/*
 * Two runs with figures picked by hand (fifo slower, eft faster and
 * leaner), a model name that needs escaping, sentinels both set and not.
 * Built with the library's allocator, as hs_bench_run does.
 */
static void make_report(hs_bench_report_t *rep)
{
	hs_run_fig_t *r;
	size_t i;

	memset(rep, 0, sizeof(*rep));
	hs__strlcpy(rep->in.trace, "data/traces/a&b <x>.csv",
		    sizeof(rep->in.trace));
	hs__strlcpy(rep->in.format, "azure", sizeof(rep->in.format));
	hs__strlcpy(rep->in.models, MODEL, sizeof(rep->in.models));
	hs__strlcpy(rep->in.fleet, "default", sizeof(rep->in.fleet));
	rep->in.n_jobs = 100;
	rep->in.n_devices = 2;
	rep->in.rate_scale = 2.5;
	rep->in.power_budget_w = 6000;
	rep->in.time_limit_s = 0;
	rep->in.seed = 42;
	rep->in.slo_ttft_ms = 500;
	rep->in.slo_tpot_ms = 0;
	rep->in.offered_output_tokens_per_s = 1800.5;
	hs__strlcpy(rep->in.version, "0.1.0", sizeof(rep->in.version));
	rep->upper_bound_tokens_per_s = 2000;

	rep->runs = hs__calloc(2, sizeof(*rep->runs));
	assert_non_null(rep->runs);
	rep->n_runs = 2;

	r = &rep->runs[0];
	hs__strlcpy(r->policy, "fifo", sizeof(r->policy));
	r->submitted = 100;
	r->completed = 98;
	r->refused = 1;
	r->failed = 1;
	r->duration_s = 50;
	r->output_tokens_per_s = 1234.25;
	r->total_tokens_per_s = 2469;
	r->requests_per_s = 1.96;
	r->ttft_ms = (hs_pct_t){120, 250, 400, 150};
	r->tpot_ms = (hs_pct_t){20, 30, 45, 22};
	r->e2e_ms = (hs_pct_t){2500, 5000, 8000, 3000};
	r->queue_ms = (hs_pct_t){10, 50, 100, 20};
	r->slo_attainment = 0.875;
	r->energy_j = 250000;
	r->joules_per_output_token = 4;
	r->energy_modeled = true;
	r->power_avg_w = 5000;
	r->power_peak_w = 6500;
	r->budget_w = 6000;
	r->power_violations = 3;
	r->max_violation_w = 500;
	r->lp_bound_fraction = 0.75;
	r->sched_ns_per_decision = 1500;
	r->decisions = 400;
	r->perf_mean_rel_error = 0.0625;
	r->power_waits = 7;

	r = &rep->runs[1];
	hs__strlcpy(r->policy, "eft", sizeof(r->policy));
	r->submitted = 100;
	r->completed = 100;
	r->duration_s = 40;
	r->output_tokens_per_s = 1500.25;
	r->total_tokens_per_s = 3000.5;
	r->requests_per_s = 2.5;
	r->ttft_ms = (hs_pct_t){60, 90, 200, 70};
	r->tpot_ms = (hs_pct_t){15, 25, 35, 18};
	r->e2e_ms = (hs_pct_t){1500, 3000, 4000, 1800};
	r->queue_ms = (hs_pct_t){5, 20, 40, 8};
	r->slo_attainment = -1;
	r->energy_j = 180000;
	r->joules_per_output_token = 2.5;
	r->energy_modeled = true;
	r->power_avg_w = 4500;
	r->power_peak_w = 5900;
	r->budget_w = 0;
	r->lp_bound_fraction = -1;
	r->sched_ns_per_decision = 2500;
	r->decisions = 420;
	r->perf_mean_rel_error = 0.125;

	for (i = 0; i < 2; i++) {
		size_t j;

		r = &rep->runs[i];
		r->n_devices = 2;
		r->devices = hs__calloc(2, sizeof(*r->devices));
		r->n_series = 4;
		r->series = hs__calloc(4, sizeof(*r->series));
		r->n_cdf = 5;
		r->cdf_e2e_ms = hs__calloc(5, sizeof(double));
		assert_non_null(r->devices);
		assert_non_null(r->series);
		assert_non_null(r->cdf_e2e_ms);
		hs__strlcpy(r->devices[0].name, "gpu0 <&>",
			    sizeof(r->devices[0].name));
		hs__strlcpy(r->devices[0].profile, "H100",
			    sizeof(r->devices[0].profile));
		r->devices[0].utilisation = 0.75;
		r->devices[0].energy_j = 120000;
		r->devices[0].output_tokens = 40000;
		hs__strlcpy(r->devices[1].name, "npu0",
			    sizeof(r->devices[1].name));
		hs__strlcpy(r->devices[1].profile, "910B",
			    sizeof(r->devices[1].profile));
		r->devices[1].utilisation = 0.5;
		r->devices[1].energy_j = 80000;
		r->devices[1].output_tokens = 21000 + i;
		r->devices[1].failed = i == 0;
		for (j = 0; j < 4; j++) {
			r->series[j].t_s = 10.0 * (double)j;
			r->series[j].power_avg_w =
				4000 + 500.0 * (double)j - 250.0 * (double)i;
			r->series[j].power_max_w =
				r->series[j].power_avg_w + 400;
			r->series[j].budget_w = i ? 0 : 6000;
			r->series[j].tokens_per_s =
				1000 + 100.0 * (double)j + 200.0 * (double)i;
		}
		memcpy(r->cdf_e2e_ms, i ? cdf1 : cdf0, sizeof(cdf0));
	}
}

static void assert_real(const json_t *v, double want)
{
	assert_true(json_is_real(v));
	assert_true(json_real_value(v) == want);
}

static void assert_int(const json_t *v, json_int_t want)
{
	assert_true(json_is_integer(v));
	assert_true(json_integer_value(v) == want);
}

static const json_t *at(const json_t *obj, const char *key)
{
	const json_t *v = json_object_get(obj, key);

	if (!v)
		fail_msg("no key \"%s\"", key);
	return v;
}

static void check_pct(const json_t *p, const hs_pct_t *want)
{
	assert_int_equal(json_object_size(p), 4);
	assert_real(at(p, "p50"), want->p50);
	assert_real(at(p, "p90"), want->p90);
	assert_real(at(p, "p99"), want->p99);
	assert_real(at(p, "mean"), want->mean);
}

static void test_json(void **state)
{
	static const char *const run_keys[] = {
		"policy",
		"jobs",
		"output_tokens_per_s",
		"total_tokens_per_s",
		"requests_per_s",
		"ttft_ms",
		"tpot_ms",
		"e2e_ms",
		"queue_ms",
		"slo_attainment",
		"energy_j",
		"joules_per_output_token",
		"energy_modeled",
		"power_w",
		"power_violations",
		"max_violation_w",
		"lp_bound_fraction",
		"sched_ns_per_decision",
		"devices",
		"duration_s",
		"decisions",
		"replans",
		"perf_mean_rel_error",
		"perf_calibrated_error",
		"power_waits",
		"paused",
	};
	static const char *const input_keys[] = {
		"trace",
		"format",
		"models",
		"fleet",
		"n_jobs",
		"n_devices",
		"rate_scale",
		"power_budget_w",
		"time_limit_s",
		"seed",
		"slo_ttft_ms",
		"slo_tpot_ms",
		"offered_output_tokens_per_s",
		"version",
	};
	hs_bench_report_t rep;
	const json_t *in, *runs, *r, *d, *s;
	json_t *root;
	size_t i;

	make_report(&rep);
	root = hs_bench_report_json(&rep, false);
	assert_non_null(root);
	assert_int_equal(json_object_size(root), 3);

	in = at(root, "inputs");
	assert_int_equal(json_object_size(in), HS_ARRAY_SIZE(input_keys));
	for (i = 0; i < HS_ARRAY_SIZE(input_keys); i++)
		at(in, input_keys[i]);
	assert_string_equal(json_string_value(at(in, "trace")),
			    "data/traces/a&b <x>.csv");
	assert_string_equal(json_string_value(at(in, "models")), MODEL);
	assert_int(at(in, "n_jobs"), 100);
	assert_int(at(in, "n_devices"), 2);
	assert_real(at(in, "rate_scale"), 2.5);
	assert_real(at(in, "power_budget_w"), 6000);
	assert_true(json_is_null(at(in, "time_limit_s")));
	assert_int(at(in, "seed"), 42);
	assert_real(at(in, "slo_ttft_ms"), 500);
	assert_true(json_is_null(at(in, "slo_tpot_ms")));
	assert_real(at(in, "offered_output_tokens_per_s"), 1800.5);
	assert_string_equal(json_string_value(at(in, "version")), "0.1.0");
	assert_real(at(root, "upper_bound_tokens_per_s"), 2000);

	runs = at(root, "runs");
	assert_int_equal(json_array_size(runs), 2);
	for (i = 0; i < 2; i++) {
		size_t k;

		r = json_array_get(runs, i);
		assert_int_equal(json_object_size(r), HS_ARRAY_SIZE(run_keys));
		for (k = 0; k < HS_ARRAY_SIZE(run_keys); k++)
			at(r, run_keys[k]);
		assert_null(json_object_get(r, "series"));
		assert_null(json_object_get(r, "cdf_e2e_ms"));
		check_pct(at(r, "ttft_ms"), &rep.runs[i].ttft_ms);
		check_pct(at(r, "tpot_ms"), &rep.runs[i].tpot_ms);
		check_pct(at(r, "e2e_ms"), &rep.runs[i].e2e_ms);
		check_pct(at(r, "queue_ms"), &rep.runs[i].queue_ms);
	}

	r = json_array_get(runs, 0);
	assert_string_equal(json_string_value(at(r, "policy")), "fifo");
	assert_int_equal(json_object_size(at(r, "jobs")), 4);
	assert_int(at(at(r, "jobs"), "submitted"), 100);
	assert_int(at(at(r, "jobs"), "completed"), 98);
	assert_int(at(at(r, "jobs"), "refused"), 1);
	assert_int(at(at(r, "jobs"), "failed"), 1);
	assert_real(at(r, "output_tokens_per_s"), 1234.25);
	assert_real(at(r, "total_tokens_per_s"), 2469);
	assert_real(at(r, "requests_per_s"), 1.96);
	assert_real(at(r, "slo_attainment"), 0.875);
	assert_real(at(r, "energy_j"), 250000);
	assert_real(at(r, "joules_per_output_token"), 4);
	assert_true(json_is_true(at(r, "energy_modeled")));
	assert_real(at(at(r, "power_w"), "budget"), 6000);
	assert_real(at(at(r, "power_w"), "avg"), 5000);
	assert_real(at(at(r, "power_w"), "peak"), 6500);
	assert_int(at(r, "power_violations"), 3);
	assert_real(at(r, "max_violation_w"), 500);
	assert_real(at(r, "lp_bound_fraction"), 0.75);
	assert_real(at(r, "sched_ns_per_decision"), 1500);
	assert_int(at(r, "decisions"), 400);
	assert_real(at(r, "perf_mean_rel_error"), 0.0625);
	assert_int(at(r, "power_waits"), 7);
	assert_int(at(r, "paused"), 0);
	d = at(r, "devices");
	assert_int_equal(json_array_size(d), 2);
	assert_int_equal(json_object_size(json_array_get(d, 0)), 6);
	assert_string_equal(json_string_value(at(json_array_get(d, 0), "name")),
			    "gpu0 <&>");
	assert_string_equal(
		json_string_value(at(json_array_get(d, 1), "profile")), "910B");
	assert_real(at(json_array_get(d, 0), "utilisation"), 0.75);
	assert_real(at(json_array_get(d, 0), "energy_j"), 120000);
	assert_int(at(json_array_get(d, 0), "output_tokens"), 40000);
	assert_true(json_is_false(at(json_array_get(d, 0), "failed")));
	assert_true(json_is_true(at(json_array_get(d, 1), "failed")));

	/* The sentinels of the second run: no SLO, no bound, no budget. */
	r = json_array_get(runs, 1);
	assert_string_equal(json_string_value(at(r, "policy")), "eft");
	assert_true(json_is_null(at(r, "slo_attainment")));
	assert_true(json_is_null(at(r, "lp_bound_fraction")));
	assert_true(json_is_null(at(at(r, "power_w"), "budget")));
	json_decref(root);

	root = hs_bench_report_json(&rep, true);
	assert_non_null(root);
	for (i = 0; i < 2; i++) {
		size_t k;

		r = json_array_get(at(root, "runs"), i);
		s = at(r, "series");
		assert_int_equal(json_array_size(s), 4);
		for (k = 0; k < 4; k++) {
			const json_t *p = json_array_get(s, k);
			const hs_series_pt_t *want = &rep.runs[i].series[k];

			assert_int_equal(json_object_size(p), 5);
			assert_real(at(p, "t_s"), want->t_s);
			assert_real(at(p, "power_avg_w"), want->power_avg_w);
			assert_real(at(p, "power_max_w"), want->power_max_w);
			if (i)
				assert_true(json_is_null(at(p, "budget_w")));
			else
				assert_real(at(p, "budget_w"), 6000);
			assert_real(at(p, "tokens_per_s"), want->tokens_per_s);
		}
		s = at(r, "cdf_e2e_ms");
		assert_int_equal(json_array_size(s), 5);
		for (k = 0; k < 5; k++)
			assert_real(json_array_get(s, k), (i ? cdf1 : cdf0)[k]);
	}
	json_decref(root);

	/* No bound at all; figures jansson cannot hold are null, not a
	 * failure; a seed beyond JSON's integers is kept whole. */
	rep.upper_bound_tokens_per_s = -1;
	rep.runs[0].perf_mean_rel_error = NAN;
	rep.runs[0].energy_j = INFINITY;
	rep.in.seed = UINT64_MAX;
	root = hs_bench_report_json(&rep, false);
	assert_non_null(root);
	assert_true(json_is_null(at(root, "upper_bound_tokens_per_s")));
	r = json_array_get(at(root, "runs"), 0);
	assert_true(json_is_null(at(r, "perf_mean_rel_error")));
	assert_true(json_is_null(at(r, "energy_j")));
	assert_string_equal(json_string_value(at(at(root, "inputs"), "seed")),
			    "18446744073709551615");
	json_decref(root);
	hs_bench_report_release(&rep);
	assert_null(rep.runs);
	assert_int_equal(rep.n_runs, 0);
}

/* The line of the table that starts with word, or NULL. */
static const char *line_of(const char *text, const char *word)
{
	const char *p = text;
	size_t n = strlen(word);

	while (p && *p) {
		if (!strncmp(p, word, n) && p[n] == ' ')
			return p;
		p = strchr(p, '\n');
		if (p)
			p++;
	}
	return NULL;
}

static bool line_has(const char *line, const char *what)
{
	const char *end = strchr(line, '\n');
	const char *hit = strstr(line, what);

	return hit && (!end || hit < end);
}

static void test_table(void **state)
{
	static const char *const heads[] = {
		"POLICY",
		"DONE/SUBMITTED",
		"OUT TOK/S",
		"REQ/S",
		"TTFT p50/p99 (ms)",
		"TPOT p50 (ms)",
		"E2E p99 (s)",
		"J/TOK",
		"AVG W",
		"PEAK W",
		"VIOL",
		"%BOUND",
		"NS/DEC",
	};
	hs_bench_report_t rep;
	const char *fifo, *eft, *head;
	char *text = NULL;
	size_t len = 0, i;
	FILE *f;

	make_report(&rep);
	f = open_memstream(&text, &len);
	assert_non_null(f);
	/* The table takes no memory of its own. */
	hs_test_alloc_install(0);
	hs_bench_report_table(&rep, f);
	assert_int_equal(hs_test_alloc_count(), 0);
	hs_test_alloc_uninstall();
	fclose(f);

	head = line_of(text, "POLICY");
	assert_non_null(head);
	for (i = 0; i < HS_ARRAY_SIZE(heads); i++)
		assert_true(line_has(head, heads[i]));
	fifo = line_of(text, "fifo");
	eft = line_of(text, "eft");
	assert_non_null(fifo);
	assert_non_null(eft);
	assert_true(line_has(fifo, "98/100"));
	assert_true(line_has(fifo, "1234"));
	assert_true(line_has(fifo, "120/400"));
	assert_true(line_has(fifo, "3 (+500 W)"));
	assert_true(line_has(fifo, "75.0%"));
	assert_true(line_has(eft, "100/100*"));
	assert_true(line_has(eft, "1500*"));
	assert_true(line_has(eft, "60.0/200*"));
	assert_true(line_has(eft, "2.50*"));
	assert_true(line_has(fifo, "1500*")); /* ns per decision */
	assert_false(line_has(fifo, "1234*"));
	/* Right-aligned, the best mark after the figure. */
	assert_int_equal(strstr(head, "NS/DEC") + 6 - head,
			 strstr(fifo, "1500*") + 4 - fifo);

	assert_non_null(strstr(text, "trace   data/traces/a&b <x>.csv"));
	assert_non_null(strstr(text, "budget 6000 W"));
	assert_non_null(strstr(text, "seed 42"));
	assert_non_null(strstr(text, "2000 output tok/s (LP upper bound)"));
	assert_non_null(strstr(text, "MODELED"));
	assert_non_null(strstr(text, "SLO attainment (TTFT <= 500 ms): "
				     "fifo 87.5%"));
	free(text);

	/* Nothing modeled, no SLO: no such lines. */
	rep.runs[0].energy_modeled = rep.runs[1].energy_modeled = false;
	rep.runs[0].slo_attainment = -1;
	f = open_memstream(&text, &len);
	assert_non_null(f);
	hs_bench_report_table(&rep, f);
	fclose(f);
	assert_null(strstr(text, "MODELED"));
	assert_null(strstr(text, "SLO attainment"));
	free(text);
	hs_bench_report_release(&rep);
}

/* ------------------------------------------------------------------------ */
/* A checker for well-formed markup                                         */
/* ------------------------------------------------------------------------ */

static bool name_char(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
	       (c >= '0' && c <= '9') || c == '-' || c == ':' || c == '_';
}

static bool entity_ok(const char *s)
{
	static const char *const named[] = {"&amp;", "&lt;", "&gt;", "&quot;",
					    "&apos;"};
	size_t i;

	for (i = 0; i < HS_ARRAY_SIZE(named); i++)
		if (!strncmp(s, named[i], strlen(named[i])))
			return true;
	if (s[1] != '#')
		return false;
	s += 2;
	if (*s == 'x')
		s++;
	if (!*s || !strchr("0123456789abcdefABCDEF", *s))
		return false;
	while (*s && strchr("0123456789abcdefABCDEF", *s))
		s++;
	return *s == ';';
}

/*
 * NULL when text is well-formed as an XML parser sees tags: each element
 * closed in order (self-closing <x/> allowed), attribute values quoted
 * (and free to hold >), & only in an entity, comments, <!DOCTYPE> and <?..?>
 * skipped. Else what is wrong.
 */
static const char *check_markup(const char *s)
{
	char stack[64][32];
	const char *p, *e;
	size_t depth = 0, n;
	bool closing;

	while (*s) {
		if (*s == '&') {
			if (!entity_ok(s))
				return "bare &";
			s++;
			continue;
		}
		if (*s != '<') {
			s++;
			continue;
		}
		if (!strncmp(s, "<!--", 4)) {
			e = strstr(s + 4, "-->");
			if (!e)
				return "unterminated comment";
			s = e + 3;
			continue;
		}
		if (!strncasecmp(s, "<!DOCTYPE", 9) || s[1] == '?') {
			e = strchr(s, '>');
			if (!e)
				return "unterminated declaration";
			s = e + 1;
			continue;
		}
		closing = s[1] == '/';
		p = s + 1 + closing;
		for (n = 0; name_char(p[n]); n++)
			;
		if (!n || n >= sizeof(stack[0]))
			return "bad tag name";
		if (closing) {
			if (!depth || strlen(stack[depth - 1]) != n ||
			    strncmp(stack[depth - 1], p, n))
				return "mismatched closing tag";
			depth--;
			p += n;
			while (*p == ' ' || *p == '\n')
				p++;
			if (*p != '>')
				return "junk in a closing tag";
			s = p + 1;
			continue;
		}
		if (depth == HS_ARRAY_SIZE(stack))
			return "too deep";
		memcpy(stack[depth], p, n);
		stack[depth][n] = '\0';
		p += n;
		for (;;) {
			while (*p == ' ' || *p == '\n' || *p == '\t')
				p++;
			if (*p == '>') {
				depth++;
				break;
			}
			if (p[0] == '/' && p[1] == '>')
				break;
			if (!name_char(*p))
				return "bad attribute";
			while (name_char(*p))
				p++;
			if (*p != '=')
				return "attribute without a value";
			p++;
			if (*p != '"' && *p != '\'')
				return "unquoted attribute";
			e = strchr(p + 1, *p);
			if (!e)
				return "unterminated attribute";
			if (memchr(p + 1, '<', (size_t)(e - p - 1)))
				return "< in an attribute";
			p = e + 1;
			if (*p != ' ' && *p != '\n' && *p != '>' && *p != '/')
				return "attributes run together";
		}
		s = *p == '>' ? p + 1 : p + 2;
	}
	return depth ? "unclosed element" : NULL;
}

static void test_checker(void **state)
{
	assert_null(check_markup("<!DOCTYPE html><!-- <b> -->"
				 "<a x=\"1>2\" y='3'><b/><c>&amp;&#39;"
				 "&#xfffd;</c></a>"));
	assert_non_null(check_markup("<a><b></a>"));
	assert_non_null(check_markup("<a>"));
	assert_non_null(check_markup("<a x=1></a>"));
	assert_non_null(check_markup("<a x></a>"));
	assert_non_null(check_markup("<p>a & b</p>"));
	assert_non_null(check_markup("<meta charset=\"utf-8\">"));
	assert_non_null(check_markup("</a>"));
}

static size_t count_of(const char *s, const char *what)
{
	size_t n = 0;

	while ((s = strstr(s, what))) {
		n++;
		s++;
	}
	return n;
}

/* Every http(s):// is the SVG namespace: the page loads nothing. */
static void assert_offline(const char *html)
{
	static const char ns[] = "xmlns=\"http://www.w3.org/2000/svg\"";
	const char *p;

	for (p = html; (p = strstr(p, "http")); p++) {
		if (strncmp(p, "http://", 7) && strncmp(p, "https://", 8))
			continue;
		assert_true(p - html >= 7 && !strncmp(p - 7, ns, strlen(ns)));
	}
	assert_null(strstr(html, "<script"));
	assert_null(strstr(html, "<link"));
	assert_null(strstr(html, "<img"));
	assert_null(strstr(html, "url("));
	assert_null(strstr(html, "@import"));
}

static char *path_in(char *buf, size_t size, const char *dir, const char *name)
{
	assert_true((size_t)snprintf(buf, size, "%s/%s", dir, name) < size);
	return buf;
}

static size_t entries(const char *dir)
{
	struct dirent *de;
	size_t n = 0;
	DIR *d = opendir(dir);

	assert_non_null(d);
	while ((de = readdir(d)))
		if (strcmp(de->d_name, ".") && strcmp(de->d_name, ".."))
			n++;
	closedir(d);
	return n;
}

static void remove_report(const char *dir)
{
	char path[PATH_MAX];

	unlink(path_in(path, sizeof(path), dir, "report.json"));
	unlink(path_in(path, sizeof(path), dir, "report.md"));
	unlink(path_in(path, sizeof(path), dir, "report.html"));
}

static void test_write(void **state)
{
	char top[] = "/tmp/hs-report-XXXXXX", dir[PATH_MAX], mid[PATH_MAX];
	char path[PATH_MAX];
	hs_bench_report_t rep;
	json_t *want, *got;
	hs_error_t err;
	char *text;
	const char *bad;
	int rc;

	make_report(&rep);
	assert_non_null(mkdtemp(top));
	/* Parents are made too. */
	snprintf(mid, sizeof(mid), "%s/a", top);
	snprintf(dir, sizeof(dir), "%s/a//b/", top);
	rc = hs_bench_report_write(&rep, dir, &err);
	assert_int_equal(rc, 0);
	assert_int_equal(err.code, 0);
	assert_true(hs_test_exists(
		path_in(path, sizeof(path), dir, "report.json")));
	assert_true(
		hs_test_exists(path_in(path, sizeof(path), dir, "report.md")));
	assert_true(hs_test_exists(
		path_in(path, sizeof(path), dir, "report.html")));
	/* No temporary file left behind. */
	assert_int_equal(entries(dir), 3);
	/* Writing again replaces the report. */
	assert_int_equal(hs_bench_report_write(&rep, dir, &err), 0);
	assert_int_equal(entries(dir), 3);

	/* report.json holds exactly the figures. */
	got = json_load_file(path_in(path, sizeof(path), dir, "report.json"), 0,
			     NULL);
	assert_non_null(got);
	want = hs_bench_report_json(&rep, true);
	assert_non_null(want);
	assert_true(json_equal(got, want));
	assert_real(
		at(json_array_get(at(got, "runs"), 1), "output_tokens_per_s"),
		1500.25);
	json_decref(got);
	json_decref(want);

	text = hs_test_read_file(path_in(path, sizeof(path), dir, "report.md"));
	assert_non_null(text);
	assert_non_null(strstr(text, "| fifo | 98/100 |"));
	assert_non_null(strstr(text, "| eft | **100/100** |"));
	assert_non_null(strstr(text, "llama\\<\\&\\>"));
	assert_non_null(strstr(text, "gpu0 \\<\\&\\>"));
	assert_null(strstr(text, MODEL));
	assert_non_null(strstr(text, "modeled"));
	assert_non_null(strstr(text, "### eft"));
	free(text);

	text = hs_test_read_file(
		path_in(path, sizeof(path), dir, "report.html"));
	assert_non_null(text);
	bad = check_markup(text);
	if (bad)
		fail_msg("report.html: %s", bad);
	assert_true(count_of(text, "<svg") >= 5);
	assert_offline(text);
	assert_non_null(strstr(text, "llama&lt;&amp;&gt;&quot;q&#39;"));
	assert_non_null(strstr(text, "a&amp;b &lt;x&gt;.csv"));
	assert_non_null(strstr(text, "gpu0 &lt;&amp;&gt;"));
	assert_null(strstr(text, "<&>"));
	assert_non_null(strstr(text, "<strong>modeled</strong>"));
	assert_non_null(strstr(text, "<style>"));
	free(text);

	remove_report(dir);
	rmdir(dir);
	rmdir(mid);

	/* Bytes that are not UTF-8 still give JSON and a page XML takes. */
	hs__strlcpy(rep.in.trace, "bad\xff\xfe\x01name.csv",
		    sizeof(rep.in.trace));
	assert_int_equal(hs_bench_report_write(&rep, top, &err), 0);
	got = json_load_file(path_in(path, sizeof(path), top, "report.json"), 0,
			     NULL);
	assert_non_null(got);
	assert_string_equal(json_string_value(at(at(got, "inputs"), "trace")),
			    "bad??\x01name.csv");
	json_decref(got);
	text = hs_test_read_file(
		path_in(path, sizeof(path), top, "report.html"));
	assert_non_null(text);
	assert_null(check_markup(text));
	assert_null(strchr(text, '\x01'));
	assert_null(strchr(text, '\xff'));
	free(text);
	remove_report(top);
	rmdir(top);
	hs_bench_report_release(&rep);
}

static void test_write_errors(void **state)
{
	char top[] = "/tmp/hs-report-XXXXXX", path[PATH_MAX];
	hs_bench_report_t rep;
	hs_error_t err;
	FILE *f;

	make_report(&rep);
	assert_int_equal(hs_bench_report_write(&rep, "/proc/hs-nope", &err),
			 HS_EIO);
	assert_int_equal(err.code, HS_EIO);
	assert_non_null(strstr(err.source, "/proc/hs-nope"));
	assert_true(strlen(err.text) > 0);

	/* A file where a directory should be. */
	assert_non_null(mkdtemp(top));
	f = fopen(path_in(path, sizeof(path), top, "file"), "w");
	assert_non_null(f);
	fclose(f);
	snprintf(path, sizeof(path), "%s/file/out", top);
	assert_int_equal(hs_bench_report_write(&rep, path, &err), HS_EIO);
	assert_int_equal(err.code, HS_EIO);
	assert_non_null(strstr(err.source, top));
	unlink(path_in(path, sizeof(path), top, "file"));
	rmdir(top);
	hs_bench_report_release(&rep);
}

/* No runs at all, then one run with one bin and one latency: files still
 * come out, well-formed, and nothing is ranked against itself. */
static void test_degenerate(void **state)
{
	char top[] = "/tmp/hs-report-XXXXXX", path[PATH_MAX];
	hs_bench_report_t rep = {0}, full;
	char *text = NULL;
	size_t len = 0;
	hs_error_t err;
	json_t *root;
	FILE *f;

	rep.upper_bound_tokens_per_s = -1;
	root = hs_bench_report_json(&rep, true);
	assert_non_null(root);
	assert_int_equal(json_array_size(at(root, "runs")), 0);
	assert_true(json_is_null(at(root, "upper_bound_tokens_per_s")));
	assert_true(json_is_null(at(at(root, "inputs"), "power_budget_w")));
	json_decref(root);
	assert_non_null(mkdtemp(top));
	assert_int_equal(hs_bench_report_write(&rep, top, &err), 0);
	text = hs_test_read_file(
		path_in(path, sizeof(path), top, "report.html"));
	assert_non_null(text);
	assert_null(check_markup(text));
	assert_int_equal(count_of(text, "<svg"), 5);
	assert_non_null(strstr(text, "no data"));
	free(text);
	remove_report(top);

	make_report(&full);
	rep.runs = full.runs;
	rep.n_runs = 1;
	rep.runs[0].n_series = 1;
	rep.runs[0].n_cdf = 1;
	rep.runs[0].completed = 0;
	f = open_memstream(&text, &len);
	assert_non_null(f);
	hs_bench_report_table(&rep, f);
	fclose(f);
	assert_null(strchr(text, '*'));
	assert_non_null(strstr(text, "bound   none"));
	/* Latencies of nothing completed are not figures. */
	assert_non_null(strstr(text, "-/-"));
	free(text);
	assert_int_equal(hs_bench_report_write(&rep, top, &err), 0);
	text = hs_test_read_file(
		path_in(path, sizeof(path), top, "report.html"));
	assert_non_null(text);
	assert_null(check_markup(text));
	assert_non_null(strstr(text, "<circle"));
	free(text);
	remove_report(top);
	rmdir(top);
	rep.n_runs = 0;
	hs_bench_report_release(&full);
}

static void test_alloc_failures(void **state)
{
	char top[] = "/tmp/hs-report-XXXXXX", path[PATH_MAX];
	hs_bench_report_t rep;
	hs_error_t err;
	json_t *j;
	long n, nomem = 0;
	int rc;

	make_report(&rep);
	for (n = 0;; n++) {
		hs_test_alloc_install(n);
		j = hs_bench_report_json(&rep, true);
		nomem += !j;
		json_decref(j);
		assert_int_equal(hs_test_alloc_live(), 0);
		hs_test_alloc_uninstall();
		if (j)
			break;
	}
	assert_true(nomem > 100);

	/* Out of memory leaves the directory as it was. */
	assert_non_null(mkdtemp(top));
	nomem = 0;
	for (n = 0;; n++) {
		hs_test_alloc_install(n);
		rc = hs_bench_report_write(&rep, top, &err);
		assert_int_equal(hs_test_alloc_live(), 0);
		hs_test_alloc_uninstall();
		if (!rc)
			break;
		nomem++;
		assert_int_equal(rc, HS_ENOMEM);
		assert_int_equal(err.code, HS_ENOMEM);
		assert_int_equal(entries(top), 0);
	}
	assert_true(nomem > 100);
	assert_true(hs_test_exists(
		path_in(path, sizeof(path), top, "report.html")));
	remove_report(top);
	rmdir(top);
	hs_bench_report_release(&rep);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_json),
		cmocka_unit_test(test_table),
		cmocka_unit_test(test_checker),
		cmocka_unit_test(test_write),
		cmocka_unit_test(test_write_errors),
		cmocka_unit_test(test_degenerate),
		cmocka_unit_test(test_alloc_failures),
	};

	return cmocka_run_group_tests_name("report", tests, NULL, NULL);
}
