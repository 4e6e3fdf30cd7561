/* The agent's job table: stable ids, tokens, and finished jobs for GET. */
#include <stdlib.h>
#include <string.h>

#include "agent.h"

/* ---- a map from 64-bit keys to pointers --------------------------------- */

static size_t slot_for(uint64_t key, size_t mask)
{
	key ^= key >> 33;
	key *= 0xff51afd7ed558ccdull;
	key ^= key >> 33;
	return (size_t)key & mask;
}

void *hs__map_get(const hs__map_t *m, uint64_t key)
{
	size_t mask, i;

	if (!m->cap)
		return NULL;
	mask = m->cap - 1;
	for (i = slot_for(key, mask); m->keys[i]; i = (i + 1) & mask)
		if (m->keys[i] == key)
			return m->vals[i];
	return NULL;
}

static int map_grow(hs__map_t *m)
{
	size_t cap = m->cap ? m->cap * 2 : 1024, i;
	uint64_t *keys = hs__calloc(cap, sizeof(*keys));
	void **vals = hs__calloc(cap, sizeof(*vals));

	if (!keys || !vals) {
		hs__free(keys);
		hs__free(vals);
		return HS_ENOMEM;
	}
	for (i = 0; i < m->cap; i++) {
		size_t j;

		if (!m->keys[i])
			continue;
		for (j = slot_for(m->keys[i], cap - 1); keys[j];
		     j = (j + 1) & (cap - 1))
			;
		keys[j] = m->keys[i];
		vals[j] = m->vals[i];
	}
	hs__free(m->keys);
	hs__free(m->vals);
	m->keys = keys;
	m->vals = vals;
	m->cap = cap;
	return 0;
}

int hs__map_put(hs__map_t *m, uint64_t key, void *val)
{
	size_t mask, i;

	if ((m->n + 1) * 4 > m->cap * 3 && map_grow(m))
		return HS_ENOMEM;
	mask = m->cap - 1;
	for (i = slot_for(key, mask); m->keys[i]; i = (i + 1) & mask)
		if (m->keys[i] == key) {
			m->vals[i] = val;
			return 0;
		}
	m->keys[i] = key;
	m->vals[i] = val;
	m->n++;
	return 0;
}

void hs__map_del(hs__map_t *m, uint64_t key)
{
	size_t mask, i, j;

	if (!m->cap)
		return;
	mask = m->cap - 1;
	for (i = slot_for(key, mask); m->keys[i] != key; i = (i + 1) & mask)
		if (!m->keys[i])
			return;
	/* Backward shift: no tombstones, so lookups stay short. */
	for (j = (i + 1) & mask; m->keys[j]; j = (j + 1) & mask) {
		size_t home = slot_for(m->keys[j], mask);

		if ((j > i && (home <= i || home > j)) ||
		    (j < i && home <= i && home > j)) {
			m->keys[i] = m->keys[j];
			m->vals[i] = m->vals[j];
			i = j;
		}
	}
	m->keys[i] = 0;
	m->vals[i] = NULL;
	m->n--;
}

void hs__map_release(hs__map_t *m)
{
	hs__free(m->keys);
	hs__free(m->vals);
	memset(m, 0, sizeof(*m));
}

/* ---- fast string appends ------------------------------------------------ */

int hs__sb_addn(hs__strbuf_t *sb, const char *s, size_t n)
{
	if (sb->failed)
		return sb->failed;
	if (hs__grow((void **)&sb->buf, &sb->cap, sb->len + n + 1, 1))
		return sb->failed = HS_ENOMEM;
	memcpy(sb->buf + sb->len, s, n);
	sb->len += n;
	sb->buf[sb->len] = '\0';
	return 0;
}

int hs__sb_addu(hs__strbuf_t *sb, uint64_t v)
{
	char buf[24];
	size_t i = sizeof(buf);

	do {
		buf[--i] = (char)('0' + v % 10);
		v /= 10;
	} while (v);
	return hs__sb_addn(sb, buf + i, sizeof(buf) - i);
}

int hs__sb_add_json_str(hs__strbuf_t *sb, const char *s)
{
	static const char hex[] = "0123456789abcdef";
	const char *run = s;

	hs__sb_addn(sb, "\"", 1);
	for (; *s; s++) {
		unsigned char ch = (unsigned char)*s;
		char esc[6] = {'\\', 'u', '0', '0', 0, 0};

		if (ch >= 0x20 && ch != '"' && ch != '\\')
			continue;
		hs__sb_addn(sb, run, (size_t)(s - run));
		run = s + 1;
		if (ch == '"' || ch == '\\') {
			esc[1] = (char)ch;
			hs__sb_addn(sb, esc, 2);
		} else {
			esc[4] = hex[ch >> 4];
			esc[5] = hex[ch & 15];
			hs__sb_addn(sb, esc, 6);
		}
	}
	hs__sb_addn(sb, run, (size_t)(s - run));
	return hs__sb_addn(sb, "\"", 1);
}

/* ---- jobs ---------------------------------------------------------------- */

hs__ajob_t *hs__job_new(hs__agent_t *a, uint64_t id, uint32_t model,
			const uint32_t *prompt, uint32_t n_prompt,
			uint32_t max_tokens)
{
	hs__ajob_t *job = hs__calloc(1, sizeof(*job));
	uint64_t cap = (uint64_t)n_prompt + max_tokens;

	if (!job)
		return NULL;
	/* Room for every token up front when it is small; long outputs grow
	 * as they come. */
	if (cap > n_prompt + 64ull)
		cap = n_prompt + 64ull;
	job->tokens = hs__malloc((size_t)(cap ? cap : 1) * sizeof(uint32_t));
	if (!job->tokens) {
		hs__free(job);
		return NULL;
	}
	if (n_prompt)
		memcpy(job->tokens, prompt, n_prompt * sizeof(uint32_t));
	job->cap = (uint32_t)cap;
	job->id = id;
	job->model = model;
	job->n_prompt = n_prompt;
	job->max_tokens = max_tokens;
	job->device = -1;
	job->deadline_ms = -1;
	job->created_ms = hs__unix_ms();
	job->arrival_ns = hs__agent_now(a);
	job->start_ns = -1;
	job->first_token_ns = -1;
	job->done_ns = -1;
	job->state = HS_JOB_QUEUED;
	hs__list_init(&job->done_node);
	return job;
}

void hs__job_free(hs__ajob_t *job)
{
	if (!job)
		return;
	hs__free(job->tokens);
	hs__free(job);
}

hs__ajob_t *hs__job_find(hs__agent_t *a, uint64_t id)
{
	return id ? hs__map_get(&a->by_id, id) : NULL;
}

hs__ajob_t *hs__job_by_core(hs__agent_t *a, uint64_t core_id)
{
	size_t slot = (size_t)(core_id & 0xffffffffu);
	hs__ajob_t *job;

	if (slot >= a->cap_slot)
		return NULL;
	job = a->by_slot[slot];
	return job && job->core_id == core_id ? job : NULL;
}

int hs__job_attach(hs__agent_t *a, hs__ajob_t *job, uint64_t core_id)
{
	size_t slot = (size_t)(core_id & 0xffffffffu);

	if (slot >= a->cap_slot) {
		size_t cap = a->cap_slot;

		if (hs__grow((void **)&a->by_slot, &cap, slot + 1,
			     sizeof(*a->by_slot)))
			return HS_ENOMEM;
		memset(a->by_slot + a->cap_slot, 0,
		       (cap - a->cap_slot) * sizeof(*a->by_slot));
		a->cap_slot = cap;
	}
	if (hs__map_put(&a->by_id, job->id, job))
		return HS_ENOMEM;
	a->by_slot[slot] = job;
	job->core_id = core_id;
	job->state = HS_JOB_QUEUED;
	a->live++;
	a->live_by_model[job->model]++;
	return 0;
}

void hs__job_finish(hs__agent_t *a, hs__ajob_t *job, hs_job_state_t state)
{
	if (job->core_id) {
		size_t slot = (size_t)(job->core_id & 0xffffffffu);

		if (slot < a->cap_slot && a->by_slot[slot] == job)
			a->by_slot[slot] = NULL;
		job->core_id = 0;
		a->live--;
		a->live_by_model[job->model]--;
		if (job->state == HS_JOB_RUNNING)
			a->running_by_model[job->model]--;
	}
	job->state = state;
	hs__list_add_tail(&a->finished, &job->done_node);
	a->n_finished++;
	while (a->n_finished > a->cfg->keep_finished) {
		hs__ajob_t *old = hs__container_of(a->finished.next, hs__ajob_t,
						   done_node);

		hs__list_del(&old->done_node);
		a->n_finished--;
		hs__map_del(&a->by_id, old->id);
		hs__job_free(old);
	}
}

int hs__job_push_token(hs__ajob_t *job, uint32_t token)
{
	uint32_t have = job->n_prompt + job->n_out;

	if (job->n_out >= job->max_tokens)
		return 0;
	if (have == job->cap) {
		size_t cap = job->cap;

		if (hs__grow((void **)&job->tokens, &cap, (size_t)have + 1,
			     sizeof(uint32_t)))
			return HS_ENOMEM;
		job->cap = cap > UINT32_MAX ? UINT32_MAX : (uint32_t)cap;
	}
	job->tokens[have] = token;
	job->n_out++;
	return 0;
}

void hs__job_fill_tokens(hs__agent_t *a, hs__ajob_t *job, uint32_t generated)
{
	/* Sim devices make no tokens: text that reads as text, the same for
	 * the same job. */
	static const char words[] = "the quick brown fox jumps over the lazy "
				    "dog ";
	const size_t n = sizeof(words) - 1;

	(void)a;
	if (generated > job->max_tokens)
		generated = job->max_tokens;
	while (job->n_out < generated) {
		size_t i = (size_t)((job->id * 7 + job->n_out) % n);

		if (hs__job_push_token(job, (uint8_t)words[i]))
			return;
	}
}

int hs__tokens_text(hs__strbuf_t *sb, const uint32_t *t, uint32_t n)
{
	char buf[256];
	size_t k = 0;
	uint32_t i;

	/* Byte-level vocabulary: a token below 256 is a byte, shown as the
	 * latin-1 character so that the text is valid UTF-8 whatever the
	 * bytes; larger ids (shapes with real vocabularies) have no text. */
	for (i = 0; i < n; i++) {
		if (k + 4 > sizeof(buf) - 1) {
			buf[k] = '\0';
			hs__strbuf_add(sb, buf);
			k = 0;
		}
		if (t[i] == 0) {
			continue; /* no NUL in C strings; JSON loses nothing */
		} else if (t[i] < 0x80) {
			buf[k++] = (char)t[i];
		} else if (t[i] < 0x100) {
			buf[k++] = (char)(0xc0 | (t[i] >> 6));
			buf[k++] = (char)(0x80 | (t[i] & 0x3f));
		} else {
			buf[k++] = (char)0xef;
			buf[k++] = (char)0xbf;
			buf[k++] = (char)0xbd;
		}
	}
	buf[k] = '\0';
	hs__strbuf_add(sb, buf);
	return sb->failed;
}

uint64_t hs__job_parse_id(const char *s)
{
	unsigned long long v;
	char *end;

	if (!strncmp(s, "j-", 2))
		s += 2;
	else if (!strncmp(s, "cmpl-", 5))
		s += 5;
	else
		return 0;
	if (*s < '1' || *s > '9')
		return 0;
	v = strtoull(s, &end, 10);
	if (*end || v == ULLONG_MAX)
		return 0;
	return (uint64_t)v;
}

void hs__job_format_id(const hs__ajob_t *job, char *buf, size_t size)
{
	snprintf(buf, size, "%s-%llu", job->completion ? "cmpl" : "j",
		 (unsigned long long)job->id);
}

static json_t *ms_or_null(int64_t from, int64_t to)
{
	if (from < 0 || to < 0)
		return json_null();
	return json_real((double)(to - from) / 1e6);
}

json_t *hs__job_to_json(hs__agent_t *a, const hs__ajob_t *job)
{
	const hs_model_t *m = hs_model_catalog_get(a->models, job->model);
	json_t *o, *out;
	hs__strbuf_t text;
	char id[32];
	uint32_t i;

	hs__job_format_id(job, id, sizeof(id));
	hs__strbuf_init(&text);
	hs__tokens_text(&text, job->tokens + job->n_prompt, job->n_out);
	out = json_array();
	for (i = 0; out && i < job->n_out; i++)
		if (json_array_append_new(
			    out,
			    json_integer(job->tokens[job->n_prompt + i]))) {
			json_decref(out);
			out = NULL;
		}
	o = json_pack(
		"{s:s, s:s, s:s, s:s, s:I, s:I, s:I, s:i, s:o, s:I, "
		"s:o, s:o, s:o, s:o, s:f, s:b, s:s%, s:o*}",
		"id", id, "object", job->completion ? "completion" : "job",
		"state", hs_job_state_name(job->state), "model", m->name,
		"prompt_tokens", (json_int_t)job->n_prompt, "max_tokens",
		(json_int_t)job->max_tokens, "generated",
		(json_int_t)job->n_out, "priority", (int)job->priority,
		"device",
		job->device >= 0 ? json_integer(job->device) : json_null(),
		"created_ms", (json_int_t)job->created_ms, "deadline_ms",
		job->deadline_ms >= 0 ? json_integer(job->deadline_ms)
				      : json_null(),
		"queue_ms", ms_or_null(job->arrival_ns, job->start_ns),
		"ttft_ms", ms_or_null(job->arrival_ns, job->first_token_ns),
		"latency_ms", ms_or_null(job->arrival_ns, job->done_ns),
		"energy_j", job->energy_j, "replayed", job->replayed, "text",
		text.buf ? text.buf : "", text.len, "output_tokens", out);
	hs__strbuf_release(&text);
	return o;
}
