/* The error table and loader error reports. */
#include <stdio.h>
#include <string.h>

#include "internal.h"

const char *hs_strerror(int err)
{
	switch (err) {
	case 0:
		return "success";
#define HS__ERR_MSG(name, num, msg) \
	case HS_E##name:            \
		return msg;
		HS_ERRNO_MAP(HS__ERR_MSG)
#undef HS__ERR_MSG
	}
	return "unknown error";
}

const char *hs_err_name(int err)
{
	switch (err) {
	case 0:
		return "HS_OK";
#define HS__ERR_NAME(name, num, msg) \
	case HS_E##name:             \
		return "HS_E" #name;
		HS_ERRNO_MAP(HS__ERR_NAME)
#undef HS__ERR_NAME
	}
	return "HS_EUNKNOWN";
}

void hs__error_clear(hs_error_t *err)
{
	if (err)
		memset(err, 0, sizeof(*err));
}

int hs__error_set(hs_error_t *err, int code, const char *source, int line,
		  const char *path, const char *fmt, ...)
{
	va_list ap;

	if (!err || err->code != 0)
		return code;
	err->code = code;
	err->line = line;
	err->column = 0;
	hs__strlcpy(err->source, source ? source : "", sizeof(err->source));
	hs__strlcpy(err->path, path ? path : "", sizeof(err->path));
	va_start(ap, fmt);
	vsnprintf(err->text, sizeof(err->text), fmt, ap);
	va_end(ap);
	return code;
}

const char *hs_error_format(const hs_error_t *err, char *buf, size_t size)
{
	size_t n = 0;

	if (!size)
		return buf;
	buf[0] = '\0';
	if (!err)
		return buf;
#define HS__APPEND(...)                                                   \
	do {                                                              \
		if (n < size) {                                           \
			int w = snprintf(buf + n, size - n, __VA_ARGS__); \
			if (w > 0)                                        \
				n += (size_t)w;                           \
		}                                                         \
	} while (0)
	if (err->source[0])
		HS__APPEND("%s", err->source);
	if (err->line > 0) {
		HS__APPEND(":%d", err->line);
		if (err->column > 0)
			HS__APPEND(":%d", err->column);
	}
	if (err->path[0])
		HS__APPEND("%s%s", n ? ": " : "", err->path);
	HS__APPEND("%s%s", n ? ": " : "",
		   err->text[0] ? err->text : hs_strerror(err->code));
#undef HS__APPEND
	return buf;
}
