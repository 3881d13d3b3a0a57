/*
 * gpuqctl - operator CLI for gpuqd.
 *
 *   gpuqctl [-s SOCKET] [--json] status            broker, queues, counters
 *   gpuqctl [-s SOCKET] [--json] [-i S [-n N]] stat counters from shared
 *                                                  memory (works even if
 *                                                  the broker's loop hangs)
 *   gpuqctl [-s SOCKET] [--json] queues            queue configuration
 *   gpuqctl [-s SOCKET] [--json] clients           attached producers
 *   gpuqctl [-s SOCKET] [--json] pause|resume [QUEUE]
 *   gpuqctl [-s SOCKET] [--json] drain             stop intake, finish what
 *                                                  is in flight, stop; prints
 *                                                  the final counts
 *   gpuqctl [-s SOCKET] [--json] shutdown          the same
 *   gpuqctl [-s SOCKET] [--json] dlq ls QUEUE [FIRST [MAX]]
 *   gpuqctl [-s SOCKET] [--json] dlq show QUEUE WORKER:POS
 *   gpuqctl [-s SOCKET] [--json] dlq replay QUEUE [N|all]
 *   gpuqctl [-s SOCKET] [--json] dlq purge QUEUE [N|all]
 *
 * Exit codes: 0 ok, 1 broker error or unreachable, 2 usage.
 */
#include "config.h"

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "broker/broker.h"
#include "broker/gpuqctl.h"
#include "ipc/proto.h"
#include "libclient/gpuq.h"

static const char usage[] =
	"usage: gpuqctl [-s SOCKET] [--json] COMMAND\n"
	"  status                     queues and their counters\n"
	"  stat [-i SECONDS [-n N]]   counters read from shared memory, once or\n"
	"                             every SECONDS (rates, latency percentiles)\n"
	"  queues                     queue configuration\n"
	"  clients                    attached producers\n"
	"  pause [QUEUE] | resume [QUEUE]  stop / restart consumers (all queues\n"
	"                             when none is named; producers can still\n"
	"                             fill the ring)\n"
	"  drain | shutdown           stop intake, finish in-flight work, stop\n"
	"  dlq ls QUEUE [FIRST [MAX]] list dead letters (worker by worker,\n"
	"                             oldest first within a worker)\n"
	"  dlq show QUEUE WORKER:POS  one dead letter with its payload\n"
	"  dlq replay QUEUE [N|all]   put the first N (in ls order) back\n"
	"  dlq purge QUEUE [N|all]    drop the first N (in ls order)\n";

static int json;
static double interval_s;
static long count;

/* One request, one reply (the drain reply comes when the drain is over,
 * so there is no receive timeout for it). */
static int request(const char *path, uint16_t type, const void *body,
		   uint32_t blen, void *buf, size_t cap, struct proto_msg *m,
		   uint16_t want)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	struct timeval tv = { type == PROTO_SHUTDOWN ? 0 : 5, 0 };
	int s, n, fd, rc;
	if (strlen(path) >= sizeof(sa.sun_path))
		return -ENAMETOOLONG;
	strcpy(sa.sun_path, path);
	s = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
	if (s < 0)
		return -errno;
	setsockopt(s, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	if (connect(s, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		close(s);
		return GPUQ_ENOBROKER;
	}
	n = proto_encode(buf, cap, type, 1, body, blen);
	rc = n < 0 ? n : proto_send(s, buf, (size_t)n, -1);
	if (!rc) {
		n = proto_recv(s, buf, cap, &fd);
		if (fd >= 0)
			close(fd);
		rc = n <= 0 ? (n ? n : GPUQ_EBROKERDEAD)
			    : proto_decode(buf, (size_t)n, m);
		if (rc == -EAGAIN) /* SO_RCVTIMEO: a hung broker */
			rc = GPUQ_ETIMEDOUT;
	}
	close(s);
	if (!rc && m->hdr.type == PROTO_ERROR)
		rc = ((const struct proto_error *)m->body)->code;
	if (!rc && m->hdr.type != want)
		rc = GPUQ_EPROTO;
	return rc;
}

static const char *backend_name(uint32_t b)
{
	return b == IPC_BACKEND_CUDA ? "cuda" : b == IPC_BACKEND_CPU ? "cpu" : "?";
}

static const char *state_name(uint32_t s)
{
	static const char *const n[] = { "starting", "running", "draining",
					 "stopped" };
	return s < 4 ? n[s] : "?";
}

static void print_status_json(const struct proto_status_ok *st)
{
	printf("{\"broker_pid\":%d,\"epoch\":\"%016" PRIx64 "\",\"uptime_s\":%.3f,"
	       "\"ready_us\":%" PRIu64 ",\"drain_us\":%" PRIu64 ",\"queues\":[",
	       st->broker_pid, st->epoch, (double)st->uptime_ns / 1e9,
	       st->ready_ns / 1000, st->drain_ns / 1000);
	for (uint32_t i = 0; i < st->nqueues; i++) {
		const struct proto_qstat *q = &st->q[i];
		/* Queue and handler names are [A-Za-z0-9_.-]: no escaping. */
		printf("%s{\"name\":\"%s\",\"handler\":\"%s\",\"backend\":\"%s\","
		       "\"state\":\"%s\",\"capacity\":%u,\"slot_bytes\":%u,"
		       "\"result_bytes\":%u,\"ordered\":%s,\"rings\":%u,"
		       "\"paused\":%s,"
		       "\"clients\":%u,\"depth\":%" PRIu64 ",\"enqueued\":%" PRIu64
		       ",\"completed\":%" PRIu64 ",\"retried\":%" PRIu64
		       ",\"dead_lettered\":%" PRIu64 ",\"reclaimed\":%" PRIu64
		       ",\"full_events\":%" PRIu64 ",\"dlq_pending\":%" PRIu64
		       ",\"dlq_replayed\":%" PRIu64 ",\"dlq_purged\":%" PRIu64
		       ",\"dlq_waits\":%" PRIu64 ",\"garbled\":%" PRIu64
		       ",\"start_us\":%" PRIu64 ",\"drain_us\":%" PRIu64 "}",
		       i ? "," : "", q->name, q->handler, backend_name(q->backend),
		       state_name(q->state), q->capacity, q->slot_bytes,
		       q->result_bytes, q->ordered ? "true" : "false", q->nrings,
		       q->paused ? "true" : "false", q->clients, q->depth, q->enqueued, q->completed, q->retried,
		       q->dead_lettered, q->reclaimed, q->full_events,
		       q->dlq_pending, q->dlq_replayed, q->dlq_purged, q->dlq_waits,
		       q->garbled, q->start_ns / 1000, q->drain_ns / 1000);
	}
	printf("]}\n");
}

static void print_status_human(const struct proto_status_ok *st)
{
	/* The banner is for people; piped output is just the table. */
	if (isatty(STDOUT_FILENO))
		printf("gpuqd pid %d, up %.1f s, ready in %.1f ms\n",
		       st->broker_pid, (double)st->uptime_ns / 1e9,
		       (double)st->ready_ns / 1e6);
	printf("%-16s %-9s %-4s %-8s %8s %6s %8s %12s %12s %9s %8s %8s\n",
	       "QUEUE", "HANDLER", "BACK", "STATE", "CAPACITY", "CLIENT",
	       "DEPTH", "ENQUEUED", "COMPLETED", "RETRIED", "DEAD", "DLQ");
	for (uint32_t i = 0; i < st->nqueues; i++) {
		const struct proto_qstat *q = &st->q[i];
		printf("%-16s %-9s %-4s %-8s %8u %6u %8" PRIu64 " %12" PRIu64
		       " %12" PRIu64 " %9" PRIu64 " %8" PRIu64 " %8" PRIu64 "\n",
		       q->name, q->handler, backend_name(q->backend),
		       q->paused && q->state == IPC_BROKER_RUNNING ? "paused"
							   : state_name(q->state),
		       q->capacity, q->clients, q->depth,
		       q->enqueued, q->completed, q->retried, q->dead_lettered,
		       q->dlq_pending);
	}
}

static void print_queues(const struct proto_status_ok *st)
{
	if (!json)
		printf("%-16s %-9s %-4s %9s %10s %12s %7s %5s %7s %6s\n", "QUEUE",
		       "HANDLER", "BACK", "CAPACITY", "SLOT_BYTES", "RESULT_BYTES",
		       "ORDERED", "RINGS", "CLIENTS", "PAUSED");
	else
		printf("{\"queues\":[");
	for (uint32_t i = 0; i < st->nqueues; i++) {
		const struct proto_qstat *q = &st->q[i];
		if (json)
			printf("%s{\"name\":\"%s\",\"handler\":\"%s\",\"backend\":"
			       "\"%s\",\"capacity\":%u,\"slot_bytes\":%u,"
			       "\"result_bytes\":%u,\"ordered\":%s,\"rings\":%u,"
			       "\"clients\":%u,\"paused\":%s}",
			       i ? "," : "", q->name, q->handler,
			       backend_name(q->backend), q->capacity, q->slot_bytes,
			       q->result_bytes, q->ordered ? "true" : "false",
			       q->nrings, q->clients, q->paused ? "true" : "false");
		else
			printf("%-16s %-9s %-4s %9u %10u %12u %7s %5u %7u %6s\n",
			       q->name, q->handler, backend_name(q->backend),
			       q->capacity, q->slot_bytes, q->result_bytes,
			       q->ordered ? "yes" : "no", q->nrings, q->clients,
			       q->paused ? "yes" : "no");
	}
	if (json)
		printf("]}\n");
}

static void print_clients(const struct proto_clients_ok *ok)
{
	if (json)
		printf("{\"total\":%u,\"clients\":[", ok->total);
	else
		printf("%-16s %6s %8s %6s %12s %9s %8s %12s\n", "QUEUE", "CLIENT",
		       "PID", "UID", "PUBLISHED", "INFLIGHT", "RESERVED",
		       "HEARTBEAT_MS");
	for (uint32_t i = 0; i < ok->nitems; i++) {
		const struct proto_client_item *c = &ok->items[i];
		if (json)
			printf("%s{\"queue\":\"%s\",\"client\":%u,\"pid\":%d,"
			       "\"uid\":%u,\"published\":%" PRIu64
			       ",\"inflight\":%" PRIu64 ",\"reserved\":%" PRIu64
			       ",\"heartbeat_age_ms\":%.1f}",
			       i ? "," : "", c->queue, c->client, c->pid, c->uid,
			       c->published, c->inflight, c->reserved,
			       (double)c->heartbeat_age_ns / 1e6);
		else
			printf("%-16s %6u %8d %6u %12" PRIu64 " %9" PRIu64
			       " %8" PRIu64 " %12.1f\n",
			       c->queue, c->client, c->pid, c->uid, c->published,
			       c->inflight, c->reserved,
			       (double)c->heartbeat_age_ns / 1e6);
	}
	if (json)
		printf("]}\n");
	else if (ok->total > ok->nitems)
		printf("(%u more)\n", ok->total - ok->nitems);
}

static void print_item(const struct proto_dlq_item *it, int json_first)
{
	if (json)
		printf("%s{\"at\":\"%u:%" PRIu64 "\",\"id\":%" PRIu64
		       ",\"key\":%" PRIu64 ",\"client\":%u,\"pid\":%d,"
		       "\"status\":%d,\"attempts\":%u,\"len\":%u,\"ring\":%u}",
		       json_first ? "" : ",", it->worker, it->pos, it->id,
		       it->key, it->client, it->pid, it->status, it->attempts,
		       it->len, it->ring);
	else
		printf(" %12" PRIu64 " %20" PRIu64 " %6u %8d %6d %8u %8u\n",
		       it->id, it->key, it->client, it->pid, it->status,
		       it->attempts, it->len);
}

static void print_dlq_list(const struct proto_dlq_ok *ok)
{
	if (json) {
		printf("{\"total\":%" PRIu64 ",\"items\":[", ok->total);
		for (uint32_t i = 0; i < ok->nitems; i++)
			print_item(&ok->items[i], i == 0);
		printf("]}\n");
		return;
	}
	printf("%" PRIu64 " dead letters\n", ok->total);
	printf("%-12s %12s %20s %6s %8s %6s %8s %8s\n", "AT", "ID", "KEY",
	       "CLIENT", "PID", "STATUS", "ATTEMPTS", "LEN");
	for (uint32_t i = 0; i < ok->nitems; i++) {
		char at[32];
		snprintf(at, sizeof(at), "%u:%" PRIu64, ok->items[i].worker,
			 ok->items[i].pos);
		printf("%-12s", at);
		print_item(&ok->items[i], 0);
	}
}

static void print_dlq_show(const struct proto_dlq_ok *ok)
{
	const uint8_t *data = (const uint8_t *)&ok->items[1];
	if (json) {
		/* the item, with the payload (as shown) in hex */
		print_item(&ok->items[0], 1);
		printf("\n{\"payload_hex\":\"");
		for (uint32_t i = 0; i < ok->data_len; i++)
			printf("%02x", data[i]);
		printf("\",\"shown\":%u}\n", ok->data_len);
	} else {
		printf("dead letter %u:%" PRIu64 ": id %" PRIu64 " key %" PRIu64
		       " client %u pid %d status %d after %u attempts, %u bytes%s\n",
		       ok->items[0].worker, ok->items[0].pos, ok->items[0].id,
		       ok->items[0].key, ok->items[0].client, ok->items[0].pid,
		       ok->items[0].status, ok->items[0].attempts,
		       ok->items[0].len,
		       ok->data_len < ok->items[0].len ? " (first shown)" : "");
	}
	for (uint32_t i = 0; !json && i < ok->data_len; i += 16) {
		printf("%08x ", i);
		for (uint32_t j = i; j < i + 16 && j < ok->data_len; j++)
			printf(" %02x", data[j]);
		printf("\n");
	}
}

static int parse_count(const char *s, uint64_t *out)
{
	char *end;
	if (!s || !strcmp(s, "all")) {
		*out = UINT64_MAX;
		return 0;
	}
	errno = 0;
	*out = strtoull(s, &end, 10);
	return errno || *end || *s == '-' ? -1 : 0;
}

/* Parse "dlq OP QUEUE [ARGS]" into a request. */
static int parse_dlq(int argc, char **argv, struct proto_dlq_req *r)
{
	char *end;
	memset(r, 0, sizeof(*r));
	if (argc < 3 || strlen(argv[2]) >= sizeof(r->name))
		return -1;
	strcpy(r->name, argv[2]);
	if (!strcmp(argv[1], "ls")) {
		r->op = DLQ_LIST;
		r->pos = argc > 3 ? strtoull(argv[3], NULL, 10) : 0;
		r->count = argc > 4 ? strtoull(argv[4], NULL, 10)
				    : PROTO_DLQ_MAX_ITEMS;
		return argc <= 5 ? 0 : -1;
	}
	if (!strcmp(argv[1], "show")) {
		r->op = DLQ_SHOW;
		if (argc != 4)
			return -1;
		r->worker = (uint32_t)strtoul(argv[3], &end, 10);
		if (*end != ':')
			return -1;
		r->pos = strtoull(end + 1, &end, 10);
		return *end ? -1 : 0;
	}
	if (!strcmp(argv[1], "replay") || !strcmp(argv[1], "purge")) {
		r->op = argv[1][0] == 'r' ? DLQ_REPLAY : DLQ_PURGE;
		return argc <= 4 ? parse_count(argc > 3 ? argv[3] : NULL,
					       &r->count) : -1;
	}
	return -1;
}

static int run(const char *path, int argc, char **argv)
{
	_Alignas(8) uint8_t buf[PROTO_MAX_MSG];
	struct proto_dlq_req dr;
	const struct proto_dlq_ok *ok;
	struct proto_msg m;
	int rc;
	if (!strcmp(argv[0], "stat") && argc == 1) {
		return gpuqctl_stat(path, interval_s, count, json);
	} else if (!strcmp(argv[0], "queues") && argc == 1) {
		rc = request(path, PROTO_STATUS, NULL, 0, buf, sizeof(buf), &m,
			     PROTO_STATUS_OK);
		if (!rc)
			print_queues(m.body);
		return rc;
	} else if (!strcmp(argv[0], "clients") && argc == 1) {
		struct proto_clients_req cr = { 0, 0 };
		rc = request(path, PROTO_CLIENTS, &cr, sizeof(cr), buf, sizeof(buf),
			     &m, PROTO_CLIENTS_OK);
		if (!rc)
			print_clients(m.body);
		return rc;
	} else if ((!strcmp(argv[0], "pause") || !strcmp(argv[0], "resume")) &&
		   argc <= 2) {
		struct proto_name nm;
		memset(&nm, 0, sizeof(nm));
		if (argc == 2 && strlen(argv[1]) >= sizeof(nm.name))
			return 2;
		if (argc == 2)
			strcpy(nm.name, argv[1]);
		rc = request(path, argv[0][0] == 'p' ? PROTO_PAUSE : PROTO_RESUME,
			     &nm, sizeof(nm), buf, sizeof(buf), &m,
			     PROTO_STATUS_OK);
	} else if (!strcmp(argv[0], "status") && argc == 1) {
		rc = request(path, PROTO_STATUS, NULL, 0, buf, sizeof(buf), &m,
			     PROTO_STATUS_OK);
	} else if ((!strcmp(argv[0], "drain") || !strcmp(argv[0], "shutdown")) &&
		   argc == 1) {
		rc = request(path, PROTO_SHUTDOWN, NULL, 0, buf, sizeof(buf), &m,
			     PROTO_STATUS_OK);
	} else if (!strcmp(argv[0], "dlq") && parse_dlq(argc, argv, &dr) == 0) {
		rc = request(path, PROTO_DLQ, &dr, sizeof(dr), buf, sizeof(buf),
			     &m, PROTO_DLQ_OK);
		if (rc)
			return rc;
		ok = m.body;
		/* A show names exactly one dead letter. */
		if (dr.op == DLQ_SHOW && ok->nitems != 1)
			return GPUQ_EPROTO;
		if (dr.op == DLQ_LIST)
			print_dlq_list(ok);
		else if (dr.op == DLQ_SHOW)
			print_dlq_show(ok);
		else if (json)
			printf("{\"done\":%" PRIu64 ",\"total\":%" PRIu64 "}\n",
			       ok->done, ok->total);
		else
			printf("%s %" PRIu64 " dead letters; %" PRIu64 " held\n",
			       dr.op == DLQ_REPLAY ? "replayed" : "purged",
			       ok->done, ok->total);
		return 0;
	} else {
		return 2;
	}
	if (rc)
		return rc;
	if (json)
		print_status_json(m.body);
	else
		print_status_human(m.body);
	return 0;
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "socket", required_argument, NULL, 's' },
		{ "json", no_argument, NULL, 'j' },
		{ "interval", required_argument, NULL, 'i' },
		{ "count", required_argument, NULL, 'n' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	char path[108] = "";
	int o, rc;
	while ((o = getopt_long(argc, argv, "s:ji:n:h", opts, NULL)) != -1) {
		if (o == 's')
			snprintf(path, sizeof(path), "%s", optarg);
		else if (o == 'j')
			json = 1;
		else if (o == 'i')
			interval_s = atof(optarg);
		else if (o == 'n')
			count = atol(optarg);
		else {
			fputs(usage, o == 'h' ? stdout : stderr);
			return o == 'h' ? 0 : 2;
		}
	}
	if (optind >= argc) {
		fputs(usage, stderr);
		return 2;
	}
	if (!path[0] && gpuq_default_socket(path, sizeof(path)))
		return 2;
	rc = run(path, argc - optind, argv + optind);
	if (rc == 2) {
		fprintf(stderr, "gpuqctl: bad command\n%s", usage);
		return 2;
	}
	if (rc) {
		if (json)
			printf("{\"error\":\"%s\",\"message\":\"%s\"}\n",
			       gpuq_err_name(rc), gpuq_strerror(rc));
		fprintf(stderr, "gpuqctl: %s: %s\n", path, gpuq_strerror(rc));
		return 1;
	}
	return 0;
}
