/*
 * report.html: one page that needs nothing from elsewhere (no stylesheet,
 * script or font) and that an XML parser accepts, so that it can be mailed,
 * archived and checked by a machine. Its SVG charts: power over time
 * against the budget, throughput over time, the latency CDF, and bars of
 * throughput and of output tokens per joule for each policy.
 */
#include <inttypes.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "report.h"

/* Chart geometry, in SVG user units. */
#define CW 760.0
#define CH 340.0
#define ML 76.0 /* room for y tick labels and the axis title */
#define MR 24.0
#define MB 52.0 /* room for x tick labels and the axis title */

/* Tableau 10, reordered so that the first few stay apart for people with
 * red-green colour blindness. */
static const char *const palette[] = {
	"#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#b07aa1",
	"#76b7b2", "#edc948", "#ff9da7", "#9c755f", "#555555",
};

static const char *colour(size_t i)
{
	return palette[i % HS_ARRAY_SIZE(palette)];
}

/* ------------------------------------------------------------------------ */
/* Escaping                                                                 */
/* ------------------------------------------------------------------------ */

/* Length of the UTF-8 sequence at s if XML accepts it, else 0. */
static size_t utf8_len(const unsigned char *s)
{
	uint32_t cp;
	size_t n, i;

	if (s[0] < 0x80)
		return 1;
	if (s[0] >= 0xc2 && s[0] <= 0xdf) {
		n = 2;
		cp = s[0] & 0x1f;
	} else if ((s[0] & 0xf0) == 0xe0) {
		n = 3;
		cp = s[0] & 0x0f;
	} else if (s[0] >= 0xf0 && s[0] <= 0xf4) {
		n = 4;
		cp = s[0] & 0x07;
	} else {
		return 0;
	}
	/* A NUL is not a continuation byte, so this stops at the end. */
	for (i = 1; i < n; i++) {
		if ((s[i] & 0xc0) != 0x80)
			return 0;
		cp = cp << 6 | (s[i] & 0x3f);
	}
	if ((n == 3 && cp < 0x800) || (n == 4 && cp < 0x10000) ||
	    (cp >= 0xd800 && cp <= 0xdfff) || cp > 0x10ffff || cp == 0xfffe ||
	    cp == 0xffff)
		return 0;
	return n;
}

/*
 * Text or an attribute value from the user. Besides & < > and quotes, XML
 * refuses control characters and malformed UTF-8 (paths are bytes): those
 * become U+FFFD rather than a page nobody can parse.
 */
static void esc(hs__strbuf_t *sb, const char *str)
{
	const unsigned char *p = (const unsigned char *)str, *q;
	size_t n;

	while (*p) {
		for (q = p; *q; q += n) {
			if (*q == '&' || *q == '<' || *q == '>' || *q == '"' ||
			    *q == '\'' || *q < 0x20)
				break;
			n = utf8_len(q);
			if (!n)
				break;
		}
		if (q > p)
			hs__strbuf_addf(sb, "%.*s", (int)(q - p), p);
		if (!*q)
			break;
		switch (*q) {
		case '&':
			hs__strbuf_add(sb, "&amp;");
			break;
		case '<':
			hs__strbuf_add(sb, "&lt;");
			break;
		case '>':
			hs__strbuf_add(sb, "&gt;");
			break;
		case '"':
			hs__strbuf_add(sb, "&quot;");
			break;
		case '\'':
			hs__strbuf_add(sb, "&#39;");
			break;
		case '\t':
		case '\n':
		case '\r':
			hs__strbuf_add(sb, " ");
			break;
		default:
			hs__strbuf_add(sb, "&#xfffd;");
			break;
		}
		p = q + 1;
	}
}

static void num(hs__strbuf_t *sb, double v)
{
	char buf[32];

	hs__report_num(v, buf, sizeof(buf));
	hs__strbuf_add(sb, buf);
}

/* ------------------------------------------------------------------------ */
/* Charts                                                                   */
/* ------------------------------------------------------------------------ */

struct axis {
	double lo, hi, step; /* step: linear axes only */
	bool log;
};

struct chart {
	hs__strbuf_t *sb;
	struct axis x, y;
	double l, r, t, b; /* the plot area */
};

/* A legend entry beyond the policies (the budget, the LP bound). */
struct key {
	const char *name;
	const char *colour;
	const char *dash;
};

static double nice(double x)
{
	double e = pow(10, floor(log10(x))), f = x / e;

	return (f <= 1 ? 1 : f <= 2 ? 2 : f <= 5 ? 5 : 10) * e;
}

/* An axis that starts and ends on a tick, with about five of them; log
 * axes run from decade to decade. */
static void axis_fit(struct axis *a, double lo, double hi, bool logscale)
{
	a->log = logscale;
	if (logscale) {
		a->lo = pow(10, floor(log10(lo)));
		a->hi = pow(10, ceil(log10(hi)));
		if (!(a->hi > a->lo))
			a->hi = a->lo * 10;
		a->step = 0;
		return;
	}
	if (!isfinite(lo) || !isfinite(hi))
		lo = hi = 0;
	if (!(hi > lo))
		hi = lo + (lo ? fabs(lo) : 1);
	a->step = nice((hi - lo) / 5);
	/* Let rounding not add an empty tick. */
	a->lo = floor(lo / a->step + 1e-9) * a->step;
	a->hi = ceil(hi / a->step - 1e-9) * a->step;
}

static double axis_frac(const struct axis *a, double v)
{
	if (a->log)
		return (log10(v > a->lo ? v : a->lo) - log10(a->lo)) /
		       (log10(a->hi) - log10(a->lo));
	return (v - a->lo) / (a->hi - a->lo);
}

static double px(const struct chart *c, double v)
{
	return c->l + axis_frac(&c->x, v) * (c->r - c->l);
}

static double py(const struct chart *c, double v)
{
	return c->b - axis_frac(&c->y, v) * (c->b - c->t);
}

/*
 * The ticks of an axis, one per call: returns false after the last. Log
 * axes get 1, 2 and 5 of each decade when they span two decades or fewer.
 */
static bool axis_tick(const struct axis *a, unsigned k, double *v)
{
	static const double sub[] = {1, 2, 5};
	unsigned decades, per;

	if (!a->log) {
		*v = a->lo + k * a->step;
		if (fabs(*v) < a->step * 1e-9)
			*v = 0;
		return *v <= a->hi + a->step * 1e-9;
	}
	decades = (unsigned)lround(log10(a->hi / a->lo));
	per = decades <= 2 ? 3 : 1;
	*v = a->lo * pow(10, k / per) * sub[k % per];
	return *v <= a->hi * (1 + 1e-9);
}

static void tick_label(char *buf, size_t size, double v, double step)
{
	double a = fabs(v);
	int d;

	if (a >= 1e6)
		snprintf(buf, size, "%gM", v / 1e6);
	else if (a >= 1e4)
		snprintf(buf, size, "%gk", v / 1e3);
	else {
		d = step >= 1 || step <= 0 ? 0 : (int)ceil(-log10(step) - 1e-9);
		snprintf(buf, size, "%.*f", d, v);
	}
}

/* The svg element, its title and the legend; sets the plot area, which
 * starts below the legend however many rows it takes. */
static void chart_begin(struct chart *c, hs__strbuf_t *sb, const char *title,
			const hs_bench_report_t *rep, bool policies,
			const struct key *extra, size_t n_extra)
{
	double x = ML, y = 46, w;
	size_t i, n = (policies ? rep->n_runs : 0) + n_extra;
	struct key k;

	c->sb = sb;
	hs__strbuf_addf(sb,
			"<div class=\"chart\"><svg "
			"xmlns=\"http://www.w3.org/2000/svg\" "
			"viewBox=\"0 0 %.0f %.0f\" width=\"%.0f\" "
			"height=\"%.0f\" role=\"img\">\n<title>%s</title>\n"
			"<text class=\"title\" x=\"%.0f\" y=\"22\">%s</text>\n",
			CW, CH, CW, CH, title, ML, title);
	for (i = 0; i < n; i++) {
		if (policies && i < rep->n_runs) {
			k.name = rep->runs[i].policy;
			k.colour = colour(i);
			k.dash = NULL;
		} else {
			k = extra[i - (policies ? rep->n_runs : 0)];
		}
		/* Text width guessed at 7 units a character. */
		w = 34 + 7.0 * (double)strlen(k.name) + 14;
		if (x + w > CW - MR && x > ML) {
			x = ML;
			y += 18;
		}
		hs__strbuf_addf(sb,
				"<line x1=\"%.0f\" y1=\"%.0f\" x2=\"%.0f\" "
				"y2=\"%.0f\" stroke=\"%s\" stroke-width=\"3\"",
				x, y - 4, x + 26, y - 4, k.colour);
		if (k.dash)
			hs__strbuf_addf(sb, " stroke-dasharray=\"%s\"", k.dash);
		hs__strbuf_addf(sb, "/><text x=\"%.0f\" y=\"%.0f\">", x + 32,
				y);
		esc(sb, k.name);
		hs__strbuf_add(sb, "</text>\n");
		x += w;
	}
	c->l = ML;
	c->r = CW - MR;
	c->t = n ? y + 16 : 40;
	c->b = CH - MB;
}

static void chart_end(struct chart *c)
{
	hs__strbuf_add(c->sb, "</svg></div>\n");
}

/* Grid, ticks and their labels, the axis lines and their titles. Bar
 * charts have no x ticks (xlabel NULL): the bars are named instead. */
static void axes(struct chart *c, const char *xlabel, const char *ylabel)
{
	hs__strbuf_t *sb = c->sb;
	char label[32];
	unsigned k;
	double v, at;

	for (k = 0; axis_tick(&c->y, k, &v); k++) {
		at = py(c, v);
		tick_label(label, sizeof(label), v, c->y.step);
		hs__strbuf_addf(sb,
				"<line class=\"grid\" x1=\"%.1f\" y1=\"%.1f\" "
				"x2=\"%.1f\" y2=\"%.1f\"/>"
				"<text x=\"%.1f\" y=\"%.1f\" "
				"text-anchor=\"end\">%s</text>\n",
				c->l, at, c->r, at, c->l - 6, at + 4, label);
	}
	for (k = 0; xlabel && axis_tick(&c->x, k, &v); k++) {
		at = px(c, v);
		tick_label(label, sizeof(label), v, c->x.log ? v : c->x.step);
		hs__strbuf_addf(sb,
				"<line class=\"grid\" x1=\"%.1f\" y1=\"%.1f\" "
				"x2=\"%.1f\" y2=\"%.1f\"/>"
				"<line class=\"axis\" x1=\"%.1f\" y1=\"%.1f\" "
				"x2=\"%.1f\" y2=\"%.1f\"/>"
				"<text x=\"%.1f\" y=\"%.1f\" "
				"text-anchor=\"middle\">%s</text>\n",
				at, c->t, at, c->b, at, c->b, at, c->b + 5, at,
				c->b + 18, label);
	}
	hs__strbuf_addf(sb,
			"<path class=\"axis\" d=\"M%.1f %.1fV%.1fH%.1f\"/>\n",
			c->l, c->t, c->b, c->r);
	if (xlabel)
		hs__strbuf_addf(sb,
				"<text class=\"label\" x=\"%.1f\" y=\"%.1f\" "
				"text-anchor=\"middle\">%s</text>\n",
				(c->l + c->r) / 2, CH - 10, xlabel);
	hs__strbuf_addf(sb,
			"<text class=\"label\" x=\"18\" y=\"%.1f\" "
			"text-anchor=\"middle\" "
			"transform=\"rotate(-90 18 %.1f)\">%s</text>\n",
			(c->t + c->b) / 2, (c->t + c->b) / 2, ylabel);
}

static void no_data(struct chart *c)
{
	hs__strbuf_addf(c->sb,
			"<text class=\"label\" x=\"%.1f\" y=\"%.1f\" "
			"text-anchor=\"middle\">no data</text>\n",
			(c->l + c->r) / 2, (c->t + c->b) / 2);
}

static void line_begin(struct chart *c, const char *cls, const char *col,
		       const char *dash)
{
	hs__strbuf_addf(c->sb, "<polyline class=\"%s\" stroke=\"%s\"", cls,
			col);
	if (dash)
		hs__strbuf_addf(c->sb, " stroke-dasharray=\"%s\"", dash);
	hs__strbuf_add(c->sb, " points=\"");
}

static void line_pt(struct chart *c, double x, double y)
{
	hs__strbuf_addf(c->sb, "%.1f,%.1f ", px(c, x), py(c, y));
}

static void line_end(struct chart *c)
{
	hs__strbuf_add(c->sb, "\"/>\n");
}

/* Bins a line of a few hundred points averages together: more are
 * noise to the eye, and several such lines hide one another. */
#define MAX_POINTS 160

static size_t series_stride(const hs_bench_report_t *rep)
{
	size_t i, n = 0;

	for (i = 0; i < rep->n_runs; i++)
		if (rep->runs[i].n_series > n)
			n = rep->runs[i].n_series;
	return n > MAX_POINTS ? (n + MAX_POINTS - 1) / MAX_POINTS : 1;
}

/* A line from series points, stride bins to a point (equal bins, so the
 * plain mean is the mean over their span). One point alone gets a dot,
 * which a one-point polyline would not show. */
static void series_line(struct chart *c, const hs_run_fig_t *r, size_t i,
			bool power, size_t stride)
{
	double t, y, sum_t = 0, sum_y = 0;
	size_t j, k, n = 0, got;

	line_begin(c, "series", colour(i), NULL);
	for (j = 0; j < r->n_series; j += stride) {
		sum_t = sum_y = 0;
		got = 0;
		for (k = j; k < j + stride && k < r->n_series; k++) {
			t = r->series[k].t_s;
			y = power ? r->series[k].power_avg_w
				  : r->series[k].tokens_per_s;
			if (isfinite(y) && isfinite(t)) {
				sum_t += t;
				sum_y += y;
				got++;
			}
		}
		if (!got)
			continue;
		line_pt(c, sum_t / (double)got, sum_y / (double)got);
		n++;
	}
	line_end(c);
	if (n == 1)
		hs__strbuf_addf(c->sb,
				"<circle cx=\"%.1f\" cy=\"%.1f\" r=\"3\" "
				"fill=\"%s\"/>\n",
				px(c, sum_t / (double)got),
				py(c, sum_y / (double)got), colour(i));
}

static void series_range(const hs_bench_report_t *rep, bool power, double *tmax,
			 double *ymax, bool *any)
{
	size_t i, j;
	double y;

	for (i = 0; i < rep->n_runs; i++)
		for (j = 0; j < rep->runs[i].n_series; j++) {
			const hs_series_pt_t *p = &rep->runs[i].series[j];

			y = power ? p->power_avg_w : p->tokens_per_s;
			if (!isfinite(y) || !isfinite(p->t_s))
				continue;
			*any = true;
			*tmax = fmax(*tmax, p->t_s);
			*ymax = fmax(*ymax, y);
			if (power && isfinite(p->budget_w))
				*ymax = fmax(*ymax, p->budget_w);
		}
}

static bool any_modeled(const hs_bench_report_t *rep)
{
	size_t i;

	for (i = 0; i < rep->n_runs; i++)
		if (rep->runs[i].energy_modeled)
			return true;
	return false;
}

/*
 * The budget as the runs saw it (it may change during a run): from the
 * longest run whose series carries one, so that it spans the chart, broken
 * where there is none; else the budget of the inputs, straight across.
 */
static void budget_line(struct chart *c, const hs_bench_report_t *rep,
			const struct key *k)
{
	const hs_run_fig_t *r = NULL;
	size_t i, j;
	bool open = false;

	for (i = 0; i < rep->n_runs; i++)
		for (j = 0; j < rep->runs[i].n_series; j++)
			if (rep->runs[i].series[j].budget_w > 0) {
				if (!r || rep->runs[i].n_series > r->n_series)
					r = &rep->runs[i];
				break;
			}
	if (!r) {
		line_begin(c, "ref", k->colour, k->dash);
		line_pt(c, c->x.lo, rep->in.power_budget_w);
		line_pt(c, c->x.hi, rep->in.power_budget_w);
		line_end(c);
		return;
	}
	for (j = 0; j < r->n_series; j++) {
		const hs_series_pt_t *p = &r->series[j];

		if (!(p->budget_w > 0) || !isfinite(p->budget_w)) {
			if (open)
				line_end(c);
			open = false;
			continue;
		}
		if (!open)
			line_begin(c, "ref", k->colour, k->dash);
		open = true;
		line_pt(c, p->t_s, p->budget_w);
		/* Hold the level to the end of the bin. */
		if (j + 1 < r->n_series)
			line_pt(c, r->series[j + 1].t_s, p->budget_w);
	}
	if (open)
		line_end(c);
}

static void chart_power(const hs_bench_report_t *rep, hs__strbuf_t *sb)
{
	static const struct key budget = {"power budget", "#222222", "7 5"};
	struct chart c;
	double tmax = 0, wmax = 0;
	bool any = false, has_budget;
	size_t i, j;

	series_range(rep, true, &tmax, &wmax, &any);
	has_budget = rep->in.power_budget_w > 0;
	for (i = 0; i < rep->n_runs; i++)
		for (j = 0; j < rep->runs[i].n_series; j++)
			if (rep->runs[i].series[j].budget_w > 0)
				has_budget = true;
	if (rep->in.power_budget_w > 0)
		wmax = fmax(wmax, rep->in.power_budget_w);
	chart_begin(&c, sb,
		    any_modeled(rep)
			    ? "Power over time against the budget (modeled)"
			    : "Power over time against the budget",
		    rep, true, &budget, has_budget);
	axis_fit(&c.x, 0, tmax, false);
	axis_fit(&c.y, 0, wmax * 1.05, false);
	axes(&c, "time since the first arrival (s)", "average power (W)");
	if (!any)
		no_data(&c);
	for (i = 0; i < rep->n_runs; i++)
		series_line(&c, &rep->runs[i], i, true, series_stride(rep));
	if (has_budget)
		budget_line(&c, rep, &budget);
	chart_end(&c);
}

static void chart_throughput(const hs_bench_report_t *rep, hs__strbuf_t *sb)
{
	struct chart c;
	double tmax = 0, ymax = 0;
	bool any = false;
	size_t i;

	series_range(rep, false, &tmax, &ymax, &any);
	chart_begin(&c, sb, "Throughput over time", rep, true, NULL, 0);
	axis_fit(&c.x, 0, tmax, false);
	axis_fit(&c.y, 0, ymax * 1.05, false);
	axes(&c, "time since the first arrival (s)", "output tokens/s");
	if (!any)
		no_data(&c);
	for (i = 0; i < rep->n_runs; i++)
		series_line(&c, &rep->runs[i], i, false, series_stride(rep));
	chart_end(&c);
}

/* The CDF samples are sorted and evenly spaced in rank: the i-th of n
 * sits at the quantile i/(n-1). */
static void chart_cdf(const hs_bench_report_t *rep, hs__strbuf_t *sb)
{
	struct chart c;
	double lo = INFINITY, hi = 0, v;
	bool logx;
	size_t i, j, n;

	for (i = 0; i < rep->n_runs; i++)
		for (j = 0; j < rep->runs[i].n_cdf; j++) {
			v = rep->runs[i].cdf_e2e_ms[j];
			if (isfinite(v) && v > 0) {
				lo = fmin(lo, v);
				hi = fmax(hi, v);
			}
		}
	/* Latencies spread over decades read better on a log axis. */
	logx = hi > 0 && hi / lo >= 20;
	chart_begin(&c, sb, "End-to-end latency, cumulative distribution", rep,
		    true, NULL, 0);
	axis_fit(&c.x, logx ? lo : 0, hi, logx);
	axis_fit(&c.y, 0, 100, false);
	axes(&c,
	     logx ? "end-to-end latency (ms, log scale)"
		  : "end-to-end latency (ms)",
	     "requests completed within (%)");
	if (!(hi > 0))
		no_data(&c);
	for (i = 0; i < rep->n_runs; i++) {
		const hs_run_fig_t *r = &rep->runs[i];

		n = r->n_cdf;
		if (!n)
			continue;
		line_begin(&c, "series", colour(i), NULL);
		for (j = 0; j < n; j++)
			if (isfinite(r->cdf_e2e_ms[j]))
				line_pt(&c, r->cdf_e2e_ms[j],
					n > 1 ? 100.0 * (double)j /
							(double)(n - 1)
					      : 100);
		line_end(&c);
	}
	chart_end(&c);
}

static double bar_tokens_per_s(const hs_run_fig_t *r)
{
	return r->output_tokens_per_s;
}

static double bar_tokens_per_joule(const hs_run_fig_t *r)
{
	return r->joules_per_output_token > 0 ? 1 / r->joules_per_output_token
					      : NAN;
}

/* One bar per policy, its value above it and its name below; ref > 0
 * draws a reference level across (the LP bound). */
static void chart_bars(const hs_bench_report_t *rep, hs__strbuf_t *sb,
		       const char *title, const char *ylabel,
		       double (*value)(const hs_run_fig_t *), double ref,
		       const struct key *ref_key)
{
	struct chart c;
	double vmax = 0, v, slot, bw, x, y, name_w = 0;
	bool stagger;
	size_t i;

	for (i = 0; i < rep->n_runs; i++) {
		v = value(&rep->runs[i]);
		if (isfinite(v))
			vmax = fmax(vmax, v);
		name_w =
			fmax(name_w, 7.0 * (double)strlen(rep->runs[i].policy));
	}
	if (ref > 0)
		vmax = fmax(vmax, ref);
	chart_begin(&c, sb, title, rep, false, ref_key, ref > 0);
	axis_fit(&c.x, 0, 1, false);
	/* Room above the tallest bar for its label. */
	axis_fit(&c.y, 0, vmax * 1.1, false);
	axes(&c, NULL, ylabel);
	if (!rep->n_runs)
		no_data(&c);
	slot = (c.r - c.l) / (double)(rep->n_runs ? rep->n_runs : 1);
	bw = fmin(slot * 0.6, 96);
	/* Names wider than their bar's slot go on two rows, alternately. */
	stagger = name_w > slot - 6;
	for (i = 0; i < rep->n_runs; i++) {
		v = value(&rep->runs[i]);
		x = c.l + slot * (double)i + slot / 2;
		y = isfinite(v) && v > 0 ? py(&c, v) : c.b;
		if (isfinite(v) && v > 0)
			hs__strbuf_addf(sb,
					"<rect x=\"%.1f\" y=\"%.1f\" "
					"width=\"%.1f\" height=\"%.1f\" "
					"fill=\"%s\"/>",
					x - bw / 2, y, bw, c.b - y, colour(i));
		hs__strbuf_addf(sb,
				"<text x=\"%.1f\" y=\"%.1f\" "
				"text-anchor=\"middle\">",
				x, y - 6);
		if (isfinite(v))
			num(sb, v);
		else
			hs__strbuf_add(sb, "n/a");
		hs__strbuf_addf(sb,
				"</text><text class=\"label\" x=\"%.1f\" "
				"y=\"%.1f\" text-anchor=\"middle\">",
				x, c.b + 20 + (stagger && i % 2 ? 16 : 0));
		esc(sb, rep->runs[i].policy);
		hs__strbuf_add(sb, "</text>\n");
	}
	if (ref > 0) {
		line_begin(&c, "ref", ref_key->colour, ref_key->dash);
		line_pt(&c, c.x.lo, ref);
		line_pt(&c, c.x.hi, ref);
		line_end(&c);
	}
	chart_end(&c);
}

/* ------------------------------------------------------------------------ */
/* The page                                                                 */
/* ------------------------------------------------------------------------ */

static const char style[] =
	"body{font:14px/1.45 system-ui,-apple-system,\"Segoe UI\",Roboto,"
	"Helvetica,Arial,sans-serif;color:#1d1d1f;background:#fff;"
	"margin:0 auto;max-width:1000px;padding:24px}\n"
	"h1{font-size:24px;margin:0 0 4px}\n"
	"h2{font-size:18px;margin:32px 0 8px;padding-bottom:4px;"
	"border-bottom:1px solid #ddd}\n"
	"h3{font-size:15px;margin:20px 0 6px}\n"
	".lede{color:#555;margin:0 0 12px}\n"
	".note{background:#fff7e0;border-left:4px solid #e0a800;"
	"padding:8px 12px;margin:12px 0}\n"
	".wide{overflow-x:auto}\n"
	"table{border-collapse:collapse;margin:8px 0;"
	"font-variant-numeric:tabular-nums}\n"
	"th,td{padding:4px 8px;border-bottom:1px solid #e6e6e6;"
	"text-align:right;white-space:nowrap}\n"
	"th:first-child,td:first-child,.t{text-align:left}\n"
	"thead th{background:#f5f5f7;font-weight:600;white-space:normal;"
	"vertical-align:bottom}\n"
	"td.best{font-weight:700;color:#1a7f37}\n"
	".kv th{color:#555;font-weight:500;text-align:left}\n"
	".kv td{text-align:left;white-space:normal}\n"
	".swatch{display:inline-block;width:10px;height:10px;"
	"border-radius:2px;margin-right:6px}\n"
	".meter{display:inline-block;width:80px;height:8px;background:#eee;"
	"border-radius:4px;margin-left:8px;vertical-align:middle}\n"
	".meter span{display:block;height:100%;background:#4e79a7;"
	"border-radius:4px}\n"
	".chart{margin:18px 0}\n"
	"svg{max-width:100%;height:auto;display:block}\n"
	"svg text{font-size:12px;fill:#333}\n"
	"svg .title{font-size:15px;font-weight:600;fill:#111}\n"
	"svg .label{font-size:13px;fill:#222}\n"
	"svg .grid{stroke:#e8e8e8;stroke-width:1}\n"
	"svg .axis{stroke:#444;fill:none}\n"
	"svg .series{fill:none;stroke-width:1.8;stroke-linejoin:round;"
	"stroke-opacity:0.9}\n"
	"svg .ref{fill:none;stroke-width:1.6}\n"
	"footer{color:#777;margin-top:32px;font-size:12px}\n";

static void slo_text(hs__strbuf_t *sb, const hs_bench_inputs_t *in)
{
	if (in->slo_ttft_ms > 0) {
		hs__strbuf_add(sb, "TTFT &#8804; ");
		num(sb, in->slo_ttft_ms);
		hs__strbuf_add(sb, " ms");
	}
	if (in->slo_ttft_ms > 0 && in->slo_tpot_ms > 0)
		hs__strbuf_add(sb, ", ");
	if (in->slo_tpot_ms > 0) {
		hs__strbuf_add(sb, "TPOT &#8804; ");
		num(sb, in->slo_tpot_ms);
		hs__strbuf_add(sb, " ms");
	}
	if (!(in->slo_ttft_ms > 0) && !(in->slo_tpot_ms > 0))
		hs__strbuf_add(sb, "none");
}

static void lede(const hs_bench_report_t *rep, hs__strbuf_t *sb)
{
	const hs_bench_inputs_t *in = &rep->in;

	hs__strbuf_add(sb, "<p class=\"lede\">");
	esc(sb, in->trace);
	hs__strbuf_addf(sb, " &#183; %zu jobs &#183; fleet ", in->n_jobs);
	esc(sb, in->fleet);
	hs__strbuf_addf(sb, " (%zu devices) &#183; budget ", in->n_devices);
	if (in->power_budget_w > 0) {
		num(sb, in->power_budget_w);
		hs__strbuf_add(sb, " W");
	} else {
		hs__strbuf_add(sb, "none");
	}
	hs__strbuf_addf(sb, " &#183; seed %" PRIu64 "</p>\n", in->seed);
	if (any_modeled(rep))
		hs__strbuf_add(sb, "<p class=\"note\">Energy and power are "
				   "<strong>modeled</strong> from device "
				   "profiles: no power sensor was read.</p>\n");
}

static void comparison(const hs_bench_report_t *rep, hs__strbuf_t *sb)
{
	char cell[64];
	unsigned c;
	size_t i;
	bool best, some = false;

	hs__strbuf_add(sb, "<h2>Comparison</h2>\n<div class=\"wide\"><table>"
			   "\n<thead><tr>");
	for (c = 0; c < HS__REPORT_NCOLS; c++) {
		hs__report_cell(rep, NULL, c, cell, sizeof(cell));
		hs__strbuf_add(sb, "<th>");
		esc(sb, cell);
		hs__strbuf_add(sb, "</th>");
	}
	hs__strbuf_add(sb, "</tr></thead>\n<tbody>\n");
	for (i = 0; i < rep->n_runs; i++) {
		hs__strbuf_addf(sb,
				"<tr><th scope=\"row\"><span class=\"swatch\" "
				"style=\"background:%s\"></span>",
				colour(i));
		esc(sb, rep->runs[i].policy);
		hs__strbuf_add(sb, "</th>");
		for (c = 1; c < HS__REPORT_NCOLS; c++) {
			best = hs__report_cell(rep, &rep->runs[i], c, cell,
					       sizeof(cell));
			some |= best;
			hs__strbuf_add(sb,
				       best ? "<td class=\"best\">" : "<td>");
			esc(sb, cell);
			hs__strbuf_add(sb, "</td>");
		}
		hs__strbuf_add(sb, "</tr>\n");
	}
	hs__strbuf_add(sb, "</tbody></table></div>\n<p>");
	if (some)
		hs__strbuf_add(sb, "The best value of each column is in "
				   "<strong>bold green</strong>. ");
	if (rep->upper_bound_tokens_per_s >= 0) {
		hs__strbuf_add(sb, "The LP upper bound is ");
		num(sb, rep->upper_bound_tokens_per_s);
		hs__strbuf_add(sb, " output tokens/s; %BOUND is a run's "
				   "throughput as a share of it (or of the "
				   "offered load, if lower). ");
	}
	hs__strbuf_add(sb, "VIOL counts power-budget overshoots (largest in "
			   "brackets).</p>\n");
	for (i = 0; i < rep->n_runs; i++)
		if (rep->runs[i].slo_attainment >= 0)
			break;
	if (i == rep->n_runs)
		return;
	hs__strbuf_add(sb, "<p>SLO attainment");
	if (rep->in.slo_ttft_ms > 0 || rep->in.slo_tpot_ms > 0) {
		hs__strbuf_add(sb, " (");
		slo_text(sb, &rep->in);
		hs__strbuf_add(sb, ")");
	}
	hs__strbuf_add(sb, ":");
	for (i = 0; i < rep->n_runs; i++) {
		if (rep->runs[i].slo_attainment < 0)
			continue;
		hs__strbuf_add(sb, " ");
		esc(sb, rep->runs[i].policy);
		hs__strbuf_addf(sb, " %.1f%%%s",
				100 * rep->runs[i].slo_attainment,
				i + 1 < rep->n_runs ? "," : "");
	}
	hs__strbuf_add(sb, "</p>\n");
}

static void charts(const hs_bench_report_t *rep, hs__strbuf_t *sb)
{
	static const struct key bound = {"LP upper bound", "#222222", "4 4"};

	hs__strbuf_add(sb, "<h2>Charts</h2>\n");
	chart_power(rep, sb);
	chart_throughput(rep, sb);
	chart_cdf(rep, sb);
	chart_bars(rep, sb, "Output tokens per second", "output tokens/s",
		   bar_tokens_per_s, rep->upper_bound_tokens_per_s, &bound);
	chart_bars(rep, sb,
		   any_modeled(rep) ? "Output tokens per joule (modeled energy)"
				    : "Output tokens per joule",
		   "output tokens/J", bar_tokens_per_joule, 0, NULL);
}

static void kv_text(hs__strbuf_t *sb, const char *key, const char *value)
{
	hs__strbuf_addf(sb, "<tr><th>%s</th><td>", key);
	esc(sb, value);
	hs__strbuf_add(sb, "</td></tr>\n");
}

static void kv_num(hs__strbuf_t *sb, const char *key, double v,
		   const char *unit)
{
	hs__strbuf_addf(sb, "<tr><th>%s</th><td>", key);
	if (v > 0) {
		num(sb, v);
		hs__strbuf_add(sb, unit);
	} else {
		hs__strbuf_add(sb, "none");
	}
	hs__strbuf_add(sb, "</td></tr>\n");
}

static void inputs(const hs_bench_report_t *rep, hs__strbuf_t *sb)
{
	const hs_bench_inputs_t *in = &rep->in;

	hs__strbuf_add(sb, "<h2>Inputs</h2>\n<table class=\"kv\">\n");
	kv_text(sb, "Trace", in->trace);
	kv_text(sb, "Format", in->format);
	kv_text(sb, "Models", in->models[0] ? in->models : "from the trace");
	kv_text(sb, "Fleet", in->fleet);
	hs__strbuf_addf(sb, "<tr><th>Devices</th><td>%zu</td></tr>\n",
			in->n_devices);
	hs__strbuf_addf(sb, "<tr><th>Jobs</th><td>%zu</td></tr>\n", in->n_jobs);
	kv_num(sb, "Offered load", in->offered_output_tokens_per_s,
	       " output tokens/s");
	kv_num(sb, "Rate scale", in->rate_scale, "");
	kv_num(sb, "Power budget", in->power_budget_w, " W");
	kv_num(sb, "Time limit", in->time_limit_s, " s");
	hs__strbuf_addf(sb, "<tr><th>Seed</th><td>%" PRIu64 "</td></tr>\n",
			in->seed);
	hs__strbuf_add(sb, "<tr><th>SLO</th><td>");
	slo_text(sb, in);
	hs__strbuf_add(sb, "</td></tr>\n");
	kv_num(sb, "LP upper bound",
	       rep->upper_bound_tokens_per_s >= 0
		       ? rep->upper_bound_tokens_per_s
		       : 0,
	       " output tokens/s");
	kv_text(sb, "Version", in->version[0] ? in->version : "unknown");
	hs__strbuf_add(sb, "</table>\n");
}

static void devices(const hs_bench_report_t *rep, hs__strbuf_t *sb)
{
	double u;
	size_t i, j;

	hs__strbuf_add(sb, "<h2>Devices</h2>\n");
	for (i = 0; i < rep->n_runs; i++) {
		const hs_run_fig_t *r = &rep->runs[i];

		hs__strbuf_addf(sb,
				"<h3><span class=\"swatch\" "
				"style=\"background:%s\"></span>",
				colour(i));
		esc(sb, r->policy);
		hs__strbuf_add(sb, "</h3>\n<div class=\"wide\"><table>\n"
				   "<thead><tr><th>Device</th>"
				   "<th class=\"t\">Profile</th>"
				   "<th>Utilisation</th><th>Energy (J)</th>"
				   "<th>Output tokens</th>"
				   "<th class=\"t\">State</th></tr></thead>\n"
				   "<tbody>\n");
		for (j = 0; j < r->n_devices; j++) {
			const hs_device_fig_t *d = &r->devices[j];

			u = isfinite(d->utilisation) ? d->utilisation : 0;
			u = u < 0 ? 0 : u > 1 ? 1 : u;
			hs__strbuf_add(sb, "<tr><td>");
			esc(sb, d->name);
			hs__strbuf_add(sb, "</td><td class=\"t\">");
			esc(sb, d->profile);
			hs__strbuf_addf(sb,
					"</td><td>%.1f%%<span class=\"meter\">"
					"<span style=\"width:%.1f%%\"></span>"
					"</span></td><td>",
					100 * d->utilisation, 100 * u);
			num(sb, d->energy_j);
			hs__strbuf_addf(sb,
					"</td><td>%" PRIu64 "</td>"
					"<td class=\"t\">%s</td>"
					"</tr>\n",
					d->output_tokens,
					d->failed ? "failed" : "ok");
		}
		hs__strbuf_add(sb, "</tbody></table></div>\n");
	}
}

int hs__report_html(const hs_bench_report_t *rep, hs__strbuf_t *sb)
{
	hs__strbuf_addf(sb,
			"<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n"
			"<meta charset=\"utf-8\"/>\n<meta name=\"viewport\" "
			"content=\"width=device-width, initial-scale=1\"/>\n"
			"<title>hetsched bench report</title>\n"
			"<style>\n%s</style>\n</head>\n<body>\n"
			"<h1>hetsched bench report</h1>\n",
			style);
	lede(rep, sb);
	comparison(rep, sb);
	charts(rep, sb);
	inputs(rep, sb);
	devices(rep, sb);
	hs__strbuf_add(sb, "<footer>Made by hetsched ");
	esc(sb, rep->in.version);
	hs__strbuf_add(sb, "; figures in report.json, tables in report.md."
			   "</footer>\n</body>\n</html>\n");
	return sb->failed ? HS_ENOMEM : 0;
}
