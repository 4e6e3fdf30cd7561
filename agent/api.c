/*
 * The agent's HTTP/JSON API. Errors are {"error": {"code", "message"}}
 * with the status that says whose fault it is: 400 the request is
 * malformed, 401 no or a wrong token, 404 no such route or job, 405 wrong
 * method, 409 the job is already finished, 413 too large, 422 well formed
 * but not servable here (unknown model, fits no device), 429 the queue is
 * full (Retry-After), 503 draining or the journal cannot be written.
 */
#include <string.h>

#include "agent.h"
#include "devices-internal.h"

#define MAX_PRIORITY 1000
#define MAX_DEADLINE_MS (1000ll * 86400 * 365)

/* ---- helpers ------------------------------------------------------------- */

static bool token_ok(const hs__agent_t *a, const hs__req_t *r)
{
	const char *given;
	unsigned char diff = 0;
	size_t i, n;

	if (r->auth_too_long || r->auth_len < 7 ||
	    strncasecmp(r->auth, "Bearer ", 7))
		return false;
	given = r->auth + 7;
	while (*given == ' ')
		given++;
	n = strlen(given);
	while (n && given[n - 1] == ' ')
		n--;
	if (n != a->token_len)
		return false;
	/* Constant time: no early exit on the first differing byte. */
	for (i = 0; i < n; i++)
		diff |= (unsigned char)(given[i] ^ a->token[i]);
	return diff == 0;
}

static void respond_text(hs__conn_t *c, int status, const char *json)
{
	hs__http_respond(c, status, "application/json", NULL, json,
			 strlen(json));
}

/* A validation failure from the JSON reader, as a 400. */
static void bad_request(hs__conn_t *c, const hs_error_t *err)
{
	hs__http_error(c, 400, "invalid_request", "%s%s%s",
		       err->path[0] ? err->path : "", err->path[0] ? ": " : "",
		       err->text);
}

/* The body as a JSON object, or an answered 400. */
static json_t *body_object(hs__conn_t *c)
{
	hs__req_t *r = &c->req;
	json_error_t jerr;
	json_t *root;

	root = json_loadb(r->body.buf ? r->body.buf : "", r->body.len,
			  JSON_REJECT_DUPLICATES, &jerr);
	if (!root) {
		hs__http_error(c, 400, "invalid_json",
			       "the body is not JSON: %s (line %d, column "
			       "%d)",
			       jerr.text, jerr.line, jerr.column);
		return NULL;
	}
	if (!json_is_object(root)) {
		json_decref(root);
		hs__http_error(c, 400, "invalid_request",
			       "the body must be a JSON object");
		return NULL;
	}
	return root;
}

static uint32_t model_index(const hs__agent_t *a, const hs_model_t *m)
{
	size_t i;

	for (i = 0; i < hs_model_catalog_count(a->models); i++)
		if (hs_model_catalog_get(a->models, i) == m)
			return (uint32_t)i;
	return 0;
}

/* ---- jobs ---------------------------------------------------------------- */

typedef struct job_req_s {
	uint32_t model;
	uint32_t *tokens;
	uint32_t n_tokens;
	uint32_t max_tokens;
	int priority;
	int64_t deadline_ms; /* from now; -1: none */
	bool stream;
} job_req_t;

static const char *const job_keys[] = {
	"model",       "prompt", "prompt_tokens", "max_tokens", "priority",
	"deadline_ms", NULL};

/* OpenAI's parameters that have no meaning here are accepted and
 * ignored, so that its clients work unchanged. */
static const char *const completion_keys[] = {
	"model",      "prompt", "max_tokens",	    "stream",
	"priority",   "n",	"temperature",	    "top_p",
	"stop",	      "user",	"presence_penalty", "frequency_penalty",
	"logprobs",   "echo",	"best_of",	    "seed",
	"logit_bias", "suffix", "stream_options",   NULL};

static int tokens_from_ints(hs__conn_t *c, const json_t *arr, const char *key,
			    uint32_t vocab, job_req_t *jr)
{
	size_t i, n = json_array_size(arr);

	jr->tokens = hs__malloc((n ? n : 1) * sizeof(uint32_t));
	if (!jr->tokens) {
		hs__http_error(c, 500, "internal", "out of memory");
		return -1;
	}
	for (i = 0; i < n; i++) {
		const json_t *v = json_array_get(arr, i);

		if (!json_is_integer(v) || json_integer_value(v) < 0 ||
		    json_integer_value(v) >= (json_int_t)vocab) {
			hs__http_error(c, 400, "invalid_request",
				       "$.%s[%zu]: expected a token id in "
				       "[0, %u)",
				       key, i, vocab);
			return -1;
		}
		jr->tokens[i] = (uint32_t)json_integer_value(v);
	}
	jr->n_tokens = (uint32_t)n;
	return 0;
}

static int tokens_from_text(hs__conn_t *c, const json_t *s, job_req_t *jr)
{
	const unsigned char *p = (const unsigned char *)json_string_value(s);
	size_t i, n = json_string_length(s);

	/* Byte-level tokens: what the vocab-256 models read. */
	jr->tokens = hs__malloc((n ? n : 1) * sizeof(uint32_t));
	if (!jr->tokens) {
		hs__http_error(c, 500, "internal", "out of memory");
		return -1;
	}
	for (i = 0; i < n; i++)
		jr->tokens[i] = p[i];
	jr->n_tokens = (uint32_t)n;
	return 0;
}

static int parse_prompt(hs__conn_t *c, const json_t *root, bool completion,
			uint32_t vocab, job_req_t *jr)
{
	const json_t *text = json_object_get(root, "prompt");
	const json_t *ids = json_object_get(root, "prompt_tokens");

	if (text && ids) {
		hs__http_error(c, 400, "invalid_request",
			       "give prompt or prompt_tokens, not both");
		return -1;
	}
	if (ids) {
		if (!json_is_array(ids)) {
			hs__http_error(c, 400, "invalid_request",
				       "$.prompt_tokens: expected an array of "
				       "token ids");
			return -1;
		}
		return tokens_from_ints(c, ids, "prompt_tokens", vocab, jr);
	}
	if (!text) {
		hs__http_error(c, 400, "invalid_request", "%s is required",
			       completion ? "$.prompt"
					  : "$.prompt or $.prompt_tokens");
		return -1;
	}
	if (json_is_string(text))
		return tokens_from_text(c, text, jr);
	/* OpenAI also takes ["text"] and [ids]. */
	if (completion && json_is_array(text) && json_array_size(text) == 1 &&
	    json_is_string(json_array_get(text, 0)))
		return tokens_from_text(c, json_array_get(text, 0), jr);
	if (completion && json_is_array(text) &&
	    !json_is_string(json_array_get(text, 0)))
		return tokens_from_ints(c, text, "prompt", vocab, jr);
	hs__http_error(c, 400, "invalid_request",
		       "$.prompt: expected a string%s",
		       completion ? " (or one string, or token ids, in an "
				    "array)"
				  : "");
	return -1;
}

/* Parse and check a job request; on failure it has been answered. */
static int parse_job(hs__agent_t *a, hs__conn_t *c, const json_t *root,
		     bool completion, job_req_t *jr)
{
	hs_error_t err;
	hs__jv_t jv = {.source = "request", .err = &err, .path = "$"};
	char name[128] = "";
	const hs_model_t *m;
	uint32_t max_tokens = 16;
	int n = 1;

	hs__error_clear(&err);
	if (hs__jv_check_keys(&jv, root,
			      completion ? completion_keys : job_keys) ||
	    hs__jv_string(&jv, root, "model", true, name, sizeof(name)) ||
	    hs__jv_int(&jv, root, "priority", false, &jr->priority,
		       -MAX_PRIORITY, MAX_PRIORITY) ||
	    hs__jv_bool(&jv, root, "stream", false, &jr->stream) ||
	    hs__jv_int(&jv, root, "n", false, &n, 1, 1)) {
		bad_request(c, &err);
		return -1;
	}
	if (json_object_get(root, "deadline_ms")) {
		uint64_t ms = 0;

		if (hs__jv_u64(&jv, root, "deadline_ms", false, &ms, 0,
			       MAX_DEADLINE_MS)) {
			bad_request(c, &err);
			return -1;
		}
		jr->deadline_ms = (int64_t)ms;
	}
	m = hs_model_catalog_find(a->models, name);
	if (!m) {
		hs__http_error(c, 422, "unknown_model",
			       "unknown model '%s' (GET /v1/models lists "
			       "them)",
			       name);
		return -1;
	}
	jr->model = model_index(a, m);
	/* Bounded by the model's context: beyond it no device could ever
	 * run the job, and the count would not fit the core's fields. */
	if (hs__jv_u32(&jv, root, "max_tokens", !completion, &max_tokens, 1,
		       m->max_context)) {
		bad_request(c, &err);
		return -1;
	}
	jr->max_tokens = max_tokens;
	if (!a->sim && !m->runnable) {
		hs__http_error(c, 422, "model_not_runnable",
			       "%s is a shape for simulation and planning; "
			       "this node runs only the runnable models",
			       m->name);
		return -1;
	}
	return parse_prompt(c, root, completion, m->vocab, jr);
}

/* Make the job and hand it to the core; on failure it has been answered
 * and NULL comes back. */
static hs__ajob_t *start_job(hs__agent_t *a, hs__conn_t *c, job_req_t *jr,
			     bool completion)
{
	hs_job_spec_t spec = {.model = jr->model,
			      .ctx_tokens = jr->n_tokens,
			      .gen_tokens = jr->max_tokens,
			      .priority = jr->priority,
			      .deadline_ns = -1};
	hs__ajob_t *job;
	hs_error_t err;
	int rc;

	if (a->live >= a->cfg->max_queue) {
		a->rejected_full++;
		hs__http_error(c, 429, "queue_full",
			       "%llu jobs are queued or running (max-queue); "
			       "retry later",
			       (unsigned long long)a->live);
		return NULL;
	}
	job = hs__job_new(a, a->next_id, jr->model, jr->tokens, jr->n_tokens,
			  jr->max_tokens);
	if (!job) {
		hs__http_error(c, 500, "internal", "out of memory");
		return NULL;
	}
	job->priority = jr->priority;
	job->completion = completion;
	if (jr->deadline_ms >= 0) {
		job->deadline_ms = job->created_ms + jr->deadline_ms;
		spec.deadline_ns = hs__agent_now(a) + jr->deadline_ms * 1000000;
	}
	rc = hs__agent_submit(a, job, &spec, &err);
	if (rc) {
		hs__job_free(job);
		a->refused++;
		if (rc == HS_ENOFIT)
			hs__http_error(c, 422, "does_not_fit", "%s", err.text);
		else if (rc == HS_EINVAL)
			hs__http_error(c, 400, "invalid_request", "%s",
				       err.text);
		else
			hs__http_error(c, 500, "internal", "%s", err.text);
		return NULL;
	}
	a->next_id++;
	a->accepted++;
	return job;
}

/* What a journal failure means for a job or a cancel request. */
#define NOT_ACCEPTED "nothing was accepted"

/* Answer once the journal has the line (at once without a journal); if the
 * journal fails, a 503 saying `failed` instead. */
static void respond_after(hs__agent_t *a, hs__conn_t *c, uint64_t seq,
			  const char *failed, int status, const char *body,
			  size_t len)
{
	if (!seq) {
		hs__http_respond(c, status, "application/json", NULL, body,
				 len);
		return;
	}
	hs__http_prepare(c, status, body, len);
	c->commit_seq = seq;
	c->commit_failed = failed;
	hs__list_add_tail(&a->commit_waiters, &c->commit_node);
	hs__journal_want(a, seq);
}

static void job_ref(hs__strbuf_t *sb, const hs__ajob_t *job, const char *state)
{
	HS__SB_LIT(sb, "{\"id\":\"j-");
	hs__sb_addu(sb, job->id);
	HS__SB_LIT(sb, "\",\"state\":\"");
	hs__sb_addn(sb, state, strlen(state));
	HS__SB_LIT(sb, "\"}");
}

static void post_job(hs__agent_t *a, hs__conn_t *c)
{
	job_req_t jr = {.deadline_ms = -1};
	hs__ajob_t *job;
	hs__strbuf_t sb;
	json_t *root;
	uint64_t seq;

	if (a->draining) {
		hs__http_error(c, 503, "draining",
			       "the agent is shutting down");
		return;
	}
	if (a->journal.failed) {
		hs__http_error(c, 503, "journal_failed",
			       "the job journal cannot be written");
		return;
	}
	root = body_object(c);
	if (!root)
		return;
	if (parse_job(a, c, root, false, &jr))
		goto out;
	job = start_job(a, c, &jr, false);
	if (!job)
		goto out;
	seq = hs__journal_accept(a, job);
	hs__strbuf_init(&sb);
	job_ref(&sb, job, hs_job_state_name(job->state));
	if (sb.failed)
		hs__http_error(c, 500, "internal", "out of memory");
	else
		respond_after(a, c, seq, NOT_ACCEPTED, 202, sb.buf, sb.len);
	hs__strbuf_release(&sb);
out:
	hs__free(jr.tokens);
	json_decref(root);
}

static hs__ajob_t *job_of_path(hs__agent_t *a, hs__conn_t *c, const char *id)
{
	hs__ajob_t *job = hs__job_find(a, hs__job_parse_id(id));

	if (!job)
		hs__http_error(c, 404, "not_found", "no job '%.64s'", id);
	return job;
}

static void get_job(hs__agent_t *a, hs__conn_t *c, const char *id)
{
	hs__ajob_t *job = job_of_path(a, c, id);
	const hs_job_t *cj;

	if (!job)
		return;
	cj = job->core_id ? hs_sched_job(a->core, job->core_id) : NULL;
	if (cj)
		job->energy_j = cj->energy_j;
	hs__http_json(c, 200, hs__job_to_json(a, job), NULL);
}

static void delete_job(hs__agent_t *a, hs__conn_t *c, const char *id)
{
	hs__ajob_t *job = job_of_path(a, c, id);
	char buf[96];
	uint64_t seq;

	if (!job)
		return;
	if (!job->core_id) {
		hs__http_error(c, 409, "not_cancellable", "job %.64s is %s", id,
			       hs_job_state_name(job->state));
		return;
	}
	job->cancel_asked = true;
	seq = hs__journal_cancel(a, job);
	/* The job may end inside: it stays in the table (keep-finished is
	 * at least 1, and it is the newest). */
	hs__agent_cancel(a, job);
	snprintf(buf, sizeof(buf), "{\"id\":\"%.64s\",\"state\":\"%s\"}", id,
		 job->state == HS_JOB_CANCELLED ? "cancelled"
		 : job->core_id			? "cancelling"
				: hs_job_state_name(job->state));
	respond_after(a, c, seq, NOT_ACCEPTED, 200, buf, strlen(buf));
}

/* ---- completions (OpenAI) -------------------------------------------------
 */

static void completion_head(hs__agent_t *a, hs__strbuf_t *sb,
			    const hs__ajob_t *job)
{
	const hs_model_t *m = hs_model_catalog_get(a->models, job->model);

	HS__SB_LIT(sb, "{\"id\":\"cmpl-");
	hs__sb_addu(sb, job->id);
	HS__SB_LIT(sb, "\",\"object\":\"text_completion\",\"created\":");
	hs__sb_addu(sb, (uint64_t)(job->created_ms / 1000));
	HS__SB_LIT(sb, ",\"model\":");
	hs__sb_add_json_str(sb, m->name);
	HS__SB_LIT(sb, ",\"choices\":[{\"index\":0,\"text\":");
}

static const char *finish_reason(const hs__ajob_t *job)
{
	if (job->state == HS_JOB_DONE)
		return "length";
	return job->state == HS_JOB_CANCELLED ? "cancelled" : "error";
}

static void sse_event(hs__agent_t *a, hs__strbuf_t *sb, const hs__ajob_t *job,
		      const uint32_t *tokens, uint32_t n, const char *reason)
{
	hs__strbuf_t text;

	hs__strbuf_init(&text);
	hs__tokens_text(&text, tokens, n);
	HS__SB_LIT(sb, "data: ");
	completion_head(a, sb, job);
	hs__sb_add_json_str(sb, text.buf ? text.buf : "");
	HS__SB_LIT(sb, ",\"logprobs\":null,\"finish_reason\":");
	if (reason) {
		HS__SB_LIT(sb, "\"");
		hs__sb_addn(sb, reason, strlen(reason));
		HS__SB_LIT(sb, "\"");
	} else {
		HS__SB_LIT(sb, "null");
	}
	HS__SB_LIT(sb, "}]}\n\n");
	hs__strbuf_release(&text);
}

void hs__api_job_progress(hs__agent_t *a, hs__ajob_t *job)
{
	hs__conn_t *c = job->waiter;
	hs__strbuf_t sb;

	if (!c || !c->stream || c->streamed >= job->n_out)
		return;
	hs__strbuf_init(&sb);
	/* One event per token, as OpenAI streams. */
	for (; c->streamed < job->n_out; c->streamed++)
		sse_event(a, &sb, job,
			  job->tokens + job->n_prompt + c->streamed, 1, NULL);
	if (!sb.failed)
		hs__http_stream_write(c, sb.buf, sb.len);
	hs__strbuf_release(&sb);
}

void hs__api_job_finished(hs__agent_t *a, hs__ajob_t *job)
{
	hs__conn_t *c = job->waiter;
	const hs_model_t *m = hs_model_catalog_get(a->models, job->model);
	hs__strbuf_t sb, text;

	if (!c)
		return;
	hs__api_job_progress(a, job);
	job->waiter = NULL;
	c->job = NULL;
	hs__strbuf_init(&sb);
	if (c->stream) {
		sse_event(a, &sb, job, NULL, 0, finish_reason(job));
		HS__SB_LIT(&sb, "data: [DONE]\n\n");
		if (!sb.failed)
			hs__http_stream_write(c, sb.buf, sb.len);
		hs__strbuf_release(&sb);
		hs__http_stream_end(c);
		return;
	}
	if (job->state == HS_JOB_FAILED) {
		hs__strbuf_release(&sb);
		hs__http_error(c, 503, "device_failed",
			       "no device is left that can run %s", m->name);
		return;
	}
	hs__strbuf_init(&text);
	hs__tokens_text(&text, job->tokens + job->n_prompt, job->n_out);
	completion_head(a, &sb, job);
	hs__sb_add_json_str(&sb, text.buf ? text.buf : "");
	HS__SB_LIT(&sb, ",\"logprobs\":null,\"finish_reason\":\"");
	hs__sb_addn(&sb, finish_reason(job), strlen(finish_reason(job)));
	HS__SB_LIT(&sb, "\"}],\"usage\":{\"prompt_tokens\":");
	hs__sb_addu(&sb, job->n_prompt);
	HS__SB_LIT(&sb, ",\"completion_tokens\":");
	hs__sb_addu(&sb, job->n_out);
	HS__SB_LIT(&sb, ",\"total_tokens\":");
	hs__sb_addu(&sb, (uint64_t)job->n_prompt + job->n_out);
	HS__SB_LIT(&sb, "}}");
	if (sb.failed || text.failed)
		hs__http_error(c, 500, "internal", "out of memory");
	else
		hs__http_respond(c, 200, "application/json", NULL, sb.buf,
				 sb.len);
	hs__strbuf_release(&text);
	hs__strbuf_release(&sb);
}

static void post_completion(hs__agent_t *a, hs__conn_t *c)
{
	job_req_t jr = {.deadline_ms = -1};
	hs__ajob_t *job;
	json_t *root;

	if (a->draining) {
		hs__http_error(c, 503, "draining",
			       "the agent is shutting down");
		return;
	}
	root = body_object(c);
	if (!root)
		return;
	if (parse_job(a, c, root, true, &jr))
		goto out;
	job = start_job(a, c, &jr, true);
	if (!job)
		goto out;
	a->completions++;
	job->waiter = c;
	c->job = job;
	c->stream = jr.stream;
	c->streamed = 0;
	if (jr.stream)
		hs__http_stream_begin(c, 200, "text/event-stream");
out:
	hs__free(jr.tokens);
	json_decref(root);
}

/* ---- node, models, stats, power --------------------------------------------
 */

static bool model_fits_somewhere(const hs__agent_t *a, const hs_model_t *m)
{
	size_t i;

	for (i = 0; i < a->n_devs; i++)
		if ((double)a->devs[i].dev.memory_bytes *
			    (1 - a->sc.kv_reserve) >=
		    (double)m->weight_bytes)
			return true;
	return false;
}

static void get_models(hs__agent_t *a, hs__conn_t *c)
{
	json_t *data = json_array();
	json_t *root = json_pack("{s:s, s:o}", "object", "list", "data", data);
	size_t i;

	for (i = 0; root && i < hs_model_catalog_count(a->models); i++) {
		const hs_model_t *m = hs_model_catalog_get(a->models, i);
		bool servable = (a->sim || m->runnable) &&
				model_fits_somewhere(a, m);

		if (json_array_append_new(
			    data,
			    json_pack("{s:s, s:s, s:s, s:I, s:I, s:I, s:I, "
				      "s:b, s:b}",
				      "id", m->name, "object", "model",
				      "owned_by", "hetsched", "created",
				      (json_int_t)(a->started_ms / 1000),
				      "max_context", (json_int_t)m->max_context,
				      "vocab", (json_int_t)m->vocab, "params",
				      (json_int_t)m->params, "runnable",
				      m->runnable, "servable", servable))) {
			json_decref(root);
			root = NULL;
		}
	}
	hs__http_json(c, 200, root, NULL);
}

static void get_devices(hs__agent_t *a, hs__conn_t *c)
{
	json_t *root = hs__node_to_json(a->node);
	json_t *devs = json_object_get(root, "devices");
	size_t i;

	for (i = 0; root && i < json_array_size(devs); i++)
		json_object_set_new(json_array_get(devs, i), "scheduled",
				    json_false());
	for (i = 0; root && i < a->n_devs; i++) {
		const hs__adev_t *d = &a->devs[i];
		json_t *o = json_array_get(devs, (size_t)a->node_index[i]);
		hs_device_stats_t ds;

		hs_sched_device_stats(a->core, (int)i, &ds);
		if (!o)
			continue;
		json_object_set_new(o, "scheduled", json_true());
		if (json_object_set_new(
			    o, "live",
			    json_pack("{s:I, s:s, s:b, s:b, s:f, s:f, s:b, "
				      "s:o, s:I, s:I, s:f, s:f}",
				      "index", (json_int_t)i, "backend",
				      hs_backend_name(d->dev.backend), "busy",
				      d->busy, "failed", ds.failed,
				      "utilisation",
				      hs__device_utilisation(a, d), "power_w",
				      d->power_w, "power_modeled",
				      d->measured_w < 0, "measured_w",
				      d->measured_w < 0
					      ? json_null()
					      : json_real(d->measured_w),
				      "steps", (json_int_t)ds.steps,
				      "output_tokens",
				      (json_int_t)ds.output_tokens, "busy_s",
				      (double)ds.busy_ns / 1e9, "energy_j",
				      ds.energy_j))) {
			json_decref(root);
			root = NULL;
		}
	}
	hs__http_json(c, 200, root, NULL);
}

static double measured_total(const hs__agent_t *a, bool *any)
{
	double w = 0;
	size_t i;

	*any = false;
	for (i = 0; i < a->n_devs; i++)
		if (a->devs[i].measured_w >= 0) {
			w += a->devs[i].measured_w;
			*any = true;
		}
	return w;
}

static json_t *power_json(hs__agent_t *a)
{
	hs_sched_stats_t st;
	bool any;
	double measured = measured_total(a, &any);

	hs_sched_stats(a->core, &st);
	return json_pack(
		"{s:f, s:f, s:b, s:o, s:f, s:f, s:I, s:f, s:f, s:b, "
		"s:I, s:I}",
		"budget_w", st.budget_w, "power_w", st.power_w, "modeled", !any,
		"measured_w", any ? json_real(measured) : json_null(),
		"floor_w", st.power_floor_w, "peak_w", st.peak_power_w,
		"violations", (json_int_t)st.power_violations,
		"max_violation_w", st.max_violation_w, "energy_j", st.energy_j,
		"energy_measured", st.energy_measured, "power_waits",
		(json_int_t)st.power_waits, "paused", (json_int_t)st.paused);
}

static void put_power(hs__agent_t *a, hs__conn_t *c)
{
	static const char *const keys[] = {"budget_w", NULL};
	hs_error_t err;
	hs__jv_t jv = {.source = "request", .err = &err, .path = "$"};
	json_t *root;
	double w = 0;
	uint64_t seq;
	char *body;

	hs__error_clear(&err);
	root = body_object(c);
	if (!root)
		return;
	if (hs__jv_check_keys(&jv, root, keys) ||
	    hs__jv_double(&jv, root, "budget_w", true, &w, 0, 1e9)) {
		bad_request(c, &err);
		json_decref(root);
		return;
	}
	json_decref(root);
	/* In force at once; journaled, so that a restart keeps it. */
	hs__agent_set_budget(a, w);
	a->api_budget = true;
	a->api_budget_w = w;
	seq = hs__journal_budget(a);
	body = hs__http_json_text(power_json(a));
	if (!body) {
		hs__http_error(c, 500, "internal", "out of memory");
		return;
	}
	respond_after(a, c, seq,
		      "the budget is in force, but a restart will not keep it",
		      200, body, strlen(body));
	hs__free(body);
}

static void get_stats(hs__agent_t *a, hs__conn_t *c)
{
	hs_sched_stats_t st;
	json_t *core, *root;

	hs_sched_stats(a->core, &st);
	core = json_pack(
		"{s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, "
		"s:I, s:f, s:b, s:f, s:f, s:f, s:f, s:I, s:I, s:f}",
		"submitted", (json_int_t)st.submitted, "refused",
		(json_int_t)st.refused, "completed", (json_int_t)st.completed,
		"cancelled", (json_int_t)st.cancelled, "requeued",
		(json_int_t)st.requeued, "failed", (json_int_t)st.failed,
		"queued", (json_int_t)st.queued, "running",
		(json_int_t)st.running, "decisions", (json_int_t)st.decisions,
		"replans", (json_int_t)st.replans, "steps",
		(json_int_t)st.steps, "output_tokens",
		(json_int_t)st.output_tokens, "prefill_tokens",
		(json_int_t)st.prefill_tokens, "energy_j", st.energy_j,
		"energy_measured", st.energy_measured, "budget_w", st.budget_w,
		"power_floor_w", st.power_floor_w, "power_w", st.power_w,
		"peak_power_w", st.peak_power_w, "power_violations",
		(json_int_t)st.power_violations, "paused",
		(json_int_t)st.paused, "perf_mean_rel_error",
		st.perf_mean_rel_error);
	root = json_pack(
		"{s:f, s:s, s:b, s:s, s:{s:I, s:I, s:I, s:I, s:I, s:I, s:I, "
		"s:I, s:I}, s:{s:I, s:I, s:I, s:I, s:I}, s:{s:s?, s:s, s:I, "
		"s:I, s:I, s:I, s:I, s:I, s:b}, s:o}",
		"uptime_s", (double)(hs__unix_ms() - a->started_ms) / 1e3,
		"policy", a->cfg->policy, "draining", a->draining, "listen",
		a->listen_addr, "jobs", "live", (json_int_t)a->live, "accepted",
		(json_int_t)a->accepted, "completions",
		(json_int_t)a->completions, "done",
		(json_int_t)a->finished_done, "cancelled",
		(json_int_t)a->finished_cancelled, "failed",
		(json_int_t)a->finished_failed, "refused",
		(json_int_t)a->refused, "rejected_full",
		(json_int_t)a->rejected_full, "kept_finished",
		(json_int_t)a->n_finished, "http", "requests",
		(json_int_t)a->http_requests, "connections",
		(json_int_t)a->http_accepted_conns, "open",
		(json_int_t)a->n_conns, "errors_4xx", (json_int_t)a->http_4xx,
		"errors_5xx", (json_int_t)a->http_5xx, "journal", "path",
		a->journal.path, "sync", a->cfg->journal_sync, "bytes",
		(json_int_t)a->journal.bytes, "lines",
		(json_int_t)a->journal.lines, "syncs",
		(json_int_t)a->journal.syncs, "compactions",
		(json_int_t)a->journal.compactions, "replayed_pending",
		(json_int_t)a->journal.replayed_pending, "replayed_finished",
		(json_int_t)a->journal.replayed_finished, "failed",
		a->journal.failed != 0, "core", core);
	hs__http_json(c, 200, root, NULL);
}

static void get_metrics(hs__agent_t *a, hs__conn_t *c)
{
	hs__strbuf_t sb;

	hs__strbuf_init(&sb);
	if (hs__metrics_render(a, &sb))
		hs__http_error(c, 500, "internal", "out of memory");
	else
		hs__http_respond(c, 200, "text/plain; version=0.0.4", NULL,
				 sb.buf, sb.len);
	hs__strbuf_release(&sb);
}

/* ---- routing ---------------------------------------------------------------
 */

enum { M_GET = 1, M_POST = 2, M_PUT = 4, M_DELETE = 8 };

static int method_bit(enum http_method m)
{
	switch (m) {
	case HTTP_GET:
	case HTTP_HEAD:
		return M_GET;
	case HTTP_POST:
		return M_POST;
	case HTTP_PUT:
		return M_PUT;
	case HTTP_DELETE:
		return M_DELETE;
	default:
		return 0;
	}
}

typedef struct route_s {
	const char *path;
	bool prefix; /* path + "{id}" */
	int methods;
	const char *allow;
} route_t;

static const route_t routes[] = {
	{"/healthz", false, M_GET, "GET, HEAD"},
	{"/readyz", false, M_GET, "GET, HEAD"},
	{"/metrics", false, M_GET, "GET, HEAD"},
	{"/v1/jobs", false, M_POST, "POST"},
	{"/v1/jobs/", true, M_GET | M_DELETE, "GET, HEAD, DELETE"},
	{"/v1/completions", false, M_POST, "POST"},
	{"/v1/devices", false, M_GET, "GET, HEAD"},
	{"/v1/models", false, M_GET, "GET, HEAD"},
	{"/v1/stats", false, M_GET, "GET, HEAD"},
	{"/v1/power", false, M_GET | M_PUT, "GET, HEAD, PUT"},
};

static const route_t *find_route(const char *path)
{
	size_t i;

	for (i = 0; i < HS_ARRAY_SIZE(routes); i++) {
		const route_t *r = &routes[i];
		size_t n = strlen(r->path);

		if (r->prefix ? !strncmp(path, r->path, n) && path[n] &&
					!strchr(path + n, '/')
			      : !strcmp(path, r->path))
			return r;
	}
	return NULL;
}

static void dispatch(hs__agent_t *a, hs__conn_t *c, const route_t *r,
		     const char *path, int m)
{
	if (!strcmp(r->path, "/healthz")) {
		respond_text(c, 200, "{\"status\":\"ok\"}");
	} else if (!strcmp(r->path, "/readyz")) {
		if (a->draining)
			hs__http_error(c, 503, "draining",
				       "the agent is shutting down");
		else if (a->journal.failed)
			hs__http_error(c, 503, "journal_failed",
				       "the job journal cannot be written");
		else
			respond_text(c, 200, "{\"status\":\"ready\"}");
	} else if (!strcmp(r->path, "/metrics")) {
		get_metrics(a, c);
	} else if (!strcmp(r->path, "/v1/jobs")) {
		post_job(a, c);
	} else if (r->prefix) {
		const char *id = path + strlen(r->path);

		if (m == M_GET)
			get_job(a, c, id);
		else
			delete_job(a, c, id);
	} else if (!strcmp(r->path, "/v1/completions")) {
		post_completion(a, c);
	} else if (!strcmp(r->path, "/v1/devices")) {
		get_devices(a, c);
	} else if (!strcmp(r->path, "/v1/models")) {
		get_models(a, c);
	} else if (!strcmp(r->path, "/v1/stats")) {
		get_stats(a, c);
	} else if (m == M_GET) {
		hs__http_json(c, 200, power_json(a), NULL);
	} else {
		put_power(a, c);
	}
}

void hs__api_handle(hs__agent_t *a, hs__conn_t *c)
{
	hs__req_t *r = &c->req;
	struct http_parser_url u;
	const route_t *route;
	char path[sizeof(r->url)], allow[64];
	hs__strbuf_t sb;
	int m;

	http_parser_url_init(&u);
	if (http_parser_parse_url(r->url, r->url_len, r->method == HTTP_CONNECT,
				  &u) ||
	    !(u.field_set & (1 << UF_PATH))) {
		hs__http_error(c, 400, "bad_request",
			       "cannot parse the request target");
		return;
	}
	memcpy(path, r->url + u.field_data[UF_PATH].off,
	       u.field_data[UF_PATH].len);
	path[u.field_data[UF_PATH].len] = '\0';
	route = find_route(path);
	/* Health checks are open; everything else needs the token, before
	 * it says whether a route exists. */
	if (a->token_len &&
	    (!route || route->path[1] == 'v' || route->path[1] == 'm') &&
	    !token_ok(a, r)) {
		hs__http_error(c, 401, "unauthorized", "%s bearer token",
			       r->auth_len ? "wrong" : "missing");
		return;
	}
	if (!route) {
		hs__http_error(c, 404, "not_found", "no route %.200s", path);
		return;
	}
	m = method_bit(r->method);
	if (!(route->methods & m)) {
		snprintf(allow, sizeof(allow), "Allow: %s\r\n", route->allow);
		hs__strbuf_init(&sb);
		HS__SB_LIT(&sb, "{\"error\":{\"code\":\"method_not_allowed\","
				"\"message\":\"");
		hs__sb_addn(&sb, http_method_str(r->method),
			    strlen(http_method_str(r->method)));
		HS__SB_LIT(&sb, " is not allowed here; use ");
		hs__sb_addn(&sb, route->allow, strlen(route->allow));
		HS__SB_LIT(&sb, "\"}}");
		if (sb.failed)
			hs__http_error(c, 500, "internal", "out of memory");
		else
			hs__http_respond(c, 405, "application/json", allow,
					 sb.buf, sb.len);
		hs__strbuf_release(&sb);
		return;
	}
	dispatch(a, c, route, path, m);
}
