/*
 * The job journal: JSON lines appended to one file.
 *
 *   {"op":"meta","version":1,"next_id":N,"t":MS}
 *   {"op":"accept","id":N,"t":MS,"model":"NAME","max_tokens":M,
 *    "priority":P,"deadline_ms":MS|-1,"prompt":[TOKENS]}
 *   {"op":"cancel","id":N,"t":MS}
 *   {"op":"end","id":N,"t":MS,"state":"done|cancelled|failed",
 *    "device":D,"output":[TOKENS]}
 *   {"op":"budget","w":W,"t":MS}     (PUT /v1/power; 0: none)
 *
 * A job is accepted (202) only once its accept line is on disk: lines are
 * written as they come and fsync'ed in groups, one fdatasync (on the
 * thread pool) for every response waiting, while the next group gathers.
 * End lines ride along without being waited for: losing one to a power
 * cut runs the job again, it does not lose it.
 *
 * With journal-sync 'interval' (relaxed), a 202 waits for the write(2) of
 * its line only: in the page cache, it survives kill -9 and any crash of
 * the agent, not a power cut. A timer fdatasyncs whatever was written every
 * journal-sync-ms, so a power cut loses at most the jobs accepted in the
 * last interval (and the sync in flight), as PostgreSQL's
 * synchronous_commit=off or Redis's appendfsync everysec do. The load
 * benchmark shows why: on a disk whose flush sometimes takes tens of
 * milliseconds, every response in that window waits that long.
 *
 * The file is extended ahead of the lines with written zeros (on the thread
 * pool), so that a sync after a line is a data write and a cache flush,
 * not a metadata update as well: on ext4 that is several times faster.
 * Readers stop at the first NUL; a clean close cuts the zeros off.
 *
 * On start the journal is replayed (accepted and not ended: queued again;
 * ended: kept for GET) and rewritten compacted; it is compacted again
 * when it grows past journal-max-bytes.
 */
#include <errno.h>
#include <math.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "agent.h"

#define JOURNAL_VERSION 1
#define EXT_SIZE (1u << 20) /* zeros written ahead at a time */
/* How far ahead of the lines the zeros reach: lines that catch up with an
 * extension in flight wait for it, and so do their responses; 8 MiB is
 * half a second of lines at 30k jobs/s, through a slow patch of the disk. */
#define EXT_AHEAD (8u << 20)
#define ZEROS (256u << 10)

static const char zeros[ZEROS];

static void add_tokens(hs__strbuf_t *sb, const uint32_t *t, uint32_t n)
{
	uint32_t i;

	HS__SB_LIT(sb, "[");
	for (i = 0; i < n; i++) {
		if (i)
			HS__SB_LIT(sb, ",");
		hs__sb_addu(sb, t[i]);
	}
	HS__SB_LIT(sb, "]");
}

static void add_i64(hs__strbuf_t *sb, int64_t v)
{
	if (v < 0) {
		HS__SB_LIT(sb, "-");
		hs__sb_addu(sb, (uint64_t)(-(v + 1)) + 1);
	} else {
		hs__sb_addu(sb, (uint64_t)v);
	}
}

static void format_accept(hs__agent_t *a, hs__strbuf_t *sb,
			  const hs__ajob_t *job)
{
	const hs_model_t *m = hs_model_catalog_get(a->models, job->model);

	HS__SB_LIT(sb, "{\"op\":\"accept\",\"id\":");
	hs__sb_addu(sb, job->id);
	HS__SB_LIT(sb, ",\"t\":");
	add_i64(sb, job->created_ms);
	HS__SB_LIT(sb, ",\"model\":");
	hs__sb_add_json_str(sb, m->name);
	HS__SB_LIT(sb, ",\"max_tokens\":");
	hs__sb_addu(sb, job->max_tokens);
	HS__SB_LIT(sb, ",\"priority\":");
	add_i64(sb, job->priority);
	HS__SB_LIT(sb, ",\"deadline_ms\":");
	add_i64(sb, job->deadline_ms);
	HS__SB_LIT(sb, ",\"prompt\":");
	add_tokens(sb, job->tokens, job->n_prompt);
	HS__SB_LIT(sb, "}\n");
}

static void format_end(hs__strbuf_t *sb, const hs__ajob_t *job)
{
	HS__SB_LIT(sb, "{\"op\":\"end\",\"id\":");
	hs__sb_addu(sb, job->id);
	HS__SB_LIT(sb, ",\"t\":");
	add_i64(sb, hs__unix_ms());
	HS__SB_LIT(sb, ",\"state\":\"");
	hs__sb_addn(sb, hs_job_state_name(job->state),
		    strlen(hs_job_state_name(job->state)));
	HS__SB_LIT(sb, "\",\"device\":");
	add_i64(sb, job->device);
	HS__SB_LIT(sb, ",\"output\":");
	add_tokens(sb, job->tokens + job->n_prompt, job->n_out);
	HS__SB_LIT(sb, "}\n");
}

static void format_cancel(hs__strbuf_t *sb, const hs__ajob_t *job)
{
	HS__SB_LIT(sb, "{\"op\":\"cancel\",\"id\":");
	hs__sb_addu(sb, job->id);
	HS__SB_LIT(sb, ",\"t\":");
	add_i64(sb, hs__unix_ms());
	HS__SB_LIT(sb, "}\n");
}

static void format_budget(hs__agent_t *a, hs__strbuf_t *sb)
{
	char w[32];

	snprintf(w, sizeof(w), "%.17g", a->api_budget_w);
	HS__SB_LIT(sb, "{\"op\":\"budget\",\"w\":");
	hs__sb_addn(sb, w, strlen(w));
	HS__SB_LIT(sb, ",\"t\":");
	add_i64(sb, hs__unix_ms());
	HS__SB_LIT(sb, "}\n");
}

static void format_meta(hs__agent_t *a, hs__strbuf_t *sb)
{
	HS__SB_LIT(sb, "{\"op\":\"meta\",\"version\":");
	hs__sb_addu(sb, JOURNAL_VERSION);
	HS__SB_LIT(sb, ",\"next_id\":");
	hs__sb_addu(sb, a->next_id);
	HS__SB_LIT(sb, ",\"t\":");
	add_i64(sb, hs__unix_ms());
	HS__SB_LIT(sb, "}\n");
}

static uint64_t appended(hs__agent_t *a)
{
	hs__journal_t *j = &a->journal;

	if (j->buf.failed && !j->failed)
		j->failed = HS_ENOMEM;
	j->lines++;
	hs__agent_kick(a);
	return ++j->appended;
}

uint64_t hs__journal_accept(hs__agent_t *a, const hs__ajob_t *job)
{
	if (a->journal.fd < 0 || job->completion)
		return 0;
	format_accept(a, &a->journal.buf, job);
	return appended(a);
}

uint64_t hs__journal_end(hs__agent_t *a, const hs__ajob_t *job)
{
	if (a->journal.fd < 0 || job->completion)
		return 0;
	format_end(&a->journal.buf, job);
	return appended(a);
}

uint64_t hs__journal_budget(hs__agent_t *a)
{
	if (a->journal.fd < 0)
		return 0;
	format_budget(a, &a->journal.buf);
	return appended(a);
}

uint64_t hs__journal_cancel(hs__agent_t *a, const hs__ajob_t *job)
{
	if (a->journal.fd < 0 || job->completion)
		return 0;
	format_cancel(&a->journal.buf, job);
	return appended(a);
}

void hs__journal_want(hs__agent_t *a, uint64_t seq)
{
	if (seq > a->journal.wanted)
		a->journal.wanted = seq;
	hs__agent_kick(a);
}

static int write_all(int fd, const char *p, size_t n, uint64_t off)
{
	while (n) {
		ssize_t w = pwrite(fd, p, n, (off_t)off);

		if (w < 0) {
			if (errno == EINTR)
				continue;
			return HS_EIO;
		}
		p += w;
		off += (uint64_t)w;
		n -= (size_t)w;
	}
	return 0;
}

static int sync_dir(const char *path)
{
	char *dir = hs__strdup(path), *slash;
	int fd, rc = 0;

	if (!dir)
		return HS_ENOMEM;
	slash = strrchr(dir, '/');
	if (slash == dir)
		slash[1] = '\0';
	else if (slash)
		*slash = '\0';
	else
		strcpy(dir, ".");
	fd = open(dir, O_RDONLY | O_DIRECTORY);
	if (fd < 0 || fsync(fd))
		rc = HS_EIO;
	if (fd >= 0)
		close(fd);
	hs__free(dir);
	return rc;
}

/* Every response still waiting is answered: committed ones with their
 * prepared response, all of them with an error when the journal failed. */
static void release_waiters(hs__agent_t *a)
{
	hs__journal_t *j = &a->journal;

	while (!hs__list_empty(&a->commit_waiters)) {
		hs__conn_t *c = hs__container_of(a->commit_waiters.next,
						 hs__conn_t, commit_node);

		if (!j->failed &&
		    c->commit_seq > (j->relaxed ? j->written : j->committed))
			break;
		hs__list_del(&c->commit_node);
		if (j->failed) {
			hs__strbuf_release(&c->pending);
			hs__http_error(c, 503, "journal_failed",
				       "the journal cannot be written (%s); %s",
				       hs_strerror(j->failed),
				       c->commit_failed);
		} else {
			hs__http_send_pending(c);
		}
	}
}

static void journal_failed(hs__agent_t *a, int rc)
{
	hs__journal_t *j = &a->journal;

	if (!j->failed) {
		fprintf(stderr,
			"hetsched serve: journal %s: %s; new jobs are "
			"refused\n",
			j->path, hs_strerror(rc));
		j->failed = rc;
	}
	release_waiters(a);
}

/* Write a snapshot of every job (pending: accept; finished: accept and
 * end) and swap it in for the journal. */
static int compact(hs__agent_t *a)
{
	hs__journal_t *j = &a->journal;
	hs__strbuf_t sb;
	char *tmp;
	size_t i, n = strlen(j->path) + 8;
	int fd, rc = 0;

	tmp = hs__malloc(n);
	if (!tmp)
		return HS_ENOMEM;
	snprintf(tmp, n, "%s.tmp", j->path);
	hs__strbuf_init(&sb);
	format_meta(a, &sb);
	if (a->api_budget)
		format_budget(a, &sb);
	for (i = 0; i < a->by_id.cap; i++) {
		hs__ajob_t *job = a->by_id.vals[i];

		if (!a->by_id.keys[i] || job->completion)
			continue;
		format_accept(a, &sb, job);
		if (job->state != HS_JOB_QUEUED && job->state != HS_JOB_RUNNING)
			format_end(&sb, job);
		else if (job->cancel_asked)
			format_cancel(&sb, job);
	}
	if (sb.failed) {
		rc = HS_ENOMEM;
		goto out_free;
	}
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0) {
		rc = HS_EIO;
		goto out_free;
	}
	rc = write_all(fd, sb.buf, sb.len, 0);
	if (!rc && fdatasync(fd))
		rc = HS_EIO;
	if (rc) {
		close(fd);
		unlink(tmp);
		goto out_free;
	}
	if (rename(tmp, j->path) || sync_dir(j->path)) {
		close(fd);
		rc = HS_EIO;
		goto out_free;
	}
	close(fd);
	fd = open(j->path, O_WRONLY | O_CLOEXEC);
	if (fd < 0) {
		rc = HS_EIO;
		goto out_free;
	}
	if (j->fd >= 0)
		close(j->fd);
	j->fd = fd;
	j->bytes = j->alloc = sb.len;
	/* A snapshot near the limit must not be rewritten at every line. */
	j->compact_at = a->cfg->journal_max_bytes > 2 * sb.len
				? a->cfg->journal_max_bytes
				: 2 * sb.len;
	j->buf.len = 0;
	j->written = j->committed = j->appended;
	j->compactions++;
out_free:
	hs__strbuf_release(&sb);
	hs__free(tmp);
	return rc;
}

static void on_synced(uv_fs_t *req)
{
	hs__jsync_t *s = req->data;
	hs__agent_t *a = s->a;
	hs__journal_t *j = &a->journal;
	ssize_t result = req->result;

	uv_fs_req_cleanup(req);
	s->busy = false;
	j->syncing--;
	if (result < 0) {
		journal_failed(a, HS_EIO);
		return;
	}
	/* Syncs may end out of order: each makes durable all that was
	 * written before it started. */
	if (s->target > j->committed)
		j->committed = s->target;
	j->syncs++;
	release_waiters(a);
	hs__journal_flush(a);
}

/* Several syncs may be in flight: a response waits for the one that
 * started after its line was written, not for the one before as well. */
static void start_sync(hs__agent_t *a)
{
	hs__journal_t *j = &a->journal;
	hs__jsync_t *s = NULL;
	unsigned i;

	for (i = 0; i < HS__JOURNAL_SYNCS && !s; i++)
		if (!j->inflight[i].busy)
			s = &j->inflight[i];
	if (!s)
		return;
	s->a = a;
	s->target = j->written;
	s->req.data = s;
	if (uv_fs_fdatasync(&a->loop, &s->req, j->fd, on_synced)) {
		journal_failed(a, HS_EIO);
		return;
	}
	s->busy = true;
	j->syncing++;
	j->sync_target = s->target;
}

static void on_extended(uv_fs_t *req)
{
	hs__agent_t *a = req->data;
	hs__journal_t *j = &a->journal;
	ssize_t result = req->result;

	uv_fs_req_cleanup(req);
	if (result < 0) {
		j->ext_size = 0;
		journal_failed(a, HS_EIO);
		return;
	}
	if (req->fs_type == UV_FS_WRITE) {
		/* Make the new size durable now, off the lines' path. */
		if (!uv_fs_fdatasync(&a->loop, &j->ext_req, j->fd, on_extended))
			return;
		j->ext_size = 0;
		journal_failed(a, HS_EIO);
		return;
	}
	j->alloc += j->ext_size;
	j->ext_size = 0;
	hs__journal_flush(a);
}

/* Write EXT_SIZE zeros past the end, ahead of the lines. Small and often:
 * a large extension competes with the lines' syncs for the disk. */
static void extend(hs__agent_t *a)
{
	hs__journal_t *j = &a->journal;
	uv_buf_t bufs[EXT_SIZE / ZEROS];
	unsigned n = HS_ARRAY_SIZE(bufs), i;

	if (j->ext_size || j->failed)
		return;
	for (i = 0; i < n; i++)
		bufs[i] = uv_buf_init((char *)zeros, ZEROS);
	j->ext_size = (uint64_t)n * ZEROS;
	j->ext_req.data = a;
	if (uv_fs_write(&a->loop, &j->ext_req, j->fd, bufs, n,
			(int64_t)j->alloc, on_extended)) {
		j->ext_size = 0;
		journal_failed(a, HS_EIO);
	}
}

/* How far ahead of the lines the zeros should reach: EXT_AHEAD, but not
 * much past the size at which the journal is compacted (a small
 * journal-max-bytes would otherwise write megabytes of zeros after every
 * compaction). */
static uint64_t zeros_ahead(const hs__journal_t *j, uint64_t end)
{
	uint64_t ahead = EXT_AHEAD;

	if (j->compact_at > end && j->compact_at - end < ahead)
		ahead = j->compact_at - end;
	return ahead > EXT_SIZE / 2 ? ahead : EXT_SIZE / 2;
}

void hs__journal_flush(hs__agent_t *a)
{
	hs__journal_t *j = &a->journal;
	uint64_t end;
	int rc;

	if (j->fd < 0)
		return;
	if (j->failed) {
		release_waiters(a);
		return;
	}
	if (!j->syncing && !j->ext_size &&
	    j->bytes + j->buf.len > j->compact_at) {
		/* The snapshot holds everything appended so far, durably. */
		rc = compact(a);
		if (rc)
			journal_failed(a, rc);
		else
			release_waiters(a);
		return;
	}
	end = j->bytes + j->buf.len;
	if (end + zeros_ahead(j, end) > j->alloc)
		extend(a);
	/* Never into the region being zeroed: wait for it. */
	if (j->buf.len && (end <= j->alloc || !j->ext_size)) {
		rc = write_all(j->fd, j->buf.buf, j->buf.len, j->bytes);
		if (rc) {
			journal_failed(a, rc);
			return;
		}
		j->bytes = end;
		j->buf.len = 0;
		j->written = j->appended;
		/* Keep a big burst's buffer from pinning memory forever. */
		if (j->buf.cap > (1u << 20))
			hs__strbuf_release(&j->buf);
	}
	if (j->relaxed) {
		/* Answered once written; the timer syncs. */
		release_waiters(a);
		return;
	}
	/* A sync only for a response that none in flight will answer: an
	 * fdatasync that nobody waits for still costs a flush of the disk,
	 * and the next ones queue behind it. */
	if (j->wanted > j->committed && j->written > j->committed &&
	    (!j->syncing ||
	     (j->written > j->sync_target && j->wanted > j->sync_target)))
		start_sync(a);
}

static void on_sync_timer(uv_timer_t *t)
{
	hs__agent_t *a = t->data;
	hs__journal_t *j = &a->journal;

	if (j->fd >= 0 && !j->failed && !j->syncing &&
	    j->written > j->committed)
		start_sync(a);
}

void hs__journal_close(hs__agent_t *a)
{
	hs__journal_t *j = &a->journal;

	if (j->fd >= 0) {
		if (j->buf.len && !j->failed &&
		    !write_all(j->fd, j->buf.buf, j->buf.len, j->bytes))
			j->bytes += j->buf.len;
		/* The zeros ahead are for speed only. */
		if (!j->failed && ftruncate(j->fd, (off_t)j->bytes))
			fprintf(stderr, "hetsched serve: %s: %s\n", j->path,
				strerror(errno));
		fdatasync(j->fd);
		close(j->fd);
		j->fd = -1;
	}
	hs__strbuf_release(&j->buf);
	hs__free(j->path);
	j->path = NULL;
}

/* ---- replay -------------------------------------------------------------- */

static int tokens_of(const json_t *arr, uint32_t **out, uint32_t *n)
{
	size_t i, len;

	*out = NULL;
	*n = 0;
	if (!json_is_array(arr))
		return HS_ETYPE;
	len = json_array_size(arr);
	if (len > UINT32_MAX)
		return HS_ERANGE;
	*out = hs__malloc((len ? len : 1) * sizeof(uint32_t));
	if (!*out)
		return HS_ENOMEM;
	for (i = 0; i < len; i++) {
		const json_t *v = json_array_get(arr, i);

		if (!json_is_integer(v) || json_integer_value(v) < 0 ||
		    json_integer_value(v) > UINT32_MAX) {
			hs__free(*out);
			*out = NULL;
			return HS_ETYPE;
		}
		(*out)[i] = (uint32_t)json_integer_value(v);
	}
	*n = (uint32_t)len;
	return 0;
}

static int64_t int_of(const json_t *o, const char *key, int64_t dflt)
{
	const json_t *v = json_object_get(o, key);

	return json_is_integer(v) ? (int64_t)json_integer_value(v) : dflt;
}

static int replay_accept(hs__agent_t *a, hs__map_t *seen, const json_t *o,
			 uint64_t id)
{
	const char *name = json_string_value(json_object_get(o, "model"));
	int64_t max_tokens = int_of(o, "max_tokens", 0);
	size_t model = hs_model_catalog_count(a->models);
	uint32_t *prompt, n;
	hs__ajob_t *job;
	size_t i;
	int rc;

	if (hs__map_get(seen, id))
		return 0;
	if (max_tokens < 1 || max_tokens > UINT32_MAX)
		return HS_EPARSE;
	for (i = 0; name && i < hs_model_catalog_count(a->models); i++)
		if (!strcmp(hs_model_catalog_get(a->models, i)->name, name))
			model = i;
	if (model == hs_model_catalog_count(a->models)) {
		/* The operator took the model out of the catalog. */
		fprintf(stderr,
			"hetsched serve: journal: job j-%llu: model "
			"'%s' is not in the catalog; job dropped\n",
			(unsigned long long)id, name ? name : "?");
		return 0;
	}
	rc = tokens_of(json_object_get(o, "prompt"), &prompt, &n);
	if (rc)
		return rc == HS_ENOMEM ? rc : HS_EPARSE;
	job = hs__job_new(a, id, (uint32_t)model, prompt, n,
			  (uint32_t)max_tokens);
	hs__free(prompt);
	if (!job)
		return HS_ENOMEM;
	job->priority = (int32_t)int_of(o, "priority", 0);
	job->deadline_ms = int_of(o, "deadline_ms", -1);
	job->created_ms = int_of(o, "t", job->created_ms);
	job->replayed = true;
	if (hs__map_put(seen, id, job)) {
		hs__job_free(job);
		return HS_ENOMEM;
	}
	return 0;
}

static hs_job_state_t state_of(const char *s)
{
	if (s && !strcmp(s, "done"))
		return HS_JOB_DONE;
	if (s && !strcmp(s, "cancelled"))
		return HS_JOB_CANCELLED;
	return HS_JOB_FAILED;
}

static int replay_line(hs__agent_t *a, hs__map_t *seen, const char *line,
		       size_t len)
{
	json_error_t jerr;
	const char *op;
	hs__ajob_t *job;
	json_t *o;
	int64_t id;
	int rc = 0;

	o = json_loadb(line, len, 0, &jerr);
	if (!o)
		return HS_EPARSE;
	op = json_string_value(json_object_get(o, "op"));
	id = int_of(o, "id", 0);
	if (!op) {
		rc = HS_EPARSE;
	} else if (!strcmp(op, "meta")) {
		int64_t next = int_of(o, "next_id", 1);

		if (next > 0 && (uint64_t)next > a->next_id)
			a->next_id = (uint64_t)next;
	} else if (!strcmp(op, "budget")) {
		json_t *w = json_object_get(o, "w");

		if (!json_is_number(w) || !(json_number_value(w) >= 0) ||
		    !isfinite(json_number_value(w))) {
			rc = HS_EPARSE;
		} else {
			a->api_budget = true;
			a->api_budget_w = json_number_value(w);
		}
	} else if (id <= 0) {
		rc = HS_EPARSE;
	} else if (!strcmp(op, "accept")) {
		rc = replay_accept(a, seen, o, (uint64_t)id);
	} else if (!strcmp(op, "cancel")) {
		job = hs__map_get(seen, (uint64_t)id);
		if (job)
			job->cancel_asked = true;
	} else if (!strcmp(op, "end")) {
		job = hs__map_get(seen, (uint64_t)id);
		if (job) {
			uint32_t *out, n, i;

			job->state = state_of(
				json_string_value(json_object_get(o, "state")));
			job->device = (int32_t)int_of(o, "device", -1);
			if (!tokens_of(json_object_get(o, "output"), &out,
				       &n)) {
				job->n_out = 0;
				for (i = 0; i < n; i++)
					hs__job_push_token(job, out[i]);
				hs__free(out);
			}
		}
	} else {
		rc = HS_EPARSE;
	}
	if (!rc && id > 0 && (uint64_t)id >= a->next_id)
		a->next_id = (uint64_t)id + 1;
	json_decref(o);
	return rc;
}

static int by_id_cmp(const void *x, const void *y)
{
	const hs__ajob_t *p = *(hs__ajob_t *const *)x;
	const hs__ajob_t *q = *(hs__ajob_t *const *)y;

	return p->id < q->id ? -1 : p->id > q->id;
}

static int replay(hs__agent_t *a, FILE *f, hs__ajob_t ***pending,
		  size_t *n_pending, hs_error_t *err)
{
	hs__journal_t *j = &a->journal;
	hs__map_t seen = {0};
	hs__ajob_t **all = NULL;
	size_t n_all = 0, i, lineno = 0, bad_at = 0;
	char *line = NULL;
	size_t cap = 0;
	ssize_t len;
	int rc = 0;

	while ((len = getline(&line, &cap, f)) > 0) {
		bool whole = line[len - 1] == '\n';

		/* The zeros written ahead: the lines ended before. */
		if (!line[0])
			break;
		if (memchr(line, '\0', (size_t)len))
			whole = false;
		lineno++;
		rc = replay_line(a, &seen, line, (size_t)len);
		if (rc == HS_ENOMEM) {
			hs__error_set(err, rc, j->path, (int)lineno, NULL,
				      "out of memory");
			goto out;
		}
		if (rc) {
			/* A torn last line is a write cut short by a crash;
			 * a bad line elsewhere is reported and skipped. */
			if (whole)
				bad_at = bad_at ? bad_at : lineno;
			j->skipped_lines++;
			rc = 0;
		}
	}
	if (bad_at)
		fprintf(stderr,
			"hetsched serve: %s:%zu: unreadable journal "
			"line%s skipped (%llu in all)\n",
			j->path, bad_at, j->skipped_lines > 1 ? "s" : "",
			(unsigned long long)j->skipped_lines);
	all = hs__calloc(seen.n ? seen.n : 1, sizeof(*all));
	*pending = hs__calloc(seen.n ? seen.n : 1, sizeof(**pending));
	if (!all || !*pending) {
		rc = hs__error_set(err, HS_ENOMEM, j->path, 0, NULL,
				   "out of memory");
		goto out;
	}
	for (i = 0; i < seen.cap; i++)
		if (seen.keys[i])
			all[n_all++] = seen.vals[i];
	hs__map_release(&seen);
	qsort(all, n_all, sizeof(*all), by_id_cmp);
	for (i = 0; i < n_all; i++) {
		hs__ajob_t *job = all[i];

		all[i] = NULL;
		if (job->state == HS_JOB_QUEUED && job->cancel_asked)
			job->state = HS_JOB_CANCELLED;
		if (job->state == HS_JOB_QUEUED) {
			(*pending)[(*n_pending)++] = job;
			j->replayed_pending++;
			continue;
		}
		if (hs__map_put(&a->by_id, job->id, job)) {
			hs__job_free(job);
			rc = hs__error_set(err, HS_ENOMEM, j->path, 0, NULL,
					   "out of memory");
			goto out;
		}
		hs__job_finish(a, job, job->state);
		j->replayed_finished++;
	}
out:
	/* What reached the job table stays there (freed with it); the rest
	 * goes. */
	for (i = 0; i < seen.cap; i++)
		if (seen.keys[i])
			hs__job_free(seen.vals[i]);
	if (rc) {
		for (i = 0; i < n_all; i++)
			hs__job_free(all[i]);
		for (i = 0; *pending && i < *n_pending; i++)
			hs__job_free((*pending)[i]);
		hs__free(*pending);
		*pending = NULL;
		*n_pending = 0;
	}
	hs__free(all);
	hs__map_release(&seen);
	free(line);
	return rc;
}

int hs__journal_open(hs__agent_t *a, const char *path, hs__ajob_t ***pending,
		     size_t *n_pending, hs_error_t *err)
{
	hs__journal_t *j = &a->journal;
	size_t i;
	FILE *f;
	int rc = 0;

	*pending = NULL;
	*n_pending = 0;
	j->fd = -1;
	if (!path)
		return 0;
	j->path = hs__strdup(path);
	if (!j->path)
		return hs__error_set(err, HS_ENOMEM, path, 0, NULL,
				     "out of memory");
	f = fopen(path, "r");
	if (f) {
		rc = replay(a, f, pending, n_pending, err);
		fclose(f);
		if (rc)
			return rc;
	} else if (errno != ENOENT) {
		return hs__error_set(err, HS_EIO, path, 0, NULL,
				     "cannot read: %s", strerror(errno));
	}
	if (!a->next_id)
		a->next_id = 1;
	/* Pending jobs are in the snapshot too: in the table for a moment. */
	for (i = 0; i < *n_pending; i++)
		if (hs__map_put(&a->by_id, (*pending)[i]->id, (*pending)[i]))
			rc = HS_ENOMEM;
	if (!rc)
		rc = compact(a);
	for (i = 0; i < *n_pending; i++)
		hs__map_del(&a->by_id, (*pending)[i]->id);
	if (rc) {
		for (i = 0; i < *n_pending; i++)
			hs__job_free((*pending)[i]);
		hs__free(*pending);
		*pending = NULL;
		*n_pending = 0;
		return hs__error_set(err, rc, path, 0, NULL,
				     "cannot rewrite the journal: %s",
				     rc == HS_EIO ? strerror(errno)
						  : hs_strerror(rc));
	}
	j->relaxed = !strcmp(a->cfg->journal_sync, "interval");
	if (j->relaxed) {
		uint64_t ms = a->cfg->journal_sync_ms;

		uv_timer_start(&j->sync_timer, on_sync_timer, ms, ms);
	}
	return 0;
}
