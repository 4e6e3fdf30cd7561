/*
 * Saving and loading the calibrated performance models, so that a node's
 * calibration survives restarts. The only file I/O of the core, done when
 * the driver asks.
 */
#include <errno.h>
#include <string.h>

#include "sched-internal.h"

int hs_sched_perf_save(const hs_sched_t *s, const char *path, hs_error_t *err)
{
	json_t *root, *entries;
	char tmp[4096];
	uint32_t d, m;
	int rc = 0;

	hs__error_clear(err);
	entries = json_array();
	root = json_pack("{s:i, s:o}", "version", 1, "entries", entries);
	if (!root)
		return hs__error_set(err, HS_ENOMEM, path, 0, NULL,
				     "out of memory");
	for (d = 0; d < s->n_devs && !rc; d++)
		for (m = 0; m < s->n_models && !rc; m++) {
			const hs__perf_t *p = &s->perf[d * s->n_models + m];
			json_t *e;

			if (!p->samples)
				continue;
			/* The save holds every sample; so does the live
			 * model from now on, and both predict alike. */
			hs__perf_refit(&s->perf[d * s->n_models + m]);
			e = json_pack("{s:i, s:s, s:s, s:o*}", "device_id",
				      (int)d, "device", s->devs[d].d.name,
				      "model", s->models[m].name, "fit",
				      hs__perf_to_json(p));
			if (!e || !json_object_get(e, "fit") ||
			    json_array_append_new(entries, e))
				rc = HS_ENOMEM;
		}
	/* Refits move the fits that finish times are read from. */
	hs__sched_cost_stale_all(s);
	if (rc) {
		hs__error_set(err, rc, path, 0, NULL, "out of memory");
		goto out_put;
	}
	/* Write a temporary file and rename it, so that a crash never leaves
	 * half a calibration. */
	if (snprintf(tmp, sizeof(tmp), "%s.tmp", path) >= (int)sizeof(tmp)) {
		rc = hs__error_set(err, HS_EINVAL, path, 0, NULL,
				   "path too long");
		goto out_put;
	}
	if (json_dump_file(root, tmp,
			   JSON_INDENT(1) | JSON_REAL_PRECISION(17))) {
		rc = hs__error_set(err, HS_EIO, path, 0, NULL,
				   "cannot write %s: %s", tmp, strerror(errno));
		goto out_put;
	}
	if (rename(tmp, path)) {
		rc = hs__error_set(err, HS_EIO, path, 0, NULL,
				   "cannot rename %s: %s", tmp,
				   strerror(errno));
		remove(tmp);
	}
out_put:
	json_decref(root);
	return rc;
}

/* The index of the device with that id and name; -1 if none. */
static int find_device(const hs_sched_t *s, int id, const char *name)
{
	if (id < 0 || (uint32_t)id >= s->n_devs ||
	    strcmp(s->devs[id].d.name, name))
		return -1;
	return id;
}

static int find_model(const hs_sched_t *s, const char *name)
{
	uint32_t m;

	for (m = 0; m < s->n_models; m++)
		if (!strcmp(s->models[m].name, name))
			return (int)m;
	return -1;
}

int hs_sched_perf_load(hs_sched_t *s, const char *path, hs_error_t *err)
{
	static const char *const keys[] = {"version", "entries", NULL};
	static const char *const ekeys[] = {"device_id", "device", "model",
					    "fit", NULL};
	hs__jv_t jv = {.source = path, .err = err, .path = "$"};
	hs__perf_t *staged = NULL;
	json_t *root, *arr, *e;
	hs__jv_t list, c;
	int version = 1;
	size_t i, n = (size_t)s->n_devs * s->n_models;
	int rc;

	hs__error_clear(err);
	root = hs__json_load_file(path, err);
	if (!root)
		return err ? err->code : HS_EIO;
	if ((rc = hs__jv_expect_object(&jv, root)) ||
	    (rc = hs__jv_check_keys(&jv, root, keys)) ||
	    (rc = hs__jv_int(&jv, root, "version", true, &version, 1, 1)))
		goto out_put;
	arr = json_object_get(root, "entries");
	hs__jv_child_key(&list, &jv, "entries");
	if (!arr) {
		rc = hs__error_set(err, HS_EMISSING, path, 0, "$",
				   "missing required key \"entries\"");
		goto out_put;
	}
	if ((rc = hs__jv_expect_array(&list, arr)))
		goto out_put;
	/* Validate everything before changing anything. */
	staged = hs__calloc(n, sizeof(*staged));
	if (!staged) {
		rc = hs__error_set(err, HS_ENOMEM, path, 0, NULL,
				   "out of memory");
		goto out_put;
	}
	memcpy(staged, s->perf, n * sizeof(*staged));
	json_array_foreach (arr, i, e) {
		char dev[128], model[64];
		int id = -1, d, m;
		hs__jv_t fit;

		hs__jv_child_index(&c, &list, i);
		if ((rc = hs__jv_expect_object(&c, e)) ||
		    (rc = hs__jv_check_keys(&c, e, ekeys)) ||
		    (rc = hs__jv_int(&c, e, "device_id", true, &id, 0,
				     1 << 20)) ||
		    (rc = hs__jv_string(&c, e, "device", true, dev,
					sizeof(dev))) ||
		    (rc = hs__jv_string(&c, e, "model", true, model,
					sizeof(model))))
			goto out_free;
		if (!json_object_get(e, "fit")) {
			rc = hs__error_set(err, HS_EMISSING, path, 0, c.path,
					   "missing required key \"fit\"");
			goto out_free;
		}
		d = find_device(s, id, dev);
		m = find_model(s, model);
		if (d < 0 || m < 0)
			continue; /* another node's device, or a model gone */
		hs__jv_child_key(&fit, &c, "fit");
		rc = hs__perf_from_json(
			&staged[(uint32_t)d * s->n_models + (uint32_t)m], &fit,
			json_object_get(e, "fit"));
		if (rc)
			goto out_free;
	}
	memcpy(s->perf, staged, n * sizeof(*staged));
	hs__sched_cost_stale_all(s);
out_free:
	hs__free(staged);
out_put:
	json_decref(root);
	return rc;
}
