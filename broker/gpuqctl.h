/* gpuqctl.h - the parts of gpuqctl that live in their own files. */
#ifndef GPUQ_BROKER_GPUQCTL_H
#define GPUQ_BROKER_GPUQCTL_H

/* gpuqctl stat: counters from shared memory, once (interval_s <= 0) or every
 * interval_s seconds, count times (count <= 0: until interrupted).
 * Returns 0 or a gpuq error. */
int gpuqctl_stat(const char *socket_path, double interval_s, long count,
		 int json);

#endif
