/*
 * gpuqctl - operator CLI for gpuqd.
 *
 *   gpuqctl [-s SOCKET] [--json] status     queues with their counters
 *   gpuqctl [-s SOCKET] [--json] shutdown   drain and stop the broker
 *
 * Exit codes: 0 ok, 1 broker error or unreachable, 2 usage.
 */
#include "config.h"

#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "ipc/proto.h"
#include "libclient/gpuq.h"

static const char usage[] =
	"usage: gpuqctl [-s SOCKET] [--json] status|shutdown\n";

static int request(const char *path, uint16_t type, void *buf, size_t cap,
		   struct proto_msg *m)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	struct timeval tv = { 5, 0 };
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
	n = proto_encode(buf, cap, type, 1, NULL, 0);
	rc = n < 0 ? n : proto_send(s, buf, (size_t)n, -1);
	if (!rc) {
		n = proto_recv(s, buf, cap, &fd);
		if (fd >= 0)
			close(fd);
		rc = n <= 0 ? (n ? n : GPUQ_EBROKERDEAD)
			    : proto_decode(buf, (size_t)n, m);
	}
	close(s);
	if (!rc && m->hdr.type == PROTO_ERROR)
		rc = ((const struct proto_error *)m->body)->code;
	if (!rc && m->hdr.type != PROTO_STATUS_OK)
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

static void print_json(const struct proto_status_ok *st)
{
	printf("{\"broker_pid\":%d,\"epoch\":\"%016llx\",\"uptime_s\":%.3f,"
	       "\"queues\":[", st->broker_pid, (unsigned long long)st->epoch,
	       (double)st->uptime_ns / 1e9);
	for (uint32_t i = 0; i < st->nqueues; i++) {
		const struct proto_qstat *q = &st->q[i];
		/* Queue and handler names are [A-Za-z0-9_.-]: no escaping. */
		printf("%s{\"name\":\"%s\",\"handler\":\"%s\",\"backend\":\"%s\","
		       "\"state\":\"%s\",\"capacity\":%u,\"slot_bytes\":%u,"
		       "\"result_bytes\":%u,\"clients\":%u,\"depth\":%llu,"
		       "\"enqueued\":%llu,\"completed\":%llu,\"failed\":%llu,"
		       "\"reclaimed\":%llu,\"full_events\":%llu}",
		       i ? "," : "", q->name, q->handler, backend_name(q->backend),
		       state_name(q->state), q->capacity, q->slot_bytes,
		       q->result_bytes, q->clients,
		       (unsigned long long)q->depth,
		       (unsigned long long)q->enqueued,
		       (unsigned long long)q->completed,
		       (unsigned long long)q->failed,
		       (unsigned long long)q->reclaimed,
		       (unsigned long long)q->full_events);
	}
	printf("]}\n");
}

static void print_human(const struct proto_status_ok *st)
{
	printf("gpuqd pid %d, up %.1f s\n", st->broker_pid,
	       (double)st->uptime_ns / 1e9);
	printf("%-16s %-9s %-4s %-8s %8s %6s %8s %12s %12s %8s\n", "QUEUE",
	       "HANDLER", "BACK", "STATE", "CAPACITY", "CLIENT", "DEPTH",
	       "ENQUEUED", "COMPLETED", "FAILED");
	for (uint32_t i = 0; i < st->nqueues; i++) {
		const struct proto_qstat *q = &st->q[i];
		printf("%-16s %-9s %-4s %-8s %8u %6u %8llu %12llu %12llu %8llu\n",
		       q->name, q->handler, backend_name(q->backend),
		       state_name(q->state), q->capacity, q->clients,
		       (unsigned long long)q->depth,
		       (unsigned long long)q->enqueued,
		       (unsigned long long)q->completed,
		       (unsigned long long)q->failed);
	}
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "socket", required_argument, NULL, 's' },
		{ "json", no_argument, NULL, 'j' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	_Alignas(8) uint8_t buf[PROTO_MAX_MSG];
	char path[108] = "";
	struct proto_msg m;
	int json = 0, o, rc;
	uint16_t type;
	while ((o = getopt_long(argc, argv, "s:jh", opts, NULL)) != -1) {
		if (o == 's')
			snprintf(path, sizeof(path), "%s", optarg);
		else if (o == 'j')
			json = 1;
		else {
			fputs(usage, o == 'h' ? stdout : stderr);
			return o == 'h' ? 0 : 2;
		}
	}
	if (optind != argc - 1) {
		fputs(usage, stderr);
		return 2;
	}
	if (!strcmp(argv[optind], "status"))
		type = PROTO_STATUS;
	else if (!strcmp(argv[optind], "shutdown"))
		type = PROTO_SHUTDOWN;
	else {
		fprintf(stderr, "gpuqctl: unknown command '%s'\n%s", argv[optind], usage);
		return 2;
	}
	if (!path[0] && gpuq_default_socket(path, sizeof(path)))
		return 2;
	rc = request(path, type, buf, sizeof(buf), &m);
	if (rc) {
		if (json)
			printf("{\"error\":\"%s\",\"message\":\"%s\"}\n",
			       gpuq_err_name(rc), gpuq_strerror(rc));
		fprintf(stderr, "gpuqctl: %s: %s\n", path, gpuq_strerror(rc));
		return 1;
	}
	if (json)
		print_json(m.body);
	else
		print_human(m.body);
	return 0;
}
