/*
 * The node agent end to end: `hetsched serve` runs as a child process on an
 * ephemeral port with the default sim fleet, and the tests talk HTTP to it
 * through a small client whose responses http-parser reads.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <http_parser.h>
#include <jansson.h>

#define FLEET "data/fleets/default.json"
#define TOKEN "s3cret-token"
#define MAX_MSGS 8

static char cli[PATH_MAX];

/* ---- the agent as a child process ---------------------------------------- */

typedef struct agent_s {
	pid_t pid;
	int port;
	char dir[64]; /* state directory */
	char err_path[96]; /* its stderr */
} agent_t;

static agent_t main_agent;

static void now_sleep_ms(int ms)
{
	struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000};

	nanosleep(&ts, NULL);
}

/* Start `hetsched serve` with the state directory ag->dir (made when
 * empty) and extra flags (NULL-terminated); wait for its port. */
static int agent_start(agent_t *ag, ...)
{
	const char *argv[40];
	char line[256];
	size_t n = 0, len = 0;
	int fds[2];
	va_list ap;

	if (!ag->dir[0]) {
		strcpy(ag->dir, "/tmp/hs-test-agent-XXXXXX");
		if (!mkdtemp(ag->dir))
			return -1;
		snprintf(ag->err_path, sizeof(ag->err_path), "%s.stderr",
			 ag->dir);
	}
	argv[n++] = cli;
	argv[n++] = "serve";
	argv[n++] = "--listen";
	argv[n++] = "127.0.0.1:0";
	argv[n++] = "--fleet";
	argv[n++] = FLEET;
	argv[n++] = "--state-dir";
	argv[n++] = ag->dir;
	va_start(ap, ag);
	while (n < 39 && (argv[n] = va_arg(ap, const char *)))
		n++;
	va_end(ap);
	argv[n] = NULL;
	if (pipe(fds))
		return -1;
	ag->pid = fork();
	if (ag->pid < 0)
		return -1;
	if (ag->pid == 0) {
		int err =
			open(ag->err_path, O_WRONLY | O_CREAT | O_APPEND, 0600);

		dup2(fds[1], 1);
		if (err >= 0)
			dup2(err, 2);
		close(fds[0]);
		close(fds[1]);
		execv(cli, (char *const *)argv);
		_exit(127);
	}
	close(fds[1]);
	/* One line: "listening on 127.0.0.1:PORT". */
	while (len < sizeof(line) - 1) {
		struct pollfd p = {.fd = fds[0], .events = POLLIN};
		ssize_t r;

		if (poll(&p, 1, 10000) <= 0)
			break;
		r = read(fds[0], line + len, 1);
		if (r <= 0 || line[len] == '\n')
			break;
		len++;
	}
	line[len] = '\0';
	close(fds[0]);
	if (sscanf(line, "listening on 127.0.0.1:%d", &ag->port) != 1) {
		fprintf(stderr, "agent did not start: '%s'\n", line);
		return -1;
	}
	return 0;
}

/* Signal the agent and return its exit status (-1: killed by a signal). */
static int agent_stop(agent_t *ag, int sig)
{
	int status = 0;

	if (ag->pid <= 0)
		return -1;
	kill(ag->pid, sig);
	waitpid(ag->pid, &status, 0);
	ag->pid = 0;
	return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

static void agent_cleanup(agent_t *ag)
{
	char cmd[256];

	if (ag->pid > 0)
		agent_stop(ag, SIGKILL);
	if (!ag->dir[0])
		return;
	snprintf(cmd, sizeof(cmd), "rm -rf '%s' '%s'", ag->dir, ag->err_path);
	if (system(cmd))
		fprintf(stderr, "cannot remove %s\n", ag->dir);
	ag->dir[0] = '\0';
}

/* ---- an HTTP client on http-parser --------------------------------------- */

typedef struct resp_s {
	int status[MAX_MSGS];
	int n; /* complete messages */
	char *body; /* the last message's body */
	size_t len, cap;
	char ctype[128];
	char retry_after[32];
	char allow[64];
	char field[32];
	int want;
	bool eof;
} resp_t;

static int on_begin(http_parser *p)
{
	resp_t *r = p->data;

	r->len = 0;
	if (r->body)
		r->body[0] = '\0';
	return 0;
}

static int on_field(http_parser *p, const char *at, size_t len)
{
	resp_t *r = p->data;

	snprintf(r->field, sizeof(r->field), "%.*s", (int)len, at);
	r->want = !strcasecmp(r->field, "content-type")	 ? 1
		  : !strcasecmp(r->field, "retry-after") ? 2
		  : !strcasecmp(r->field, "allow")	 ? 3
							 : 0;
	return 0;
}

static int on_value(http_parser *p, const char *at, size_t len)
{
	resp_t *r = p->data;
	char *dst = r->want == 1   ? r->ctype
		    : r->want == 2 ? r->retry_after
		    : r->want == 3 ? r->allow
				   : NULL;
	size_t size = r->want == 1   ? sizeof(r->ctype)
		      : r->want == 2 ? sizeof(r->retry_after)
				     : sizeof(r->allow);

	if (dst)
		snprintf(dst, size, "%.*s", (int)len, at);
	return 0;
}

static int on_body(http_parser *p, const char *at, size_t len)
{
	resp_t *r = p->data;

	if (r->len + len + 1 > r->cap) {
		r->cap = (r->len + len + 1) * 2;
		r->body = realloc(r->body, r->cap);
		assert_non_null(r->body);
	}
	memcpy(r->body + r->len, at, len);
	r->len += len;
	r->body[r->len] = '\0';
	return 0;
}

static int on_complete(http_parser *p)
{
	resp_t *r = p->data;

	if (r->n < MAX_MSGS)
		r->status[r->n] = (int)p->status_code;
	r->n++;
	if (!r->body)
		on_body(p, "", 0);
	return 0;
}

static const http_parser_settings client_settings = {
	.on_message_begin = on_begin,
	.on_header_field = on_field,
	.on_header_value = on_value,
	.on_body = on_body,
	.on_message_complete = on_complete,
};

static int connect_to(int port)
{
	struct sockaddr_in sa = {.sin_family = AF_INET,
				 .sin_port = htons((uint16_t)port),
				 .sin_addr.s_addr = htonl(0x7f000001)};
	struct timeval tv = {.tv_sec = 15};
	int fd = socket(AF_INET, SOCK_STREAM, 0), one = 1;

	assert_true(fd >= 0);
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	return fd;
}

static void send_all(int fd, const char *data, size_t len)
{
	while (len) {
		ssize_t w = send(fd, data, len, MSG_NOSIGNAL);

		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return; /* the server may close early (413) */
		data += w;
		len -= (size_t)w;
	}
}

/* Read until `want` responses are complete (or EOF). */
static void read_responses(int fd, resp_t *r, int want)
{
	http_parser p;
	char buf[65536];

	http_parser_init(&p, HTTP_RESPONSE);
	p.data = r;
	while (r->n < want) {
		ssize_t n = recv(fd, buf, sizeof(buf), 0);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			r->eof = true;
			http_parser_execute(&p, &client_settings, buf, 0);
			break;
		}
		http_parser_execute(&p, &client_settings, buf, (size_t)n);
		assert_int_equal(HTTP_PARSER_ERRNO(&p), HPE_OK);
	}
}

static void resp_free(resp_t *r)
{
	free(r->body);
	memset(r, 0, sizeof(*r));
}

static char *format_request(const char *method, const char *path,
			    const char *body, const char *token)
{
	size_t blen = body ? strlen(body) : 0;
	char *req = malloc(blen + 512);

	assert_non_null(req);
	snprintf(req, blen + 512,
		 "%s %s HTTP/1.1\r\nHost: test\r\n%s%s%sContent-Type: "
		 "application/json\r\nContent-Length: %zu\r\n\r\n%s",
		 method, path, token ? "Authorization: Bearer " : "",
		 token ? token : "", token ? "\r\n" : "", blen,
		 body ? body : "");
	return req;
}

/* One request on its own connection; returns the status. */
static int http_token(int port, const char *method, const char *path,
		      const char *body, const char *token, resp_t *r)
{
	char *req = format_request(method, path, body, token);
	int fd = connect_to(port);

	memset(r, 0, sizeof(*r));
	send_all(fd, req, strlen(req));
	free(req);
	read_responses(fd, r, 1);
	close(fd);
	return r->n ? r->status[0] : -1;
}

static int http(int port, const char *method, const char *path,
		const char *body, resp_t *r)
{
	return http_token(port, method, path, body, TOKEN, r);
}

static json_t *body_json(const resp_t *r)
{
	json_error_t jerr;
	json_t *v = json_loads(r->body ? r->body : "", 0, &jerr);

	if (!v)
		fprintf(stderr, "not JSON: %s\n", r->body ? r->body : "");
	assert_non_null(v);
	return v;
}

/* The body is {"error": {"code": CODE, "message": "..."}}. */
static void assert_error(const resp_t *r, const char *code)
{
	json_t *v = body_json(r);
	json_t *e = json_object_get(v, "error");

	assert_true(json_is_object(e));
	assert_true(json_is_string(json_object_get(e, "message")));
	assert_true(strlen(json_string_value(json_object_get(e, "message"))));
	if (strcmp(json_string_value(json_object_get(e, "code")), code))
		fprintf(stderr, "expected %s: %s\n", code, r->body);
	assert_string_equal(json_string_value(json_object_get(e, "code")),
			    code);
	assert_non_null(strstr(r->ctype, "application/json"));
	json_decref(v);
}

/* POST a job; returns its id ("j-N", static per call site's buffer). */
static void submit(int port, const char *body, char *id, size_t size)
{
	resp_t r;
	json_t *v;

	assert_int_equal(http(port, "POST", "/v1/jobs", body, &r), 202);
	v = body_json(&r);
	assert_true(json_is_string(json_object_get(v, "id")));
	assert_true(json_is_string(json_object_get(v, "state")));
	snprintf(id, size, "%s", json_string_value(json_object_get(v, "id")));
	json_decref(v);
	resp_free(&r);
}

/* Poll a job until it reaches a final state; returns it (owned). */
static json_t *wait_job(int port, const char *id, int timeout_ms)
{
	char path[96];
	int waited = 0;

	snprintf(path, sizeof(path), "/v1/jobs/%s", id);
	for (;;) {
		resp_t r;
		json_t *v;
		const char *st;

		assert_int_equal(http(port, "GET", path, NULL, &r), 200);
		v = body_json(&r);
		resp_free(&r);
		st = json_string_value(json_object_get(v, "state"));
		assert_non_null(st);
		if (strcmp(st, "queued") && strcmp(st, "running"))
			return v;
		json_decref(v);
		if (waited >= timeout_ms)
			fail_msg("job %s not finished after %d ms", id,
				 timeout_ms);
		now_sleep_ms(20);
		waited += 20;
	}
}

/* ---- group setup -----------------------------------------------------------
 */

static int group_setup(void **state)
{
	char token_path[128];
	FILE *f;

	(void)state;
	memset(&main_agent, 0, sizeof(main_agent));
	strcpy(main_agent.dir, "/tmp/hs-test-agent-XXXXXX");
	if (!mkdtemp(main_agent.dir))
		return -1;
	snprintf(main_agent.err_path, sizeof(main_agent.err_path), "%s.stderr",
		 main_agent.dir);
	snprintf(token_path, sizeof(token_path), "%s/token", main_agent.dir);
	f = fopen(token_path, "w");
	if (!f)
		return -1;
	fprintf(f, "%s\n", TOKEN);
	fclose(f);
	return agent_start(&main_agent, "--token-file", token_path,
			   "--header-timeout", "0.5", "--max-body", "4096",
			   (char *)NULL);
}

static int group_teardown(void **state)
{
	int rc;

	(void)state;
	/* SIGTERM: drain, exit 0 (and, under ASan, no leak). */
	rc = agent_stop(&main_agent, SIGTERM);
	if (rc != 0)
		fprintf(stderr, "agent exited with %d (see %s)\n", rc,
			main_agent.err_path);
	else
		agent_cleanup(&main_agent);
	return rc;
}

/* ---- tests ------------------------------------------------------------------
 */

static void test_health(void **state)
{
	resp_t r;

	(void)state;
	assert_int_equal(
		http_token(main_agent.port, "GET", "/healthz", NULL, NULL, &r),
		200);
	resp_free(&r);
	assert_int_equal(
		http_token(main_agent.port, "GET", "/readyz", NULL, NULL, &r),
		200);
	resp_free(&r);
}

static void test_auth(void **state)
{
	resp_t r;

	(void)state;
	assert_int_equal(http_token(main_agent.port, "GET", "/v1/models", NULL,
				    NULL, &r),
			 401);
	assert_error(&r, "unauthorized");
	resp_free(&r);
	assert_int_equal(http_token(main_agent.port, "POST", "/v1/jobs", "{}",
				    "wrong", &r),
			 401);
	assert_error(&r, "unauthorized");
	resp_free(&r);
	assert_int_equal(
		http_token(main_agent.port, "GET", "/metrics", NULL, NULL, &r),
		401);
	resp_free(&r);
	assert_int_equal(http(main_agent.port, "GET", "/v1/models", NULL, &r),
			 200);
	assert_non_null(strstr(r.body, "\"tiny-test\""));
	resp_free(&r);
}

static void test_submit_poll(void **state)
{
	char id[32];
	json_t *v;

	(void)state;
	submit(main_agent.port,
	       "{\"model\":\"tiny-test\",\"prompt\":\"hello\","
	       "\"max_tokens\":8,\"priority\":5}",
	       id, sizeof(id));
	assert_int_equal(strncmp(id, "j-", 2), 0);
	v = wait_job(main_agent.port, id, 5000);
	assert_string_equal(json_string_value(json_object_get(v, "state")),
			    "done");
	assert_int_equal(json_integer_value(json_object_get(v, "generated")),
			 8);
	assert_int_equal(
		json_integer_value(json_object_get(v, "prompt_tokens")), 5);
	assert_int_equal(strlen(json_string_value(json_object_get(v, "text"))),
			 8);
	assert_true(json_is_number(json_object_get(v, "ttft_ms")));
	json_decref(v);

	/* Token ids instead of text. */
	submit(main_agent.port,
	       "{\"model\":\"tiny-15m\",\"prompt_tokens\":[1,2,3,255],"
	       "\"max_tokens\":3}",
	       id, sizeof(id));
	v = wait_job(main_agent.port, id, 5000);
	assert_string_equal(json_string_value(json_object_get(v, "state")),
			    "done");
	assert_int_equal(
		json_integer_value(json_object_get(v, "prompt_tokens")), 4);
	json_decref(v);
}

static void test_cancel(void **state)
{
	char id[32], path[64];
	resp_t r;
	json_t *v;

	(void)state;
	/* Long enough (an 8B model, many steps) to be cancelled live. */
	submit(main_agent.port,
	       "{\"model\":\"Llama-3.1-8B\",\"prompt\":\"a long one\","
	       "\"max_tokens\":3000}",
	       id, sizeof(id));
	snprintf(path, sizeof(path), "/v1/jobs/%s", id);
	assert_int_equal(http(main_agent.port, "DELETE", path, NULL, &r), 200);
	v = body_json(&r);
	assert_true(!strcmp(json_string_value(json_object_get(v, "state")),
			    "cancelled") ||
		    !strcmp(json_string_value(json_object_get(v, "state")),
			    "cancelling"));
	json_decref(v);
	resp_free(&r);
	v = wait_job(main_agent.port, id, 5000);
	assert_string_equal(json_string_value(json_object_get(v, "state")),
			    "cancelled");
	assert_true(json_integer_value(json_object_get(v, "generated")) < 3000);
	json_decref(v);
	/* Once more: it is finished. */
	assert_int_equal(http(main_agent.port, "DELETE", path, NULL, &r), 409);
	assert_error(&r, "not_cancellable");
	resp_free(&r);
	assert_int_equal(
		http(main_agent.port, "DELETE", "/v1/jobs/j-999999", NULL, &r),
		404);
	assert_error(&r, "not_found");
	resp_free(&r);
}

static void test_completion(void **state)
{
	resp_t r;
	json_t *v, *choice;

	(void)state;
	assert_int_equal(http(main_agent.port, "POST", "/v1/completions",
			      "{\"model\":\"tiny-test\",\"prompt\":\"Hi\","
			      "\"max_tokens\":6,\"temperature\":0.7}",
			      &r),
			 200);
	v = body_json(&r);
	assert_string_equal(json_string_value(json_object_get(v, "object")),
			    "text_completion");
	choice = json_array_get(json_object_get(v, "choices"), 0);
	assert_int_equal(
		strlen(json_string_value(json_object_get(choice, "text"))), 6);
	assert_string_equal(
		json_string_value(json_object_get(choice, "finish_reason")),
		"length");
	assert_int_equal(
		json_integer_value(json_object_get(json_object_get(v, "usage"),
						   "completion_tokens")),
		6);
	json_decref(v);
	resp_free(&r);
}

static void test_stream(void **state)
{
	const int max_tokens = 5;
	resp_t r;
	char *p, *ev;
	int tokens = 0, finals = 0, done = 0;

	(void)state;
	assert_int_equal(http(main_agent.port, "POST", "/v1/completions",
			      "{\"model\":\"tiny-test\",\"prompt\":\"Hi\","
			      "\"max_tokens\":5,\"stream\":true}",
			      &r),
			 200);
	assert_non_null(strstr(r.ctype, "text/event-stream"));
	/* Events are "data: ...\n\n"; the last is [DONE]. */
	for (p = r.body; (ev = strstr(p, "data: ")); p = ev + 6) {
		char *end = strstr(ev, "\n\n");
		json_t *v, *choice;

		assert_non_null(end);
		*end = '\0';
		if (!strcmp(ev + 6, "[DONE]")) {
			done++;
			assert_int_equal(end + 2 - r.body, (long)r.len);
			*end = '\n';
			break;
		}
		assert_int_equal(done, 0);
		v = json_loads(ev + 6, 0, NULL);
		assert_non_null(v);
		choice = json_array_get(json_object_get(v, "choices"), 0);
		if (json_is_null(json_object_get(choice, "finish_reason"))) {
			assert_int_equal(
				strlen(json_string_value(
					json_object_get(choice, "text"))),
				1);
			tokens++;
		} else {
			finals++;
		}
		json_decref(v);
		*end = '\n';
	}
	assert_int_equal(tokens, max_tokens);
	assert_int_equal(finals, 1);
	assert_int_equal(done, 1);
	resp_free(&r);
}

static void test_power(void **state)
{
	resp_t r;
	json_t *v;

	(void)state;
	assert_int_equal(http(main_agent.port, "PUT", "/v1/power",
			      "{\"budget_w\":2500}", &r),
			 200);
	resp_free(&r);
	assert_int_equal(http(main_agent.port, "GET", "/v1/power", NULL, &r),
			 200);
	v = body_json(&r);
	assert_true(json_real_value(json_object_get(v, "budget_w")) == 2500.0);
	assert_true(json_is_true(json_object_get(v, "modeled")));
	json_decref(v);
	resp_free(&r);
	assert_int_equal(http(main_agent.port, "PUT", "/v1/power",
			      "{\"budget_w\":-1}", &r),
			 400);
	assert_error(&r, "invalid_request");
	resp_free(&r);
	assert_int_equal(http(main_agent.port, "PUT", "/v1/power",
			      "{\"budget_w\":\"lots\"}", &r),
			 400);
	resp_free(&r);
	/* Back to none, for the other tests. */
	assert_int_equal(http(main_agent.port, "PUT", "/v1/power",
			      "{\"budget_w\":0}", &r),
			 200);
	resp_free(&r);
}

/* The budget GET /v1/power reports (0: none). */
static double budget_now(int port)
{
	resp_t r;
	json_t *v;
	double w;

	assert_int_equal(http(port, "GET", "/v1/power", NULL, &r), 200);
	v = body_json(&r);
	resp_free(&r);
	w = json_number_value(json_object_get(v, "budget_w"));
	json_decref(v);
	return w;
}

static void put_budget(int port, const char *body)
{
	resp_t r;

	assert_int_equal(http(port, "PUT", "/v1/power", body, &r), 200);
	resp_free(&r);
}

/*
 * A budget set over the API survives a restart, kill -9 included (it is
 * journaled); the lower of it and the configured one holds, so that no
 * restart ever lifts a cap that either set.
 */
static void test_power_restart(void **state)
{
	agent_t ag = {0};

	(void)state;
	assert_int_equal(
		agent_start(&ag, "--power-budget", "3000", (char *)NULL), 0);
	assert_true(budget_now(ag.port) == 3000);
	put_budget(ag.port, "{\"budget_w\":2000}");
	assert_int_equal(agent_stop(&ag, SIGKILL), -1);
	assert_int_equal(
		agent_start(&ag, "--power-budget", "3000", (char *)NULL), 0);
	assert_true(budget_now(ag.port) == 2000);
	/* A lower configured budget wins over the journaled one. */
	assert_int_equal(agent_stop(&ag, SIGTERM), 0);
	assert_int_equal(
		agent_start(&ag, "--power-budget", "1500", (char *)NULL), 0);
	assert_true(budget_now(ag.port) == 1500);
	/* No budget over the API: the configured one, after a compaction
	 * too (a clean stop rewrites the journal). */
	put_budget(ag.port, "{\"budget_w\":0}");
	assert_int_equal(agent_stop(&ag, SIGTERM), 0);
	assert_int_equal(
		agent_start(&ag, "--power-budget", "3000", (char *)NULL), 0);
	assert_true(budget_now(ag.port) == 3000);
	put_budget(ag.port, "{\"budget_w\":2500}");
	assert_int_equal(agent_stop(&ag, SIGTERM), 0);
	assert_int_equal(agent_start(&ag, (char *)NULL), 0);
	assert_true(budget_now(ag.port) == 2500);
	assert_int_equal(agent_stop(&ag, SIGTERM), 0);
	agent_cleanup(&ag);
}

static void test_metrics(void **state)
{
	static const char *const must[] = {
		"vllm:num_requests_waiting{model_name=\"tiny-test\"}",
		"vllm:num_requests_running{",
		"vllm:gpu_cache_usage_perc{",
		"hetsched_power_watts{modeled=\"true\"}",
		"hetsched_device_power_watts{device=\"0\"",
		"modeled=\"true\"",
		"hetsched_power_budget_watts ",
		"hetsched_queue_depth{model=\"tiny-test\",bucket=\"128\"}",
		"hetsched_jobs_running ",
		"hetsched_tokens_generated_total ",
		"hetsched_device_utilisation{",
		"hetsched_ttft_seconds_bucket{le=\"+Inf\"}",
		"hetsched_request_latency_seconds_count ",
		"# TYPE hetsched_ttft_seconds histogram",
	};
	resp_t r;
	size_t i;

	(void)state;
	assert_int_equal(http(main_agent.port, "GET", "/metrics", NULL, &r),
			 200);
	assert_non_null(strstr(r.ctype, "text/plain"));
	for (i = 0; i < sizeof(must) / sizeof(must[0]); i++) {
		if (!strstr(r.body, must[i]))
			fprintf(stderr, "missing in /metrics: %s\n", must[i]);
		assert_non_null(strstr(r.body, must[i]));
	}
	resp_free(&r);
}

static void test_malformed(void **state)
{
	static const struct {
		const char *method, *path, *body;
		int status;
		const char *code;
	} cases[] = {
		{"POST", "/v1/jobs", "{\"model\":", 400, "invalid_json"},
		{"POST", "/v1/jobs", "", 400, "invalid_json"},
		{"POST", "/v1/jobs", "[1,2]", 400, "invalid_request"},
		{"POST", "/v1/jobs",
		 "{\"model\":7,\"prompt\":\"x\",\"max_tokens\":2}", 400,
		 "invalid_request"},
		{"POST", "/v1/jobs",
		 "{\"model\":\"tiny-test\",\"prompt\":3,\"max_tokens\":2}", 400,
		 "invalid_request"},
		{"POST", "/v1/jobs",
		 "{\"model\":\"tiny-test\",\"prompt\":\"x\","
		 "\"max_tokens\":\"2\"}",
		 400, "invalid_request"},
		{"POST", "/v1/jobs",
		 "{\"model\":\"tiny-test\",\"prompt\":\"x\","
		 "\"max_tokens\":2.5}",
		 400, "invalid_request"},
		{"POST", "/v1/jobs",
		 "{\"model\":\"tiny-test\",\"prompt_tokens\":[\"a\"],"
		 "\"max_tokens\":2}",
		 400, "invalid_request"},
		{"POST", "/v1/jobs",
		 "{\"model\":\"tiny-test\",\"prompt_tokens\":[1,256],"
		 "\"max_tokens\":2}",
		 400, "invalid_request"},
		{"POST", "/v1/jobs",
		 "{\"model\":\"tiny-test\",\"prompt\":\"x\","
		 "\"max_tokens\":2,\"priority\":\"high\"}",
		 400, "invalid_request"},
		{"POST", "/v1/jobs",
		 "{\"model\":\"tiny-test\",\"prompt\":\"x\",\"max_tokens\":2,"
		 "\"colour\":1}",
		 400, "invalid_request"},
		{"POST", "/v1/jobs",
		 "{\"model\":\"tiny-test\",\"prompt\":\"x\",\"max_tokens\":2,"
		 "\"max_tokens\":3}",
		 400, "invalid_json"},
		{"POST", "/v1/jobs",
		 "{\"model\":\"tiny-test\",\"prompt\":\"x\"}", 400,
		 "invalid_request"},
		{"POST", "/v1/jobs",
		 "{\"model\":\"tiny-test\",\"prompt\":\"x\",\"max_tokens\":-4}",
		 400, "invalid_request"},
		{"POST", "/v1/jobs",
		 "{\"model\":\"tiny-test\",\"prompt\":\"x\","
		 "\"max_tokens\":0}",
		 400, "invalid_request"},
		{"POST", "/v1/jobs",
		 "{\"model\":\"tiny-test\",\"prompt\":\"x\","
		 "\"max_tokens\":99999999999999}",
		 400, "invalid_request"},
		{"POST", "/v1/jobs",
		 "{\"model\":\"tiny-test\",\"prompt\":\"x\","
		 "\"max_tokens\":1e300}",
		 400, "invalid_request"},
		{"POST", "/v1/jobs",
		 "{\"model\":\"gpt-17\",\"prompt\":\"x\",\"max_tokens\":2}",
		 422, "unknown_model"},
		/* 671 GB of weights: no device of the fleet holds them. */
		{"POST", "/v1/jobs",
		 "{\"model\":\"DeepSeek-V3\",\"prompt\":\"x\",\"max_tokens\":"
		 "2}",
		 422, "does_not_fit"},
		/* Within max_tokens, but prompt + output exceed the context. */
		{"POST", "/v1/jobs",
		 "{\"model\":\"tiny-test\",\"prompt_tokens\":[1,2,3],"
		 "\"max_tokens\":511}",
		 422, "does_not_fit"},
		{"POST", "/v1/completions",
		 "{\"model\":\"tiny-test\",\"prompt\":\"x\",\"n\":3}", 400,
		 "invalid_request"},
		{"POST", "/v1/completions",
		 "{\"model\":\"tiny-test\",\"prompt\":\"x\","
		 "\"stream\":\"yes\"}",
		 400, "invalid_request"},
		{"PUT", "/v1/power", "{\"watts\":5}", 400, "invalid_request"},
		{"GET", "/v1/nothing", NULL, 404, "not_found"},
		{"GET", "/", NULL, 404, "not_found"},
		{"GET", "/v1/jobs/j-123456789", NULL, 404, "not_found"},
		{"GET", "/v1/jobs/bogus", NULL, 404, "not_found"},
		{"GET", "/v1/jobs", NULL, 405, "method_not_allowed"},
		{"DELETE", "/v1/power", NULL, 405, "method_not_allowed"},
		{"POST", "/metrics", "{}", 405, "method_not_allowed"},
		{"PATCH", "/v1/jobs/j-1", "{}", 405, "method_not_allowed"},
	};
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		resp_t r;
		int st = http(main_agent.port, cases[i].method, cases[i].path,
			      cases[i].body, &r);

		if (st != cases[i].status)
			fprintf(stderr, "case %zu: %s %s %s: got %d: %s\n", i,
				cases[i].method, cases[i].path,
				cases[i].body ? cases[i].body : "", st,
				r.body ? r.body : "");
		assert_int_equal(st, cases[i].status);
		assert_error(&r, cases[i].code);
		if (st == 405)
			assert_true(r.allow[0]);
		resp_free(&r);
	}
}

static void test_oversized(void **state)
{
	char *body = malloc(20000);
	resp_t r;

	(void)state;
	assert_non_null(body);
	memset(body, 'x', 19999);
	body[0] = '"';
	body[19998] = '"';
	body[19999] = '\0';
	assert_int_equal(http(main_agent.port, "POST", "/v1/jobs", body, &r),
			 413);
	assert_error(&r, "payload_too_large");
	resp_free(&r);
	free(body);
}

static void test_pipelining(void **state)
{
	char *a = format_request("GET", "/healthz", NULL, NULL);
	char *b = format_request(
		"POST", "/v1/jobs",
		"{\"model\":\"tiny-test\",\"prompt\":\"p\",\"max_tokens\":2}",
		TOKEN);
	char *c = format_request("GET", "/v1/models", NULL, TOKEN);
	char all[4096];
	resp_t r = {0};
	int fd;

	(void)state;
	/* Three requests in one write: three responses, in order, on one
	 * kept-alive connection; the 202 waits for the journal, the next
	 * one waits for it. */
	snprintf(all, sizeof(all), "%s%s%s", a, b, c);
	fd = connect_to(main_agent.port);
	send_all(fd, all, strlen(all));
	read_responses(fd, &r, 3);
	assert_int_equal(r.n, 3);
	assert_int_equal(r.status[0], 200);
	assert_int_equal(r.status[1], 202);
	assert_int_equal(r.status[2], 200);
	assert_non_null(strstr(r.body, "tiny-test"));
	/* Still open: one more. */
	resp_free(&r);
	send_all(fd, a, strlen(a));
	read_responses(fd, &r, 1);
	assert_int_equal(r.status[0], 200);
	resp_free(&r);
	close(fd);
	free(a);
	free(b);
	free(c);
}

static void test_expect_continue(void **state)
{
	static const char body[] = "{\"model\":\"tiny-test\",\"prompt\":"
				   "\"go\",\"max_tokens\":2}";
	char head[512];
	resp_t r = {0};
	int fd;

	(void)state;
	/* What curl does with a body over 1 KiB: headers, wait for the
	 * interim 100, then the body. */
	snprintf(head, sizeof(head),
		 "POST /v1/jobs HTTP/1.1\r\nHost: t\r\nAuthorization: "
		 "Bearer %s\r\nExpect: 100-continue\r\nContent-Length: "
		 "%zu\r\n\r\n",
		 TOKEN, sizeof(body) - 1);
	fd = connect_to(main_agent.port);
	send_all(fd, head, strlen(head));
	read_responses(fd, &r, 1);
	assert_int_equal(r.status[0], 100);
	resp_free(&r);
	send_all(fd, body, sizeof(body) - 1);
	read_responses(fd, &r, 1);
	assert_int_equal(r.status[0], 202);
	resp_free(&r);
	close(fd);
}

static void test_slow_client(void **state)
{
	static const char part[] = "GET /healthz HTTP/1.1\r\nHost: te";
	resp_t r = {0};
	int fd;

	(void)state;
	/* Headers that never end: 408 after --header-timeout, then close. */
	fd = connect_to(main_agent.port);
	send_all(fd, part, sizeof(part) - 1);
	read_responses(fd, &r, 1);
	assert_int_equal(r.n, 1);
	assert_int_equal(r.status[0], 408);
	assert_error(&r, "request_timeout");
	resp_free(&r);
	read_responses(fd, &r, 1);
	assert_true(r.eof);
	resp_free(&r);
	close(fd);
}

static void test_queue_full_and_drain(void **state)
{
	static const char slow[] = "{\"model\":\"Llama-3.1-8B\","
				   "\"prompt\":\"x\",\"max_tokens\":2000}";
	agent_t ag = {0};
	char id[32];
	resp_t r;
	int i;

	(void)state;
	assert_int_equal(agent_start(&ag, "--max-queue", "3", "--drain-timeout",
				     "0.5", (char *)NULL),
			 0);
	for (i = 0; i < 3; i++)
		submit(ag.port, slow, id, sizeof(id));
	assert_int_equal(http(ag.port, "POST", "/v1/jobs", slow, &r), 429);
	assert_error(&r, "queue_full");
	assert_true(atoi(r.retry_after) >= 1);
	resp_free(&r);

	/* SIGTERM: new work gets 503 while the running jobs drain; after
	 * the drain timeout it exits 0, the rest left in the journal. */
	kill(ag.pid, SIGTERM);
	now_sleep_ms(100);
	assert_int_equal(http(ag.port, "POST", "/v1/jobs", slow, &r), 503);
	assert_error(&r, "draining");
	resp_free(&r);
	assert_int_equal(http(ag.port, "GET", "/readyz", NULL, &r), 503);
	resp_free(&r);
	assert_int_equal(agent_stop(&ag, 0), 0);
	agent_cleanup(&ag);
}

/* Wait for a job to be done with `generated` tokens; whether it was
 * replayed from the journal. */
static bool wait_done(int port, const char *id, json_int_t generated)
{
	json_t *v = wait_job(port, id, 15000);
	bool replayed;

	assert_string_equal(json_string_value(json_object_get(v, "state")),
			    "done");
	assert_int_equal(json_integer_value(json_object_get(v, "generated")),
			 generated);
	replayed = json_is_true(json_object_get(v, "replayed"));
	json_decref(v);
	return replayed;
}

static void test_kill9_restart(void **state)
{
	enum { N = 24 };
	agent_t ag = {0};
	char ids[N][32];
	int i, replayed = 0;

	(void)state;
	/* Steps on worker threads this time (the real executors' path),
	 * and a journal compacted while the jobs come in. */
	assert_int_equal(agent_start(&ag, "--sim-mode", "thread",
				     "--journal-max-bytes", "8192",
				     (char *)NULL),
			 0);
	for (i = 0; i < N; i++)
		submit(ag.port,
		       i % 3 ? "{\"model\":\"Llama-3.1-8B\",\"prompt\":"
			       "\"persist me\",\"max_tokens\":150}"
			     : "{\"model\":\"tiny-test\",\"prompt\":\"t\","
			       "\"max_tokens\":4}",
		       ids[i], sizeof(ids[i]));
	/* Every 202 above promises the job: kill at once. */
	assert_int_equal(agent_stop(&ag, SIGKILL), -1);
	assert_int_equal(agent_start(&ag, (char *)NULL), 0);
	for (i = 0; i < N; i++)
		replayed += wait_done(ag.port, ids[i], i % 3 ? 150 : 4);
	/* The long ones cannot have ended before the kill. */
	assert_true(replayed >= N / 2);
	assert_int_equal(agent_stop(&ag, SIGTERM), 0);
	agent_cleanup(&ag);
}

/* GET /v1/stats' journal object (owned). */
static json_t *journal_stats(int port)
{
	json_t *v, *j;
	resp_t r;

	assert_int_equal(http(port, "GET", "/v1/stats", NULL, &r), 200);
	v = body_json(&r);
	resp_free(&r);
	j = json_incref(json_object_get(v, "journal"));
	json_decref(v);
	assert_true(json_is_object(j));
	return j;
}

static void test_kill9_interval(void **state)
{
	enum { N = 12 };
	agent_t ag = {0};
	char ids[N][32];
	json_t *j;
	int i;

	(void)state;
	/* journal-sync interval: the 202 waits for the line's write only,
	 * and no fdatasync comes for 10 s. A kill -9 keeps what was
	 * written: every job answered 202 runs after the restart. */
	assert_int_equal(agent_start(&ag, "--journal-sync", "interval",
				     "--journal-sync-ms", "10000",
				     (char *)NULL),
			 0);
	j = journal_stats(ag.port);
	assert_string_equal(json_string_value(json_object_get(j, "sync")),
			    "interval");
	json_decref(j);
	for (i = 0; i < N; i++)
		submit(ag.port,
		       "{\"model\":\"Llama-3.1-8B\",\"prompt\":"
		       "\"persist me too\",\"max_tokens\":120}",
		       ids[i], sizeof(ids[i]));
	j = journal_stats(ag.port);
	assert_int_equal(json_integer_value(json_object_get(j, "syncs")), 0);
	json_decref(j);
	assert_int_equal(agent_stop(&ag, SIGKILL), -1);

	/* Again with a short interval: the end lines, which no response
	 * waits for, are synced by the timer. */
	assert_int_equal(agent_start(&ag, "--journal-sync", "interval",
				     "--journal-sync-ms", "20", (char *)NULL),
			 0);
	for (i = 0; i < N; i++)
		wait_done(ag.port, ids[i], 120);
	now_sleep_ms(200);
	j = journal_stats(ag.port);
	assert_true(json_integer_value(json_object_get(j, "syncs")) >= 1);
	json_decref(j);
	assert_int_equal(agent_stop(&ag, SIGTERM), 0);
	agent_cleanup(&ag);
}

/* ---- the command line
 * -------------------------------------------------------- */

/* Run the CLI with args; stdout+stderr into out; returns the exit code. */
static int run_cli(char *out, size_t size, ...)
{
	const char *argv[16];
	size_t n = 0, len = 0;
	int fds[2], status;
	va_list ap;
	pid_t pid;

	argv[n++] = cli;
	argv[n++] = "serve";
	va_start(ap, size);
	while (n < 15 && (argv[n] = va_arg(ap, const char *)))
		n++;
	va_end(ap);
	argv[n] = NULL;
	assert_int_equal(pipe(fds), 0);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		dup2(fds[1], 1);
		dup2(fds[1], 2);
		close(fds[0]);
		close(fds[1]);
		execv(cli, (char *const *)argv);
		_exit(127);
	}
	close(fds[1]);
	for (;;) {
		ssize_t r = read(fds[0], out + len, size - 1 - len);

		if (r <= 0)
			break;
		len += (size_t)r;
		if (len == size - 1)
			break;
	}
	out[len] = '\0';
	close(fds[0]);
	waitpid(pid, &status, 0);
	return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

static void test_cli(void **state)
{
	static const char *const keys[] = {
		"--listen",	    "--token-file",   "--fleet",
		"--topology",	    "--state-dir",    "--journal",
		"--policy",	    "--power-budget", "--max-queue",
		"--max-body",	    "--config",	      "--drain-timeout",
		"--header-timeout", "--journal-sync", "--journal-sync-ms",
	};
	static const struct {
		const char *flag, *value;
	} bad_flags[] = {
		{"--frobnicate", NULL},		 {"--max-queue", "many"},
		{"--journal-sync", "sometimes"}, {"--journal-sync-ms", "0"},
		{"--journal-sync-ms", "1.5"},
	};
	static const struct {
		const char *json, *key;
	} bad_configs[] = {
		{"{\"listen\": \"127.0.0.1:0\", \"max_queue\": 5}\n",
		 "max_queue"},
		{"{\"max-queue\": \"5\"}\n", "max-queue"},
		{"{\"journal-sync\": \"never\"}\n", "journal-sync"},
		{"{\"journal-sync\": true}\n", "journal-sync"},
		{"{\"journal-sync-ms\": 20000}\n", "journal-sync-ms"},
	};
	char out[16384], path[128];
	size_t i;
	FILE *f;

	(void)state;
	assert_int_equal(run_cli(out, sizeof(out), "--help", (char *)NULL), 0);
	for (i = 0; i < sizeof(keys) / sizeof(keys[0]); i++)
		assert_non_null(strstr(out, keys[i]));
	/* Bad flags: refused, naming the flag. */
	for (i = 0; i < sizeof(bad_flags) / sizeof(bad_flags[0]); i++)
		if (run_cli(out, sizeof(out), bad_flags[i].flag,
			    bad_flags[i].value, (char *)NULL) != 2 ||
		    !strstr(out, bad_flags[i].flag + 2))
			fail_msg("%s %s: %s", bad_flags[i].flag,
				 bad_flags[i].value ? bad_flags[i].value : "",
				 out);
	/* The mode named in the error. */
	assert_int_equal(run_cli(out, sizeof(out), "--journal-sync",
				 "sometimes", (char *)NULL),
			 2);
	assert_non_null(strstr(out, "sometimes"));
	/* Config files: each bad one is refused, naming its key. */
	snprintf(path, sizeof(path), "%s/bad.json", main_agent.dir);
	for (i = 0; i < sizeof(bad_configs) / sizeof(bad_configs[0]); i++) {
		f = fopen(path, "w");
		assert_non_null(f);
		fputs(bad_configs[i].json, f);
		fclose(f);
		if (run_cli(out, sizeof(out), "--config", path, (char *)NULL) !=
			    2 ||
		    !strstr(out, bad_configs[i].key))
			fail_msg("config %s: %s", bad_configs[i].json, out);
	}
}

int main(int argc, char **argv)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_health),
		cmocka_unit_test(test_auth),
		cmocka_unit_test(test_submit_poll),
		cmocka_unit_test(test_cancel),
		cmocka_unit_test(test_completion),
		cmocka_unit_test(test_stream),
		cmocka_unit_test(test_power),
		cmocka_unit_test(test_power_restart),
		cmocka_unit_test(test_metrics),
		cmocka_unit_test(test_malformed),
		cmocka_unit_test(test_oversized),
		cmocka_unit_test(test_pipelining),
		cmocka_unit_test(test_expect_continue),
		cmocka_unit_test(test_slow_client),
		cmocka_unit_test(test_queue_full_and_drain),
		cmocka_unit_test(test_kill9_restart),
		cmocka_unit_test(test_kill9_interval),
		cmocka_unit_test(test_cli),
	};
	char dir[PATH_MAX];
	char *slash;

	(void)argc;
	/* Tests live in BUILD/tests/, the program in BUILD/. */
	if (!realpath(argv[0], dir)) {
		fprintf(stderr, "cannot resolve %s\n", argv[0]);
		return 1;
	}
	slash = strrchr(dir, '/');
	*slash = '\0';
	if (strlen(dir) + sizeof("/../hetsched") > sizeof(cli))
		return 1;
	strcpy(cli, dir);
	strcat(cli, "/../hetsched");
	if (access(cli, X_OK)) {
		fprintf(stderr, "test_agent: %s not built\n", cli);
		return 1;
	}
	signal(SIGPIPE, SIG_IGN);
	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
