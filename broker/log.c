/* log.c - gpuqd's log lines on stderr (journald adds the timestamps). */
#include "config.h"

#include <stdarg.h>
#include <stdio.h>
#include <unistd.h>

#include "broker/broker.h"

int blog_verbose;

void blog(int level, const char *fmt, ...)
{
	char line[512];
	va_list ap;
	if (level > blog_verbose)
		return;
	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	/* One write per line, so lines from threads never interleave. */
	dprintf(STDERR_FILENO, "gpuqd[%d]: %s\n", (int)getpid(), line);
}
