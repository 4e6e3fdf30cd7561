/*
 * Workload traces and synthetic workloads. Every row of a trace is checked
 * and becomes one hs_sim_job_t; nothing in a file is trusted, since traces
 * come from elsewhere and a bad one must stop with its file and line, not
 * turn into a plausible but wrong benchmark.
 *
 * A file is read in blocks, a line at a time, into one bounded buffer: a
 * trace of millions of rows costs its job array (grown geometrically) and
 * no memory kept per row. JSONL rows go through jansson, which allocates
 * while it parses a line and frees it all before the next.
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "trace.h"

#define MAX_LINE (64 * 1024)
#define BLOCK (64 * 1024)
#define MAX_TOKENS 10000000u
#define MAX_COLS 32
#define MAX_MIX ((unsigned)HS_ARRAY_SIZE(((hs_model_mix_t *)0)->models))
#define DIST_MAX 1000000.0
/* Whole-trace limits that keep every arrival inside an int64 of ns. */
#define MAX_SECONDS 9.0e9
#define MAX_MS 9000000000000ull
#define MIN_YEAR 1970
#define MAX_YEAR 2199
/* A synthetic workload larger than this is a typo, not a benchmark. */
#define MAX_SYNTH_JOBS 100000000.0

/* ------------------------------------------------------------------------ */
/* Random numbers                                                           */
/* ------------------------------------------------------------------------ */

/* splitmix64: small, fast, and the same sequence on every machine. */
static uint64_t rng_next(uint64_t *x)
{
	uint64_t z = (*x += 0x9e3779b97f4a7c15ull);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

/*
 * Independent streams of one seed, so that changing one distribution of a
 * synthetic workload leaves the draws of the others as they were.
 */
static uint64_t rng_stream(uint64_t seed, unsigned k)
{
	uint64_t x = seed ^ (0x632be59bd9b4e019ull * (k + 1));

	return rng_next(&x);
}

/* Uniform in [0, 1). */
static double rng_unit(uint64_t *x)
{
	return (double)(rng_next(x) >> 11) * 0x1.0p-53;
}

/* Uniform in (0, 1]: safe to take the log of. */
static double rng_open(uint64_t *x)
{
	return ((double)(rng_next(x) >> 11) + 1.0) * 0x1.0p-53;
}

/* Standard normal (Box-Muller). */
static double rng_normal(uint64_t *x)
{
	double r = sqrt(-2.0 * log(rng_open(x)));

	return r * cos(2.0 * M_PI * rng_unit(x));
}

/* Gamma(k, 1) by Marsaglia and Tsang; k < 1 through Gamma(k + 1). */
static double rng_gamma(uint64_t *x, double k)
{
	double boost = 1.0, d, c, z, v, u;

	if (k < 1.0) {
		boost = pow(rng_open(x), 1.0 / k);
		k += 1.0;
	}
	d = k - 1.0 / 3.0;
	c = 1.0 / sqrt(9.0 * d);
	for (;;) {
		do {
			z = rng_normal(x);
			v = 1.0 + c * z;
		} while (v <= 0.0);
		v = v * v * v;
		u = rng_open(x);
		if (u < 1.0 - 0.0331 * z * z * z * z ||
		    log(u) < 0.5 * z * z + d * (1.0 - v + log(v)))
			return d * v * boost;
	}
}

static uint32_t mix_draw(const hs_model_mix_t *mix, uint64_t *rng)
{
	double u;
	unsigned i;

	if (mix->n == 1)
		return mix->models[0];
	u = rng_unit(rng);
	for (i = 0; i + 1 < mix->n; i++) {
		if (u < mix->weights[i])
			return mix->models[i];
		u -= mix->weights[i];
	}
	return mix->models[mix->n - 1];
}

/* ------------------------------------------------------------------------ */
/* Small text helpers                                                       */
/* ------------------------------------------------------------------------ */

/*
 * Quote untrusted text in a message: at most `max` bytes, control and
 * non-ASCII bytes as '?', so junk in a file cannot garble a terminal.
 */
static void echo(char *dst, size_t size, const char *src, size_t max)
{
	size_t i, n = 0;

	for (i = 0; src[i] && n + 4 < size; i++) {
		unsigned char c = (unsigned char)src[i];

		if (i == max) {
			memcpy(dst + n, "...", 3);
			n += 3;
			break;
		}
		dst[n++] = c < 0x20 || c >= 0x7f ? '?' : (char)c;
	}
	dst[n] = '\0';
}

static char *trim(char *s)
{
	size_t n;

	while (*s == ' ' || *s == '\t')
		s++;
	n = strlen(s);
	while (n && (s[n - 1] == ' ' || s[n - 1] == '\t'))
		s[--n] = '\0';
	return s;
}

/* Exactly n decimal digits. */
static bool fixed_digits(const char **p, int n, int *out)
{
	int v = 0;

	while (n--) {
		if (**p < '0' || **p > '9')
			return false;
		v = v * 10 + (*(*p)++ - '0');
	}
	*out = v;
	return true;
}

/* Up to 9 fraction digits after the point, as ns; more are dropped. */
static bool fraction_ns(const char **p, int64_t *ns)
{
	int64_t scale = 100000000;
	const char *s = *p;

	*ns = 0;
	if (*s < '0' || *s > '9')
		return false;
	for (; *s >= '0' && *s <= '9'; s++) {
		*ns += (*s - '0') * scale;
		scale /= 10;
	}
	*p = s;
	return true;
}

/* Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant). */
static int64_t days_from_civil(int64_t y, int m, int d)
{
	int64_t era, yoe, doy, doe;

	y -= m <= 2;
	era = (y >= 0 ? y : y - 399) / 400;
	yoe = y - era * 400;
	doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
	doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
	return era * 146097 + doe - 719468;
}

static int days_in_month(int y, int m)
{
	static const int days[] = {31, 28, 31, 30, 31, 30,
				   31, 31, 30, 31, 30, 31};
	bool leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;

	return m == 2 && leap ? 29 : days[m - 1];
}

/*
 * "YYYY-MM-DD HH:MM:SS[.fraction]" (or 'T' between, 'Z' after), UTC, to ns
 * since the epoch. Integers all the way: a double cannot hold today's
 * epoch in ns, and the Azure trace has 100 ns resolution.
 */
static bool parse_civil(const char *s, int64_t *ns)
{
	int y, mo, d, h, mi, sec;
	int64_t frac = 0;

	if (!fixed_digits(&s, 4, &y) || *s++ != '-' ||
	    !fixed_digits(&s, 2, &mo) || *s++ != '-' ||
	    !fixed_digits(&s, 2, &d) || (*s != ' ' && *s != 'T'))
		return false;
	s++;
	if (!fixed_digits(&s, 2, &h) || *s++ != ':' ||
	    !fixed_digits(&s, 2, &mi) || *s++ != ':' ||
	    !fixed_digits(&s, 2, &sec))
		return false;
	if (*s == '.' && (s++, !fraction_ns(&s, &frac)))
		return false;
	if (*s == 'Z')
		s++;
	if (*s || y < MIN_YEAR || y > MAX_YEAR || mo < 1 || mo > 12 || d < 1 ||
	    d > days_in_month(y, mo) || h > 23 || mi > 59 || sec > 59)
		return false;
	*ns = ((days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + sec) *
	       1000000000) +
	      frac;
	return true;
}

/* Non-negative decimal seconds ("12", "12.5") to ns, exactly. */
static bool parse_seconds(const char *s, int64_t *ns)
{
	int64_t whole = 0, frac = 0;
	const char *p = s;

	if (*p < '0' || *p > '9')
		return false;
	for (; *p >= '0' && *p <= '9'; p++) {
		whole = whole * 10 + (*p - '0');
		if (whole > (int64_t)MAX_SECONDS)
			return false;
	}
	if (*p == '.' && (p++, *p) && !fraction_ns(&p, &frac))
		return false;
	if (*p)
		return false;
	*ns = whole * 1000000000 + frac;
	return true;
}

/*
 * Split a CSV line in place. Quoted fields ("a,b", "say ""hi""") are
 * unquoted; the files we read rarely quote, but a spreadsheet round trip
 * does. Returns the field count or -1 with *why set.
 */
static int split_csv(char *s, char **cols, int max, const char **why)
{
	char *r = s, *wp;
	int n = 0;

	for (;;) {
		if (n == max) {
			*why = "too many columns";
			return -1;
		}
		if (*r == '"') {
			cols[n++] = wp = ++r;
			for (;;) {
				if (!*r) {
					*why = "unterminated quoted field";
					return -1;
				}
				if (*r == '"' && *++r != '"')
					break;
				*wp++ = *r++;
			}
			if (*r && *r != ',') {
				*why = "text after a quoted field";
				return -1;
			}
			*wp = '\0';
		} else {
			cols[n++] = r;
			r += strcspn(r, ",");
		}
		if (!*r)
			return n;
		*r++ = '\0';
	}
}

/* ------------------------------------------------------------------------ */
/* Formats                                                                  */
/* ------------------------------------------------------------------------ */

static const char *const format_names[] = {
	[HS_TRACE_AUTO] = "auto",	  [HS_TRACE_AZURE] = "azure",
	[HS_TRACE_MOONCAKE] = "mooncake", [HS_TRACE_BURSTGPT] = "burstgpt",
	[HS_TRACE_JSONL] = "jsonl",
};

int hs_trace_format_parse(const char *name, hs_trace_format_t *out)
{
	size_t i;

	for (i = HS_TRACE_AZURE; name && i < HS_ARRAY_SIZE(format_names); i++) {
		if (!strcmp(name, format_names[i])) {
			*out = (hs_trace_format_t)i;
			return 0;
		}
	}
	return HS_EINVAL;
}

const char *hs_trace_format_name(hs_trace_format_t f)
{
	if ((unsigned)f < HS_ARRAY_SIZE(format_names))
		return format_names[f];
	return "unknown";
}

/* The columns a CSV format needs, by header name (any order). */
static const char *const azure_cols[] = {"TIMESTAMP", "ContextTokens",
					 "GeneratedTokens"};
static const char *const burstgpt_cols[] = {"Timestamp", "Request tokens",
					    "Response tokens"};

/* ------------------------------------------------------------------------ */
/* The loader                                                               */
/* ------------------------------------------------------------------------ */

enum { COL_TS, COL_CTX, COL_GEN, N_NEEDED };

/* A row that is no job and no error: a BurstGPT failure. */
#define ROW_FAILED 1

typedef struct loader_s {
	const char *path;
	const hs_trace_opts_t *opts;
	hs_workload_t *w;
	size_t cap;
	hs_trace_format_t format;
	FILE *f;
	char *buf; /* MAX_LINE + 1 */
	char *blk; /* BLOCK: what fread gave */
	size_t blk_pos, blk_len;
	size_t len;
	int line;
	hs_error_t row_err; /* the problem of the current row */
	const char *const *names; /* CSV: the needed columns' names */
	int col[N_NEEDED]; /* CSV: where they are */
	int n_cols; /* CSV: columns in the header */
	char *cols[MAX_COLS];
	int64_t prev_ns; /* the last accepted row's time */
	int prev_line;
	char prev_ts[48]; /* and its text, for messages */
	char ts[48]; /* the current row's */
	uint64_t rng;
} loader_t;

static int row_fail(loader_t *ld, int code, const char *field, const char *fmt,
		    ...) HS__PRINTF(4, 5);

static int row_fail(loader_t *ld, int code, const char *field, const char *fmt,
		    ...)
{
	char text[256];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(text, sizeof(text), fmt, ap);
	va_end(ap);
	return hs__error_set(&ld->row_err, code, ld->path, ld->line, field,
			     "%s", text);
}

/* Refill the read block; false at the end of the file or on an error. */
static bool refill(loader_t *ld)
{
	ld->blk_pos = 0;
	ld->blk_len = fread(ld->blk, 1, BLOCK, ld->f);
	return ld->blk_len > 0;
}

/*
 * The next line into ld->buf, without its line ending. 1: a line, 0: end
 * of file, <0: an error for the whole file (in ld->row_err).
 */
static int read_line(loader_t *ld)
{
	bool nl = false;
	size_t n = 0, k;
	char *p, *nlp;

	while (!nl && (ld->blk_pos < ld->blk_len || refill(ld))) {
		p = ld->blk + ld->blk_pos;
		nlp = memchr(p, '\n', ld->blk_len - ld->blk_pos);
		k = nlp ? (size_t)(nlp - p) : ld->blk_len - ld->blk_pos;
		if (n + k > MAX_LINE) {
			ld->line++;
			return row_fail(ld, HS_EPARSE, NULL,
					"line longer than %d KiB",
					MAX_LINE / 1024);
		}
		memcpy(ld->buf + n, p, k);
		n += k;
		ld->blk_pos += k + (nlp != NULL);
		nl = nlp != NULL;
	}
	if (ferror(ld->f))
		return row_fail(ld, HS_EIO, NULL, "read error: %s",
				strerror(errno));
	if (!nl && n == 0)
		return 0;
	if (ld->line < INT32_MAX)
		ld->line++;
	if (n && ld->buf[n - 1] == '\r')
		n--;
	ld->buf[n] = '\0';
	ld->len = n;
	/* A UTF-8 byte order mark, as spreadsheets write. */
	if (ld->line == 1 && n >= 3 && !memcmp(ld->buf, "\xef\xbb\xbf", 3)) {
		memmove(ld->buf, ld->buf + 3, n - 2);
		ld->len -= 3;
	}
	return 1;
}

/* Blank lines are skipped: a trailing one is common. */
static bool blank(const loader_t *ld)
{
	return strspn(ld->buf, " \t") == ld->len;
}

/* Text functions would see a NUL as the end of the line. */
static int check_nul(loader_t *ld)
{
	if (strlen(ld->buf) != ld->len)
		return row_fail(ld, HS_EPARSE, NULL,
				"line contains a NUL byte");
	return 0;
}

/* A token count of a CSV field, 0 included. */
static int csv_tokens(loader_t *ld, int which, uint32_t *out)
{
	const char *name = ld->names[which];
	char *s = trim(ld->cols[ld->col[which]]), *p = s;
	uint64_t v = 0;
	char shown[64];

	/* The saturation keeps a 30-digit count "absurd", not wrapped. */
	for (; *p >= '0' && *p <= '9'; p++)
		v = v > MAX_TOKENS ? v : v * 10 + (uint64_t)(*p - '0');
	if (p != s && !*p && v <= MAX_TOKENS) {
		*out = (uint32_t)v;
		return 0;
	}
	echo(shown, sizeof(shown), s, 32);
	if (!*s)
		return row_fail(ld, HS_EPARSE, name, "empty");
	if (*s == '-' && s[1] >= '0' && s[1] <= '9')
		return row_fail(ld, HS_ERANGE, name, "negative token count %s",
				shown);
	if (p == s || *p)
		return row_fail(ld, HS_EPARSE, name,
				"expected a whole number, got \"%s\"", shown);
	return row_fail(ld, HS_ERANGE, name, "%s tokens is absurd (at most %u)",
			shown, MAX_TOKENS);
}

/* Find the needed columns in a CSV header: the first missing, or NULL. */
static const char *csv_header(loader_t *ld, const char *const *names, int n,
			      int *found)
{
	const char *missing = NULL;
	int i, j;

	*found = 0;
	for (j = 0; j < N_NEEDED; j++) {
		ld->col[j] = -1;
		for (i = 0; i < n; i++)
			if (!strcasecmp(trim(ld->cols[i]), names[j]))
				ld->col[j] = i;
		if (ld->col[j] >= 0)
			++*found;
		else if (!missing)
			missing = names[j];
	}
	ld->names = names;
	ld->n_cols = n;
	return missing;
}

static int csv_row(loader_t *ld, hs_sim_job_t *job)
{
	const char *why = NULL;
	char *ts, shown[64];
	int n, rc;

	n = split_csv(ld->buf, ld->cols, MAX_COLS, &why);
	if (n < 0)
		return row_fail(ld, HS_EPARSE, NULL, "%s", why);
	if (n != ld->n_cols)
		return row_fail(ld, HS_EPARSE, NULL,
				"expected %d columns, got %d", ld->n_cols, n);
	ts = trim(ld->cols[ld->col[COL_TS]]);
	/* Kept raw: only a message shows it, and few rows make one. */
	hs__strlcpy(ld->ts, ts, sizeof(ld->ts));
	echo(shown, sizeof(shown), ts, 40);
	if (ld->format == HS_TRACE_AZURE && !parse_civil(ts, &job->arrival_ns))
		return row_fail(ld, HS_EPARSE, ld->names[COL_TS],
				"bad date \"%s\" (expected YYYY-MM-DD "
				"HH:MM:SS[.fraction], UTC)",
				shown);
	if (ld->format == HS_TRACE_BURSTGPT &&
	    !parse_seconds(ts, &job->arrival_ns))
		return row_fail(ld, HS_EPARSE, ld->names[COL_TS],
				"expected seconds (a non-negative decimal "
				"under %.0f), got \"%s\"",
				MAX_SECONDS, shown);
	if ((rc = csv_tokens(ld, COL_CTX, &job->ctx_tokens)) ||
	    (rc = csv_tokens(ld, COL_GEN, &job->gen_tokens)))
		return rc;
	/* BurstGPT logs failed requests with no response (and sometimes
	 * no prompt either). */
	if (job->gen_tokens == 0 && ld->format == HS_TRACE_BURSTGPT)
		return ROW_FAILED;
	if (job->ctx_tokens == 0)
		return row_fail(ld, HS_ERANGE, ld->names[COL_CTX],
				"0 tokens (a prompt has at least 1)");
	if (job->gen_tokens == 0)
		return row_fail(ld, HS_ERANGE, ld->names[COL_GEN],
				"0 tokens (a job generates at least 1)");
	return 0;
}

static int json_row(loader_t *ld, hs_sim_job_t *job)
{
	static const char *const ours[] = {"t",	  "model",    "ctx",
					   "gen", "priority", NULL};
	hs__jv_t jv = {.source = ld->path, .err = &ld->row_err, .path = "$"};
	char name[sizeof(((hs_model_t *)0)->name)], shown[64];
	const hs_model_t *m;
	uint64_t ms = 0;
	double t = 0;
	int prio = 0;
	json_t *o;
	int rc;

	o = hs__json_loads(ld->buf, ld->path, &ld->row_err);
	if (!o)
		return ld->row_err.code;
	/* Other keys (Mooncake's hash_ids, ...) are allowed and ignored. */
	if (ld->format == HS_TRACE_MOONCAKE) {
		if ((rc = hs__jv_expect_object(&jv, o)) ||
		    (rc = hs__jv_u64(&jv, o, "timestamp", true, &ms, 0,
				     MAX_MS)) ||
		    (rc = hs__jv_u32(&jv, o, "input_length", true,
				     &job->ctx_tokens, 1, MAX_TOKENS)) ||
		    (rc = hs__jv_u32(&jv, o, "output_length", true,
				     &job->gen_tokens, 1, MAX_TOKENS)))
			goto out_put;
		job->arrival_ns = (int64_t)ms * 1000000;
		snprintf(ld->ts, sizeof(ld->ts), "%llu ms",
			 (unsigned long long)ms);
		goto out_put;
	}
	if ((rc = hs__jv_expect_object(&jv, o)) ||
	    (rc = hs__jv_check_keys(&jv, o, ours)) ||
	    (rc = hs__jv_double(&jv, o, "t", true, &t, 0, MAX_SECONDS)) ||
	    (rc = hs__jv_string(&jv, o, "model", true, name, sizeof(name))) ||
	    (rc = hs__jv_u32(&jv, o, "ctx", true, &job->ctx_tokens, 1,
			     MAX_TOKENS)) ||
	    (rc = hs__jv_u32(&jv, o, "gen", true, &job->gen_tokens, 1,
			     MAX_TOKENS)) ||
	    (rc = hs__jv_int(&jv, o, "priority", false, &prio, -1000, 1000)))
		goto out_put;
	m = hs_model_catalog_find(ld->opts->models, name);
	if (!m) {
		echo(shown, sizeof(shown), name, 48);
		rc = row_fail(ld, HS_ENOENT, "$.model",
			      "unknown model \"%s\" (see hetsched models)",
			      shown);
		goto out_put;
	}
	job->model = (uint32_t)(m - hs_model_catalog_get(ld->opts->models, 0));
	job->priority = prio;
	job->arrival_ns = llround(t * 1e9);
	snprintf(ld->ts, sizeof(ld->ts), "%.9g s", t);
out_put:
	json_decref(o);
	return rc;
}

/*
 * Work out the format from the first line and read a CSV header. 1: the
 * line was a header, 0: it is the first data row, <0: an error.
 */
static int detect(loader_t *ld)
{
	hs_trace_format_t want = ld->opts->format;
	const char *s = ld->buf + strspn(ld->buf, " \t");
	const char *why, *missing;
	char shown[96];
	int n, found;
	json_t *o;

	echo(shown, sizeof(shown), s, 64);
	if (check_nul(ld))
		goto out_unknown;
	if (want == HS_TRACE_MOONCAKE || want == HS_TRACE_JSONL) {
		ld->format = want;
		return 0;
	}
	if (want == HS_TRACE_AUTO && *s == '{') {
		o = hs__json_loads(ld->buf, ld->path, &ld->row_err);
		if (!o) {
			ld->row_err.line = ld->line;
			return ld->row_err.code;
		}
		if (json_object_get(o, "timestamp") &&
		    json_object_get(o, "input_length"))
			ld->format = HS_TRACE_MOONCAKE;
		else if (json_object_get(o, "t") && json_object_get(o, "ctx"))
			ld->format = HS_TRACE_JSONL;
		json_decref(o);
		if (ld->format == HS_TRACE_AUTO)
			goto out_unknown;
		return 0;
	}
	n = split_csv(ld->buf, ld->cols, MAX_COLS, &why);
	if (n < 0)
		goto out_unknown;
	/* Asked for a format, or most of its columns there: say which one
	 * is missing rather than "unknown". */
	if (want != HS_TRACE_BURSTGPT) {
		missing = csv_header(ld, azure_cols, n, &found);
		ld->format = HS_TRACE_AZURE;
		if (!missing)
			return 1;
		if (want == HS_TRACE_AZURE || found > 1)
			goto out_missing;
	}
	if (want != HS_TRACE_AZURE) {
		missing = csv_header(ld, burstgpt_cols, n, &found);
		ld->format = HS_TRACE_BURSTGPT;
		if (!missing)
			return 1;
		if (want == HS_TRACE_BURSTGPT || found > 1)
			goto out_missing;
	}
	ld->format = HS_TRACE_AUTO;
	goto out_unknown;
out_missing:
	return row_fail(ld, HS_EPARSE, NULL,
			"the %s header has no column \"%s\" (first line: %s)",
			hs_trace_format_name(ld->format), missing, shown);
out_unknown:
	return hs__error_set(&ld->row_err, HS_EPARSE, ld->path, 0, NULL,
			     "unknown trace format (first line: %s)", shown);
}

/* Arrivals must not go back in time: the trace would not be a trace. */
static int check_order(loader_t *ld, int64_t ns)
{
	char now[64], prev[64];

	if (!ld->w->n_jobs || ns >= ld->prev_ns)
		return 0;
	echo(now, sizeof(now), ld->ts, 40);
	echo(prev, sizeof(prev), ld->prev_ts, 40);
	return row_fail(ld, HS_EINVAL, NULL,
			"timestamp goes backwards (%s after %s on line %d)",
			now, prev, ld->prev_line);
}

static int add_job(loader_t *ld, hs_sim_job_t *job)
{
	hs_workload_t *w = ld->w;

	if (ld->format != HS_TRACE_JSONL)
		job->model = mix_draw(ld->opts->mix, &ld->rng);
	if (hs__grow((void **)&w->jobs, &ld->cap, w->n_jobs + 1,
		     sizeof(*w->jobs)))
		return hs__error_set(&ld->row_err, HS_ENOMEM, ld->path, 0, NULL,
				     "out of memory (%zu jobs)", w->n_jobs);
	w->jobs[w->n_jobs++] = *job;
	ld->prev_ns = job->arrival_ns;
	ld->prev_line = ld->line;
	memcpy(ld->prev_ts, ld->ts, sizeof(ld->prev_ts));
	return 0;
}

/* One data row in ld->buf: 0 or an error for the whole load. */
static int do_row(loader_t *ld)
{
	const hs_trace_opts_t *opts = ld->opts;
	hs_sim_job_t job = {0};
	int rc;

	rc = check_nul(ld);
	if (!rc &&
	    (ld->format == HS_TRACE_AZURE || ld->format == HS_TRACE_BURSTGPT))
		rc = csv_row(ld, &job);
	else if (!rc)
		rc = json_row(ld, &job);
	if (!rc)
		rc = check_order(ld, job.arrival_ns);
	if (rc == ROW_FAILED) {
		ld->w->skipped++;
		ld->w->skipped_failed++;
		return 0;
	}
	if (rc < 0) {
		/* The row's errors come with this line, jansson's too. */
		ld->row_err.line = ld->line;
		if (rc == HS_ENOMEM || !opts->skip_bad_rows)
			return rc;
		hs__error_clear(&ld->row_err);
		ld->w->skipped++;
		return 0;
	}
	return add_job(ld, &job);
}

static int check_opts(const char *path, const hs_trace_opts_t *o,
		      hs_error_t *err)
{
	unsigned i;

	if (!path || !o)
		return hs__error_set(err, HS_EINVAL, path, 0, NULL,
				     "no trace or no options");
	if (!(o->rate_scale > 0) || !isfinite(o->rate_scale))
		return hs__error_set(err, HS_EINVAL, path, 0, "rate_scale",
				     "must be a positive number, got %g",
				     o->rate_scale);
	if ((unsigned)o->format >= HS_ARRAY_SIZE(format_names))
		return hs__error_set(err, HS_EINVAL, path, 0, "format",
				     "unknown format %d", (int)o->format);
	if (o->mix && (o->mix->n < 1 || o->mix->n > MAX_MIX))
		return hs__error_set(err, HS_EINVAL, path, 0, "mix",
				     "a mix has 1 to %u models, not %u",
				     MAX_MIX, o->mix->n);
	for (i = 0; o->mix && o->models && i < o->mix->n; i++)
		if (o->mix->models[i] >= hs_model_catalog_count(o->models))
			return hs__error_set(err, HS_EINVAL, path, 0, "mix",
					     "model index %u is not in the "
					     "catalog",
					     o->mix->models[i]);
	return 0;
}

/* Rebase to the first arrival and compress time by the rate scale. */
static int rebase(loader_t *ld)
{
	hs_workload_t *w = ld->w;
	double scale = ld->opts->rate_scale, x;
	int64_t t0 = w->jobs[0].arrival_ns;
	size_t i;

	for (i = 0; i < w->n_jobs; i++) {
		w->jobs[i].arrival_ns -= t0;
		if (scale == 1.0)
			continue;
		x = round((double)w->jobs[i].arrival_ns / scale);
		if (!(x < 9.0e18))
			return hs__error_set(&ld->row_err, HS_ERANGE, ld->path,
					     0, "rate_scale",
					     "arrivals overflow at rate "
					     "scale %g",
					     scale);
		w->jobs[i].arrival_ns = (int64_t)x;
	}
	return 0;
}

int hs_trace_load(hs_workload_t *w, const char *path,
		  const hs_trace_opts_t *opts, hs_error_t *err)
{
	loader_t ld = {.path = path, .opts = opts, .w = w};
	int header, rc;

	hs__error_clear(err);
	memset(w, 0, sizeof(*w));
	if ((rc = check_opts(path, opts, err)))
		return rc;
	ld.rng = rng_stream(opts->seed, 0);
	ld.buf = hs__malloc(MAX_LINE + 1 + BLOCK);
	if (!ld.buf)
		return hs__error_set(err, HS_ENOMEM, path, 0, NULL,
				     "out of memory");
	ld.blk = ld.buf + MAX_LINE + 1;
	ld.f = fopen(path, "rb");
	if (!ld.f) {
		rc = hs__error_set(err, HS_EIO, path, 0, NULL,
				   "cannot open: %s", strerror(errno));
		goto out_free;
	}
	while ((rc = read_line(&ld)) > 0 && blank(&ld))
		;
	if (rc < 0)
		goto out_err;
	if (rc == 0) {
		rc = hs__error_set(&ld.row_err, HS_EINVAL, path, 0, NULL,
				   "no jobs (the file is empty)");
		goto out_err;
	}
	if ((header = rc = detect(&ld)) < 0)
		goto out_err;
	if ((ld.format == HS_TRACE_JSONL && !opts->models) ||
	    (ld.format != HS_TRACE_JSONL && !opts->mix)) {
		rc = hs__error_set(
			&ld.row_err, HS_EINVAL, path, 0, NULL,
			"a %s trace needs %s", hs_trace_format_name(ld.format),
			ld.format == HS_TRACE_JSONL
				? "the model catalog"
				: "a model or a model mix for its jobs");
		goto out_err;
	}
	/* Rows start after the header, or on the line detect() looked at. */
	for (rc = header ? read_line(&ld) : 1; rc > 0; rc = read_line(&ld)) {
		if (blank(&ld))
			continue;
		if ((rc = do_row(&ld)))
			goto out_err;
		if (opts->max_jobs && w->n_jobs == opts->max_jobs)
			break;
	}
	if (rc < 0)
		goto out_err;
	if (!w->n_jobs) {
		if (w->skipped)
			rc = hs__error_set(&ld.row_err, HS_EINVAL, path, 0,
					   NULL, "no jobs (%zu rows skipped)",
					   w->skipped);
		else
			rc = hs__error_set(&ld.row_err, HS_EINVAL, path, 0,
					   NULL, "no jobs");
		goto out_err;
	}
	if ((rc = rebase(&ld)))
		goto out_err;
	w->format = ld.format;
	goto out_close;
out_err:
	if (err && !err->code)
		*err = ld.row_err;
	hs_workload_release(w);
out_close:
	fclose(ld.f);
out_free:
	hs__free(ld.buf);
	return rc;
}

void hs_workload_release(hs_workload_t *w)
{
	if (!w)
		return;
	hs__free(w->jobs);
	memset(w, 0, sizeof(*w));
}

/* ------------------------------------------------------------------------ */
/* Model mixes                                                              */
/* ------------------------------------------------------------------------ */

int hs_model_mix_parse(hs_model_mix_t *mix, const char *spec,
		       const hs_model_catalog_t *models, hs_error_t *err)
{
	char buf[1024], shown[64], *item, *next, *colon, *end;
	const hs_model_t *m, *first;
	hs_model_mix_t out = {.n = 0};
	double w, sum = 0;
	unsigned i;

	hs__error_clear(err);
	if (!spec || !*spec)
		return hs__error_set(err, HS_EINVAL, NULL, 0, NULL,
				     "empty model mix");
	if (strlen(spec) >= sizeof(buf))
		return hs__error_set(err, HS_EINVAL, NULL, 0, NULL,
				     "model mix longer than %zu bytes",
				     sizeof(buf) - 1);
	first = hs_model_catalog_get(models, 0);
	strcpy(buf, spec);
	for (item = buf; item; item = next) {
		next = strchr(item, ',');
		if (next)
			*next++ = '\0';
		/* Model names have no ':', so the last one starts a weight. */
		w = 1.0;
		colon = strrchr(item, ':');
		if (colon) {
			*colon++ = '\0';
			errno = 0;
			w = strtod(colon, &end);
			if (end == colon || *end || errno || !isfinite(w) ||
			    !(w > 0)) {
				echo(shown, sizeof(shown), colon, 32);
				return hs__error_set(err, HS_EINVAL, NULL, 0,
						     NULL,
						     "bad weight \"%s\" (a "
						     "positive number)",
						     shown);
			}
		}
		item = trim(item);
		echo(shown, sizeof(shown), item, 48);
		if (!*item)
			return hs__error_set(err, HS_EINVAL, NULL, 0, NULL,
					     "empty model name in the mix");
		m = hs_model_catalog_find(models, item);
		if (!m)
			return hs__error_set(err, HS_ENOENT, NULL, 0, NULL,
					     "unknown model \"%s\" (see "
					     "hetsched models)",
					     shown);
		if (out.n == MAX_MIX)
			return hs__error_set(err, HS_ERANGE, NULL, 0, NULL,
					     "a model mix has at most %u "
					     "models",
					     MAX_MIX);
		for (i = 0; i < out.n; i++)
			if (out.models[i] == (uint32_t)(m - first))
				return hs__error_set(err, HS_EEXIST, NULL, 0,
						     NULL,
						     "model \"%s\" is twice "
						     "in the mix",
						     shown);
		out.models[out.n] = (uint32_t)(m - first);
		out.weights[out.n++] = w;
		sum += w;
	}
	if (!isfinite(sum))
		return hs__error_set(err, HS_EINVAL, NULL, 0, NULL,
				     "model mix weights overflow");
	for (i = 0; i < out.n; i++)
		out.weights[i] /= sum;
	*mix = out;
	return 0;
}

/* ------------------------------------------------------------------------ */
/* Token distributions                                                      */
/* ------------------------------------------------------------------------ */

static int dist_check(const hs_dist_t *d, const char *what, hs_error_t *err)
{
	switch (d->kind) {
	case HS_DIST_CONST:
		if (d->a < 1 || d->a > DIST_MAX || d->a != floor(d->a))
			return hs__error_set(err, HS_EINVAL, NULL, 0, what,
					     "const:N needs a whole N in "
					     "[1, %.0f], got %g",
					     DIST_MAX, d->a);
		return 0;
	case HS_DIST_UNIFORM:
		if (d->a < 1 || d->b > DIST_MAX || d->a > d->b ||
		    d->a != floor(d->a) || d->b != floor(d->b))
			return hs__error_set(err, HS_EINVAL, NULL, 0, what,
					     "uniform:LO:HI needs whole "
					     "1 <= LO <= HI <= %.0f, got "
					     "%g:%g",
					     DIST_MAX, d->a, d->b);
		return 0;
	case HS_DIST_LOGNORMAL:
		if (!(d->a >= 1 && d->a <= DIST_MAX) ||
		    !(d->b >= 0 && d->b <= 10))
			return hs__error_set(err, HS_EINVAL, NULL, 0, what,
					     "lognormal:MEDIAN:SIGMA needs "
					     "MEDIAN in [1, %.0f] and SIGMA "
					     "in [0, 10], got %g:%g",
					     DIST_MAX, d->a, d->b);
		return 0;
	case HS_DIST_EXP:
		if (!(d->a >= 1 && d->a <= DIST_MAX))
			return hs__error_set(err, HS_EINVAL, NULL, 0, what,
					     "exp:MEAN needs MEAN in "
					     "[1, %.0f], got %g",
					     DIST_MAX, d->a);
		return 0;
	}
	return hs__error_set(err, HS_EINVAL, NULL, 0, what,
			     "unknown distribution kind %d", (int)d->kind);
}

int hs_dist_parse(hs_dist_t *d, const char *spec, const char *what,
		  hs_error_t *err)
{
	static const struct {
		const char *name;
		int kind;
		int n_args;
	} kinds[] = {
		{"const", HS_DIST_CONST, 1},
		{"uniform", HS_DIST_UNIFORM, 2},
		{"lognormal", HS_DIST_LOGNORMAL, 2},
		{"exp", HS_DIST_EXP, 1},
	};
	char buf[128], shown[64], *arg, *end;
	double v[2] = {0, 0};
	hs_dist_t out;
	size_t k;
	int n = 0, rc;

	hs__error_clear(err);
	echo(shown, sizeof(shown), spec ? spec : "", 48);
	if (!spec || strlen(spec) >= sizeof(buf))
		goto out_syntax;
	strcpy(buf, spec);
	arg = strchr(buf, ':');
	if (!arg)
		goto out_syntax;
	*arg++ = '\0';
	for (k = 0; k < HS_ARRAY_SIZE(kinds); k++)
		if (!strcmp(buf, kinds[k].name))
			break;
	if (k == HS_ARRAY_SIZE(kinds))
		goto out_syntax;
	for (; arg; n++) {
		char *p = arg;

		arg = strchr(arg, ':');
		if (arg)
			*arg++ = '\0';
		if (n == kinds[k].n_args)
			return hs__error_set(err, HS_EINVAL, NULL, 0, what,
					     "%s takes %d value%s, got more "
					     "in \"%s\"",
					     kinds[k].name, kinds[k].n_args,
					     kinds[k].n_args > 1 ? "s" : "",
					     shown);
		errno = 0;
		v[n] = strtod(p, &end);
		if (end == p || *end || errno || !isfinite(v[n]))
			return hs__error_set(err, HS_EINVAL, NULL, 0, what,
					     "bad number in \"%s\"", shown);
	}
	if (n != kinds[k].n_args)
		return hs__error_set(err, HS_EINVAL, NULL, 0, what,
				     "%s takes %d value%s, got %d in \"%s\"",
				     kinds[k].name, kinds[k].n_args,
				     kinds[k].n_args > 1 ? "s" : "", n, shown);
	out.kind = kinds[k].kind;
	out.a = v[0];
	out.b = v[1];
	if ((rc = dist_check(&out, what, err)))
		return rc;
	*d = out;
	return 0;
out_syntax:
	return hs__error_set(err, HS_EINVAL, NULL, 0, what,
			     "expected const:N, uniform:LO:HI, "
			     "lognormal:MEDIAN:SIGMA or exp:MEAN, got \"%s\"",
			     shown);
}

static uint32_t dist_sample(const hs_dist_t *d, uint64_t *rng)
{
	double x = d->a;

	switch (d->kind) {
	case HS_DIST_CONST:
		break;
	case HS_DIST_UNIFORM:
		x = d->a + floor(rng_unit(rng) * (d->b - d->a + 1));
		break;
	case HS_DIST_LOGNORMAL:
		x = d->a * exp(d->b * rng_normal(rng));
		break;
	case HS_DIST_EXP:
		x = -d->a * log(rng_open(rng));
		break;
	}
	x = round(x);
	return (uint32_t)(x < 1 ? 1 : x > DIST_MAX ? DIST_MAX : x);
}

/* ------------------------------------------------------------------------ */
/* Synthetic workloads                                                      */
/* ------------------------------------------------------------------------ */

static int synth_check(const hs_synth_opts_t *o, hs_error_t *err)
{
	const char *src = "synthetic workload";
	int rc;

	if (!(o->rate > 0) || !isfinite(o->rate))
		return hs__error_set(err, HS_EINVAL, src, 0, "rate",
				     "must be a positive number of jobs per "
				     "second, got %g",
				     o->rate);
	if (!(o->duration_s > 0) || o->duration_s > MAX_SECONDS)
		return hs__error_set(err, HS_EINVAL, src, 0, "duration",
				     "must be in (0, %.0f] s, got %g",
				     MAX_SECONDS, o->duration_s);
	if (o->rate * o->duration_s > MAX_SYNTH_JOBS)
		return hs__error_set(err, HS_ERANGE, src, 0, NULL,
				     "%g jobs/s for %g s is over %.0f jobs",
				     o->rate, o->duration_s, MAX_SYNTH_JOBS);
	if (o->arrival != HS_ARRIVAL_POISSON && o->arrival != HS_ARRIVAL_GAMMA)
		return hs__error_set(err, HS_EINVAL, src, 0, "arrival",
				     "unknown arrival process %d",
				     (int)o->arrival);
	if (o->arrival == HS_ARRIVAL_GAMMA &&
	    !(o->gamma_cv > 0 && o->gamma_cv <= 100))
		return hs__error_set(err, HS_EINVAL, src, 0, "gamma_cv",
				     "must be in (0, 100], got %g",
				     o->gamma_cv);
	if (!o->mix || o->mix->n < 1 || o->mix->n > MAX_MIX)
		return hs__error_set(err, HS_EINVAL, src, 0, "mix",
				     "needs a model or a model mix");
	if ((rc = dist_check(&o->ctx, "ctx", err)) ||
	    (rc = dist_check(&o->gen, "gen", err)))
		return rc;
	return 0;
}

int hs_synth_generate(hs_workload_t *w, const hs_synth_opts_t *opts,
		      hs_error_t *err)
{
	uint64_t r_arr, r_ctx, r_gen, r_mix;
	double t = 0, k = 1, theta = 0;
	size_t cap = 0;
	int rc;

	hs__error_clear(err);
	memset(w, 0, sizeof(*w));
	if ((rc = synth_check(opts, err)))
		return rc;
	r_arr = rng_stream(opts->seed, 1);
	r_ctx = rng_stream(opts->seed, 2);
	r_gen = rng_stream(opts->seed, 3);
	r_mix = rng_stream(opts->seed, 0);
	if (opts->arrival == HS_ARRIVAL_GAMMA) {
		k = 1.0 / (opts->gamma_cv * opts->gamma_cv);
		theta = 1.0 / (opts->rate * k);
	}
	/* The first job at 0, as in a rebased trace. */
	while (t < opts->duration_s) {
		hs_sim_job_t *j;

		/* A very bursty process can overshoot its mean count. */
		if (w->n_jobs >= (size_t)MAX_SYNTH_JOBS) {
			rc = hs__error_set(err, HS_ERANGE, "synthetic workload",
					   0, NULL, "over %.0f jobs",
					   MAX_SYNTH_JOBS);
			goto out_release;
		}
		if (hs__grow((void **)&w->jobs, &cap, w->n_jobs + 1,
			     sizeof(*w->jobs))) {
			rc = hs__error_set(err, HS_ENOMEM, "synthetic workload",
					   0, NULL, "out of memory (%zu jobs)",
					   w->n_jobs);
			goto out_release;
		}
		j = &w->jobs[w->n_jobs++];
		j->arrival_ns = llround(t * 1e9);
		j->model = mix_draw(opts->mix, &r_mix);
		j->ctx_tokens = dist_sample(&opts->ctx, &r_ctx);
		j->gen_tokens = dist_sample(&opts->gen, &r_gen);
		j->priority = 0;
		if (opts->arrival == HS_ARRIVAL_GAMMA)
			t += theta * rng_gamma(&r_arr, k);
		else
			t += -log(rng_open(&r_arr)) / opts->rate;
	}
	w->format = HS_TRACE_AUTO;
	return 0;
out_release:
	hs_workload_release(w);
	return rc;
}
