// trap_handler.cu - a handler module for the GPU suite's device fault test:
// the result is the payload length (4 bytes), and a payload that starts
// with "TRAP" executes a trap instruction, which kills the CUDA context.
#define GPUQ_USER_HANDLER trap_handler
#include "gpu/gpuq_handler.cuh"

__device__ int trap_handler(const struct gpuq_hmsg *m, struct gpuq_hres *r)
{
	uint32_t n = m->len;
	if (n >= 4 && m->data[0] == 'T' && m->data[1] == 'R' &&
	    m->data[2] == 'A' && m->data[3] == 'P')
		__trap();
	if (r->cap < 4)
		return 1;
	memcpy(r->data, &n, 4);
	r->len = 4;
	return 0;
}
