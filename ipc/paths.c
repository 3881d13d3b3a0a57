/* paths.c - where the control socket lives by default; the broker, the
 * library and gpuqctl must agree, so this is the one definition. */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "libclient/gpuq.h"

GPUQ_API int gpuq_default_socket(char *buf, size_t cap)
{
	const char *env = getenv("GPUQ_SOCKET");
	const char *xdg = getenv("XDG_RUNTIME_DIR");
	int n;
	if (!buf)
		return -EINVAL;
	if (env && *env)
		n = snprintf(buf, cap, "%s", env);
	else if (xdg && *xdg)
		n = snprintf(buf, cap, "%s/gpuq/gpuqd.sock", xdg);
	else if (geteuid() == 0)
		n = snprintf(buf, cap, "/run/gpuq/gpuqd.sock");
	else
		n = snprintf(buf, cap, "/tmp/gpuq-%u/gpuqd.sock",
			     (unsigned)geteuid());
	return (n < 0 || (size_t)n >= cap) ? -ENAMETOOLONG : 0;
}
