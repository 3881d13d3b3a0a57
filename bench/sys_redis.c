/*
 * sys_redis.c - baseline (a): Redis Streams on a local redis-server, the way
 * the predecessor's Track A used it.  Producers XADD pipelined (one round
 * trip per batch), reader processes in one consumer group XREADGROUP,
 * run the same built-in handler on each entry and XACK.
 *
 * A producer learns that its messages are done from its own ack counter in
 * shared memory, which readers bump after XACK; the loop's window bounds
 * the unacknowledged entries the same way it bounds gpuq's in-flight
 * messages.  Latency is taken by the readers, from the reference time the
 * producer wrote into the first 8 bytes of the payload (one clock for all
 * processes) to the XACK's reply.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <netinet/in.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <hiredis/hiredis.h>

#include "bench/bench.h"
#include "libclient/gpuq.h"

#define READ_COUNT 512
#define HDR_BYTES 16 /* stamp (8) and producer index (4) in the payload */

struct redis_arg {
	char host[64];
	int port;
	char key[64];
	char maxlen[24];
};

static redisContext *rconnect(const struct redis_arg *a, char *err, size_t cap)
{
	struct timeval tv = { 5, 0 };
	redisContext *c = redisConnectWithTimeout(a->host, a->port, tv);
	if (!c || c->err) {
		snprintf(err, cap, "redis %s:%d: %s", a->host, a->port,
			 c ? c->errstr : "out of memory");
		redisFree(c);
		return NULL;
	}
	return c;
}

/* Run a command; 0 unless it failed or Redis answered an error. */
static int rcmd(redisContext *c, int argc, const char **argv,
		const size_t *lens, char *err, size_t cap)
{
	redisReply *r = redisCommandArgv(c, argc, argv, lens);
	int rc = 0;
	if (!r || r->type == REDIS_REPLY_ERROR) {
		snprintf(err, cap, "%.12s: %.64s", argv[0], r ? r->str : c->errstr);
		rc = -EIO;
	}
	freeReplyObject(r);
	return rc;
}

/* ---- producer ---- */

struct rctx {
	const struct workload *w;
	const struct redis_arg *a;
	redisContext *c;
	struct payload pl;
	uint8_t *buf;
	uint64_t *acked, seen;
	int idx;
};

static int r_open(const struct run_env *e, int idx, void **out,
		  struct proc_result *o)
{
	struct rctx *r = calloc(1, sizeof(*r));
	if (!r)
		return -ENOMEM;
	*out = r;
	r->w = e->w;
	r->a = e->arg;
	r->idx = idx;
	r->acked = &e->sh->slot[idx].acked;
	r->buf = malloc(e->w->size);
	if (!r->buf || payload_init(&r->pl, e->w->handler, e->w->size, idx))
		return -ENOMEM;
	r->c = rconnect(r->a, o->what, sizeof(o->what));
	return r->c ? 0 : -ECONNREFUSED;
}

static int r_send(void *ctx, uint64_t seq, uint32_t k, const uint64_t *stamp,
		  struct proc_result *o)
{
	struct rctx *r = ctx;
	const char *argv[8] = { "XADD", r->a->key, "MAXLEN", "~", r->a->maxlen,
				"*", "d", (const char *)r->buf };
	size_t lens[8];
	uint32_t idx = (uint32_t)r->idx;
	for (int i = 0; i < 7; i++)
		lens[i] = strlen(argv[i]);
	lens[7] = r->w->size;
	/* hiredis copies the arguments, so one buffer does for the batch. */
	for (uint32_t i = 0; i < k; i++) {
		payload_fill(&r->pl, seq + i, r->buf, r->w->size);
		memcpy(r->buf, &stamp[i], 8);
		memcpy(r->buf + 8, &idx, 4);
		if (redisAppendCommandArgv(r->c, 8, argv, lens) != REDIS_OK)
			goto fail;
	}
	for (uint32_t i = 0; i < k; i++) {
		redisReply *rep = NULL;
		int bad;
		if (redisGetReply(r->c, (void **)&rep) != REDIS_OK)
			goto fail;
		bad = rep->type == REDIS_REPLY_ERROR;
		if (bad)
			loop_note(o, rep->str, seq + i);
		freeReplyObject(rep);
		if (bad)
			return -EIO;
	}
	return (int)k;
fail:
	loop_note(o, r->c->errstr, seq);
	return -EIO;
}

static int r_poll(void *ctx, struct loop_done *d, uint32_t max,
		  struct proc_result *o)
{
	struct rctx *r = ctx;
	uint64_t n = __atomic_load_n(r->acked, __ATOMIC_ACQUIRE) - r->seen;
	(void)o;
	if (n > max)
		n = max;
	for (uint64_t i = 0; i < n; i++)
		d[i] = (struct loop_done){ .seq = LOOP_SEQ_ANON };
	r->seen += n;
	return (int)n;
}

static int r_run(void *ctx, const struct loop_spec *ls, struct proc_result *o,
		 uint64_t *end_ns)
{
	struct loop_port port = { r_send, r_poll, ctx };
	return loop_run(&port, ls, o, end_ns);
}

static void r_close(void *ctx)
{
	struct rctx *r = ctx;
	redisFree(r->c);
	payload_free(&r->pl);
	free(r->buf);
	free(r);
}

/* ---- reader (helper) ---- */

struct reader {
	const struct run_env *e;
	redisContext *c;
	char name[16];
	const char **ack;     /* XACK key g id... */
	size_t *ack_len;
	uint64_t *stamp;
	uint32_t *who;
	uint8_t *scratch, *res;
	uint32_t res_cap;
	struct proc_result *o;
};

/* Handle one entry [id, [field, value]]; 0 or -EPROTO. */
static int take_entry(struct reader *rd, const redisReply *ent, uint32_t i)
{
	const redisReply *v;
	uint32_t len;
	if (ent->type != REDIS_REPLY_ARRAY || ent->elements < 2 ||
	    ent->element[1]->type != REDIS_REPLY_ARRAY ||
	    ent->element[1]->elements < 2)
		return -EPROTO;
	v = ent->element[1]->element[1];
	if (v->type != REDIS_REPLY_STRING || v->len < HDR_BYTES ||
	    v->len > rd->e->w->size)
		return -EPROTO;
	rd->ack[3 + i] = ent->element[0]->str;
	rd->ack_len[3 + i] = ent->element[0]->len;
	memcpy(rd->scratch, v->str, v->len);
	memcpy(&rd->stamp[i], rd->scratch, 8);
	memcpy(&rd->who[i], rd->scratch + 8, 4);
	if (rd->who[i] >= (uint32_t)rd->e->w->producers)
		return -EPROTO;
	if (payload_handle(rd->e->w->handler, rd->scratch, (uint32_t)v->len,
			   rd->stamp[i], rd->res, rd->res_cap, &len))
		rd->o->failed++;
	return 0;
}

/* After XACK: latency from each entry's stamp, and tell its producer. */
static void settle(struct reader *rd, uint32_t n, int idx)
{
	struct bench_shared *sh = rd->e->sh;
	uint64_t now = procs_now_ns(), go = procs_gate_opened(&sh->go);
	for (uint32_t i = 0; i < n; i++) {
		/* Warm-up entries were stamped before the timed start. */
		if (rd->e->w->latency && go && rd->stamp[i] >= go)
			hist_record(&sh->slot[idx].lat,
				    now > rd->stamp[i] ? now - rd->stamp[i] : 0);
		__atomic_add_fetch(&sh->slot[rd->who[i]].acked, 1, __ATOMIC_RELEASE);
	}
	rd->o->verified += n;
}

/* One XREADGROUP and its XACK: entries handled, or a negative error. */
static int read_once(struct reader *rd, int idx)
{
	const struct redis_arg *a = rd->e->arg;
	const char *argv[] = { "XREADGROUP", "GROUP", "g", rd->name, "COUNT",
			       "512", "BLOCK", "10", "STREAMS", a->key, ">" };
	redisReply *r = redisCommandArgv(rd->c, 11, argv, NULL);
	const redisReply *ents;
	uint32_t n = 0;
	int rc = 0;
	if (!r || r->type == REDIS_REPLY_ERROR) {
		snprintf(rd->o->what, sizeof(rd->o->what), "XREADGROUP: %.80s",
			 r ? r->str : rd->c->errstr);
		freeReplyObject(r);
		return -EIO;
	}
	if (r->type != REDIS_REPLY_ARRAY || !r->elements) {
		freeReplyObject(r); /* nil: nothing within BLOCK */
		return 0;
	}
	ents = r->element[0]->elements > 1 ? r->element[0]->element[1] : NULL;
	for (; ents && n < ents->elements && n < READ_COUNT && !rc; n++)
		rc = take_entry(rd, ents->element[n], n);
	if (!rc && n)
		rc = rcmd(rd->c, 3 + (int)n, rd->ack, rd->ack_len, rd->o->what,
			  sizeof(rd->o->what));
	if (!rc)
		settle(rd, n, idx);
	else if (rc == -EPROTO)
		snprintf(rd->o->what, sizeof(rd->o->what), "unexpected stream entry");
	freeReplyObject(r);
	return rc ? rc : (int)n;
}

static int reader_alloc(struct reader *rd, const struct run_env *e)
{
	const struct redis_arg *a = e->arg;
	rd->ack = calloc(3 + READ_COUNT, sizeof(*rd->ack));
	rd->ack_len = calloc(3 + READ_COUNT, sizeof(*rd->ack_len));
	rd->stamp = calloc(READ_COUNT, sizeof(*rd->stamp));
	rd->who = calloc(READ_COUNT, sizeof(*rd->who));
	rd->scratch = aligned_alloc(16, (e->w->size + 15) & ~15u);
	rd->res_cap = payload_result_bytes(e->w->handler, e->w->size);
	rd->res = aligned_alloc(16, (rd->res_cap + 15) & ~15u);
	if (!rd->ack || !rd->ack_len || !rd->stamp || !rd->who ||
	    !rd->scratch || !rd->res)
		return -ENOMEM;
	rd->ack[0] = "XACK";
	rd->ack[1] = a->key;
	rd->ack[2] = "g";
	rd->ack_len[0] = 4;
	rd->ack_len[1] = strlen(a->key);
	rd->ack_len[2] = 1;
	return 0;
}

static void reader_free(struct reader *rd)
{
	redisFree(rd->c);
	free(rd->ack);
	free(rd->ack_len);
	free(rd->stamp);
	free(rd->who);
	free(rd->scratch);
	free(rd->res);
}

static int r_reader(const struct run_env *e, int idx, struct proc_result *o)
{
	struct reader rd = { .e = e, .o = o };
	int rc = reader_alloc(&rd, e);
	snprintf(rd.name, sizeof(rd.name), "r%d", idx);
	if (!rc && !(rd.c = rconnect(e->arg, o->what, sizeof(o->what))))
		rc = -ECONNREFUSED;
	procs_gate_wait(&e->sh->ready, 60000);
	/* Until every producer is done and nothing new arrives. */
	while (!rc) {
		int n = read_once(&rd, idx);
		if (n < 0)
			rc = n;
		else if (!n && !__atomic_load_n(&e->sh->producers_left, __ATOMIC_ACQUIRE))
			break;
	}
	reader_free(&rd);
	return rc;
}

static const struct sys_ops redis_ops = {
	.open = r_open, .run = r_run, .close = r_close, .helper = r_reader,
	.lat_by_helper = 1,
};

/* ---- the parent's part ---- */

static int parse_addr(struct redis_arg *a, const char *addr)
{
	const char *colon = strrchr(addr, ':');
	if (!colon || colon == addr || (size_t)(colon - addr) >= sizeof(a->host))
		return -EINVAL;
	memcpy(a->host, addr, (size_t)(colon - addr));
	a->host[colon - addr] = 0;
	a->port = atoi(colon + 1);
	return a->port > 0 && a->port < 65536 ? 0 : -EINVAL;
}

/* A fresh stream and consumer group per run (del: remove it only). */
static int stream_reset(const struct redis_arg *a, int create, char *err,
			size_t cap)
{
	const char *del[] = { "DEL", a->key };
	const char *mk[] = { "XGROUP", "CREATE", a->key, "g", "$", "MKSTREAM" };
	redisContext *c = rconnect(a, err, cap);
	int rc;
	if (!c)
		return -ECONNREFUSED;
	rc = rcmd(c, 2, del, NULL, err, cap);
	if (!rc && create)
		rc = rcmd(c, 6, mk, NULL, err, cap);
	redisFree(c);
	return rc;
}

int sys_redis_run(const struct workload *w, const char *addr, int readers,
		  struct sys_result *r, const char *label)
{
	static int runs;
	struct redis_arg a;
	char err[160];
	int rc;
	memset(&a, 0, sizeof(a));
	if (!addr) {
		sys_result_none(r, SYS_REDIS, ST_SKIPPED,
				"give --redis HOST:PORT or --redis-spawn");
		return 0;
	}
	if (w->size < HDR_BYTES) {
		sys_result_none(r, SYS_REDIS, ST_SKIPPED,
				"payload under %d B has no room for the stamp",
				HDR_BYTES);
		return 0;
	}
	if (parse_addr(&a, addr)) {
		sys_result_none(r, SYS_REDIS, ST_ERROR, "bad address %s", addr);
		return -EINVAL;
	}
	snprintf(a.key, sizeof(a.key), "gpuq-bench:%d:%d", (int)getpid(), runs++);
	/* Trimming keeps memory flat; unread entries never exceed the
	 * producers' windows, so nothing unread is trimmed. */
	snprintf(a.maxlen, sizeof(a.maxlen), "%llu",
		 (unsigned long long)w->producers * w->window * 2 + 10000);
	rc = stream_reset(&a, 1, err, sizeof(err));
	if (rc) {
		sys_result_none(r, SYS_REDIS, ST_ERROR, "%s", err);
		return rc;
	}
	rc = run_system(SYS_REDIS, w, &redis_ops, &a, readers, r, label);
	stream_reset(&a, 0, err, sizeof(err));
	return rc;
}

redisContext *bench_redis_connect(const char *addr)
{
	char host[64];
	const char *colon = strrchr(addr, ':');
	struct timeval tv = { 5, 0 };
	redisContext *c;
	if (!colon || (size_t)(colon - addr) >= sizeof(host))
		return NULL;
	memcpy(host, addr, (size_t)(colon - addr));
	host[colon - addr] = 0;
	c = redisConnectWithTimeout(host, atoi(colon + 1), tv);
	if (c && c->err) {
		fprintf(stderr, "gpuq-bench: redis %s: %s\n", addr, c->errstr);
		redisFree(c);
		return NULL;
	}
	return c;
}

/* ---- private redis-servers ---- */

/* Every server redis_spawn started, for redis_spawn_stop and _kill. */
#define SPAWN_MAX 16
static struct spawned_redis {
	pid_t pid;
	char dir[64];
} spawned[SPAWN_MAX];
static int nspawned;

int redis_ping(const char *addr, char *err, size_t errcap)
{
	struct redis_arg a;
	const char *ping[] = { "PING" };
	redisContext *c;
	int rc;
	memset(&a, 0, sizeof(a));
	if (parse_addr(&a, addr)) {
		snprintf(err, errcap, "bad address %s (want HOST:PORT)", addr);
		return -EINVAL;
	}
	if (!(c = rconnect(&a, err, errcap)))
		return -ECONNREFUSED;
	rc = rcmd(c, 1, ping, NULL, err, errcap);
	redisFree(c);
	return rc;
}

/* A port nobody listens on right now. */
static int free_port(void)
{
	struct sockaddr_in sa = { .sin_family = AF_INET,
				  .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t len = sizeof(sa);
	int fd = socket(AF_INET, SOCK_STREAM, 0), port = -1;
	if (fd < 0)
		return -1;
	if (!bind(fd, (struct sockaddr *)&sa, sizeof(sa)) &&
	    !getsockname(fd, (struct sockaddr *)&sa, &len))
		port = ntohs(sa.sin_port);
	close(fd);
	return port;
}

static const char *redis_server_path(void)
{
	const char *p = getenv("REDIS_SERVER");
	if (p && *p)
		return p;
#ifdef BENCH_REDIS_SERVER
	if (BENCH_REDIS_SERVER[0])
		return BENCH_REDIS_SERVER;
#endif
	return "redis-server";
}

static void exec_redis(const char *dir, int port)
{
	char ps[16], log[96];
	const char *path = redis_server_path();
	int fd;
	snprintf(ps, sizeof(ps), "%d", port);
	snprintf(log, sizeof(log), "%s/redis.log", dir);
	fd = open(log, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	if (fd >= 0) {
		dup2(fd, 1);
		dup2(fd, 2);
	}
	/* A ^C to gpuq-bench must not stop it mid-run, and it must not
	 * outlive gpuq-bench. */
	setpgid(0, 0);
	prctl(PR_SET_PDEATHSIG, SIGTERM);
	execlp(path, path, "--port", ps, "--bind", "127.0.0.1", "--save", "",
	       "--appendonly", "no", "--dir", dir, "--daemonize", "no",
	       (char *)NULL);
	_exit(127);
}

/* Wait for PING from server sp; on failure say why. */
static int spawn_wait(struct spawned_redis *sp, const char *addr, char *err,
		      size_t errcap)
{
	struct timespec ts = { 0, 20 * 1000000L };
	for (int i = 0; i < 250; i++) {
		int st;
		if (!redis_ping(addr, err, errcap))
			return 0;
		if (waitpid(sp->pid, &st, WNOHANG) == sp->pid) {
			sp->pid = 0;
			if (WIFEXITED(st) && WEXITSTATUS(st) == 127) {
				snprintf(err, errcap, "%s not found", redis_server_path());
				return -ENOENT;
			}
			snprintf(err, errcap, "redis-server exited (see %s/redis.log)",
				 sp->dir);
			return -ECHILD;
		}
		nanosleep(&ts, NULL);
	}
	snprintf(err, errcap, "redis-server did not answer in 5 s");
	return -ETIMEDOUT;
}

static void stop_one(struct spawned_redis *sp)
{
	char path[96];
	if (sp->pid > 0) {
		kill(sp->pid, SIGTERM);
		waitpid(sp->pid, NULL, 0);
	}
	sp->pid = 0;
	if (!sp->dir[0])
		return;
	snprintf(path, sizeof(path), "%s/redis.log", sp->dir);
	unlink(path);
	rmdir(sp->dir);
	sp->dir[0] = 0;
}

int redis_spawn(char *addr, size_t cap, char *err, size_t errcap)
{
	struct spawned_redis *sp;
	int port = free_port(), rc;
	if (nspawned == SPAWN_MAX) {
		snprintf(err, errcap, "at most %d redis-servers", SPAWN_MAX);
		return -EMFILE;
	}
	sp = &spawned[nspawned];
	snprintf(sp->dir, sizeof(sp->dir), "/tmp/gpuq-bench-redis-XXXXXX");
	if (port < 0 || !mkdtemp(sp->dir)) {
		snprintf(err, errcap, "no loopback port or temp dir: %s", strerror(errno));
		sp->dir[0] = 0;
		return -errno;
	}
	snprintf(addr, cap, "127.0.0.1:%d", port);
	fflush(NULL);
	sp->pid = fork();
	if (sp->pid == 0)
		exec_redis(sp->dir, port);
	if (sp->pid < 0) {
		sp->pid = 0;
		snprintf(err, errcap, "fork: %s", strerror(errno));
		rc = -errno;
	} else {
		rc = spawn_wait(sp, addr, err, errcap);
	}
	if (rc)
		stop_one(sp);
	else
		nspawned++;
	return rc;
}

void redis_spawn_stop(void)
{
	while (nspawned > 0)
		stop_one(&spawned[--nspawned]);
}

void redis_spawn_kill(void)
{
	for (int i = 0; i < nspawned; i++)
		if (spawned[i].pid > 0)
			kill(spawned[i].pid, SIGKILL);
}
