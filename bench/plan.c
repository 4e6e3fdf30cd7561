/*
 * Capacity planning: scenario loading, per-device capacity measured with
 * the scheduler core in simulation, the fleet MILP (GLPK), validation.
 */
#include <glpk.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "plan.h"

/* Context buckets of trace demand: a class per (model, bucket). Wider
 * than the core's so that a probe's mean stands for its class. */
static const uint32_t bucket_edges[] = {512, 2048, 8192, UINT32_MAX};

#define VALIDATE_DEFAULT_S 60
/* Fewer jobs than this in a probe and its attainment is noise: low rates
 * get longer probes. */
#define MIN_PROBE_JOBS 32

/* ------------------------------------------------------------------------ */
/* Scenario                                                                 */
/* ------------------------------------------------------------------------ */

static int load_catalog(hs__jv_t *jv, const json_t *arr, hs_plan_scenario_t *sc,
			const hs_profile_catalog_t *profiles)
{
	static const char *const keys[] = {"profile",	      "price_usd",
					   "lifetime_years",  "hourly_usd",
					   "host_overhead_w", NULL};
	size_t i, k;
	int rc;

	if ((rc = hs__jv_expect_array(jv, arr)))
		return rc;
	if (!json_array_size(arr) || json_array_size(arr) > HS_PLAN_MAX_TYPES)
		return hs__error_set(jv->err, HS_ERANGE, jv->source, 0,
				     jv->path, "expected 1 to %d device types",
				     HS_PLAN_MAX_TYPES);
	for (i = 0; i < json_array_size(arr); i++) {
		const json_t *o = json_array_get(arr, i);
		hs_plan_type_t *t = &sc->types[i];
		const hs_profile_t *p;
		char name[64];
		hs__jv_t c, f;

		hs__jv_child_index(&c, jv, i);
		if ((rc = hs__jv_expect_object(&c, o)) ||
		    (rc = hs__jv_check_keys(&c, o, keys)) ||
		    (rc = hs__jv_string(&c, o, "profile", true, name,
					sizeof(name))))
			return rc;
		hs__jv_child_key(&f, &c, "profile");
		p = hs_profile_catalog_find(profiles, name);
		if (!p)
			return hs__error_set(jv->err, HS_ENOENT, jv->source, 0,
					     f.path,
					     "unknown device profile \"%s\" "
					     "(see data/devices.json)",
					     name);
		for (k = 0; k < i; k++)
			if (!strcmp(sc->types[k].profile.name, p->name))
				return hs__error_set(jv->err, HS_EEXIST,
						     jv->source, 0, f.path,
						     "device type \"%s\" "
						     "listed twice",
						     p->name);
		t->profile = *p;
		t->price_usd = p->price_usd;
		if ((rc = hs__jv_double(&c, o, "price_usd", false,
					&t->price_usd, 0, 1e8)) ||
		    (rc = hs__jv_double(&c, o, "lifetime_years", false,
					&t->lifetime_years, 0.01, 50)) ||
		    (rc = hs__jv_double(&c, o, "hourly_usd", false,
					&t->hourly_usd, 1e-6, 1e5)) ||
		    (rc = hs__jv_double(&c, o, "host_overhead_w", false,
					&t->host_overhead_w, 0, 1e5)))
			return rc;
		if ((t->hourly_usd > 0) == (t->lifetime_years > 0))
			return hs__error_set(jv->err, HS_EINVAL, jv->source, 0,
					     c.path,
					     "give either \"lifetime_years\" "
					     "(bought) or \"hourly_usd\" "
					     "(rented)");
		if (t->lifetime_years > 0 && t->price_usd <= 0)
			return hs__error_set(jv->err, HS_EINVAL, jv->source, 0,
					     c.path,
					     "\"%s\" has no price: give "
					     "\"price_usd\"",
					     p->name);
		t->capital_usd_per_h =
			t->hourly_usd > 0
				? t->hourly_usd
				: t->price_usd / (t->lifetime_years * 8760.0);
	}
	sc->n_types = i;
	return 0;
}

static int load_sites(hs__jv_t *jv, const json_t *arr, hs_plan_scenario_t *sc)
{
	static const char *const keys[] = {"name",   "electricity_usd_per_kwh",
					   "pue",    "budget_kw",
					   "rtt_ms", "allowed",
					   NULL};
	size_t i, j, k;
	int rc;

	if ((rc = hs__jv_expect_array(jv, arr)))
		return rc;
	if (!json_array_size(arr) || json_array_size(arr) > HS_PLAN_MAX_SITES)
		return hs__error_set(jv->err, HS_ERANGE, jv->source, 0,
				     jv->path, "expected 1 to %d sites",
				     HS_PLAN_MAX_SITES);
	for (i = 0; i < json_array_size(arr); i++) {
		const json_t *o = json_array_get(arr, i), *al;
		hs_plan_site_t *s = &sc->sites[i];
		hs__jv_t c, a, e;

		hs__jv_child_index(&c, jv, i);
		s->pue = 1;
		if ((rc = hs__jv_expect_object(&c, o)) ||
		    (rc = hs__jv_check_keys(&c, o, keys)) ||
		    (rc = hs__jv_string(&c, o, "name", true, s->name,
					sizeof(s->name))) ||
		    (rc = hs__jv_double(&c, o, "electricity_usd_per_kwh", true,
					&s->usd_per_kwh, 0, 10)) ||
		    (rc = hs__jv_double(&c, o, "pue", false, &s->pue, 1, 5)) ||
		    (rc = hs__jv_double(&c, o, "budget_kw", true, &s->budget_kw,
					1e-3, 1e7)) ||
		    (rc = hs__jv_double(&c, o, "rtt_ms", false, &s->rtt_ms, 0,
					1e5)))
			return rc;
		for (k = 0; k < i; k++)
			if (!strcmp(sc->sites[k].name, s->name)) {
				hs__jv_child_key(&e, &c, "name");
				return hs__error_set(jv->err, HS_EEXIST,
						     jv->source, 0, e.path,
						     "site \"%s\" listed twice",
						     s->name);
			}
		al = json_object_get(o, "allowed");
		if (!al) {
			/* No list: every type of the catalog may go there. */
			for (k = 0; k < HS_PLAN_MAX_TYPES; k++)
				s->allowed[k] = true;
			continue;
		}
		hs__jv_child_key(&a, &c, "allowed");
		if ((rc = hs__jv_expect_array(&a, al)))
			return rc;
		for (j = 0; j < json_array_size(al); j++) {
			const json_t *v = json_array_get(al, j);

			hs__jv_child_index(&e, &a, j);
			if (!json_is_string(v))
				return hs__error_set(jv->err, HS_ETYPE,
						     jv->source, 0, e.path,
						     "expected a string");
			for (k = 0; k < sc->n_types; k++)
				if (!strcasecmp(sc->types[k].profile.name,
						json_string_value(v)))
					break;
			if (k == sc->n_types)
				return hs__error_set(
					jv->err, HS_ENOENT, jv->source, 0,
					e.path,
					"device type \"%s\" is not in the "
					"catalog",
					json_string_value(v));
			s->allowed[k] = true;
		}
	}
	sc->n_sites = i;
	return 0;
}

static size_t bucket_of(uint32_t ctx)
{
	size_t b = 0;

	while (ctx > bucket_edges[b])
		b++;
	return b;
}

/* Which class a job of the trace falls in (model slot x bucket), or -1. */
static int class_slot(const hs_plan_scenario_t *sc, const hs_sim_job_t *j)
{
	size_t m;

	for (m = 0; m < sc->mixv.n; m++)
		if (sc->mixv.models[m] == j->model)
			return (int)(m * HS_ARRAY_SIZE(bucket_edges) +
				     bucket_of(j->ctx_tokens));
	return -1;
}

/*
 * Classes from a loaded trace workload: (model, bucket) with the mean
 * ctx/gen. A fleet must carry the busy part of the day, not the mean: each
 * class's rate is its highest over windows of PEAK_WINDOW of the span.
 */
#define PEAK_WINDOW 12 /* span / 12: 5 minutes of an hour */
#define PEAK_SLIDE 4 /* windows start every window / 4 */

static int classes_from_work(hs_plan_scenario_t *sc,
			     const hs_model_catalog_t *models, hs_error_t *err)
{
	enum { NB = HS_ARRAY_SIZE(bucket_edges), NS = 16 * NB };
	const hs_workload_t *w = &sc->work;
	double span, win, n[NS] = {0}, ctx[NS] = {0}, gen[NS] = {0},
			  peak[NS] = {0};
	size_t i, lo = 0, k, slot, step;
	int64_t start;

	if (w->n_jobs < 2)
		return hs__error_set(err, HS_EINVAL, sc->trace, 0, NULL,
				     "the trace needs at least 2 jobs");
	span = (double)w->jobs[w->n_jobs - 1].arrival_ns / 1e9;
	if (span <= 0)
		return hs__error_set(err, HS_EINVAL, sc->trace, 0, NULL,
				     "every job arrives at once");
	for (i = 0; i < w->n_jobs; i++) {
		int c = class_slot(sc, &w->jobs[i]);

		if (c < 0)
			continue;
		n[c]++;
		ctx[c] += w->jobs[i].ctx_tokens;
		gen[c] += w->jobs[i].gen_tokens;
		sc->mean_output_tokens_per_s += w->jobs[i].gen_tokens;
	}
	sc->mean_output_tokens_per_s /= span;
	win = span / PEAK_WINDOW;
	for (step = 0; step <= (PEAK_WINDOW - 1) * PEAK_SLIDE; step++) {
		double cnt[NS] = {0};

		start = (int64_t)(win * 1e9 * (double)step / PEAK_SLIDE);
		while (lo < w->n_jobs && w->jobs[lo].arrival_ns < start)
			lo++;
		for (i = lo;
		     i < w->n_jobs &&
		     w->jobs[i].arrival_ns < start + (int64_t)(win * 1e9);
		     i++) {
			int c = class_slot(sc, &w->jobs[i]);

			if (c >= 0)
				cnt[c]++;
		}
		for (slot = 0; slot < NS; slot++)
			peak[slot] = fmax(peak[slot], cnt[slot] / win);
	}
	k = 0;
	for (slot = 0; slot < NS && slot < sc->mixv.n * NB; slot++) {
		hs_plan_class_t *c = &sc->classes[k];
		size_t m = slot / NB, b = slot % NB;
		const hs_model_t *mod;

		if (!n[slot])
			continue;
		if (k == HS_PLAN_MAX_CLASSES)
			return hs__error_set(
				err, HS_ERANGE, sc->source, 0, "$.demand",
				"over %d demand classes", HS_PLAN_MAX_CLASSES);
		mod = hs_model_catalog_get(models, sc->mixv.models[m]);
		c->model = sc->mixv.models[m];
		c->jobs_per_s = fmax(peak[slot], n[slot] / span);
		c->mean_ctx = ctx[slot] / n[slot];
		c->mean_gen = gen[slot] / n[slot];
		c->ctx.kind = HS_DIST_CONST;
		c->ctx.a = round(c->mean_ctx);
		c->gen.kind = HS_DIST_CONST;
		c->gen.a = round(c->mean_gen);
		if (bucket_edges[b] == UINT32_MAX)
			snprintf(c->name, sizeof(c->name), "%s ctx>%u",
				 mod->name, bucket_edges[b - 1]);
		else
			snprintf(c->name, sizeof(c->name), "%s ctx<=%u",
				 mod->name, bucket_edges[b]);
		k++;
	}
	sc->n_classes = k;
	return 0;
}

static double dist_mean(const hs_dist_t *d)
{
	switch (d->kind) {
	case HS_DIST_CONST:
		return d->a;
	case HS_DIST_UNIFORM:
		return (d->a + d->b) / 2;
	case HS_DIST_LOGNORMAL:
		return d->a * exp(d->b * d->b / 2);
	case HS_DIST_EXP:
		return d->a;
	}
	return d->a;
}

static int cmp_job(const void *a, const void *b)
{
	const hs_sim_job_t *x = a, *y = b;

	return (x->arrival_ns > y->arrival_ns) -
	       (x->arrival_ns < y->arrival_ns);
}

/* The validation workload of a rates demand: each class on its own
 * Poisson stream, merged. */
static int work_from_rates(hs_plan_scenario_t *sc, double duration_s,
			   hs_error_t *err)
{
	size_t i, cap = 0;
	int rc;

	for (i = 0; i < sc->n_classes; i++) {
		const hs_plan_class_t *c = &sc->classes[i];
		hs_model_mix_t mix = {
			.models = {c->model}, .weights = {1}, .n = 1};
		hs_synth_opts_t so = {.arrival = HS_ARRIVAL_POISSON,
				      .rate = c->jobs_per_s,
				      .duration_s = duration_s,
				      .ctx = c->ctx,
				      .gen = c->gen,
				      .mix = &mix,
				      .seed = 7 + i};
		hs_workload_t w;

		if ((rc = hs_synth_generate(&w, &so, err)))
			return rc;
		if (hs__grow((void **)&sc->work.jobs, &cap,
			     sc->work.n_jobs + w.n_jobs,
			     sizeof(hs_sim_job_t))) {
			hs_workload_release(&w);
			return hs__error_set(err, HS_ENOMEM, NULL, 0, NULL,
					     "out of memory");
		}
		memcpy(sc->work.jobs + sc->work.n_jobs, w.jobs,
		       w.n_jobs * sizeof(hs_sim_job_t));
		sc->work.n_jobs += w.n_jobs;
		hs_workload_release(&w);
	}
	qsort(sc->work.jobs, sc->work.n_jobs, sizeof(hs_sim_job_t), cmp_job);
	return 0;
}

static int load_rates(hs__jv_t *jv, const json_t *arr, hs_plan_scenario_t *sc,
		      const hs_model_catalog_t *models)
{
	static const char *const keys[] = {"model", "jobs_per_s", "ctx", "gen",
					   NULL};
	size_t i, k;
	int rc;

	if ((rc = hs__jv_expect_array(jv, arr)))
		return rc;
	if (!json_array_size(arr) || json_array_size(arr) > HS_PLAN_MAX_CLASSES)
		return hs__error_set(jv->err, HS_ERANGE, jv->source, 0,
				     jv->path, "expected 1 to %d rates",
				     HS_PLAN_MAX_CLASSES);
	for (i = 0; i < json_array_size(arr); i++) {
		const json_t *o = json_array_get(arr, i);
		hs_plan_class_t *c = &sc->classes[i];
		char model[64], ctx[64] = "lognormal:800:1",
				gen[64] = "lognormal:150:0.8";
		const hs_model_t *m;
		hs__jv_t e, f;
		hs_error_t derr;

		hs__jv_child_index(&e, jv, i);
		if ((rc = hs__jv_expect_object(&e, o)) ||
		    (rc = hs__jv_check_keys(&e, o, keys)) ||
		    (rc = hs__jv_string(&e, o, "model", true, model,
					sizeof(model))) ||
		    (rc = hs__jv_double(&e, o, "jobs_per_s", true,
					&c->jobs_per_s, 1e-6, 1e7)) ||
		    (rc = hs__jv_string(&e, o, "ctx", false, ctx,
					sizeof(ctx))) ||
		    (rc = hs__jv_string(&e, o, "gen", false, gen, sizeof(gen))))
			return rc;
		hs__jv_child_key(&f, &e, "model");
		m = hs_model_catalog_find(models, model);
		if (!m)
			return hs__error_set(jv->err, HS_ENOENT, jv->source, 0,
					     f.path,
					     "unknown model \"%s\" (see "
					     "data/models.json)",
					     model);
		for (k = 0; k < hs_model_catalog_count(models); k++)
			if (hs_model_catalog_get(models, k) == m)
				c->model = (uint32_t)k;
		memset(&derr, 0, sizeof(derr));
		hs__jv_child_key(&f, &e, "ctx");
		if (hs_dist_parse(&c->ctx, ctx, "ctx", &derr))
			return hs__error_set(jv->err, HS_EINVAL, jv->source, 0,
					     f.path, "%s", derr.text);
		hs__jv_child_key(&f, &e, "gen");
		if (hs_dist_parse(&c->gen, gen, "gen", &derr))
			return hs__error_set(jv->err, HS_EINVAL, jv->source, 0,
					     f.path, "%s", derr.text);
		c->mean_ctx = dist_mean(&c->ctx);
		c->mean_gen = dist_mean(&c->gen);
		snprintf(c->name, sizeof(c->name), "%s #%zu", m->name, i);
	}
	sc->n_classes = i;
	return 0;
}

static int load_demand(hs__jv_t *jv, const json_t *o, hs_plan_scenario_t *sc,
		       const char *data_dir, const hs_model_catalog_t *models)
{
	static const char *const keys[] = {"trace",	 "model",  "mix",
					   "rate_scale", "growth", "rates",
					   "duration_s", NULL};
	const json_t *rates;
	char trace[384] = "", model[64] = "", mix[256] = "";
	double duration = VALIDATE_DEFAULT_S;
	size_t i;
	int rc;

	sc->rate_scale = 1;
	sc->growth = 1;
	if ((rc = hs__jv_expect_object(jv, o)) ||
	    (rc = hs__jv_check_keys(jv, o, keys)) ||
	    (rc = hs__jv_string(jv, o, "trace", false, trace, sizeof(trace))) ||
	    (rc = hs__jv_string(jv, o, "model", false, model, sizeof(model))) ||
	    (rc = hs__jv_string(jv, o, "mix", false, mix, sizeof(mix))) ||
	    (rc = hs__jv_double(jv, o, "rate_scale", false, &sc->rate_scale,
				1e-6, 1e6)) ||
	    (rc = hs__jv_double(jv, o, "growth", false, &sc->growth, 1e-3,
				1e3)) ||
	    (rc = hs__jv_double(jv, o, "duration_s", false, &duration, 1, 1e5)))
		return rc;
	rates = json_object_get(o, "rates");
	if (!!trace[0] == !!rates)
		return hs__error_set(jv->err, HS_EINVAL, jv->source, 0,
				     jv->path,
				     "give either \"trace\" or \"rates\"");
	if (rates) {
		hs__jv_t r;

		if (model[0] || mix[0])
			return hs__error_set(jv->err, HS_EINVAL, jv->source, 0,
					     jv->path,
					     "\"model\"/\"mix\" go with "
					     "\"trace\"; \"rates\" name "
					     "their models");
		hs__jv_child_key(&r, jv, "rates");
		if ((rc = load_rates(&r, rates, sc, models)))
			return rc;
		for (i = 0; i < sc->n_classes; i++) {
			sc->classes[i].jobs_per_s *= sc->growth;
			sc->mean_output_tokens_per_s +=
				sc->classes[i].jobs_per_s *
				sc->classes[i].mean_gen;
		}
		return work_from_rates(sc, duration, jv->err);
	}
	if (!!model[0] == !!mix[0])
		return hs__error_set(jv->err, HS_EINVAL, jv->source, 0,
				     jv->path,
				     "a trace needs \"model\" or \"mix\" "
				     "(one of them)");
	if (trace[0] == '/')
		hs__strlcpy(sc->trace, trace, sizeof(sc->trace));
	else
		snprintf(sc->trace, sizeof(sc->trace), "%s/%s", data_dir,
			 trace);
	hs__strlcpy(sc->mix, model[0] ? model : mix, sizeof(sc->mix));
	{
		hs_error_t merr;
		hs__jv_t f;

		memset(&merr, 0, sizeof(merr));
		hs__jv_child_key(&f, jv, model[0] ? "model" : "mix");
		if (hs_model_mix_parse(&sc->mixv, sc->mix, models, &merr))
			return hs__error_set(jv->err, HS_ENOENT, jv->source, 0,
					     f.path, "%s", merr.text);
	}
	{
		hs_trace_opts_t to = {.format = HS_TRACE_AUTO,
				      .models = models,
				      .mix = &sc->mixv,
				      .rate_scale = sc->rate_scale * sc->growth,
				      .seed = 1};

		if ((rc = hs_trace_load(&sc->work, sc->trace, &to, jv->err)))
			return rc;
	}
	return classes_from_work(sc, models, jv->err);
}

static int load_slo(hs__jv_t *jv, const json_t *o, hs_plan_scenario_t *sc)
{
	static const char *const keys[] = {"ttft_ms", "tpot_ms", "attainment",
					   NULL};
	int rc;

	sc->slo_attainment = 0.95;
	if ((rc = hs__jv_expect_object(jv, o)) ||
	    (rc = hs__jv_check_keys(jv, o, keys)) ||
	    (rc = hs__jv_double(jv, o, "ttft_ms", true, &sc->slo_ttft_ms, 1e-3,
				1e7)) ||
	    (rc = hs__jv_double(jv, o, "tpot_ms", true, &sc->slo_tpot_ms, 1e-3,
				1e7)) ||
	    (rc = hs__jv_double(jv, o, "attainment", false, &sc->slo_attainment,
				0.01, 1)))
		return rc;
	return 0;
}

/* obj[key], required, with its child context. */
static const json_t *section(hs__jv_t *jv, hs__jv_t *child, const json_t *obj,
			     const char *key)
{
	const json_t *v = json_object_get(obj, key);

	hs__jv_child_key(child, jv, key);
	if (!v)
		hs__error_set(jv->err, HS_EMISSING, jv->source, 0, jv->path,
			      "missing required key \"%s\"", key);
	return v;
}

int hs_plan_scenario_load(hs_plan_scenario_t *sc, const char *path,
			  const char *data_dir,
			  const hs_profile_catalog_t *profiles,
			  const hs_model_catalog_t *models, hs_error_t *err)
{
	static const char *const keys[] = {"demand", "catalog", "sites",
					   "slo",    "comment", NULL};
	hs__jv_t jv = {.source = path, .err = err, .path = "$"}, c;
	const json_t *v;
	json_t *root;
	int rc;

	memset(sc, 0, sizeof(*sc));
	hs__strlcpy(sc->source, path, sizeof(sc->source));
	root = hs__json_load_file(path, err);
	if (!root)
		return err ? err->code : HS_EPARSE;
	if ((rc = hs__jv_expect_object(&jv, root)) ||
	    (rc = hs__jv_check_keys(&jv, root, keys)))
		goto out;
	rc = HS_EMISSING;
	if (!(v = section(&jv, &c, root, "slo")) || (rc = load_slo(&c, v, sc)))
		goto out;
	rc = HS_EMISSING;
	if (!(v = section(&jv, &c, root, "catalog")) ||
	    (rc = load_catalog(&c, v, sc, profiles)))
		goto out;
	rc = HS_EMISSING;
	if (!(v = section(&jv, &c, root, "sites")) ||
	    (rc = load_sites(&c, v, sc)))
		goto out;
	rc = HS_EMISSING;
	if (!(v = section(&jv, &c, root, "demand")) ||
	    (rc = load_demand(&c, v, sc, data_dir, models)))
		goto out;
	rc = 0;
out:
	json_decref(root);
	if (rc)
		hs_plan_scenario_release(sc);
	return rc;
}

void hs_plan_scenario_release(hs_plan_scenario_t *sc)
{
	hs_workload_release(&sc->work);
	memset(&sc->work, 0, sizeof(sc->work));
}

int hs_plan_scenario_check(const char *path, const char *data_dir,
			   hs_error_t *err)
{
	hs_model_catalog_t *mc = NULL;
	hs_profile_catalog_t *pc = NULL;
	hs_plan_scenario_t *sc = hs__malloc(sizeof(*sc));
	char cat[600];
	int rc;

	if (!sc)
		return hs__error_set(err, HS_ENOMEM, NULL, 0, NULL,
				     "out of memory");
	snprintf(cat, sizeof(cat), "%s/models.json", data_dir);
	if ((rc = hs_model_catalog_load(&mc, cat, err)))
		goto out;
	snprintf(cat, sizeof(cat), "%s/devices.json", data_dir);
	if ((rc = hs_profile_catalog_load(&pc, cat, err)))
		goto out;
	if (!(rc = hs_plan_scenario_load(sc, path, data_dir, pc, mc, err)))
		hs_plan_scenario_release(sc);
out:
	hs_profile_catalog_free(pc);
	hs_model_catalog_free(mc);
	hs__free(sc);
	return rc;
}

/* ------------------------------------------------------------------------ */
/* MILP                                                                     */
/* ------------------------------------------------------------------------ */

enum objective { MIN_COST, MIN_SITE_POWER, MIN_TOTAL_POWER };

/*
 * Build and solve. relax: the site whose budget is lifted (and whose power
 * is the objective) for MIN_SITE_POWER; every budget lifted for
 * MIN_TOTAL_POWER. Returns 0, HS_EINFEASIBLE or HS_ESOLVER; *obj the
 * optimum.
 */
static int solve(const hs_plan_milp_t *m, enum objective goal, size_t relax,
		 hs_plan_solution_t *sol, double *obj)
{
	int ncol[HS_PLAN_MAX_SITES][HS_PLAN_MAX_TYPES] = {{0}};
	int xcol[HS_PLAN_MAX_SITES][HS_PLAN_MAX_TYPES][HS_PLAN_MAX_CLASSES];
	int ind[1 + HS_PLAN_MAX_SITES * HS_PLAN_MAX_TYPES *
			    (HS_PLAN_MAX_CLASSES + 1)];
	double val[HS_ARRAY_SIZE(ind)];
	glp_prob *lp = glp_create_prob();
	glp_iocp parm;
	size_t s, t, c;
	int col = 0, row, k, rc = 0, st;

	glp_set_obj_dir(lp, GLP_MIN);
	/* Columns: device counts, then loads (jobs/s). */
	for (s = 0; s < m->n_sites; s++)
		for (t = 0; t < m->n_types; t++) {
			double per_h, w;

			xcol[s][t][0] = 0;
			if (!m->allowed[s][t])
				continue;
			col = glp_add_cols(lp, 1);
			ncol[s][t] = col;
			glp_set_col_kind(lp, col, GLP_IV);
			glp_set_col_bnds(lp, col, GLP_LO, 0, 0);
			w = m->base_w[t] * m->pue[s];
			per_h = m->capital_usd_per_h[t] +
				w / 1000 * m->usd_per_kwh[s];
			glp_set_obj_coef(lp, col,
					 goal == MIN_COST ? per_h
					 : goal == MIN_TOTAL_POWER || s == relax
						 ? w
						 : 0);
		}
	for (s = 0; s < m->n_sites; s++)
		for (t = 0; t < m->n_types; t++)
			for (c = 0; c < m->n_classes; c++) {
				double w;

				xcol[s][t][c] = 0;
				if (!ncol[s][t] || m->cap[s][t][c] <= 0)
					continue;
				col = glp_add_cols(lp, 1);
				xcol[s][t][c] = col;
				glp_set_col_bnds(lp, col, GLP_LO, 0, 0);
				w = m->busy_w[s][t][c] / m->cap[s][t][c] *
				    m->pue[s];
				glp_set_obj_coef(
					lp, col,
					goal == MIN_COST
						? w / 1000 * m->usd_per_kwh[s]
					: goal == MIN_TOTAL_POWER || s == relax
						? w
						: 0);
			}
	/* Every class served. */
	for (c = 0; c < m->n_classes; c++) {
		row = glp_add_rows(lp, 1);
		glp_set_row_bnds(lp, row, GLP_FX, m->demand[c], m->demand[c]);
		k = 0;
		for (s = 0; s < m->n_sites; s++)
			for (t = 0; t < m->n_types; t++)
				if (xcol[s][t][c]) {
					ind[++k] = xcol[s][t][c];
					val[k] = 1;
				}
		if (!k && m->demand[c] > 0) {
			rc = HS_EINFEASIBLE;
			goto out;
		}
		glp_set_mat_row(lp, row, k, ind, val);
	}
	/* Loads within the devices' capacity. */
	for (s = 0; s < m->n_sites; s++)
		for (t = 0; t < m->n_types; t++) {
			if (!ncol[s][t])
				continue;
			row = glp_add_rows(lp, 1);
			glp_set_row_bnds(lp, row, GLP_UP, 0, 0);
			k = 0;
			ind[++k] = ncol[s][t];
			val[k] = -1;
			for (c = 0; c < m->n_classes; c++)
				if (xcol[s][t][c]) {
					ind[++k] = xcol[s][t][c];
					val[k] = 1 / m->cap[s][t][c];
				}
			glp_set_mat_row(lp, row, k, ind, val);
		}
	/* Power budgets, facility side. */
	for (s = 0; s < m->n_sites; s++) {
		if (m->budget_w[s] <= 0 || goal == MIN_TOTAL_POWER ||
		    (goal == MIN_SITE_POWER && s == relax))
			continue;
		row = glp_add_rows(lp, 1);
		glp_set_row_bnds(lp, row, GLP_UP, 0, m->budget_w[s]);
		k = 0;
		for (t = 0; t < m->n_types; t++) {
			if (!ncol[s][t])
				continue;
			ind[++k] = ncol[s][t];
			val[k] = m->base_w[t] * m->pue[s];
			for (c = 0; c < m->n_classes; c++)
				if (xcol[s][t][c]) {
					ind[++k] = xcol[s][t][c];
					val[k] = m->busy_w[s][t][c] /
						 m->cap[s][t][c] * m->pue[s];
				}
		}
		glp_set_mat_row(lp, row, k, ind, val);
	}
	glp_init_iocp(&parm);
	parm.presolve = GLP_ON;
	parm.msg_lev = GLP_MSG_OFF;
	parm.mip_gap = 1e-9;
	st = glp_intopt(lp, &parm);
	if (st == GLP_ENOPFS || st == GLP_ENODFS) {
		rc = HS_EINFEASIBLE;
		goto out;
	}
	if (st) {
		rc = HS_ESOLVER;
		goto out;
	}
	st = glp_mip_status(lp);
	if (st == GLP_NOFEAS) {
		rc = HS_EINFEASIBLE;
		goto out;
	}
	if (st != GLP_OPT) {
		rc = HS_ESOLVER;
		goto out;
	}
	*obj = glp_mip_obj_val(lp);
	if (!sol)
		goto out;
	memset(sol, 0, sizeof(*sol));
	for (s = 0; s < m->n_sites; s++)
		for (t = 0; t < m->n_types; t++) {
			double n, w;

			if (!ncol[s][t])
				continue;
			n = round(glp_mip_col_val(lp, ncol[s][t]));
			sol->count[s][t] = (unsigned)n;
			w = n * m->base_w[t] * m->pue[s];
			for (c = 0; c < m->n_classes; c++) {
				double x;

				if (!xcol[s][t][c])
					continue;
				x = glp_mip_col_val(lp, xcol[s][t][c]);
				sol->load[s][t][c] = x;
				w += x * m->busy_w[s][t][c] / m->cap[s][t][c] *
				     m->pue[s];
			}
			sol->site_w[s] += w;
			sol->capital_usd_per_h += n * m->capital_usd_per_h[t];
			sol->energy_usd_per_h += w / 1000 * m->usd_per_kwh[s];
		}
	sol->cost_usd_per_h = sol->capital_usd_per_h + sol->energy_usd_per_h;
out:
	glp_delete_prob(lp);
	return rc;
}

/* Watts as kW for a message: whole kW once there are tens of them. */
#define KW(w) (fabs(w) >= 10000 ? 0 : 2), ((w) / 1000)
/* A need rounded up, so that it never reads as what the budget has. */
#define KW_UP(w)                    \
	(fabs(w) >= 10000 ? 0 : 2), \
		(fabs(w) >= 10000 ? ceil((w) / 1000) : ceil((w) / 10) / 100)

/* Name the constraint that makes the demand infeasible. */
static int explain(const hs_plan_milp_t *m, hs_error_t *err)
{
	double need, have = 0;
	size_t s, t, c;

	for (c = 0; c < m->n_classes; c++) {
		bool any = false;

		for (s = 0; s < m->n_sites; s++)
			for (t = 0; t < m->n_types; t++)
				any |= m->allowed[s][t] && m->cap[s][t][c] > 0;
		if (!any && m->demand[c] > 0)
			return hs__error_set(
				err, HS_EINFEASIBLE, NULL, 0, NULL,
				"class %s: no site has an allowed device "
				"type that meets the SLO (round-trip time "
				"included)",
				m->class_name[c]);
	}
	for (s = 0; s < m->n_sites; s++) {
		if (m->budget_w[s] <= 0)
			continue;
		have += m->budget_w[s];
		if (solve(m, MIN_SITE_POWER, s, NULL, &need))
			continue;
		return hs__error_set(err, HS_EINFEASIBLE, NULL, 0, NULL,
				     "site %s power budget: need %.*f kW, "
				     "have %.*f kW",
				     m->site_name[s], KW_UP(need),
				     KW(m->budget_w[s]));
	}
	if (!solve(m, MIN_TOTAL_POWER, 0, NULL, &need))
		return hs__error_set(err, HS_EINFEASIBLE, NULL, 0, NULL,
				     "total power budget: need %.*f kW, "
				     "have %.*f kW across the sites",
				     KW_UP(need), KW(have));
	return hs__error_set(err, HS_EINFEASIBLE, NULL, 0, NULL,
			     "the demand cannot be served by the allowed "
			     "device types");
}

int hs_plan_milp_solve(const hs_plan_milp_t *m, hs_plan_solution_t *sol,
		       hs_error_t *err)
{
	double obj;
	int rc = solve(m, MIN_COST, 0, sol, &obj);

	if (rc == HS_EINFEASIBLE)
		return explain(m, err);
	if (rc)
		return hs__error_set(err, rc, NULL, 0, NULL,
				     "GLPK could not solve the fleet MILP");
	return 0;
}

double hs_plan_cost_at(const hs_plan_milp_t *m, const hs_plan_solution_t *s,
		       double usd_per_kwh)
{
	double w = 0;
	size_t i;

	for (i = 0; i < m->n_sites; i++)
		w += s->site_w[i];
	return s->capital_usd_per_h + w / 1000 * usd_per_kwh;
}

/* ------------------------------------------------------------------------ */
/* Capacity                                                                 */
/* ------------------------------------------------------------------------ */

static void sim_device(hs_device_t *d, const hs_profile_t *p, int id)
{
	memset(d, 0, sizeof(*d));
	d->id = id;
	snprintf(d->name, sizeof(d->name), "%s", p->name);
	snprintf(d->profile, sizeof(d->profile), "%s", p->name);
	d->kind = p->kind;
	d->backend = HS_BACKEND_SIM;
	d->memory_bytes = p->memory_bytes;
	d->mem_bw_gbs = p->mem_bw_gbs;
	d->peak_tflops = p->peak_tflops;
	d->host_link_gbs = p->host_link_gbs;
	d->idle_w = p->idle_w;
	d->max_w = p->max_w;
	d->n_levels = p->n_levels;
	memcpy(d->levels, p->levels, sizeof(d->levels));
	d->numa_node = -1;
	d->price_usd = p->price_usd;
}

static bool meets(const hs_sim_record_t *r, double ttft_ms, double tpot_ms)
{
	return r->ttft_ms <= ttft_ms &&
	       (r->gen_tokens <= 1 || r->tpot_ms <= tpot_ms);
}

/* One probe: Poisson load `rate` of class c on one device. */
static int probe(const hs_plan_scenario_t *sc, const hs_model_catalog_t *models,
		 const hs_plan_opts_t *o, size_t t, size_t c, double ttft_ms,
		 double rate, double *att, double *avg_w, hs_error_t *err)
{
	const hs_plan_class_t *k = &sc->classes[c];
	hs_model_mix_t mix = {.models = {k->model}, .weights = {1}, .n = 1};
	hs_synth_opts_t so = {.arrival = HS_ARRIVAL_POISSON,
			      .rate = rate,
			      .duration_s =
				      fmax(o->probe_s, MIN_PROBE_JOBS / rate),
			      .ctx = k->ctx,
			      .gen = k->gen,
			      .mix = &mix,
			      .seed = o->seed};
	hs_sim_opts_t simo = {.seed = o->seed, .keep_records = true};
	hs_sim_result_t res;
	hs_sched_config_t cfg;
	hs_workload_t w;
	hs_device_t dev;
	size_t i, ok = 0;
	int rc;

	sim_device(&dev, &sc->types[t].profile, 0);
	hs_sched_config_init(&cfg);
	cfg.policy = "eft";
	if ((rc = hs_synth_generate(&w, &so, err)))
		return rc;
	if (!w.n_jobs) {
		*att = 1;
		*avg_w = dev.idle_w;
		hs_workload_release(&w);
		return 0;
	}
	/* An overloaded device never drains: judge it by what it did in
	 * a while past the window. */
	simo.time_limit_ns =
		(int64_t)(so.duration_s * 3e9) + (int64_t)(ttft_ms * 1e6);
	memset(&res, 0, sizeof(res));
	rc = hs_sim_run(&cfg, models, &dev, 1, w.jobs, w.n_jobs, &simo, &res,
			err);
	if (rc == HS_ENOFIT || rc == HS_EINVAL) {
		/* The model does not fit this device: no capacity. */
		hs__error_clear(err);
		*att = 0;
		*avg_w = dev.idle_w;
		hs_workload_release(&w);
		return 0;
	}
	if (rc) {
		hs_workload_release(&w);
		return rc;
	}
	for (i = 0; i < res.n_records; i++)
		ok += meets(&res.records[i], ttft_ms, sc->slo_tpot_ms);
	*att = (double)ok / (double)w.n_jobs;
	*avg_w = res.end_ns > 0 ? res.energy_j / ((double)res.end_ns / 1e9)
				: dev.idle_w;
	hs_sim_result_release(&res);
	hs_workload_release(&w);
	return 0;
}

/* The highest rate of class c one device of type t sustains within the
 * SLO: doubling, then bisection. */
static int capacity(const hs_plan_scenario_t *sc,
		    const hs_model_catalog_t *models, const hs_plan_opts_t *o,
		    size_t t, size_t c, double ttft_ms, hs_plan_capacity_t *cap,
		    hs_error_t *err)
{
	double lo = 0, hi, att, w, lo_w = sc->types[t].profile.idle_w,
	       lo_att = 0;
	unsigned i;
	int rc;

	memset(cap, 0, sizeof(*cap));
	if (ttft_ms <= 0)
		return 0;
	/* Start where a probe holds a few dozen jobs. */
	hi = MIN_PROBE_JOBS / o->probe_s;
	for (;;) {
		if ((rc = probe(sc, models, o, t, c, ttft_ms, hi, &att, &w,
				err)))
			return rc;
		cap->probes++;
		if (att < sc->slo_attainment)
			break;
		lo = hi;
		lo_w = w;
		lo_att = att;
		hi *= 2;
		if (hi > 1e6)
			break;
	}
	for (i = 0; i < o->probe_iters && lo < hi; i++) {
		double mid = lo > 0 ? (lo + hi) / 2 : hi / 2;

		if ((rc = probe(sc, models, o, t, c, ttft_ms, mid, &att, &w,
				err)))
			return rc;
		cap->probes++;
		if (att >= sc->slo_attainment) {
			lo = mid;
			lo_w = w;
			lo_att = att;
		} else {
			hi = mid;
		}
	}
	cap->jobs_per_s = lo;
	cap->avg_w = lo_w;
	cap->attainment = lo_att;
	return 0;
}

/* ------------------------------------------------------------------------ */
/* Plan                                                                     */
/* ------------------------------------------------------------------------ */

static int validate(const hs_plan_scenario_t *sc,
		    const hs_model_catalog_t *models, const hs_plan_opts_t *o,
		    hs_plan_result_t *r, hs_error_t *err)
{
	const hs_plan_milp_t *m = &r->milp;
	double rtt[1024];
	hs_sim_opts_t simo = {.seed = o->seed, .keep_records = true};
	hs_sim_result_t res;
	hs_sched_config_t cfg;
	hs_device_t *devs;
	size_t n = 0, s, t, i, ok = 0, n_jobs = sc->work.n_jobs;
	unsigned k;
	int rc;

	for (s = 0; s < m->n_sites; s++)
		for (t = 0; t < m->n_types; t++)
			n += r->sol.count[s][t];
	if (!n || n > HS_ARRAY_SIZE(rtt))
		return 0;
	devs = hs__calloc(n, sizeof(*devs));
	if (!devs)
		return hs__error_set(err, HS_ENOMEM, NULL, 0, NULL,
				     "out of memory");
	n = 0;
	for (s = 0; s < m->n_sites; s++)
		for (t = 0; t < m->n_types; t++)
			for (k = 0; k < r->sol.count[s][t]; k++) {
				sim_device(&devs[n], &sc->types[t].profile,
					   (int)n);
				rtt[n++] = sc->sites[s].rtt_ms;
			}
	if (o->validate_max_s > 0)
		while (n_jobs && sc->work.jobs[n_jobs - 1].arrival_ns >
					 (int64_t)(o->validate_max_s * 1e9))
			n_jobs--;
	hs_sched_config_init(&cfg);
	cfg.policy = o->validate_policy ? o->validate_policy : "lp";
	memset(&res, 0, sizeof(res));
	rc = hs_sim_run(&cfg, models, devs, n, sc->work.jobs, n_jobs, &simo,
			&res, err);
	if (!rc) {
		for (i = 0; i < res.n_records; i++) {
			const hs_sim_record_t *rec = &res.records[i];
			double lim = sc->slo_ttft_ms - rtt[rec->device];

			ok += meets(rec, lim, sc->slo_tpot_ms);
		}
		r->validated = true;
		hs__strlcpy(r->validation_policy, cfg.policy,
			    sizeof(r->validation_policy));
		r->validation_jobs = n_jobs;
		r->slo_attainment = n_jobs ? (double)ok / (double)n_jobs : 1;
		r->meets_slo = r->slo_attainment >= sc->slo_attainment;
		r->validation_peak_w = res.peak_power_w;
		hs_sim_result_release(&res);
	}
	hs__free(devs);
	return rc;
}

/* The plan, then every site alone (within its budget if it can be, else
 * with the budget lifted) for the sensitivity chart. */
static int candidates(hs_plan_result_t *r, hs_error_t *err)
{
	hs_plan_milp_t *one;
	size_t s, t, u;
	double obj;
	int rc = 0;

	r->candidates[0].feasible = true;
	r->candidates[0].sol = r->sol;
	snprintf(r->candidates[0].name, sizeof(r->candidates[0].name), "plan");
	r->n_candidates = 1;
	if (r->milp.n_sites < 2)
		return 0;
	one = hs__malloc(sizeof(*one));
	if (!one)
		return hs__error_set(err, HS_ENOMEM, NULL, 0, NULL,
				     "out of memory");
	for (s = 0; s < r->milp.n_sites; s++) {
		hs_plan_candidate_t *c = &r->candidates[r->n_candidates++];

		*one = r->milp;
		for (u = 0; u < one->n_sites; u++)
			for (t = 0; t < one->n_types; t++)
				one->allowed[u][t] &= u == s;
		snprintf(c->name, sizeof(c->name), "all at %s",
			 one->site_name[s]);
		rc = solve(one, MIN_COST, 0, &c->sol, &obj);
		if (rc == HS_EINFEASIBLE) {
			one->budget_w[s] = 0;
			c->budget_lifted = true;
			rc = solve(one, MIN_COST, 0, &c->sol, &obj);
		}
		c->feasible = !rc;
		if (rc == HS_EINFEASIBLE)
			rc = 0;
		if (rc)
			break;
	}
	hs__free(one);
	if (rc)
		return hs__error_set(err, rc, NULL, 0, NULL,
				     "GLPK could not solve a candidate fleet");
	return 0;
}

int hs_plan_run(const hs_plan_scenario_t *sc, const hs_model_catalog_t *models,
		const hs_plan_opts_t *opts, hs_plan_result_t *r,
		hs_error_t *err)
{
	hs_plan_opts_t o = *opts;
	hs_plan_milp_t *m = &r->milp;
	/* Capacities per (type, class, distinct TTFT limit); a site's
	 * round-trip time eats into its TTFT. */
	hs_plan_capacity_t cache[HS_PLAN_MAX_SITES][HS_PLAN_MAX_TYPES];
	double lim_of[HS_PLAN_MAX_SITES];
	double tokens = 0, site_w = 0;
	size_t s, t, c, s2;
	int rc;

	if (o.probe_s <= 0)
		o.probe_s = 60;
	if (!o.probe_iters)
		o.probe_iters = 8;
	memset(r, 0, sizeof(*r));
	m->n_sites = sc->n_sites;
	m->n_types = sc->n_types;
	m->n_classes = sc->n_classes;
	for (t = 0; t < sc->n_types; t++) {
		m->base_w[t] = sc->types[t].profile.idle_w +
			       sc->types[t].host_overhead_w;
		m->capital_usd_per_h[t] = sc->types[t].capital_usd_per_h;
	}
	for (s = 0; s < sc->n_sites; s++) {
		const hs_plan_site_t *st = &sc->sites[s];

		hs__strlcpy(m->site_name[s], st->name, sizeof(m->site_name[s]));
		m->usd_per_kwh[s] = st->usd_per_kwh;
		m->pue[s] = st->pue;
		m->budget_w[s] = st->budget_kw * 1000;
		for (t = 0; t < sc->n_types; t++)
			m->allowed[s][t] = st->allowed[t];
		lim_of[s] = sc->slo_ttft_ms - st->rtt_ms;
	}
	for (c = 0; c < sc->n_classes; c++) {
		m->demand[c] = sc->classes[c].jobs_per_s;
		hs__strlcpy(m->class_name[c], sc->classes[c].name,
			    sizeof(m->class_name[c]));
		tokens += sc->classes[c].jobs_per_s * sc->classes[c].mean_gen;
		for (s = 0; s < sc->n_sites; s++)
			for (t = 0; t < sc->n_types; t++) {
				hs_plan_capacity_t *cp = &cache[s][t];

				if (!m->allowed[s][t])
					continue;
				/* Same limit measured at another site. */
				for (s2 = 0; s2 < s; s2++)
					if (m->allowed[s2][t] &&
					    lim_of[s2] == lim_of[s])
						break;
				if (s2 < s)
					*cp = cache[s2][t];
				else if ((rc = capacity(sc, models, &o, t, c,
							lim_of[s], cp, err)))
					return rc;
				else
					r->probes += cp->probes;
				m->cap[s][t][c] = cp->jobs_per_s;
				m->busy_w[s][t][c] = fmax(
					0, cp->avg_w -
						   sc->types[t].profile.idle_w);
			}
	}
	if ((rc = hs_plan_milp_solve(m, &r->sol, err)))
		return rc;
	r->output_tokens_per_s = tokens;
	for (s = 0; s < m->n_sites; s++)
		site_w += r->sol.site_w[s];
	if (tokens > 0) {
		r->cost_per_million_output_tokens =
			r->sol.cost_usd_per_h / (tokens * 3600) * 1e6;
		r->joules_per_output_token = site_w / tokens;
	}
	if (r->sol.cost_usd_per_h > 0) {
		r->capital_share =
			r->sol.capital_usd_per_h / r->sol.cost_usd_per_h;
		r->energy_share =
			r->sol.energy_usd_per_h / r->sol.cost_usd_per_h;
	}
	if ((rc = candidates(r, err)))
		return rc;
	if (o.validate)
		return validate(sc, models, &o, r, err);
	return 0;
}
