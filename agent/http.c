/*
 * HTTP/1.1 over libuv, parsed by http-parser. One request at a time per
 * connection: the parser pauses at the end of each message, the request is
 * answered (now or later: the journal, a completion), and only then is the
 * next pipelined request parsed, so responses always go out in order.
 */
#include <netdb.h>
#include <stdarg.h>
#include <string.h>

#include "agent.h"

#define LINGER_MS 2000
#define MAX_WRITE_QUEUE (16u << 20)

static const http_parser_settings settings;

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf);
static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf);

typedef struct write_req_s {
	uv_write_t req;
	char data[];
} write_req_t;

static void on_close(uv_handle_t *h)
{
	hs__conn_t *c = h->data;

	hs__list_del(&c->node);
	c->a->n_conns--;
	hs__strbuf_release(&c->req.body);
	hs__strbuf_release(&c->pending);
	hs__free(c->in);
	hs__free(c);
}

void hs__http_close(hs__conn_t *c)
{
	if (uv_is_closing((uv_handle_t *)&c->tcp))
		return;
	c->state = HS__CONN_CLOSING;
	hs__list_del(&c->resume_node);
	hs__list_del(&c->commit_node);
	/* Nobody reads a completion any more: stop working for it. */
	if (c->job) {
		c->job->waiter = NULL;
		if (c->job->core_id)
			hs__agent_cancel_later(c->a, c->job->id);
		c->job = NULL;
	}
	uv_close((uv_handle_t *)&c->tcp, on_close);
}

static void on_shutdown(uv_shutdown_t *req, int status)
{
	hs__conn_t *c = req->data;

	/* The response is out; wait for the peer's FIN (reads are
	 * discarded) so that unread request bytes do not turn our close
	 * into a reset that eats the response. */
	if (status < 0 || c->eof)
		hs__http_close(c);
}

/* Close once what was written has gone out. */
static void close_gracefully(hs__conn_t *c)
{
	if (c->state == HS__CONN_CLOSING)
		return;
	c->state = HS__CONN_CLOSING;
	c->shutting_down = true;
	c->deadline_ms = uv_now(&c->a->loop) + LINGER_MS;
	c->timeout_status = 0;
	hs__list_del(&c->resume_node);
	c->shut.data = c;
	if (uv_shutdown(&c->shut, (uv_stream_t *)&c->tcp, on_shutdown)) {
		hs__http_close(c);
		return;
	}
	if (!c->reading && !c->eof &&
	    !uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read))
		c->reading = true;
}

static void on_write(uv_write_t *req, int status)
{
	write_req_t *w = (write_req_t *)req;
	hs__conn_t *c = req->handle->data;

	hs__free(w);
	if (status < 0 && status != UV_ECANCELED)
		hs__http_close(c);
}

static void send_bytes(hs__conn_t *c, const char *data, size_t len)
{
	uv_buf_t buf = uv_buf_init((char *)data, (unsigned)len);
	write_req_t *w;
	int r;

	if (c->state == HS__CONN_CLOSING || !len)
		return;
	r = uv_try_write((uv_stream_t *)&c->tcp, &buf, 1);
	if (r >= 0) {
		if ((size_t)r == len)
			return;
		data += r;
		len -= (size_t)r;
	} else if (r != UV_EAGAIN) {
		hs__http_close(c);
		return;
	}
	/* A client that does not read its stream is cut off. */
	if (c->tcp.write_queue_size + len > MAX_WRITE_QUEUE) {
		hs__http_close(c);
		return;
	}
	w = hs__malloc(sizeof(*w) + len);
	if (!w) {
		hs__http_close(c);
		return;
	}
	memcpy(w->data, data, len);
	buf = uv_buf_init(w->data, (unsigned)len);
	if (uv_write(&w->req, (uv_stream_t *)&c->tcp, &buf, 1, on_write)) {
		hs__free(w);
		hs__http_close(c);
	}
}

/* The response is complete: next request, or close. */
static void response_done(hs__conn_t *c)
{
	hs__agent_t *a = c->a;

	if (c->state == HS__CONN_CLOSING)
		return;
	if (!c->keep_alive || c->eof || a->draining) {
		close_gracefully(c);
		return;
	}
	c->state = HS__CONN_IDLE;
	c->deadline_ms =
		uv_now(&a->loop) + (uint64_t)(a->cfg->idle_timeout * 1000);
	c->timeout_status = 0;
	if (!c->in_process) {
		hs__list_del(&c->resume_node);
		hs__list_add_tail(&a->resume, &c->resume_node);
		hs__agent_kick(a);
	}
}

static void count_status(hs__agent_t *a, int status)
{
	if (status >= 500)
		a->http_5xx++;
	else if (status >= 400)
		a->http_4xx++;
}

static void format_head(hs__conn_t *c, hs__strbuf_t *sb, int status,
			const char *ctype, const char *extra, size_t len,
			bool has_len)
{
	const char *reason = http_status_str((enum http_status)status);
	bool close = !c->keep_alive || c->eof || c->a->draining || c->reject;

	hs__sb_addn(sb, c->req.http10 ? "HTTP/1.0 " : "HTTP/1.1 ", 9);
	hs__sb_addu(sb, (uint64_t)status);
	HS__SB_LIT(sb, " ");
	hs__sb_addn(sb, reason, strlen(reason));
	HS__SB_LIT(sb, "\r\nServer: hetsched/" HS_VERSION_STRING
		       "\r\nContent-Type: ");
	hs__sb_addn(sb, ctype, strlen(ctype));
	if (has_len) {
		HS__SB_LIT(sb, "\r\nContent-Length: ");
		hs__sb_addu(sb, len);
	}
	if (close)
		HS__SB_LIT(sb, "\r\nConnection: close");
	else if (c->req.http10)
		HS__SB_LIT(sb, "\r\nConnection: keep-alive");
	HS__SB_LIT(sb, "\r\n");
	if (extra)
		hs__sb_addn(sb, extra, strlen(extra));
	HS__SB_LIT(sb, "\r\n");
}

void hs__http_respond(hs__conn_t *c, int status, const char *ctype,
		      const char *extra_headers, const char *body, size_t len)
{
	hs__strbuf_t *sb = &c->a->out;

	if (c->state == HS__CONN_CLOSING)
		return;
	count_status(c->a, status);
	sb->len = 0;
	sb->failed = 0;
	format_head(c, sb, status, ctype, extra_headers, len, true);
	if (c->req.method != HTTP_HEAD)
		hs__sb_addn(sb, body, len);
	if (sb->failed) {
		hs__http_close(c);
		return;
	}
	send_bytes(c, sb->buf, sb->len);
	/* One big response must not pin its buffer for good. */
	if (sb->cap > (1u << 20))
		hs__strbuf_release(sb);
	response_done(c);
}

char *hs__http_json_text(json_t *v)
{
	char *text = v ? json_dumps(v, JSON_COMPACT | JSON_REAL_PRECISION(10))
		       : NULL;

	json_decref(v);
	return text;
}

void hs__http_json(hs__conn_t *c, int status, json_t *v,
		   const char *extra_headers)
{
	char *text = hs__http_json_text(v);

	if (!text) {
		hs__http_respond(
			c, 500, "application/json", NULL,
			"{\"error\":{\"code\":\"internal\",\"message\":"
			"\"out of memory\"}}",
			60);
		return;
	}
	hs__http_respond(c, status, "application/json", extra_headers, text,
			 strlen(text));
	hs__free(text);
}

static void error_body(hs__strbuf_t *sb, const char *code, const char *msg)
{
	HS__SB_LIT(sb, "{\"error\":{\"code\":");
	hs__sb_add_json_str(sb, code);
	HS__SB_LIT(sb, ",\"message\":");
	hs__sb_add_json_str(sb, msg);
	HS__SB_LIT(sb, "}}");
}

void hs__http_error(hs__conn_t *c, int status, const char *code,
		    const char *fmt, ...)
{
	char msg[512], extra[64] = "";
	hs__strbuf_t body;
	va_list ap;
	char *p;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	/* Messages may quote what the client sent: keep them ASCII. */
	for (p = msg; *p; p++)
		if ((unsigned char)*p >= 0x80)
			*p = '?';
	if (status == 401)
		snprintf(extra, sizeof(extra), "WWW-Authenticate: Bearer\r\n");
	else if (status == 429 || status == 503)
		snprintf(extra, sizeof(extra), "Retry-After: 1\r\n");
	hs__strbuf_init(&body);
	error_body(&body, code, msg);
	if (body.failed) {
		hs__strbuf_release(&body);
		hs__http_close(c);
		return;
	}
	hs__http_respond(c, status, "application/json", extra, body.buf,
			 body.len);
	hs__strbuf_release(&body);
}

void hs__http_prepare(hs__conn_t *c, int status, const char *body, size_t len)
{
	count_status(c->a, status);
	c->pending.len = 0;
	format_head(c, &c->pending, status, "application/json", NULL, len,
		    true);
	hs__sb_addn(&c->pending, body, len);
}

void hs__http_send_pending(hs__conn_t *c)
{
	if (c->pending.failed) {
		hs__strbuf_release(&c->pending);
		hs__http_close(c);
		return;
	}
	send_bytes(c, c->pending.buf, c->pending.len);
	c->pending.len = 0;
	if (c->pending.cap > 4096)
		hs__strbuf_release(&c->pending);
	response_done(c);
}

void hs__http_stream_begin(hs__conn_t *c, int status, const char *ctype)
{
	hs__strbuf_t *sb = &c->a->out;

	count_status(c->a, status);
	c->chunked = !c->req.http10;
	if (!c->chunked)
		c->keep_alive = false;
	sb->len = 0;
	sb->failed = 0;
	format_head(c, sb, status, ctype,
		    c->chunked ? "Cache-Control: no-cache\r\n"
				 "Transfer-Encoding: chunked\r\n"
			       : "Cache-Control: no-cache\r\n",
		    0, false);
	if (sb->failed) {
		hs__http_close(c);
		return;
	}
	send_bytes(c, sb->buf, sb->len);
	if (c->state != HS__CONN_CLOSING)
		c->state = HS__CONN_STREAMING;
}

void hs__http_stream_write(hs__conn_t *c, const char *data, size_t len)
{
	hs__strbuf_t *sb = &c->a->out;
	char size[24];

	if (c->state != HS__CONN_STREAMING || !len)
		return;
	if (!c->chunked) {
		send_bytes(c, data, len);
		return;
	}
	sb->len = 0;
	sb->failed = 0;
	snprintf(size, sizeof(size), "%zx\r\n", len);
	hs__sb_addn(sb, size, strlen(size));
	hs__sb_addn(sb, data, len);
	HS__SB_LIT(sb, "\r\n");
	if (sb->failed) {
		hs__http_close(c);
		return;
	}
	send_bytes(c, sb->buf, sb->len);
}

void hs__http_stream_end(hs__conn_t *c)
{
	if (c->state != HS__CONN_STREAMING)
		return;
	if (c->chunked)
		send_bytes(c, "0\r\n\r\n", 5);
	response_done(c);
}

/* ---- reading ----------------------------------------------------------- */

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
	hs__conn_t *c = h->data;

	(void)suggested;
	if (c->in_pos == c->in_len) {
		c->in_pos = c->in_len = 0;
	} else if (c->in_pos && c->in_len == HS__CONN_IN_CAP) {
		memmove(c->in, c->in + c->in_pos, c->in_len - c->in_pos);
		c->in_len -= c->in_pos;
		c->in_pos = 0;
	}
	*buf = uv_buf_init(c->in + c->in_len,
			   (unsigned)(HS__CONN_IN_CAP - c->in_len));
}

static void process(hs__conn_t *c);

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
	hs__conn_t *c = s->data;

	(void)buf;
	if (c->shutting_down) {
		/* Discard until the peer closes (see on_shutdown). */
		c->in_pos = c->in_len = 0;
		if (nread < 0) {
			c->eof = true;
			hs__http_close(c);
		}
		return;
	}
	if (nread == UV_ENOBUFS) {
		uv_read_stop(s);
		c->reading = false;
		return;
	}
	if (nread < 0) {
		c->eof = true;
		uv_read_stop(s);
		c->reading = false;
		/* A response still being worked on for a plain request is
		 * sent, then the connection closes; a completion nobody
		 * reads is given up. */
		if (c->state == HS__CONN_HANDLING && !c->job)
			return;
		hs__http_close(c);
		return;
	}
	c->in_len += (size_t)nread;
	if (c->state == HS__CONN_IDLE || c->state == HS__CONN_READING)
		process(c);
	else if (c->in_len == HS__CONN_IN_CAP && c->reading) {
		uv_read_stop(s);
		c->reading = false;
	}
}

static void reject(hs__conn_t *c)
{
	int status = c->reject;

	c->keep_alive = false;
	switch (status) {
	case 413:
		hs__http_error(c, 413, "payload_too_large",
			       "the request body is larger than %llu bytes "
			       "(max-body)",
			       (unsigned long long)c->a->cfg->max_body);
		break;
	case 414:
		hs__http_error(c, 414, "uri_too_long",
			       "the request target is longer than %zu bytes",
			       sizeof(c->req.url) - 1);
		break;
	case 431:
		hs__http_error(c, 431, "headers_too_large",
			       "the request headers are too large");
		break;
	case 500:
		hs__http_error(c, 500, "internal", "out of memory");
		break;
	default:
		hs__http_error(
			c, 400, "bad_request", "malformed HTTP request: %s",
			http_errno_description(HTTP_PARSER_ERRNO(&c->parser)));
		break;
	}
}

static void process(hs__conn_t *c)
{
	hs__agent_t *a = c->a;

	if (c->in_process)
		return;
	c->in_process = true;
	while ((c->state == HS__CONN_IDLE || c->state == HS__CONN_READING) &&
	       c->in_pos < c->in_len) {
		size_t n = http_parser_execute(&c->parser, &settings,
					       c->in + c->in_pos,
					       c->in_len - c->in_pos);
		enum http_errno e = HTTP_PARSER_ERRNO(&c->parser);

		c->in_pos += n;
		if (e == HPE_PAUSED) {
			http_parser_pause(&c->parser, 0);
			if (c->reject) {
				reject(c);
				break;
			}
			a->http_requests++;
			hs__api_handle(a, c);
			continue;
		}
		if (e != HPE_OK) {
			c->reject = e == HPE_HEADER_OVERFLOW ? 431 : 400;
			reject(c);
			break;
		}
		if (c->parser.upgrade) {
			c->reject = 400;
			reject(c);
			break;
		}
	}
	if (c->in_pos == c->in_len)
		c->in_pos = c->in_len = 0;
	c->in_process = false;
	if (c->state != HS__CONN_CLOSING && !c->reading && !c->eof &&
	    c->in_len < HS__CONN_IN_CAP) {
		if (uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read))
			hs__http_close(c);
		else
			c->reading = true;
	}
}

void hs__http_resume(hs__conn_t *c)
{
	hs__list_del(&c->resume_node);
	if (c->state == HS__CONN_IDLE)
		process(c);
}

/* ---- parser callbacks ---------------------------------------------------- */

static int on_message_begin(http_parser *p)
{
	hs__conn_t *c = p->data;
	hs__req_t *r = &c->req;

	r->url_len = r->auth_len = r->field_len = 0;
	r->in_value = r->want_value = false;
	r->url_too_long = r->auth_too_long = false;
	r->expect_continue = false;
	r->body.len = 0;
	r->body.failed = 0;
	if (r->body.cap > (1u << 16))
		hs__strbuf_release(&r->body);
	c->state = HS__CONN_READING;
	c->deadline_ms = uv_now(&c->a->loop) +
			 (uint64_t)(c->a->cfg->header_timeout * 1000);
	c->timeout_status = 408;
	return 0;
}

static int on_url(http_parser *p, const char *at, size_t len)
{
	hs__req_t *r = &((hs__conn_t *)p->data)->req;

	if (r->url_len + len >= sizeof(r->url)) {
		r->url_too_long = true;
		return 0;
	}
	memcpy(r->url + r->url_len, at, len);
	r->url_len += len;
	r->url[r->url_len] = '\0';
	return 0;
}

static int on_header_field(http_parser *p, const char *at, size_t len)
{
	hs__req_t *r = &((hs__conn_t *)p->data)->req;

	if (r->in_value) {
		r->in_value = false;
		r->field_len = 0;
	}
	/* Only the name's length matters past the buffer: no name we look
	 * for is that long. */
	if (r->field_len + len < sizeof(r->field))
		memcpy(r->field + r->field_len, at, len);
	r->field_len += len;
	return 0;
}

static int on_header_value(http_parser *p, const char *at, size_t len)
{
	hs__req_t *r = &((hs__conn_t *)p->data)->req;

	if (!r->in_value) {
		r->in_value = true;
		r->want_value = r->field_len == 13 &&
				!strncasecmp(r->field, "authorization", 13);
		if (r->want_value)
			r->auth_len = 0;
		/* curl sends it for bodies over 1 KiB and waits a second
		 * for the go-ahead. */
		if (r->field_len == 6 && !strncasecmp(r->field, "expect", 6) &&
		    len >= 12 && !strncasecmp(at, "100-continue", 12))
			r->expect_continue = true;
	}
	if (!r->want_value)
		return 0;
	if (r->auth_len + len >= sizeof(r->auth)) {
		r->auth_too_long = true;
		return 0;
	}
	memcpy(r->auth + r->auth_len, at, len);
	r->auth_len += len;
	r->auth[r->auth_len] = '\0';
	return 0;
}

static const char go_ahead[] = "HTTP/1.1 100 Continue\r\n\r\n";

static int on_headers_complete(http_parser *p)
{
	hs__conn_t *c = p->data;
	const hs__agent_config_t *cfg = c->a->cfg;

	c->req.method = (enum http_method)p->method;
	c->req.http10 = p->http_major == 1 && p->http_minor == 0;
	c->keep_alive = http_should_keep_alive(p);
	if (cfg->request_timeout > cfg->header_timeout)
		c->deadline_ms += (uint64_t)((cfg->request_timeout -
					      cfg->header_timeout) *
					     1000);
	if (c->req.url_too_long)
		c->reject = 414;
	else if (!(p->flags & F_CHUNKED) && p->content_length != ULLONG_MAX &&
		 p->content_length > cfg->max_body)
		c->reject = 413;
	if (c->reject)
		http_parser_pause(p, 1);
	else if (c->req.expect_continue && !c->req.http10)
		send_bytes(c, go_ahead, sizeof(go_ahead) - 1);
	return 0;
}

static int on_body(http_parser *p, const char *at, size_t len)
{
	hs__conn_t *c = p->data;

	if (c->req.body.len + len > c->a->cfg->max_body) {
		c->reject = 413;
		http_parser_pause(p, 1);
		return 0;
	}
	hs__sb_addn(&c->req.body, at, len);
	return 0;
}

static int on_message_complete(http_parser *p)
{
	hs__conn_t *c = p->data;

	c->state = HS__CONN_HANDLING;
	c->deadline_ms = 0;
	if (!c->req.body.buf)
		HS__SB_LIT(&c->req.body, "");
	if (c->req.body.failed)
		c->reject = 500;
	http_parser_pause(p, 1);
	return 0;
}

static const http_parser_settings settings = {
	.on_message_begin = on_message_begin,
	.on_url = on_url,
	.on_header_field = on_header_field,
	.on_header_value = on_header_value,
	.on_headers_complete = on_headers_complete,
	.on_body = on_body,
	.on_message_complete = on_message_complete,
};

/* ---- accepting ----------------------------------------------------------- */

static void on_refused_close(uv_handle_t *h)
{
	hs__free(h);
}

static void on_connection(uv_stream_t *server, int status)
{
	hs__agent_t *a = server->data;
	hs__conn_t *c;

	if (status < 0)
		return;
	if (a->n_conns >= a->cfg->max_connections || a->stopping) {
		uv_tcp_t *t = hs__malloc(sizeof(*t));

		if (!t)
			return;
		/* Accepted only to be closed: the client learns at once. */
		uv_tcp_init(&a->loop, t);
		uv_accept(server, (uv_stream_t *)t);
		uv_close((uv_handle_t *)t, on_refused_close);
		return;
	}
	c = hs__calloc(1, sizeof(*c));
	if (!c)
		return;
	c->in = hs__malloc(HS__CONN_IN_CAP);
	if (!c->in) {
		hs__free(c);
		return;
	}
	c->a = a;
	hs__list_init(&c->resume_node);
	hs__list_init(&c->commit_node);
	http_parser_init(&c->parser, HTTP_REQUEST);
	c->parser.data = c;
	uv_tcp_init(&a->loop, &c->tcp);
	c->tcp.data = c;
	hs__list_add_tail(&a->conns, &c->node);
	a->n_conns++;
	a->http_accepted_conns++;
	if (uv_accept(server, (uv_stream_t *)&c->tcp)) {
		hs__http_close(c);
		return;
	}
	uv_tcp_nodelay(&c->tcp, 1);
	c->state = HS__CONN_IDLE;
	c->deadline_ms =
		uv_now(&a->loop) + (uint64_t)(a->cfg->header_timeout * 1000);
	c->timeout_status = 0;
	if (uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read))
		hs__http_close(c);
	else
		c->reading = true;
}

void hs__http_sweep(hs__agent_t *a)
{
	uint64_t now = uv_now(&a->loop);
	hs__list_t *n, *next;

	for (n = a->conns.next; n != &a->conns; n = next) {
		hs__conn_t *c = hs__container_of(n, hs__conn_t, node);

		next = n->next;
		if (!c->deadline_ms || now < c->deadline_ms ||
		    uv_is_closing((uv_handle_t *)&c->tcp))
			continue;
		c->deadline_ms = 0;
		if (c->timeout_status && c->state == HS__CONN_READING) {
			c->keep_alive = false;
			hs__http_error(c, 408, "request_timeout",
				       "the request did not arrive in time");
		} else {
			hs__http_close(c);
		}
	}
}

static int split_listen(const char *listen, char *host, size_t hsize,
			char *port, size_t psize)
{
	const char *colon = strrchr(listen, ':');
	size_t hl;

	if (!colon || !colon[1] || strlen(colon + 1) >= psize)
		return HS_EINVAL;
	hl = (size_t)(colon - listen);
	if (hl >= 2 && listen[0] == '[' && listen[hl - 1] == ']') {
		listen++;
		hl -= 2;
	}
	if (hl >= hsize)
		return HS_EINVAL;
	memcpy(host, listen, hl);
	host[hl] = '\0';
	strcpy(port, colon + 1);
	return 0;
}

int hs__http_listen(hs__agent_t *a, hs_error_t *err)
{
	struct addrinfo hints = {0}, *res = NULL;
	struct sockaddr_storage ss;
	char host[256], port[16], hbuf[NI_MAXHOST], pbuf[NI_MAXSERV];
	int len = sizeof(ss), rc;

	if (split_listen(a->cfg->listen, host, sizeof(host), port,
			 sizeof(port)))
		return hs__error_set(err, HS_EINVAL, "settings", 0, "listen",
				     "'%s' is not HOST:PORT", a->cfg->listen);
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
	rc = getaddrinfo(host[0] ? host : NULL, port, &hints, &res);
	if (rc)
		return hs__error_set(err, HS_EINVAL, "settings", 0, "listen",
				     "'%s': %s", a->cfg->listen,
				     gai_strerror(rc));
	uv_tcp_init(&a->loop, &a->server);
	a->server.data = a;
	rc = uv_tcp_bind(&a->server, res->ai_addr, 0);
	if (!rc)
		rc = uv_listen((uv_stream_t *)&a->server, 1024, on_connection);
	freeaddrinfo(res);
	if (rc)
		return hs__error_set(err, HS_EIO, "settings", 0, "listen",
				     "cannot listen on %s: %s", a->cfg->listen,
				     uv_strerror(rc));
	uv_tcp_getsockname(&a->server, (struct sockaddr *)&ss, &len);
	if (getnameinfo((struct sockaddr *)&ss, (socklen_t)len, hbuf,
			sizeof(hbuf), pbuf, sizeof(pbuf),
			NI_NUMERICHOST | NI_NUMERICSERV))
		return hs__error_set(err, HS_EIO, "settings", 0, "listen",
				     "cannot name the bound address");
	/* A numeric host is at most 45 characters and a scope name of 16; a
	 * numeric port, 5. */
	snprintf(a->listen_addr, sizeof(a->listen_addr),
		 ss.ss_family == AF_INET6 ? "[%.80s]:%.16s" : "%.80s:%.16s",
		 hbuf, pbuf);
	return 0;
}
