/*
 * GET /metrics: the Prometheus text format (0.0.4). Besides hetsched's own
 * series, the vLLM gauge names that inference routers and autoscalers read
 * (vllm:num_requests_waiting, vllm:num_requests_running,
 * vllm:gpu_cache_usage_perc), so that the agent can stand where a vLLM
 * server stands. Power says whether it is modeled or measured in a label.
 */
#include <string.h>

#include "agent.h"
#include "policy.h"

void hs__hist_init(hs__hist_t *h, const double *bounds, size_t n)
{
	h->bounds = bounds;
	h->n = n;
	h->counts = hs__calloc(n + 1, sizeof(*h->counts));
	h->sum = 0;
	h->count = 0;
}

void hs__hist_release(hs__hist_t *h)
{
	hs__free(h->counts);
	h->counts = NULL;
}

void hs__hist_observe(hs__hist_t *h, double v)
{
	size_t i = 0;

	if (!h->counts)
		return;
	while (i < h->n && v > h->bounds[i])
		i++;
	h->counts[i]++;
	h->sum += v;
	h->count++;
}

/* A label value, escaped as the format wants. */
static void label(hs__strbuf_t *sb, const char *s)
{
	const char *run = s;

	HS__SB_LIT(sb, "\"");
	for (; *s; s++) {
		if (*s != '"' && *s != '\\' && *s != '\n')
			continue;
		hs__sb_addn(sb, run, (size_t)(s - run));
		hs__sb_addn(sb,
			    *s == '\n'	? "\\n"
			    : *s == '"' ? "\\\""
					: "\\\\",
			    2);
		run = s + 1;
	}
	hs__sb_addn(sb, run, (size_t)(s - run));
	HS__SB_LIT(sb, "\"");
}

static void head(hs__strbuf_t *sb, const char *name, const char *type,
		 const char *help)
{
	hs__strbuf_addf(sb, "# HELP %s %s\n# TYPE %s %s\n", name, help, name,
			type);
}

static void hist(hs__strbuf_t *sb, const char *name, const char *help,
		 const hs__hist_t *h)
{
	uint64_t cum = 0;
	size_t i;

	head(sb, name, "histogram", help);
	for (i = 0; h->counts && i < h->n; i++) {
		cum += h->counts[i];
		hs__strbuf_addf(sb, "%s_bucket{le=\"%g\"} %llu\n", name,
				h->bounds[i], (unsigned long long)cum);
	}
	hs__strbuf_addf(sb,
			"%s_bucket{le=\"+Inf\"} %llu\n%s_sum %.9g\n"
			"%s_count %llu\n",
			name, (unsigned long long)h->count, name, h->sum, name,
			(unsigned long long)h->count);
}

static void device_labels(hs__strbuf_t *sb, const hs__adev_t *d)
{
	hs__strbuf_addf(sb, "{device=\"%d\",name=", d->index);
	label(sb, d->dev.name);
	HS__SB_LIT(sb, ",backend=");
	label(sb, hs_backend_name(d->dev.backend));
}

/* KV cache in use over what the devices can hold beside their weights. */
static double cache_usage(const hs__agent_t *a)
{
	double used = 0, cap = 0;
	size_t i;

	for (i = 0; i < a->n_devs; i++) {
		const hs__adev_t *d = &a->devs[i];
		double room =
			(double)d->dev.memory_bytes * (1 - a->sc.kv_reserve) -
			(d->busy ? (double)d->weight_bytes : 0);

		if (d->failed || room <= 0)
			continue;
		used += (double)d->kv_bytes;
		cap += room;
	}
	return cap > 0 ? (used > cap ? 1 : used / cap) : 0;
}

static void queue_depth(hs__agent_t *a, hs__strbuf_t *sb)
{
	unsigned nb = hs__sched_n_buckets(a->core), b;
	size_t m, nm = hs_model_catalog_count(a->models);
	int d;

	head(sb, "hetsched_queue_depth", "gauge",
	     "Jobs waiting, per model and context bucket (upper edge in "
	     "tokens).");
	for (m = 0; m < nm; m++) {
		const hs_model_t *mod = hs_model_catalog_get(a->models, m);

		if (!a->live_by_model[m] && !a->running_by_model[m] &&
		    !mod->runnable)
			continue;
		for (b = 0; b < nb; b++) {
			uint64_t q = 0;

			for (d = -1; d < (int)a->n_devs; d++)
				q += hs__sched_queued(a->core, d, (uint32_t)m,
						      b);
			HS__SB_LIT(sb, "hetsched_queue_depth{model=");
			label(sb, mod->name);
			hs__strbuf_addf(sb, ",bucket=\"%u\"} %llu\n",
					hs__sched_bucket_edge(a->core, b),
					(unsigned long long)q);
		}
	}
}

static void per_model(hs__agent_t *a, hs__strbuf_t *sb, const char *name,
		      const char *type, const char *help, int what,
		      double usage)
{
	size_t m, nm = hs_model_catalog_count(a->models);

	head(sb, name, type, help);
	for (m = 0; m < nm; m++) {
		const hs_model_t *mod = hs_model_catalog_get(a->models, m);
		uint64_t run = a->running_by_model[m];

		hs__sb_addn(sb, name, strlen(name));
		HS__SB_LIT(sb, "{model_name=");
		label(sb, mod->name);
		if (what == 0)
			hs__strbuf_addf(
				sb, "} %llu\n",
				(unsigned long long)(a->live_by_model[m] -
						     run));
		else if (what == 1)
			hs__strbuf_addf(sb, "} %llu\n",
					(unsigned long long)run);
		else
			hs__strbuf_addf(sb, "} %.6f\n", usage);
	}
}

static void devices(hs__agent_t *a, hs__strbuf_t *sb)
{
	size_t i;

	head(sb, "hetsched_device_utilisation", "gauge",
	     "Fraction of the last 10 s the device was running steps.");
	for (i = 0; i < a->n_devs; i++) {
		HS__SB_LIT(sb, "hetsched_device_utilisation");
		device_labels(sb, &a->devs[i]);
		hs__strbuf_addf(sb, "} %.6f\n",
				hs__device_utilisation(a, &a->devs[i]));
	}
	head(sb, "hetsched_device_power_watts", "gauge",
	     "Power draw of the device; modeled=\"true\" when it comes from "
	     "its profile and power level, not from a sensor.");
	for (i = 0; i < a->n_devs; i++) {
		const hs__adev_t *d = &a->devs[i];

		HS__SB_LIT(sb, "hetsched_device_power_watts");
		device_labels(sb, d);
		hs__strbuf_addf(sb, ",modeled=\"true\"} %.3f\n", d->power_w);
		if (d->measured_w < 0)
			continue;
		HS__SB_LIT(sb, "hetsched_device_power_watts");
		device_labels(sb, d);
		hs__strbuf_addf(sb, ",modeled=\"false\"} %.3f\n",
				d->measured_w);
	}
	head(sb, "hetsched_device_busy_seconds_total", "counter",
	     "Time the device spent running steps.");
	for (i = 0; i < a->n_devs; i++) {
		hs_device_stats_t ds;

		hs_sched_device_stats(a->core, (int)i, &ds);
		HS__SB_LIT(sb, "hetsched_device_busy_seconds_total");
		device_labels(sb, &a->devs[i]);
		hs__strbuf_addf(sb, "} %.6f\n", (double)ds.busy_ns / 1e9);
	}
	head(sb, "hetsched_device_tokens_total", "counter",
	     "Output tokens the device generated.");
	for (i = 0; i < a->n_devs; i++) {
		hs_device_stats_t ds;

		hs_sched_device_stats(a->core, (int)i, &ds);
		HS__SB_LIT(sb, "hetsched_device_tokens_total");
		device_labels(sb, &a->devs[i]);
		hs__strbuf_addf(sb, "} %llu\n",
				(unsigned long long)ds.output_tokens);
	}
	head(sb, "hetsched_device_failed", "gauge",
	     "1 once the device failed and takes no more work.");
	for (i = 0; i < a->n_devs; i++) {
		HS__SB_LIT(sb, "hetsched_device_failed");
		device_labels(sb, &a->devs[i]);
		hs__strbuf_addf(sb, "} %d\n", a->devs[i].failed);
	}
}

int hs__metrics_render(hs__agent_t *a, hs__strbuf_t *sb)
{
	hs_sched_stats_t st;
	double measured = 0;
	bool any = false;
	size_t i;

	hs_sched_stats(a->core, &st);
	for (i = 0; i < a->n_devs; i++)
		if (a->devs[i].measured_w >= 0) {
			measured += a->devs[i].measured_w;
			any = true;
		}
	queue_depth(a, sb);
	head(sb, "hetsched_jobs_running", "gauge", "Jobs in a device batch.");
	hs__strbuf_addf(sb, "hetsched_jobs_running %llu\n",
			(unsigned long long)st.running);
	head(sb, "hetsched_jobs_live", "gauge",
	     "Jobs queued or running (max-queue bounds it).");
	hs__strbuf_addf(sb, "hetsched_jobs_live %llu\n",
			(unsigned long long)a->live);
	head(sb, "hetsched_jobs_total", "counter",
	     "Jobs by what became of them.");
	hs__strbuf_addf(sb,
			"hetsched_jobs_total{state=\"accepted\"} %llu\n"
			"hetsched_jobs_total{state=\"done\"} %llu\n"
			"hetsched_jobs_total{state=\"cancelled\"} %llu\n"
			"hetsched_jobs_total{state=\"failed\"} %llu\n"
			"hetsched_jobs_total{state=\"refused\"} %llu\n"
			"hetsched_jobs_total{state=\"rejected_full\"} %llu\n"
			"hetsched_jobs_total{state=\"requeued\"} %llu\n",
			(unsigned long long)a->accepted,
			(unsigned long long)a->finished_done,
			(unsigned long long)a->finished_cancelled,
			(unsigned long long)a->finished_failed,
			(unsigned long long)a->refused,
			(unsigned long long)a->rejected_full,
			(unsigned long long)st.requeued);
	head(sb, "hetsched_tokens_generated_total", "counter",
	     "Output tokens generated.");
	hs__strbuf_addf(sb, "hetsched_tokens_generated_total %llu\n",
			(unsigned long long)st.output_tokens);
	head(sb, "hetsched_prefill_tokens_total", "counter",
	     "Prompt tokens prefilled.");
	hs__strbuf_addf(sb, "hetsched_prefill_tokens_total %llu\n",
			(unsigned long long)st.prefill_tokens);
	head(sb, "hetsched_steps_total", "counter", "Device steps run.");
	hs__strbuf_addf(sb, "hetsched_steps_total %llu\n",
			(unsigned long long)st.steps);
	devices(a, sb);

	head(sb, "hetsched_power_watts", "gauge",
	     "Node power draw; modeled=\"true\" from device profiles and "
	     "power levels, modeled=\"false\" from sensors.");
	hs__strbuf_addf(sb, "hetsched_power_watts{modeled=\"true\"} %.3f\n",
			st.power_w);
	if (any)
		hs__strbuf_addf(sb,
				"hetsched_power_watts{modeled=\"false\"} "
				"%.3f\n",
				measured);
	head(sb, "hetsched_power_budget_watts", "gauge",
	     "Node power budget in force (0: none).");
	hs__strbuf_addf(sb, "hetsched_power_budget_watts %.3f\n", st.budget_w);
	head(sb, "hetsched_power_floor_watts", "gauge",
	     "Idle draw of every device: no budget can go below it.");
	hs__strbuf_addf(sb, "hetsched_power_floor_watts %.3f\n",
			st.power_floor_w);
	head(sb, "hetsched_energy_joules_total", "counter",
	     "Energy used by steps.");
	hs__strbuf_addf(sb,
			"hetsched_energy_joules_total{modeled=\"%s\"} %.3f\n",
			st.energy_measured ? "false" : "true", st.energy_j);
	head(sb, "hetsched_power_violations_total", "counter",
	     "Instants the modeled draw was above the budget.");
	hs__strbuf_addf(sb, "hetsched_power_violations_total %llu\n",
			(unsigned long long)st.power_violations);

	hist(sb, "hetsched_ttft_seconds", "Arrival to first token.", &a->ttft);
	hist(sb, "hetsched_request_latency_seconds",
	     "Arrival to last token, completed jobs.", &a->latency);
	hist(sb, "hetsched_queue_wait_seconds", "Arrival to joining a batch.",
	     &a->queue_wait);

	head(sb, "hetsched_http_requests_total", "counter",
	     "HTTP requests read.");
	hs__strbuf_addf(sb, "hetsched_http_requests_total %llu\n",
			(unsigned long long)a->http_requests);
	head(sb, "hetsched_http_errors_total", "counter",
	     "Error responses by class.");
	hs__strbuf_addf(sb,
			"hetsched_http_errors_total{class=\"4xx\"} %llu\n"
			"hetsched_http_errors_total{class=\"5xx\"} %llu\n",
			(unsigned long long)a->http_4xx,
			(unsigned long long)a->http_5xx);
	head(sb, "hetsched_http_connections", "gauge", "Open connections.");
	hs__strbuf_addf(sb, "hetsched_http_connections %zu\n", a->n_conns);
	head(sb, "hetsched_journal_bytes", "gauge", "Size of the journal.");
	hs__strbuf_addf(sb, "hetsched_journal_bytes %llu\n",
			(unsigned long long)a->journal.bytes);
	head(sb, "hetsched_journal_syncs_total", "counter",
	     "Grouped fsyncs of the journal.");
	hs__strbuf_addf(sb, "hetsched_journal_syncs_total %llu\n",
			(unsigned long long)a->journal.syncs);
	head(sb, "hetsched_draining", "gauge",
	     "1 while the agent drains for a shutdown.");
	hs__strbuf_addf(sb, "hetsched_draining %d\n", a->draining);

	per_model(a, sb, "vllm:num_requests_waiting", "gauge",
		  "Requests waiting to be processed (vLLM name).", 0, 0);
	per_model(a, sb, "vllm:num_requests_running", "gauge",
		  "Requests running on a device (vLLM name).", 1, 0);
	per_model(a, sb, "vllm:gpu_cache_usage_perc", "gauge",
		  "KV-cache usage of the node's devices, 1 is full (vLLM "
		  "name).",
		  2, cache_usage(a));
	return sb->failed;
}
