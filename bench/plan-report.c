/*
 * A capacity plan as JSON, as the table people read, and as a report
 * directory: report.json, report.md and a self-contained report.html with
 * two SVG charts (cost per million tokens against electricity price per
 * candidate fleet; throughput against power budget per device type).
 */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "plan.h"

/* Electricity prices the sensitivity chart spans, $/kWh. */
#define PRICE_MAX 0.40
#define PRICE_STEPS 40

static json_t *real(double v)
{
	return isfinite(v) ? json_real(v) : json_null();
}

static double site_kw(const hs_plan_result_t *r, const hs_plan_solution_t *s)
{
	double w = 0;
	size_t i;

	for (i = 0; i < r->milp.n_sites; i++)
		w += s->site_w[i];
	return w / 1000;
}

/* $ per million output tokens of a fleet at one electricity price. */
/* Dollars per million output tokens at a cost per hour; NaN for none. */
static double per_million_at(double usd_per_h, double tokens_per_s)
{
	return tokens_per_s > 0 ? usd_per_h / (tokens_per_s * 3600) * 1e6 : NAN;
}

static double per_million(const hs_plan_result_t *r,
			  const hs_plan_solution_t *s, double usd_per_kwh)
{
	return per_million_at(hs_plan_cost_at(&r->milp, s, usd_per_kwh),
			      r->output_tokens_per_s);
}

/* One device of type t at site s serving the demand's mix: output tokens
 * per second and facility watts when busy; false when it cannot. */
static bool device_rate(const hs_plan_scenario_t *sc, const hs_plan_result_t *r,
			size_t s, size_t t, double *tok_s, double *w)
{
	const hs_plan_milp_t *m = &r->milp;
	double frac = 0, busy = 0, lam = 0, tok = 0;
	size_t c;

	if (!m->allowed[s][t])
		return false;
	/* Over the classes it can serve: a type that cannot take the
	 * longest prompts still has a line. */
	for (c = 0; c < m->n_classes; c++) {
		if (m->cap[s][t][c] <= 0)
			continue;
		frac += m->demand[c] / m->cap[s][t][c];
		busy += m->demand[c] / m->cap[s][t][c] * m->busy_w[s][t][c];
		lam += m->demand[c];
		tok += m->demand[c] * sc->classes[c].mean_gen;
	}
	if (frac <= 0 || lam <= 0)
		return false;
	*tok_s = tok / frac;
	*w = (m->base_w[t] + busy / frac) * m->pue[s];
	return true;
}

json_t *hs_plan_report_json(const hs_plan_scenario_t *sc,
			    const hs_plan_result_t *r)
{
	const hs_plan_milp_t *m = &r->milp;
	json_t *root = json_object(), *a, *o, *d, *v, *pts;
	bool bad = !root;
	size_t s, t, c, i;

	if (bad)
		return NULL;
	hs__json_put(root, "scenario", json_string(sc->source), &bad);
	a = json_array();
	for (c = 0; c < sc->n_classes; c++) {
		const hs_plan_class_t *k = &sc->classes[c];

		o = json_object();
		hs__json_put(o, "name", json_string(k->name), &bad);
		hs__json_put(o, "jobs_per_s", real(k->jobs_per_s), &bad);
		hs__json_put(o, "mean_ctx", real(k->mean_ctx), &bad);
		hs__json_put(o, "mean_gen", real(k->mean_gen), &bad);
		hs__json_push(a, o, &bad);
	}
	o = json_object();
	hs__json_put(o, "classes", a, &bad);
	hs__json_put(o, "output_tokens_per_s", real(r->output_tokens_per_s),
		     &bad);
	hs__json_put(o, "mean_output_tokens_per_s",
		     real(sc->mean_output_tokens_per_s), &bad);
	/* What a token costs when the fleet idles off-peak. */
	hs__json_put(root, "cost_per_million_output_tokens_at_mean",
		     real(per_million_at(r->sol.cost_usd_per_h,
					 sc->mean_output_tokens_per_s)),
		     &bad);
	hs__json_put(root, "demand", o, &bad);
	o = json_object();
	hs__json_put(o, "ttft_ms", real(sc->slo_ttft_ms), &bad);
	hs__json_put(o, "tpot_ms", real(sc->slo_tpot_ms), &bad);
	hs__json_put(o, "attainment", real(sc->slo_attainment), &bad);
	hs__json_put(root, "slo", o, &bad);
	a = json_array();
	for (s = 0; s < m->n_sites; s++) {
		o = json_object();
		d = json_array();
		hs__json_put(o, "name", json_string(m->site_name[s]), &bad);
		for (t = 0; t < m->n_types; t++) {
			if (!r->sol.count[s][t])
				continue;
			v = json_object();
			hs__json_put(v, "type",
				     json_string(sc->types[t].profile.name),
				     &bad);
			hs__json_put(v, "count",
				     json_integer(r->sol.count[s][t]), &bad);
			hs__json_push(d, v, &bad);
		}
		hs__json_put(o, "devices", d, &bad);
		hs__json_put(o, "power_kw", real(r->sol.site_w[s] / 1000),
			     &bad);
		hs__json_put(o, "budget_kw", real(m->budget_w[s] / 1000), &bad);
		hs__json_put(o, "electricity_usd_per_kwh",
			     real(m->usd_per_kwh[s]), &bad);
		hs__json_put(o, "pue", real(m->pue[s]), &bad);
		hs__json_put(o, "rtt_ms", real(sc->sites[s].rtt_ms), &bad);
		hs__json_push(a, o, &bad);
	}
	hs__json_put(root, "sites", a, &bad);
	a = json_array();
	for (s = 0; s < m->n_sites; s++)
		for (t = 0; t < m->n_types; t++)
			for (c = 0; c < m->n_classes; c++) {
				if (!m->allowed[s][t])
					continue;
				o = json_object();
				hs__json_put(o, "site",
					     json_string(m->site_name[s]),
					     &bad);
				hs__json_put(
					o, "type",
					json_string(sc->types[t].profile.name),
					&bad);
				hs__json_put(o, "class",
					     json_string(m->class_name[c]),
					     &bad);
				hs__json_put(o, "jobs_per_s",
					     real(m->cap[s][t][c]), &bad);
				hs__json_put(o, "busy_w",
					     real(m->busy_w[s][t][c]), &bad);
				hs__json_push(a, o, &bad);
			}
	hs__json_put(root, "capacities", a, &bad);
	hs__json_put(root, "cost_usd_per_hour", real(r->sol.cost_usd_per_h),
		     &bad);
	hs__json_put(root, "capital_usd_per_hour",
		     real(r->sol.capital_usd_per_h), &bad);
	hs__json_put(root, "energy_usd_per_hour", real(r->sol.energy_usd_per_h),
		     &bad);
	hs__json_put(root, "cost_per_million_output_tokens",
		     real(r->cost_per_million_output_tokens), &bad);
	hs__json_put(root, "capital_share", real(r->capital_share), &bad);
	hs__json_put(root, "energy_share", real(r->energy_share), &bad);
	hs__json_put(root, "joules_per_output_token",
		     real(r->joules_per_output_token), &bad);
	hs__json_put(root, "power_modeled", json_true(), &bad);
	hs__json_put(root, "capacity_probes",
		     json_integer((json_int_t)r->probes), &bad);
	o = json_object();
	if (r->validated) {
		hs__json_put(o, "policy", json_string(r->validation_policy),
			     &bad);
		hs__json_put(o, "jobs",
			     json_integer((json_int_t)r->validation_jobs),
			     &bad);
		hs__json_put(o, "slo_attainment", real(r->slo_attainment),
			     &bad);
		hs__json_put(o, "meets_slo", json_boolean(r->meets_slo), &bad);
		hs__json_put(o, "peak_device_power_kw",
			     real(r->validation_peak_w / 1000), &bad);
	} else {
		hs__json_put(o, "slo_attainment", json_null(), &bad);
		hs__json_put(o, "meets_slo", json_null(), &bad);
	}
	hs__json_put(root, "validation", o, &bad);
	a = json_array();
	for (i = 0; i < r->n_candidates; i++) {
		const hs_plan_candidate_t *k = &r->candidates[i];

		o = json_object();
		hs__json_put(o, "fleet", json_string(k->name), &bad);
		hs__json_put(o, "feasible", json_boolean(k->feasible), &bad);
		hs__json_put(o, "budget_lifted", json_boolean(k->budget_lifted),
			     &bad);
		if (k->feasible) {
			hs__json_put(
				o, "cost_per_million_output_tokens",
				real(per_million_at(k->sol.cost_usd_per_h,
						    r->output_tokens_per_s)),
				&bad);
			hs__json_put(o, "power_kw", real(site_kw(r, &k->sol)),
				     &bad);
			pts = json_array();
			for (c = 0; c <= 8; c++) {
				double x = PRICE_MAX * (double)c / 8;

				v = json_array();
				hs__json_push(v, real(x), &bad);
				hs__json_push(v,
					      real(per_million(r, &k->sol, x)),
					      &bad);
				hs__json_push(pts, v, &bad);
			}
			hs__json_put(o, "cost_vs_electricity", pts, &bad);
		}
		hs__json_push(a, o, &bad);
	}
	hs__json_put(root, "candidates", a, &bad);
	if (bad) {
		json_decref(root);
		return NULL;
	}
	return root;
}

/* The headline table, in Markdown (stdout and report.md alike). */
static void table(const hs_plan_scenario_t *sc, const hs_plan_result_t *r,
		  hs__strbuf_t *sb)
{
	const hs_plan_milp_t *m = &r->milp;
	size_t s, t, i;

	hs__strbuf_addf(
		sb, "| site | devices | power (kW, x PUE) | budget (kW) "
		    "| $/kWh | RTT (ms) |\n|---|---|---:|---:|---:|---:|\n");
	for (s = 0; s < m->n_sites; s++) {
		bool any = false;

		hs__strbuf_addf(sb, "| %s | ", m->site_name[s]);
		for (t = 0; t < m->n_types; t++) {
			if (!r->sol.count[s][t])
				continue;
			hs__strbuf_addf(sb, "%s%u x %s", any ? ", " : "",
					r->sol.count[s][t],
					sc->types[t].profile.name);
			any = true;
		}
		hs__strbuf_addf(sb, "%s | %.1f | %.0f | %.3f | %.0f |\n",
				any ? "" : "none", r->sol.site_w[s] / 1000,
				m->budget_w[s] / 1000, m->usd_per_kwh[s],
				sc->sites[s].rtt_ms);
	}
	hs__strbuf_addf(sb,
			"\n| figure | value |\n|---|---:|\n"
			"| demand (output tokens/s, planned / mean) "
			"| %.0f / %.0f |\n"
			"| cost per hour | $%.2f |\n"
			"| cost per million output tokens | $%.4f |\n"
			"| capital / energy share | %.0f%% / %.0f%% |\n"
			"| joules per output token (facility) | %.3f |\n",
			r->output_tokens_per_s, sc->mean_output_tokens_per_s,
			r->sol.cost_usd_per_h,
			r->cost_per_million_output_tokens,
			r->capital_share * 100, r->energy_share * 100,
			r->joules_per_output_token);
	if (r->validated)
		hs__strbuf_addf(sb,
				"| validation (%s policy, %zu jobs) | %.1f%% "
				"within SLO (target %.0f%%): %s |\n",
				r->validation_policy, r->validation_jobs,
				r->slo_attainment * 100,
				sc->slo_attainment * 100,
				r->meets_slo ? "meets the SLO"
					     : "FAILS its own validation");
	else
		hs__strbuf_addf(sb, "| validation | not run |\n");
	if (r->n_candidates > 1) {
		hs__strbuf_addf(sb, "\n| fleet | $/M tokens | power (kW) |\n"
				    "|---|---:|---:|\n");
		for (i = 0; i < r->n_candidates; i++) {
			const hs_plan_candidate_t *k = &r->candidates[i];

			if (!k->feasible) {
				hs__strbuf_addf(sb, "| %s | infeasible | - |\n",
						k->name);
				continue;
			}
			hs__strbuf_addf(
				sb, "| %s%s | %.4f | %.1f |\n", k->name,
				k->budget_lifted ? " (over its budget)" : "",
				k->sol.cost_usd_per_h /
					(r->output_tokens_per_s * 3600) * 1e6,
				site_kw(r, &k->sol));
		}
	}
}

void hs_plan_report_table(const hs_plan_scenario_t *sc,
			  const hs_plan_result_t *r, FILE *f)
{
	hs__strbuf_t sb;

	hs__strbuf_init(&sb);
	table(sc, r, &sb);
	if (!sb.failed)
		fputs(sb.buf, f);
	hs__strbuf_release(&sb);
}

/* ------------------------------------------------------------------------ */
/* HTML                                                                     */
/* ------------------------------------------------------------------------ */

#define W 640
#define H 320
#define ML 70
#define MR 170
#define MT 30
#define MB 45

static const char *const colours[] = {"#1f77b4", "#d62728", "#2ca02c",
				      "#ff7f0e", "#9467bd", "#8c564b",
				      "#e377c2", "#17becf"};

static void esc(hs__strbuf_t *sb, const char *s)
{
	for (; *s; s++) {
		switch (*s) {
		case '<':
			hs__strbuf_add(sb, "&lt;");
			break;
		case '>':
			hs__strbuf_add(sb, "&gt;");
			break;
		case '&':
			hs__strbuf_add(sb, "&amp;");
			break;
		case '"':
			hs__strbuf_add(sb, "&quot;");
			break;
		default:
			hs__strbuf_addf(sb, "%c", *s);
		}
	}
}

struct frame {
	double x0, x1, y0, y1;
};

static double fx(const struct frame *f, double x)
{
	return ML + (x - f->x0) / (f->x1 - f->x0) * (W - ML - MR);
}

static double fy(const struct frame *f, double y)
{
	return H - MB - (y - f->y0) / (f->y1 - f->y0) * (H - MT - MB);
}

static void tick(char *buf, size_t size, double v)
{
	if (fabs(v) >= 1e6)
		snprintf(buf, size, "%.3gM", v / 1e6);
	else if (fabs(v) >= 1e4)
		snprintf(buf, size, "%.3gk", v / 1e3);
	else
		snprintf(buf, size, "%.3g", v);
}

static void frame_begin(hs__strbuf_t *sb, const struct frame *f,
			const char *title, const char *xl, const char *yl)
{
	int i;

	hs__strbuf_addf(sb,
			"<figure><svg xmlns=\"http://www.w3.org/2000/svg\" "
			"viewBox=\"0 0 %d %d\" width=\"%d\" height=\"%d\" "
			"font-family=\"sans-serif\" font-size=\"11\">"
			"<text x=\"%d\" y=\"18\" font-size=\"13\">",
			W, H, W, H, ML);
	esc(sb, title);
	hs__strbuf_addf(sb,
			"</text><rect x=\"%d\" y=\"%d\" width=\"%d\" "
			"height=\"%d\" fill=\"none\" stroke=\"#999\"/>",
			ML, MT, W - ML - MR, H - MT - MB);
	for (i = 0; i <= 4; i++) {
		double x = f->x0 + (f->x1 - f->x0) * i / 4;
		double y = f->y0 + (f->y1 - f->y0) * i / 4;
		char tx[32], ty[32];

		tick(tx, sizeof(tx), x);
		tick(ty, sizeof(ty), y);
		hs__strbuf_addf(sb,
				"<text x=\"%.1f\" y=\"%d\" "
				"text-anchor=\"middle\">%s</text>"
				"<text x=\"%d\" y=\"%.1f\" "
				"text-anchor=\"end\">%s</text>"
				"<line x1=\"%d\" x2=\"%d\" y1=\"%.1f\" "
				"y2=\"%.1f\" stroke=\"#eee\"/>",
				fx(f, x), H - MB + 15, tx, ML - 5, fy(f, y) + 4,
				ty, ML, W - MR, fy(f, y), fy(f, y));
	}
	hs__strbuf_addf(sb, "<text x=\"%d\" y=\"%d\" text-anchor=\"middle\">",
			(W - MR + ML) / 2, H - 8);
	esc(sb, xl);
	hs__strbuf_addf(sb,
			"</text><text transform=\"translate(14 %d) "
			"rotate(-90)\" text-anchor=\"middle\">",
			(H - MB + MT) / 2);
	esc(sb, yl);
	hs__strbuf_add(sb, "</text>");
}

static void legend(hs__strbuf_t *sb, size_t i, const char *name)
{
	hs__strbuf_addf(sb,
			"<rect x=\"%d\" y=\"%zu\" width=\"12\" height=\"3\" "
			"fill=\"%s\"/><text x=\"%d\" y=\"%zu\">",
			W - MR + 10, MT + 8 + i * 16,
			colours[i % HS_ARRAY_SIZE(colours)], W - MR + 26,
			MT + 12 + i * 16);
	esc(sb, name);
	hs__strbuf_add(sb, "</text>");
}

static void chart_electricity(const hs_plan_result_t *r, hs__strbuf_t *sb)
{
	struct frame f = {0, PRICE_MAX, 0, 0};
	size_t i, k;

	for (i = 0; i < r->n_candidates; i++)
		if (r->candidates[i].feasible)
			f.y1 = fmax(f.y1, per_million(r, &r->candidates[i].sol,
						      PRICE_MAX));
	if (!(f.y1 > 0))
		f.y1 = 1;
	f.y1 *= 1.1;
	frame_begin(sb, &f,
		    "Cost per million output tokens against electricity "
		    "price",
		    "electricity ($/kWh, every site)", "$ / M output tokens");
	for (i = 0; i < r->n_candidates; i++) {
		const hs_plan_candidate_t *c = &r->candidates[i];
		char name[128];

		if (!c->feasible)
			continue;
		hs__strbuf_addf(sb,
				"<polyline fill=\"none\" stroke=\"%s\" "
				"stroke-width=\"2\" points=\"",
				colours[i % HS_ARRAY_SIZE(colours)]);
		for (k = 0; k <= PRICE_STEPS; k++) {
			double x = PRICE_MAX * (double)k / PRICE_STEPS;

			hs__strbuf_addf(sb, "%.1f,%.1f ", fx(&f, x),
					fy(&f, per_million(r, &c->sol, x)));
		}
		hs__strbuf_add(sb, "\"/>");
		snprintf(name, sizeof(name), "%s%s", c->name,
			 c->budget_lifted ? " (over budget)" : "");
		legend(sb, i, name);
	}
	hs__strbuf_add(sb, "</svg><figcaption>Each fleet's hourly cost "
			   "(capital + energy x PUE) over the demand's "
			   "output tokens, with every site's electricity "
			   "price set to x. Where lines cross, the cheaper "
			   "fleet changes.</figcaption></figure>\n");
}

static void chart_budget(const hs_plan_scenario_t *sc,
			 const hs_plan_result_t *r, hs__strbuf_t *sb)
{
	const hs_plan_milp_t *m = &r->milp;
	struct frame f = {0, 0, 0, 0};
	double tok, w;
	size_t s, t, i = 0, k;

	for (s = 0; s < m->n_sites; s++)
		f.x1 = fmax(f.x1, m->budget_w[s] / 1000);
	if (!(f.x1 > 0))
		f.x1 = 100;
	for (s = 0; s < m->n_sites; s++)
		for (t = 0; t < m->n_types; t++)
			if (device_rate(sc, r, s, t, &tok, &w))
				f.y1 = fmax(f.y1, floor(f.x1 * 1000 / w) * tok);
	if (!(f.y1 > 0))
		f.y1 = 1;
	f.y1 *= 1.1;
	frame_begin(sb, &f, "Throughput against power budget",
		    "facility power budget (kW)", "output tokens/s");
	for (s = 0; s < m->n_sites; s++)
		for (t = 0; t < m->n_types; t++) {
			char name[160];

			if (!device_rate(sc, r, s, t, &tok, &w))
				continue;
			hs__strbuf_addf(sb,
					"<polyline fill=\"none\" stroke=\"%s\" "
					"stroke-width=\"2\" points=\"",
					colours[i % HS_ARRAY_SIZE(colours)]);
			for (k = 0; k <= 100; k++) {
				double b = f.x1 * (double)k / 100;

				hs__strbuf_addf(
					sb, "%.1f,%.1f ", fx(&f, b),
					fy(&f, floor(b * 1000 / w) * tok));
			}
			hs__strbuf_add(sb, "\"/>");
			snprintf(name, sizeof(name), "%s at %s",
				 sc->types[t].profile.name, m->site_name[s]);
			legend(sb, i++, name);
		}
	hs__strbuf_add(sb, "</svg><figcaption>Whole devices of one type at "
			   "one site, each at its measured sustainable load "
			   "for the demand's mix, within a power budget "
			   "(PUE included).</figcaption></figure>\n");
}

static void html(const hs_plan_scenario_t *sc, const hs_plan_result_t *r,
		 const hs__strbuf_t *md, hs__strbuf_t *sb)
{
	const char *p;

	hs__strbuf_add(sb,
		       "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\">"
		       "<title>hetsched plan</title><style>"
		       "body{font-family:sans-serif;max-width:60em;"
		       "margin:2em auto}table{border-collapse:collapse}"
		       "td,th{border:1px solid #ccc;padding:.2em .6em}"
		       "</style></head><body><h1>Capacity plan: ");
	esc(sb, sc->source);
	hs__strbuf_add(sb, "</h1>\n<table>");
	/* The Markdown tables, as HTML rows. */
	for (p = md->buf; p && *p;) {
		const char *end = strchr(p, '\n');
		size_t len = end ? (size_t)(end - p) : strlen(p);
		char line[1024];
		char *cell, *save = NULL;

		snprintf(line, sizeof(line), "%.*s", (int)len, p);
		p += len + (end != NULL);
		if (line[0] != '|') {
			hs__strbuf_add(sb, "</table><br><table>");
			continue;
		}
		if (strstr(line, "---"))
			continue;
		hs__strbuf_add(sb, "<tr>");
		for (cell = strtok_r(line, "|", &save); cell;
		     cell = strtok_r(NULL, "|", &save)) {
			hs__strbuf_add(sb, "<td>");
			esc(sb, cell);
			hs__strbuf_add(sb, "</td>");
		}
		hs__strbuf_add(sb, "</tr>");
	}
	hs__strbuf_add(sb, "</table>\n");
	chart_electricity(r, sb);
	chart_budget(sc, r, sb);
	hs__strbuf_add(sb, "<p>Power is modeled from device profiles (no "
			   "sensor measures a simulated device).</p>"
			   "</body></html>\n");
}

static int dump_cb(const char *buf, size_t size, void *ud)
{
	hs__strbuf_t *sb = ud;

	return hs__strbuf_addf(sb, "%.*s", (int)size, buf) ? -1 : 0;
}

static int write_file(const char *dir, const char *name, const hs__strbuf_t *sb,
		      hs_error_t *err)
{
	char path[1024];
	FILE *f;
	int bad;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	f = fopen(path, "w");
	if (!f)
		return hs__error_set(err, HS_EIO, path, 0, NULL, "%s",
				     strerror(errno));
	bad = fputs(sb->buf, f) < 0;
	bad |= fclose(f) != 0;
	if (bad)
		return hs__error_set(err, HS_EIO, path, 0, NULL,
				     "write failed");
	return 0;
}

int hs_plan_report_write(const hs_plan_scenario_t *sc,
			 const hs_plan_result_t *r, const char *dir,
			 hs_error_t *err)
{
	hs__strbuf_t js, md, ht;
	json_t *root;
	int rc = 0;

	if (mkdir(dir, 0755) && errno != EEXIST)
		return hs__error_set(err, HS_EIO, dir, 0, NULL, "%s",
				     strerror(errno));
	hs__strbuf_init(&js);
	hs__strbuf_init(&md);
	hs__strbuf_init(&ht);
	root = hs_plan_report_json(sc, r);
	if (!root ||
	    json_dump_callback(root, dump_cb, &js,
			       JSON_INDENT(2) | JSON_REAL_PRECISION(10))) {
		rc = hs__error_set(err, HS_ENOMEM, NULL, 0, NULL,
				   "out of memory");
		goto out;
	}
	hs__strbuf_add(&js, "\n");
	hs__strbuf_addf(&md, "# Capacity plan: %s\n\n", sc->source);
	table(sc, r, &md);
	hs__strbuf_add(&md, "\nPower is modeled from device profiles.\n");
	{
		hs__strbuf_t tb;

		hs__strbuf_init(&tb);
		table(sc, r, &tb);
		html(sc, r, &tb, &ht);
		rc = tb.failed;
		hs__strbuf_release(&tb);
	}
	if (rc || js.failed || md.failed || ht.failed) {
		rc = hs__error_set(err, HS_ENOMEM, NULL, 0, NULL,
				   "out of memory");
		goto out;
	}
	if (!(rc = write_file(dir, "report.json", &js, err)) &&
	    !(rc = write_file(dir, "report.md", &md, err)))
		rc = write_file(dir, "report.html", &ht, err);
out:
	json_decref(root);
	hs__strbuf_release(&js);
	hs__strbuf_release(&md);
	hs__strbuf_release(&ht);
	return rc;
}
