/*
 * Private to hetsched's node agent (`hetsched serve`): not part of the
 * public API. The agent is the real-time driver of the scheduler core: a
 * libuv loop that takes jobs over HTTP, journals them, runs the core's
 * steps on the node's devices (or on sim devices in real time) and reports
 * what it does.
 *
 * Threads: only the loop thread touches the core, the job table, the
 * journal and the connections. Worker threads (one per device with a
 * blocking executor) see nothing but their own device's step, and hand the
 * result back through a uv_async_t.
 *
 * Re-entrancy: the core's hooks must not call back into the core. Anything
 * a hook may cause that needs the core (cancelling the job of a client that
 * went away, parsing the next pipelined request) is queued and done from
 * the idle callback; see hs__agent_kick().
 */
#ifndef HS_AGENT_H
#define HS_AGENT_H

#include <http_parser.h>
#include <uv.h>

#include "executor.h"
#include "internal.h"

/* ------------------------------------------------------------------------ */
/* Configuration                                                            */
/* ------------------------------------------------------------------------ */

/*
 * Every setting of `hetsched serve`. A config file's keys are the long
 * flag names; flags win over the file. Strings are owned (NULL: unset).
 */
typedef struct hs__agent_config_s {
	char *listen;
	char *token_file;
	char *fleet;
	char *topology;
	char *catalog;
	char *models;
	bool no_opencl;
	char *state_dir;
	char *journal;
	uint64_t journal_max_bytes;
	char *journal_sync; /* "always" or "interval" */
	uint64_t journal_sync_ms;
	uint64_t keep_finished;
	char *policy;
	double power_budget;
	uint64_t max_batch;
	double max_wait_ms;
	double power_lease_ms;
	uint64_t max_queue;
	uint64_t max_body;
	uint64_t max_connections;
	double header_timeout;
	double request_timeout;
	double idle_timeout;
	double drain_timeout;
	uint64_t seed;
	double noise;
	double skew;
	char *sim_mode;
	char *kernel_dir;
	uint64_t cpu_threads;
} hs__agent_config_t;

typedef enum {
	HS__KEY_STR,
	HS__KEY_NUM, /* double */
	HS__KEY_UINT, /* uint64_t */
	HS__KEY_BOOL,
} hs__key_type_t;

/* One setting: its name (flag and config key), type, bounds and help. */
typedef struct hs__agent_key_s {
	const char *name;
	hs__key_type_t type;
	size_t offset;
	double min, max; /* numbers */
	const char *arg; /* the value's name in the help */
	const char *help; /* one line; the default included */
} hs__agent_key_t;

extern const hs__agent_key_t hs__agent_keys[];
extern const size_t hs__agent_n_keys;

/* Defaults; strings that default to something derived stay NULL. */
int hs__agent_config_init(hs__agent_config_t *cfg);
void hs__agent_config_release(hs__agent_config_t *cfg);
/* Set key k from a flag's text; err names the flag and the problem. */
int hs__agent_config_set(hs__agent_config_t *cfg, const hs__agent_key_t *k,
			 const char *value, hs_error_t *err);
/* Apply a JSON config file: an object whose keys are long flag names.
 * Unknown keys and wrong types are errors naming the file and the key. */
int hs__agent_config_load(hs__agent_config_t *cfg, const char *path,
			  hs_error_t *err);
/* Check the combination (e.g. --fleet with --topology). */
int hs__agent_config_check(const hs__agent_config_t *cfg, hs_error_t *err);
/* "  --name ARG  help" for every key. */
void hs__agent_config_help(FILE *f);

/*
 * Run the agent until SIGTERM/SIGINT and a drain. Prints "listening on
 * HOST:PORT" on stdout once it accepts connections. Returns 0 after a
 * clean drain, or a negative HS_E* with err filled when it cannot start.
 */
int hs__agent_run(const hs__agent_config_t *cfg, hs_error_t *err);

/* ------------------------------------------------------------------------ */
/* Shared structures                                                        */
/* ------------------------------------------------------------------------ */

/* An intrusive doubly linked list (a node is its own head when empty). */
typedef struct hs__list_s {
	struct hs__list_s *prev, *next;
} hs__list_t;

static inline void hs__list_init(hs__list_t *l)
{
	l->prev = l->next = l;
}

static inline bool hs__list_empty(const hs__list_t *l)
{
	return l->next == l;
}

static inline void hs__list_add_tail(hs__list_t *head, hs__list_t *n)
{
	n->prev = head->prev;
	n->next = head;
	head->prev->next = n;
	head->prev = n;
}

/* Unlink n (harmless when it is not linked). */
static inline void hs__list_del(hs__list_t *n)
{
	n->prev->next = n->next;
	n->next->prev = n->prev;
	n->prev = n->next = n;
}

#define hs__container_of(p, type, member) \
	((type *)(void *)((char *)(p)-offsetof(type, member)))

/* A map from 64-bit keys (never 0) to pointers: open addressing. */
typedef struct hs__map_s {
	uint64_t *keys;
	void **vals;
	size_t cap; /* power of two, or 0 */
	size_t n;
} hs__map_t;

void *hs__map_get(const hs__map_t *m, uint64_t key);
int hs__map_put(hs__map_t *m, uint64_t key, void *val);
void hs__map_del(hs__map_t *m, uint64_t key);
void hs__map_release(hs__map_t *m);

typedef struct hs__agent_s hs__agent_t;
typedef struct hs__conn_s hs__conn_t;

/* A job as the agent knows it: stable id, tokens, and what became of it. */
typedef struct hs__ajob_s {
	uint64_t id; /* the agent's id ("j-<id>"), never 0 */
	uint64_t core_id; /* the core's id while live, else 0 */
	uint32_t model;
	uint32_t n_prompt;
	uint32_t max_tokens;
	uint32_t n_out; /* generated tokens held */
	uint32_t cap;
	uint32_t *tokens; /* prompt, then output */
	int32_t priority;
	int32_t device; /* last device, -1 if none */
	int64_t deadline_ms; /* unix ms, -1: none */
	int64_t created_ms; /* unix ms of acceptance */
	int64_t arrival_ns; /* loop clock */
	int64_t start_ns;
	int64_t first_token_ns;
	int64_t done_ns;
	double energy_j;
	hs_job_state_t state;
	bool completion; /* /v1/completions: answered, not journaled */
	bool replayed;
	bool cancel_asked;
	hs__conn_t *waiter; /* the connection a completion answers */
	hs__list_t done_node; /* finished jobs, oldest first */
} hs__ajob_t;

/* The HTTP request being read or answered on a connection. */
typedef struct hs__req_s {
	enum http_method method;
	char url[2048];
	size_t url_len;
	char auth[512];
	size_t auth_len;
	char field[32];
	size_t field_len;
	bool in_value; /* last header callback was a value */
	bool want_value; /* the value being read is Authorization */
	bool url_too_long;
	bool auth_too_long;
	bool expect_continue; /* "Expect: 100-continue" */
	hs__strbuf_t body;
	bool http10;
} hs__req_t;

typedef enum {
	HS__CONN_IDLE, /* between requests */
	HS__CONN_READING, /* a request is arriving */
	HS__CONN_HANDLING, /* read; its response is pending */
	HS__CONN_STREAMING, /* a chunked response is being sent */
	HS__CONN_CLOSING,
} hs__conn_state_t;

#define HS__CONN_IN_CAP 16384

struct hs__conn_s {
	uv_tcp_t tcp;
	hs__agent_t *a;
	http_parser parser;
	hs__list_t node; /* a->conns */
	hs__list_t resume_node; /* a->resume */
	hs__list_t commit_node; /* a->commit_waiters */
	hs__conn_state_t state;
	char *in; /* HS__CONN_IN_CAP bytes */
	size_t in_len, in_pos;
	hs__req_t req;
	int reject; /* status to answer with, then close */
	bool keep_alive;
	bool reading;
	bool in_process;
	bool eof;
	bool shutting_down; /* a FIN is going out; reads are discarded */
	uv_shutdown_t shut;
	bool chunked; /* the stream uses chunked encoding */
	uint64_t deadline_ms; /* uv_now() deadline, 0: none */
	int timeout_status; /* at the deadline: 408, or 0 to close */
	uint64_t commit_seq; /* journal line the response waits for */
	/* What the answer is if the journal fails instead: what came of the
	 * request (after "the journal cannot be written (error)"). */
	const char *commit_failed;
	hs__strbuf_t pending; /* response sent once that line is durable */
	hs__ajob_t *job; /* the completion it waits for */
	bool stream; /* that completion streams */
	uint32_t streamed; /* tokens already sent */
};

/* A device as the agent drives it. */
typedef struct hs__adev_s hs__adev_t;

typedef struct hs__hist_s {
	const double *bounds; /* seconds, ascending */
	size_t n;
	uint64_t *counts; /* n + 1, the last for +Inf */
	double sum;
	uint64_t count;
} hs__hist_t;

/* One fdatasync on the thread pool, and the line it makes durable. */
typedef struct hs__jsync_s {
	uv_fs_t req;
	hs__agent_t *a;
	uint64_t target;
	bool busy;
} hs__jsync_t;

#define HS__JOURNAL_SYNCS 3

/* The journal: JSON lines, appended, grouped fsync (see journal.c). */
typedef struct hs__journal_s {
	int fd; /* -1: journal off */
	char *path;
	bool relaxed; /* journal-sync interval: responses wait for the write */
	uv_timer_t sync_timer; /* relaxed: the fdatasync every interval */
	hs__strbuf_t buf; /* appended, not yet written */
	uint64_t appended; /* sequence number of the last line */
	uint64_t written;
	uint64_t committed; /* durable up to here */
	uint64_t wanted; /* a response waits for this line */
	uint64_t sync_target; /* of the latest sync started */
	unsigned syncing; /* syncs in flight */
	hs__jsync_t inflight[HS__JOURNAL_SYNCS];
	int failed; /* HS_E* once a write or sync failed */
	uint64_t bytes; /* lines end here */
	uint64_t alloc; /* the file is written (zeros) up to here */
	uint64_t compact_at; /* compact when the lines reach this */
	uint64_t ext_size; /* extension in flight, 0: none */
	uv_fs_t ext_req;
	uint64_t lines, syncs, compactions;
	uint64_t replayed_pending, replayed_finished, skipped_lines;
} hs__journal_t;

#define HS__SAMPLES 41 /* utilisation window: 10 s in 250 ms */

struct hs__adev_s {
	hs__agent_t *a;
	int index; /* in the core */
	hs_device_t dev;
	const struct hs_executor_ops *ops;
	void *exec;
	bool threaded; /* run_step blocks: a worker thread runs it */
	bool sleep_steps; /* sim on a thread: sleep the step's time */
	bool failed;
	/* loop thread */
	bool busy;
	bool dispatch; /* a step to hand to the worker */
	hs_step_t step; /* the running step; jobs -> ids */
	uint64_t *ids;
	uint32_t cap_ids;
	int64_t started_ns;
	int64_t due_ns; /* sim in real time: when it ends */
	int64_t dur_ns;
	double energy_j;
	double power_w; /* modeled draw now */
	uint64_t kv_bytes; /* KV cache of the running batch */
	uint64_t weight_bytes; /* of the running batch's model */
	int64_t busy_samples[HS__SAMPLES];
	double measured_w; /* from its sensor, < 0: none */
	double rapl_last_j; /* RAPL: the counter at the last sample */
	int64_t rapl_last_ns;
	/* worker thread, under mu */
	uv_thread_t thread;
	bool thread_started;
	uv_mutex_t mu;
	uv_cond_t cv;
	int wstate; /* 0 idle, 1 posted, 2 done */
	bool quit;
	int rc;
	struct hs__snap_s *snap; /* joining jobs' tokens for prompt() */
	uint32_t n_snap, cap_snap;
	struct hs__tok_s *out; /* tokens the step made */
	uint32_t n_out, cap_out;
	uint64_t *release; /* jobs that left the device */
	uint32_t n_release, cap_release;
	hs_executor_io_t io;
};

struct hs__snap_s {
	uint64_t id;
	uint32_t *tokens;
	uint32_t n;
};

struct hs__tok_s {
	uint64_t id;
	uint32_t token;
};

struct hs__agent_s {
	const hs__agent_config_t *cfg;
	uv_loop_t loop;
	uv_tcp_t server;
	uv_timer_t wake; /* sim step ends and the core's timer */
	uv_timer_t tick; /* timeouts, samples, drain */
	uv_idle_t idle; /* deferred work (hs__agent_kick) */
	uv_check_t check; /* the journal's group commit */
	uv_async_t async; /* worker threads' step ends */
	uv_signal_t sigterm, sigint;
	bool handles_up;
	uint64_t t0; /* uv_hrtime() at start */
	int64_t started_ms; /* unix ms */

	hs_model_catalog_t *models;
	hs_profile_catalog_t *profiles;
	hs_node_t *node;
	int *node_index; /* core device -> node device */
	hs_sched_config_t sc;
	hs_sched_t *core;
	hs__adev_t *devs;
	size_t n_devs;
	bool sim; /* sim devices (fleet or topology) */
	int64_t core_timer_at; /* -1: none */
	int64_t wake_at; /* what the wake timer is armed for */
	uint64_t *scratch; /* ids of a step being ended */
	uint32_t cap_scratch;

	/* jobs */
	hs__map_t by_id;
	hs__ajob_t **by_slot; /* core id's slot -> job */
	size_t cap_slot;
	hs__list_t finished;
	size_t n_finished;
	uint64_t next_id;
	bool api_budget; /* a budget was set over the API (journaled) */
	double api_budget_w; /* that budget; 0: none */
	uint64_t live;
	uint64_t *live_by_model;
	uint64_t *running_by_model;
	uint64_t *cancels; /* agent ids to cancel from a safe place */
	size_t n_cancels, cap_cancels;

	/* http */
	hs__list_t conns;
	hs__list_t resume;
	hs__list_t commit_waiters;
	size_t n_conns;
	char token[512];
	size_t token_len;
	char listen_addr[128];
	hs__strbuf_t out; /* responses are formatted here */

	hs__journal_t journal;
	int lock_fd;

	bool draining;
	bool stopping;
	int64_t drain_deadline_ms;
	size_t sample_at; /* next slot of the sample rings */
	size_t n_samples;
	int64_t sample_ns[HS__SAMPLES];
	int64_t core_now; /* `now` of the core call in progress */

	/* figures */
	hs__hist_t ttft, latency, queue_wait;
	uint64_t http_requests, http_4xx, http_5xx, http_accepted_conns;
	uint64_t accepted, rejected_full, refused, completions;
	uint64_t finished_done, finished_cancelled, finished_failed;
	int fatal; /* HS_E* that stops the agent */
};

/* ---- agent.c: the loop, the core's driver ------------------------------ */

/* Nanoseconds on the core's clock (monotonic, from the agent's start). */
int64_t hs__agent_now(const hs__agent_t *a);
int64_t hs__unix_ms(void);
/* Make the idle callback run soon (deferred work is waiting). */
void hs__agent_kick(hs__agent_t *a);
/* Queue a cancel of a live job, done outside any hook. */
void hs__agent_cancel_later(hs__agent_t *a, uint64_t id);
/* Calls into the core from a safe place (never from a hook); each ends
 * with the driver's follow-up (dispatch to workers, timer). */
int hs__agent_submit(hs__agent_t *a, hs__ajob_t *job, const hs_job_spec_t *spec,
		     hs_error_t *err);
int hs__agent_cancel(hs__agent_t *a, hs__ajob_t *job);
int hs__agent_set_budget(hs__agent_t *a, double watts);

/* ---- jobs.c ------------------------------------------------------------ */

hs__ajob_t *hs__job_new(hs__agent_t *a, uint64_t id, uint32_t model,
			const uint32_t *prompt, uint32_t n_prompt,
			uint32_t max_tokens);
void hs__job_free(hs__ajob_t *job);
/* By the agent's id / the core's id; NULL if unknown (or evicted). */
hs__ajob_t *hs__job_find(hs__agent_t *a, uint64_t id);
hs__ajob_t *hs__job_by_core(hs__agent_t *a, uint64_t core_id);
/* A job accepted by the core (live): index it. 0 or HS_ENOMEM. */
int hs__job_attach(hs__agent_t *a, hs__ajob_t *job, uint64_t core_id);
/* The job finished: unindex from the core, keep it for GET, evict the
 * oldest finished beyond keep_finished. */
void hs__job_finish(hs__agent_t *a, hs__ajob_t *job, hs_job_state_t state);
/* Append generated tokens: given ones (token != NULL) or synthetic ones
 * up to `generated` (sim devices produce no tokens). */
int hs__job_push_token(hs__ajob_t *job, uint32_t token);
void hs__job_fill_tokens(hs__agent_t *a, hs__ajob_t *job, uint32_t generated);
/* Fast appends for hot paths (no format parsing); 0 or HS_ENOMEM, which
 * also sets sb->failed. */
int hs__sb_addn(hs__strbuf_t *sb, const char *s, size_t n);
#define HS__SB_LIT(sb, lit) hs__sb_addn((sb), (lit), sizeof(lit) - 1)
int hs__sb_addu(hs__strbuf_t *sb, uint64_t v);
/* s as a JSON string, quotes included. */
int hs__sb_add_json_str(hs__strbuf_t *sb, const char *s);
/* Byte-level text of tokens (latin-1 for < 256, U+FFFD otherwise). */
int hs__tokens_text(hs__strbuf_t *sb, const uint32_t *t, uint32_t n);
/* "j-12" / "cmpl-12" -> 12; 0 when malformed. */
uint64_t hs__job_parse_id(const char *s);
void hs__job_format_id(const hs__ajob_t *job, char *buf, size_t size);
json_t *hs__job_to_json(hs__agent_t *a, const hs__ajob_t *job);

/* ---- journal.c --------------------------------------------------------- */

/* Open (creating) the journal, replay it into the job table and compact
 * it. Pending jobs are returned sorted by id in *pending (to submit).
 * path NULL: journal off. */
int hs__journal_open(hs__agent_t *a, const char *path, hs__ajob_t ***pending,
		     size_t *n_pending, hs_error_t *err);
/* Lines; each returns its sequence number (0 when the journal is off). */
uint64_t hs__journal_accept(hs__agent_t *a, const hs__ajob_t *job);
uint64_t hs__journal_end(hs__agent_t *a, const hs__ajob_t *job);
uint64_t hs__journal_cancel(hs__agent_t *a, const hs__ajob_t *job);
/* A budget set over the API (a->api_budget_w), to survive restarts. */
uint64_t hs__journal_budget(hs__agent_t *a);
/* Write what was appended; fsync if a response waits for it (with
 * journal-sync interval, answer those waiting for the write). */
void hs__journal_flush(hs__agent_t *a);
/* A response waits for line seq to be durable (journal-sync interval:
 * written). */
void hs__journal_want(hs__agent_t *a, uint64_t seq);
/* At exit: write, fsync, close. */
void hs__journal_close(hs__agent_t *a);

/* ---- http.c ------------------------------------------------------------ */

int hs__http_listen(hs__agent_t *a, hs_error_t *err);
/* Answer the request being handled (status, body). Safe in hooks. */
void hs__http_respond(hs__conn_t *c, int status, const char *ctype,
		      const char *extra_headers, const char *body, size_t len);
void hs__http_json(hs__conn_t *c, int status, json_t *v,
		   const char *extra_headers);
/* The text hs__http_json sends for v (compact), taking v; NULL when out of
 * memory. Freed with hs__free. */
char *hs__http_json_text(json_t *v);
void hs__http_error(hs__conn_t *c, int status, const char *code,
		    const char *fmt, ...) HS__PRINTF(4, 5);
/* Format the response into c->pending instead; send it later with
 * hs__http_send_pending (once the journal has it). */
void hs__http_prepare(hs__conn_t *c, int status, const char *body, size_t len);
void hs__http_send_pending(hs__conn_t *c);
/* Chunked responses (server-sent events). */
void hs__http_stream_begin(hs__conn_t *c, int status, const char *ctype);
void hs__http_stream_write(hs__conn_t *c, const char *data, size_t len);
void hs__http_stream_end(hs__conn_t *c);
/* Parse what is buffered on a connection whose response went out. */
void hs__http_resume(hs__conn_t *c);
void hs__http_close(hs__conn_t *c);
/* Every connection: timeouts (called from the tick). */
void hs__http_sweep(hs__agent_t *a);

/* ---- api.c ------------------------------------------------------------- */

/* Route a request that has been read; it must end in a response (now or
 * later). */
void hs__api_handle(hs__agent_t *a, hs__conn_t *c);
/* A completion's job made tokens / finished: answer its client. */
void hs__api_job_progress(hs__agent_t *a, hs__ajob_t *job);
void hs__api_job_finished(hs__agent_t *a, hs__ajob_t *job);

/* ---- metrics.c --------------------------------------------------------- */

void hs__hist_init(hs__hist_t *h, const double *bounds, size_t n);
void hs__hist_release(hs__hist_t *h);
void hs__hist_observe(hs__hist_t *h, double v);
/* The Prometheus text exposition of everything. */
int hs__metrics_render(hs__agent_t *a, hs__strbuf_t *sb);
/* Fraction of the last 10 s a device was busy. */
double hs__device_utilisation(const hs__agent_t *a, const hs__adev_t *d);

#endif /* HS_AGENT_H */
