/*
 * config.c - gpuqd configuration: the config file and the command-line
 * settings both go through config_set(), which reads the key tables below.
 * config_validate() and config_print() walk the same tables, so the ranges
 * checked and the keys printed can never drift from what the parser takes.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "broker/conf.h"
#include "broker/handler_table.h"
#include "broker/handlers.h" /* keysum's record; table limits */
#include "ipc/stamp.h"
#include "libclient/gpuq.h"

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

#define SIZE_LIMIT (16u << 20)    /* largest ring, slot or result */
#define LINE_MAX_LEN 1024         /* longer lines are refused, not cut */
#define FILE_MAX_BYTES (1u << 20) /* a config file is a few KiB at most */
#define MSG_MAX 256               /* one message before the location prefix */

/* The parser remembers which queues a buffer declared in a 64-bit mask. */
_Static_assert(CONF_MAX_QUEUES <= 64, "declared-queue mask is 64 bits");

enum key_type {
	KT_U32,     /* uint32_t, decimal */
	KT_SIZE,    /* uint32_t, decimal with optional k/K/m/M suffix */
	KT_MODE,    /* uint32_t, octal permission bits */
	KT_INT,     /* int, decimal */
	KT_BOOL,    /* int, 0 or 1 */
	KT_BACKEND, /* int, enum conf_backend */
	KT_PATH,    /* char[CONF_PATH_MAX] */
	KT_HANDLER, /* char[32] naming a built-in handler */
	KT_UIDS,    /* gpuqd_config.allow_uid and n_allow_uid */
	KT_GIDS,    /* gpuqd_config.allow_gid and n_allow_gid */
};

#define KF_POW2 0x1u    /* a nonzero value must be a power of two */
#define KF_INHERIT 0x2u /* backend -1: take the broker's */

struct key_desc {
	const char *name;
	enum key_type type;
	size_t off;        /* of the field in its struct */
	uint32_t min, max; /* numbers; for strings max is the field's size */
	unsigned int flags;
};

#define FIELD(type, obj, k) ((type *)((char *)(obj) + (k)->off))
#define CFIELD(type, obj, k) ((const type *)((const char *)(obj) + (k)->off))

#define BKEY(n, t, f, lo, hi, fl) \
	{ n, t, offsetof(struct gpuqd_config, f), lo, hi, fl }
#define QKEY(n, t, f, lo, hi, fl) \
	{ n, t, offsetof(struct queue_config, f), lo, hi, fl }
#define QSIZE(f) sizeof(((struct queue_config *)0)->f)

/* In the order config_print() writes them. */
static const struct key_desc broker_keys[] = {
	BKEY("socket", KT_PATH, socket_path, 0, CONF_PATH_MAX, 0),
	BKEY("socket_mode", KT_MODE, socket_mode, 0, 07777, 0),
	BKEY("metrics", KT_PATH, metrics, 0, 64, 0),
	BKEY("backend", KT_BACKEND, backend, 0, 0, 0),
	BKEY("force_epoll", KT_BOOL, force_epoll, 0, 1, 0),
	BKEY("max_connections", KT_U32, max_connections, 1, 1u << 20, 0),
	BKEY("drain_timeout_ms", KT_U32, drain_timeout_ms, 0, UINT32_MAX, 0),
	BKEY("allow_uid", KT_UIDS, allow_uid, 0, 0, 0),
	BKEY("allow_gid", KT_GIDS, allow_gid, 0, 0, 0),
	BKEY("verbose", KT_INT, verbose, 0, 3, 0),
};

static const struct key_desc queue_keys[] = {
	QKEY("capacity", KT_SIZE, capacity, 2, SIZE_LIMIT, KF_POW2),
	QKEY("slot_bytes", KT_SIZE, slot_bytes, 1, SIZE_LIMIT, 0),
	QKEY("result_bytes", KT_SIZE, result_bytes, 0, SIZE_LIMIT, 0),
	QKEY("cq_capacity", KT_SIZE, cq_capacity, 0, SIZE_LIMIT, KF_POW2),
	QKEY("max_clients", KT_U32, max_clients, 1, 65534, 0),
	QKEY("workers", KT_U32, workers, 1, 128, 0),
	QKEY("handler", KT_HANDLER, handler, 0, QSIZE(handler), 0),
	QKEY("handler_module", KT_PATH, handler_module, 0,
	     QSIZE(handler_module), 0),
	QKEY("backend", KT_BACKEND, backend, 0, 0, KF_INHERIT),
	QKEY("ordered", KT_BOOL, ordered, 0, 1, 0),
	QKEY("stamped", KT_BOOL, stamped, 0, 1, 0),
	QKEY("stamped_results", KT_BOOL, stamped_results, 0, 1, 0),
	QKEY("max_attempts", KT_U32, max_attempts, 1, 100, 0),
	QKEY("fail_ppm", KT_U32, fail_ppm, 0, 1000000, 0),
	QKEY("fail_attempts", KT_U32, fail_attempts, 0, 100, 0),
	QKEY("dlq_capacity", KT_SIZE, dlq_capacity, 1, 1u << 20, KF_POW2),
	QKEY("table_slots", KT_SIZE, table_slots, 0, 1u << 30, 0),
	QKEY("table_value_bytes", KT_SIZE, table_value_bytes, 1,
	     GPUQ_KVT_VALUE_MAX, 0),
	QKEY("exactly_once", KT_BOOL, exactly_once, 0, 1, 0),
	QKEY("dedupe_slots", KT_SIZE, dedupe_slots, 0, 1u << 30, 0),
	QKEY("dedupe_window_ms", KT_U32, dedupe_window_ms, 0, UINT32_MAX, 0),
	/* Track A binding (docs/tracka.md); strings take the KT_PATH rules. */
	QKEY("redis_host", KT_PATH, redis.host, 0, QSIZE(redis.host), 0),
	QKEY("redis_port", KT_U32, redis.port, 1, 65535, 0),
	QKEY("redis_password", KT_PATH, redis.password, 0,
	     QSIZE(redis.password), 0),
	QKEY("redis_stream", KT_PATH, redis.stream, 0, QSIZE(redis.stream), 0),
	QKEY("redis_group", KT_PATH, redis.group, 0, QSIZE(redis.group), 0),
	QKEY("redis_consumer", KT_PATH, redis.consumer, 0,
	     QSIZE(redis.consumer), 0),
	QKEY("redis_result_stream", KT_PATH, redis.result_stream, 0,
	     QSIZE(redis.result_stream), 0),
	QKEY("redis_dlq_stream", KT_PATH, redis.dlq_stream, 0,
	     QSIZE(redis.dlq_stream), 0),
	QKEY("redis_batch", KT_U32, redis.batch, 1, 65536, 0),
	QKEY("redis_result_batch", KT_U32, redis.result_batch, 1, 1024, 0),
	QKEY("redis_block_ms", KT_U32, redis.block_ms, 0, 60000, 0),
	QKEY("redis_max_deliveries", KT_U32, redis.max_deliveries, 1, 1000000,
	     0),
	QKEY("redis_claim_idle_ms", KT_U32, redis.claim_idle_ms, 10,
	     86400000, 0),
};

static const char *const backend_names[] = {
	[CONF_BACKEND_AUTO] = "auto",
	[CONF_BACKEND_CPU] = "cpu",
	[CONF_BACKEND_CUDA] = "cuda",
};

/* ------------------------------------------------------------------------ */
/* Small helpers                                                            */
/* ------------------------------------------------------------------------ */

/* err may be NULL or empty: callers that only want the code pass nothing. */
__attribute__((format(printf, 3, 4)))
static void seterr(char *err, size_t cap, const char *fmt, ...)
{
	va_list ap;

	if (!err || !cap)
		return;
	va_start(ap, fmt);
	vsnprintf(err, cap, fmt, ap);
	va_end(ap);
}

/* Zero-fills the rest of dst: names are copied whole into replies and
 * compared as structs, so no stale bytes may hide after the NUL. */
static void copy_str(char *dst, size_t cap, const char *src)
{
	size_t n = src ? strlen(src) : 0;

	if (n >= cap)
		n = cap - 1;
	memcpy(dst, src ? src : "", n);
	memset(dst + n, 0, cap - n);
}

/* isspace() would follow the locale; the format is plain ASCII. */
static bool is_blank(char ch)
{
	return ch == ' ' || ch == '\t' || ch == '\r' || ch == '\n' ||
	       ch == '\v' || ch == '\f';
}

/* Trim in place; returns the first non-blank character. */
static char *trim(char *s)
{
	char *e;

	while (is_blank(*s))
		s++;
	e = s + strlen(s);
	while (e > s && is_blank(e[-1]))
		e--;
	*e = '\0';
	return s;
}

static bool valid_queue_name(const char *s)
{
	size_t n = strlen(s);

	if (n < 1 || n > 63)
		return false;
	for (; *s; s++) {
		char ch = *s;

		if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
		      (ch >= '0' && ch <= '9') || ch == '_' || ch == '.' ||
		      ch == '-'))
			return false;
	}
	return true;
}

static const struct key_desc *find_key(const struct key_desc *keys,
				       size_t n, const char *name)
{
	for (size_t i = 0; i < n; i++)
		if (!strcmp(keys[i].name, name))
			return &keys[i];
	return NULL;
}

static int find_queue(const struct gpuqd_config *c, const char *name)
{
	for (uint32_t i = 0; i < c->nqueues && i < CONF_MAX_QUEUES; i++)
		if (!strcmp(c->queues[i].name, name))
			return (int)i;
	return -1;
}

/* ------------------------------------------------------------------------ */
/* Values                                                                   */
/* ------------------------------------------------------------------------ */

/*
 * The whole string must be digits of base (plus one k/K/m/M when suffixes
 * are allowed): strtoul() would take "-1", " 12", "0x10" or "12abc" and
 * quietly make them something else.  Stops as soon as the value passes max,
 * which also keeps it far from wrapping.
 */
static bool parse_num(const char *s, unsigned int base, bool suffixes,
		      uint64_t max, uint64_t *out)
{
	const char *p = s;
	uint64_t v = 0, mult = 1;

	for (; *p >= '0' && *p < (char)('0' + base); p++) {
		v = v * base + (uint64_t)(*p - '0');
		if (v > max)
			return false;
	}
	if (p == s)
		return false;
	if (suffixes && (*p == 'k' || *p == 'K'))
		mult = 1024;
	else if (suffixes && (*p == 'm' || *p == 'M'))
		mult = 1024 * 1024;
	if (mult > 1)
		p++;
	if (*p || v > max / mult)
		return false;
	*out = v * mult;
	return true;
}

static bool num_ok(const struct key_desc *k, uint64_t v)
{
	if (v < k->min || v > k->max)
		return false;
	return !(k->flags & KF_POW2) || !(v & (v - 1));
}

/* What a numeric key accepts, for messages. */
static const char *num_want(const struct key_desc *k, char *buf, size_t cap)
{
	if (k->type == KT_MODE)
		snprintf(buf, cap, "octal permission bits, at most 07777");
	else if ((k->flags & KF_POW2) && !k->min)
		snprintf(buf, cap, "0 or a power of two up to %u", k->max);
	else if (k->flags & KF_POW2)
		snprintf(buf, cap, "a power of two from %u to %u", k->min,
			 k->max);
	else
		snprintf(buf, cap, "a number from %u to %u", k->min, k->max);
	return buf;
}

static int set_number(void *obj, const struct key_desc *k, const char *val,
		      char *err, size_t cap)
{
	unsigned int base = k->type == KT_MODE ? 8 : 10;
	char want[64];
	uint64_t v;

	if (!parse_num(val, base, k->type == KT_SIZE, k->max, &v) ||
	    !num_ok(k, v)) {
		seterr(err, cap, "bad %s '%s': want %s", k->name, val,
		       num_want(k, want, sizeof(want)));
		return GPUQ_ECONFIG;
	}
	if (k->type == KT_INT)
		*FIELD(int, obj, k) = (int)v;
	else
		*FIELD(uint32_t, obj, k) = (uint32_t)v;
	return 0;
}

static int set_bool(void *obj, const struct key_desc *k, const char *val,
		    char *err, size_t cap)
{
	static const char *const yes[] = { "yes", "true", "1" };
	static const char *const no[] = { "no", "false", "0" };

	for (size_t i = 0; i < ARRAY_SIZE(yes); i++) {
		if (!strcasecmp(val, yes[i]) || !strcasecmp(val, no[i])) {
			*FIELD(int, obj, k) = !strcasecmp(val, yes[i]);
			return 0;
		}
	}
	seterr(err, cap, "bad %s '%s': want yes, no, true, false, 1 or 0",
	       k->name, val);
	return GPUQ_ECONFIG;
}

static int set_backend(void *obj, const struct key_desc *k, const char *val,
		       char *err, size_t cap)
{
	for (size_t i = 0; i < ARRAY_SIZE(backend_names); i++) {
		if (!strcasecmp(val, backend_names[i])) {
			*FIELD(int, obj, k) = (int)i;
			return 0;
		}
	}
	seterr(err, cap, "bad %s '%s': want auto, cpu or cuda", k->name, val);
	return GPUQ_ECONFIG;
}

/*
 * '#', control characters and blanks at either end are refused although the
 * command line could carry them: the file format cannot, and config_print()
 * output has to read back as the same config.
 */
static int set_path(void *obj, const struct key_desc *k, const char *val,
		    char *err, size_t cap)
{
	size_t n = strlen(val);
	bool bad;

	if (!n || n >= k->max) {
		seterr(err, cap, "bad %s '%s': want 1 to %u characters",
		       k->name, val, k->max - 1);
		return GPUQ_ECONFIG;
	}
	bad = is_blank(val[0]) || is_blank(val[n - 1]);
	for (const char *p = val; *p; p++)
		bad |= *p == '#' || (unsigned char)*p < 0x20 || *p == 0x7f;
	if (bad) {
		seterr(err, cap,
		       "bad %s '%s': no '#', control characters or blanks at the ends",
		       k->name, val);
		return GPUQ_ECONFIG;
	}
	copy_str(FIELD(char, obj, k), k->max, val);
	return 0;
}

/* "echo, checksum, vector" - so a typo's message shows the choices. */
static const char *handler_names(char *buf, size_t cap)
{
	size_t used = 0;

	buf[0] = '\0';
	for (const struct handler_info *h = handler_all(); h->name; h++) {
		int n = snprintf(buf + used, cap - used, "%s%s",
				 used ? ", " : "", h->name);

		if (n < 0 || (size_t)n >= cap - used)
			break;
		used += (size_t)n;
	}
	return buf;
}

static int set_handler(void *obj, const struct key_desc *k, const char *val,
		       char *err, size_t cap)
{
	char names[128];

	if (!handler_lookup(val)) {
		seterr(err, cap, "unknown %s '%s' (known: %s)", k->name, val,
		       handler_names(names, sizeof(names)));
		return GPUQ_ECONFIG;
	}
	copy_str(FIELD(char, obj, k), k->max, val);
	return 0;
}

/* Parse "1000, 0" into ids; each item trimmed, none empty. */
static int parse_ids(const char *val, uint32_t *ids, uint32_t *n)
{
	char buf[LINE_MAX_LEN];
	char *rest = buf, *item;
	uint64_t v;

	if (strlen(val) >= sizeof(buf))
		return -1;
	strcpy(buf, val);
	*n = 0;
	while ((item = strsep(&rest, ",")) != NULL) {
		item = trim(item);
		/* (uid_t)-1 means "no change" to chown() and friends. */
		if (*n == CONF_MAX_IDS ||
		    !parse_num(item, 10, false, UINT32_MAX - 1, &v))
			return -1;
		ids[(*n)++] = (uint32_t)v;
	}
	return 0;
}

static int set_ids(struct gpuqd_config *c, const struct key_desc *k,
		   const char *val, char *err, size_t cap)
{
	uint32_t ids[CONF_MAX_IDS], n;

	if (parse_ids(val, ids, &n)) {
		seterr(err, cap,
		       "bad %s '%s': want 1 to %d comma-separated ids",
		       k->name, val, CONF_MAX_IDS);
		return GPUQ_ECONFIG;
	}
	/* The whole list is replaced: ids past n are cleared, not left. */
	for (uint32_t i = 0; i < CONF_MAX_IDS; i++) {
		if (k->type == KT_UIDS)
			c->allow_uid[i] = i < n ? (uid_t)ids[i] : 0;
		else
			c->allow_gid[i] = i < n ? (gid_t)ids[i] : 0;
	}
	if (k->type == KT_UIDS)
		c->n_allow_uid = n;
	else
		c->n_allow_gid = n;
	return 0;
}

/* Setters write the field only once the whole value has parsed. */
static int set_key(void *obj, const struct key_desc *k, const char *val,
		   char *err, size_t cap)
{
	switch (k->type) {
	case KT_U32:
	case KT_SIZE:
	case KT_MODE:
	case KT_INT:
		return set_number(obj, k, val, err, cap);
	case KT_BOOL:
		return set_bool(obj, k, val, err, cap);
	case KT_BACKEND:
		return set_backend(obj, k, val, err, cap);
	case KT_PATH:
		return set_path(obj, k, val, err, cap);
	case KT_HANDLER:
		return set_handler(obj, k, val, err, cap);
	case KT_UIDS:
	case KT_GIDS:
		return set_ids(obj, k, val, err, cap);
	}
	seterr(err, cap, "internal: key '%s' has no type", k->name);
	return GPUQ_ECONFIG;
}

/* ------------------------------------------------------------------------ */
/* Defaults and config_set()                                                */
/* ------------------------------------------------------------------------ */

void config_defaults(struct gpuqd_config *c)
{
	memset(c, 0, sizeof(*c));
	c->socket_mode = 0660;
	c->backend = CONF_BACKEND_AUTO;
	c->max_connections = 256;
	c->drain_timeout_ms = 10000;
}

void config_queue_defaults(struct queue_config *q, const char *name)
{
	memset(q, 0, sizeof(*q));
	copy_str(q->name, sizeof(q->name), name);
	copy_str(q->handler, sizeof(q->handler), "echo");
	q->capacity = 4096;
	q->slot_bytes = 256;
	q->max_clients = 64;
	q->workers = 1;
	q->backend = -1;
	q->max_attempts = 3;
	q->dlq_capacity = 1024;
	q->table_value_bytes = 64;
	q->dedupe_window_ms = 600000;
	q->redis.port = 6379;
	q->redis.batch = 256;
	q->redis.result_batch = 1;
	q->redis.block_ms = 100;
	q->redis.max_deliveries = 5;
	q->redis.claim_idle_ms = 30000;
}

/* Index of a new queue with defaults, or GPUQ_ECONFIG. */
static int add_queue(struct gpuqd_config *c, const char *name, char *err,
		     size_t cap)
{
	if (!valid_queue_name(name)) {
		seterr(err, cap,
		       "bad queue name '%s': want [A-Za-z0-9_.-]{1,63}", name);
		return GPUQ_ECONFIG;
	}
	if (c->nqueues >= CONF_MAX_QUEUES) {
		seterr(err, cap, "too many queues: at most %d",
		       CONF_MAX_QUEUES);
		return GPUQ_ECONFIG;
	}
	config_queue_defaults(&c->queues[c->nqueues], name);
	return (int)c->nqueues++;
}

static int set_broker(struct gpuqd_config *c, const char *key,
		      const char *value, char *err, size_t cap)
{
	const struct key_desc *k;

	k = find_key(broker_keys, ARRAY_SIZE(broker_keys), key);
	if (!k) {
		seterr(err, cap, "unknown key '%s' in [broker]", key);
		return GPUQ_ECONFIG;
	}
	return set_key(c, k, value, err, cap);
}

/*
 * Works on a copy so that a bad value leaves the queue as it was - and does
 * not leave behind a new queue with defaults either.
 */
static int set_queue(struct gpuqd_config *c, const char *queue,
		     const char *key, const char *value, char *err, size_t cap)
{
	const struct key_desc *k;
	struct queue_config tmp;
	int idx = find_queue(c, queue);
	int rc;

	k = find_key(queue_keys, ARRAY_SIZE(queue_keys), key);
	if (!k) {
		seterr(err, cap, "unknown key '%s' in [queue %s]", key, queue);
		return GPUQ_ECONFIG;
	}
	if (idx >= 0)
		tmp = c->queues[idx];
	else
		config_queue_defaults(&tmp, queue);
	rc = set_key(&tmp, k, value, err, cap);
	if (rc)
		return rc;
	if (idx < 0) {
		idx = add_queue(c, queue, err, cap);
		if (idx < 0)
			return idx;
	}
	c->queues[idx] = tmp;
	return 0;
}

int config_set(struct gpuqd_config *c, const char *queue, const char *key,
	       const char *value, char *err, size_t errcap)
{
	if (!c || !key || !value) {
		seterr(err, errcap, "config_set: missing argument");
		return -EINVAL;
	}
	if (!queue)
		return set_broker(c, key, value, err, errcap);
	if (!valid_queue_name(queue)) {
		seterr(err, errcap,
		       "bad queue name '%s': want [A-Za-z0-9_.-]{1,63}", queue);
		return GPUQ_ECONFIG;
	}
	return set_queue(c, queue, key, value, err, errcap);
}

/* ------------------------------------------------------------------------ */
/* The file format                                                          */
/* ------------------------------------------------------------------------ */

enum section { SEC_NONE, SEC_BROKER, SEC_QUEUE };

struct parser {
	struct gpuqd_config *c;
	enum section section;
	char queue[64];
	/* Queues declared by this buffer: a second [queue x] is a mistake,
	 * but a queue already in c (say from the command line) is not. */
	uint64_t declared;
};

static int open_queue_section(struct parser *p, const char *name, char *msg,
			      size_t cap)
{
	int idx = valid_queue_name(name) ? find_queue(p->c, name) : -1;

	if (idx >= 0 && (p->declared & (1ull << idx))) {
		seterr(msg, cap, "duplicate section [queue %s]", name);
		return GPUQ_ECONFIG;
	}
	if (idx < 0)
		idx = add_queue(p->c, name, msg, cap);
	if (idx < 0)
		return idx;
	p->declared |= 1ull << idx;
	p->section = SEC_QUEUE;
	copy_str(p->queue, sizeof(p->queue), name);
	return 0;
}

/* line is trimmed and starts with '['. */
static int parse_section(struct parser *p, char *line, char *msg, size_t cap)
{
	size_t n = strlen(line);
	char *inner;

	if (line[n - 1] != ']') {
		seterr(msg, cap, "section header '%s' lacks its ']'", line);
		return GPUQ_ECONFIG;
	}
	line[n - 1] = '\0';
	inner = trim(line + 1);
	if (!strcmp(inner, "broker")) {
		p->section = SEC_BROKER;
		return 0;
	}
	if (!strncmp(inner, "queue", 5) && is_blank(inner[5]))
		return open_queue_section(p, trim(inner + 5), msg, cap);
	if (!strcmp(inner, "queue"))
		seterr(msg, cap, "[queue] needs a name: [queue NAME]");
	else
		seterr(msg, cap, "unknown section [%s]", inner);
	return GPUQ_ECONFIG;
}

static int parse_setting(struct parser *p, char *line, char *msg, size_t cap)
{
	char *eq = strchr(line, '=');
	char *key, *value;

	if (!eq) {
		seterr(msg, cap, "expected 'key = value' or [section], got '%s'",
		       line);
		return GPUQ_ECONFIG;
	}
	*eq = '\0';
	key = trim(line);
	value = trim(eq + 1);
	if (!*key) {
		seterr(msg, cap, "missing key before '='");
		return GPUQ_ECONFIG;
	}
	if (p->section == SEC_NONE) {
		seterr(msg, cap, "key '%s' before any [section]", key);
		return GPUQ_ECONFIG;
	}
	return config_set(p->c, p->section == SEC_QUEUE ? p->queue : NULL,
			  key, value, msg, cap);
}

/* One line, without its '\n'; s need not be NUL-terminated. */
static int parse_line(struct parser *p, const char *s, size_t n, char *msg,
		      size_t cap)
{
	char buf[LINE_MAX_LEN];
	char *line, *hash;

	if (n >= sizeof(buf)) {
		seterr(msg, cap, "line longer than %d bytes", LINE_MAX_LEN - 1);
		return GPUQ_ECONFIG;
	}
	if (memchr(s, '\0', n)) {
		seterr(msg, cap, "NUL byte in line");
		return GPUQ_ECONFIG;
	}
	memcpy(buf, s, n);
	buf[n] = '\0';
	hash = strchr(buf, '#');
	if (hash)
		*hash = '\0';
	line = trim(buf);
	if (!*line || *line == ';')
		return 0;
	if (*line == '[')
		return parse_section(p, line, msg, cap);
	return parse_setting(p, line, msg, cap);
}

int config_load_buffer(struct gpuqd_config *c, const char *buf, size_t len,
		       const char *origin, char *err, size_t errcap)
{
	struct parser p = { .c = c, .section = SEC_NONE };
	const char *pos = buf, *end;
	char msg[MSG_MAX];
	unsigned int lineno = 0;

	if (!c || (!buf && len)) {
		seterr(err, errcap, "config_load_buffer: missing argument");
		return -EINVAL;
	}
	if (!len)
		return 0; /* buf may be NULL: no arithmetic on it */
	if (!origin)
		origin = "<buffer>";
	end = buf + len;
	while (pos < end) {
		const char *nl = memchr(pos, '\n', (size_t)(end - pos));
		const char *eol = nl ? nl : end;
		int rc;

		lineno++;
		rc = parse_line(&p, pos, (size_t)(eol - pos), msg, sizeof(msg));
		if (rc) {
			seterr(err, errcap, "%s:%u: %s", origin, lineno, msg);
			return rc;
		}
		pos = nl ? nl + 1 : end;
	}
	return 0;
}

/* The whole of fd in a malloc'd buffer; pipes work too, so no fstat(). */
static int read_all(int fd, char **out, size_t *outlen)
{
	size_t cap = 0, len = 0;
	char *buf = NULL, *nb;
	ssize_t n;
	int rc;

	for (;;) {
		if (len == cap) {
			rc = -EFBIG;
			if (cap >= FILE_MAX_BYTES)
				goto fail;
			cap = cap ? cap * 2 : 4096;
			rc = -ENOMEM;
			nb = realloc(buf, cap);
			if (!nb)
				goto fail;
			buf = nb;
		}
		n = read(fd, buf + len, cap - len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			rc = -errno;
			goto fail;
		}
		if (!n)
			break;
		len += (size_t)n;
	}
	*out = buf;
	*outlen = len;
	return 0;
fail:
	free(buf);
	return rc;
}

int config_load_file(struct gpuqd_config *c, const char *path, char *err,
		     size_t errcap)
{
	char *buf = NULL;
	size_t len = 0;
	int fd, rc;

	if (!c || !path) {
		seterr(err, errcap, "config_load_file: missing argument");
		return -EINVAL;
	}
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		rc = -errno;
		seterr(err, errcap, "%s: %s", path, strerror(-rc));
		return rc;
	}
	rc = read_all(fd, &buf, &len);
	if (rc) {
		seterr(err, errcap, "%s: %s", path, strerror(-rc));
		goto out;
	}
	rc = config_load_buffer(c, buf, len, path, err, errcap);
out:
	free(buf);
	close(fd);
	return rc;
}

/* "name[,key=value...]"; all or nothing, so it works on a copy of c. */
int config_queue_spec(struct gpuqd_config *c, const char *spec, char *err,
		      size_t errcap)
{
	struct gpuqd_config *tmp = NULL;
	char *copy = NULL, *rest, *name, *item, *eq;
	int rc = -ENOMEM;

	if (!c || !spec) {
		seterr(err, errcap, "config_queue_spec: missing argument");
		return -EINVAL;
	}
	tmp = malloc(sizeof(*tmp));
	copy = strdup(spec);
	if (!tmp || !copy) {
		seterr(err, errcap, "out of memory");
		goto out;
	}
	*tmp = *c;
	rest = copy;
	name = trim(strsep(&rest, ","));
	rc = GPUQ_ECONFIG;
	if (find_queue(tmp, name) < 0 && add_queue(tmp, name, err, errcap) < 0)
		goto out;
	while ((item = strsep(&rest, ",")) != NULL) {
		eq = strchr(item, '=');
		if (!eq) {
			seterr(err, errcap,
			       "queue %s: expected key=value, got '%s'", name,
			       trim(item));
			goto out;
		}
		*eq = '\0';
		rc = config_set(tmp, name, trim(item), trim(eq + 1), err,
				errcap);
		if (rc)
			goto out;
	}
	*c = *tmp;
	rc = 0;
out:
	free(copy);
	free(tmp);
	return rc;
}

/* ------------------------------------------------------------------------ */
/* Validation                                                               */
/* ------------------------------------------------------------------------ */

/*
 * Fields may have been filled in without config_set() (or by an older
 * config), so every queue key is checked again against its table entry.
 */
static int check_key(const struct queue_config *q, const struct key_desc *k,
		     char *msg, size_t cap)
{
	char want[64];
	int b;

	switch (k->type) {
	case KT_SIZE:
	case KT_U32: {
		uint32_t v = *CFIELD(uint32_t, q, k);

		if (num_ok(k, v))
			return 0;
		seterr(msg, cap, "%s %u: want %s", k->name, v,
		       num_want(k, want, sizeof(want)));
		return GPUQ_ECONFIG;
	}
	case KT_HANDLER:
		if (memchr(q->handler, '\0', sizeof(q->handler)) &&
		    handler_lookup(q->handler))
			return 0;
		seterr(msg, cap, "unknown handler '%.*s'",
		       (int)sizeof(q->handler), q->handler);
		return GPUQ_ECONFIG;
	case KT_BACKEND:
		b = *CFIELD(int, q, k);
		if ((b == -1 && (k->flags & KF_INHERIT)) ||
		    (b >= CONF_BACKEND_AUTO && b <= CONF_BACKEND_CUDA))
			return 0;
		seterr(msg, cap, "backend %d is not auto, cpu or cuda", b);
		return GPUQ_ECONFIG;
	default:
		return 0; /* queues have no other kinds of key */
	}
}

/* Tables (design.md §15): what needs one has one, and exactly-once has
 * what it cannot work without. */
static int check_tables(const struct queue_config *q, char *msg, size_t cap)
{
	if (!strcmp(q->handler, "keysum") && !q->handler_module[0] &&
	    (!q->table_slots ||
	     q->table_value_bytes < sizeof(struct gpuq_keysum_result))) {
		seterr(msg, cap,
		       "handler keysum needs table_slots and table_value_bytes >= %zu",
		       sizeof(struct gpuq_keysum_result));
		return GPUQ_ECONFIG;
	}
	if (!strcmp(q->handler, "kv") && !q->handler_module[0] &&
	    !q->table_slots) {
		seterr(msg, cap, "handler kv needs table_slots");
		return GPUQ_ECONFIG;
	}
	if ((q->stamped || q->stamped_results) && !IPC_HAVE_STAMPS) {
		seterr(msg, cap, "%s need an x86-64 host (single-copy atomic "
				 "16-byte stores)",
		       q->stamped ? "stamped slots" : "stamped results");
		return GPUQ_ECONFIG;
	}
	if (!q->exactly_once)
		return 0;
	/* A bound queue's idempotency key is the entry id, which leaves
	 * nothing to order by. */
	if (q->redis.stream[0] && q->ordered) {
		seterr(msg, cap,
		       "exactly_once on a Redis-bound queue cannot be ordered");
		return GPUQ_ECONFIG;
	}
	return 0;
}

static int check_queue(const struct queue_config *q, char *msg, size_t cap)
{
	const struct handler_info *h;
	uint32_t need;
	int rc;

	for (size_t i = 0; i < ARRAY_SIZE(queue_keys); i++) {
		rc = check_key(q, &queue_keys[i], msg, cap);
		if (rc)
			return rc;
	}
	/* Results or dead letters written into the stream being read would
	 * come back as input, for ever. */
	if (q->redis.stream[0] &&
	    (!strcmp(q->redis.result_stream, q->redis.stream) ||
	     !strcmp(q->redis.dlq_stream, q->redis.stream))) {
		seterr(msg, cap,
		       "redis_result_stream and redis_dlq_stream must differ from redis_stream '%s'",
		       q->redis.stream);
		return GPUQ_ECONFIG;
	}
	rc = check_tables(q, msg, cap);
	if (rc)
		return rc;
	/* A module's handler is unknown to gpuqd: it must say how much
	 * result room it needs, and only the CUDA backend can run it. */
	if (q->handler_module[0]) {
		if (!q->result_bytes) {
			seterr(msg, cap, "handler_module needs result_bytes set");
			return GPUQ_ECONFIG;
		}
		if (q->backend == CONF_BACKEND_CPU) {
			seterr(msg, cap, "handler_module needs the cuda backend");
			return GPUQ_ECONFIG;
		}
		return 0;
	}
	/* Too small a result area would make the handler fail every
	 * message; cheaper to say so at startup. */
	h = handler_lookup(q->handler);
	need = h->result_bytes(q->slot_bytes);
	if (q->result_bytes && q->result_bytes < need) {
		seterr(msg, cap,
		       "result_bytes %u is too small: handler %s needs %u for slot_bytes %u",
		       q->result_bytes, h->name, need, q->slot_bytes);
		return GPUQ_ECONFIG;
	}
	return 0;
}

int config_validate(const struct gpuqd_config *c, char *err, size_t errcap)
{
	char msg[MSG_MAX];
	int rc;

	if (!c)
		return -EINVAL;
	if (c->nqueues > CONF_MAX_QUEUES) {
		seterr(err, errcap, "%u queues: at most %d", c->nqueues,
		       CONF_MAX_QUEUES);
		return GPUQ_ECONFIG;
	}
	for (uint32_t i = 0; i < c->nqueues; i++) {
		const struct queue_config *q = &c->queues[i];
		char name[sizeof(q->name)];

		/* A hand-filled name may lack its NUL. */
		memcpy(name, q->name, sizeof(name) - 1);
		name[sizeof(name) - 1] = '\0';
		rc = GPUQ_ECONFIG;
		if (!valid_queue_name(name))
			seterr(msg, sizeof(msg), "bad queue name");
		else if (find_queue(c, name) != (int)i)
			seterr(msg, sizeof(msg), "defined twice");
		else
			rc = check_queue(q, msg, sizeof(msg));
		if (rc) {
			seterr(err, errcap, "queue '%s': %s", name, msg);
			return rc;
		}
	}
	return 0;
}

/* ------------------------------------------------------------------------ */
/* Printing                                                                 */
/* ------------------------------------------------------------------------ */

static void print_ids(int fd, const char *key, const uint32_t *ids, uint32_t n)
{
	if (!n || n > CONF_MAX_IDS)
		return; /* nothing set: the key's absence says so */
	dprintf(fd, "%s = ", key);
	for (uint32_t i = 0; i < n; i++)
		dprintf(fd, "%s%u", i ? ", " : "", ids[i]);
	dprintf(fd, "\n");
}

static void print_id_key(int fd, const struct gpuqd_config *c,
			 const struct key_desc *k)
{
	uint32_t ids[CONF_MAX_IDS];
	uint32_t n = k->type == KT_UIDS ? c->n_allow_uid : c->n_allow_gid;

	for (uint32_t i = 0; i < n && i < CONF_MAX_IDS; i++)
		ids[i] = k->type == KT_UIDS ? (uint32_t)c->allow_uid[i] :
					      (uint32_t)c->allow_gid[i];
	print_ids(fd, k->name, ids, n);
}

static void print_key(int fd, const void *obj, const struct key_desc *k)
{
	const char *s;
	int v;

	switch (k->type) {
	case KT_U32:
	case KT_SIZE:
		dprintf(fd, "%s = %u\n", k->name, *CFIELD(uint32_t, obj, k));
		break;
	case KT_MODE:
		dprintf(fd, "%s = 0%o\n", k->name, *CFIELD(uint32_t, obj, k));
		break;
	case KT_INT:
		dprintf(fd, "%s = %d\n", k->name, *CFIELD(int, obj, k));
		break;
	case KT_BOOL:
		dprintf(fd, "%s = %s\n", k->name,
			*CFIELD(int, obj, k) ? "yes" : "no");
		break;
	case KT_BACKEND:
		v = *CFIELD(int, obj, k);
		if (v >= 0 && (size_t)v < ARRAY_SIZE(backend_names))
			dprintf(fd, "%s = %s\n", k->name, backend_names[v]);
		else if (v != -1) /* -1 inherits: leave the key out */
			dprintf(fd, "%s = %d\n", k->name, v);
		break;
	case KT_PATH:
	case KT_HANDLER:
		s = CFIELD(char, obj, k);
		/* An empty socket means the default: leave the key out. */
		if (*s || k->type == KT_HANDLER)
			dprintf(fd, "%s = %.*s\n", k->name, (int)k->max, s);
		break;
	case KT_UIDS:
	case KT_GIDS:
		print_id_key(fd, obj, k);
		break;
	}
}

void config_print(const struct gpuqd_config *c, int fd)
{
	dprintf(fd, "# gpuqd effective configuration\n[broker]\n");
	for (size_t i = 0; i < ARRAY_SIZE(broker_keys); i++)
		print_key(fd, c, &broker_keys[i]);
	for (uint32_t q = 0; q < c->nqueues && q < CONF_MAX_QUEUES; q++) {
		dprintf(fd, "\n[queue %s]\n", c->queues[q].name);
		for (size_t i = 0; i < ARRAY_SIZE(queue_keys); i++)
			print_key(fd, &c->queues[q], &queue_keys[i]);
	}
}
