// example_handler.cu - a worked example of a handler module: the result is
// the payload with ASCII letters upper-cased, and a payload that holds a
// NUL byte is refused (a failure, so it ends in the dead-letter queue).
//
// Build (make does this when CUDA is configured):
//   nvcc -fatbin -std=c++17 -arch=sm_90 -I$GPUQ_SRC
//        -o example_handler.fatbin gpu/example_handler.cu
// Run:
//   gpuqd -q 'upper,handler_module=./example_handler.fatbin,result_bytes=256'
#define GPUQ_USER_HANDLER upper_handler
#include "gpu/gpuq_handler.cuh"

__device__ int upper_handler(const struct gpuq_hmsg *m, struct gpuq_hres *r)
{
	if (m->len > r->cap)
		return 1;
	for (uint32_t i = 0; i < m->len; i++) {
		uint8_t c = m->data[i];
		if (c == 0)
			return 2;
		r->data[i] = c >= 'a' && c <= 'z' ? (uint8_t)(c - 32) : c;
	}
	r->len = m->len;
	return 0;
}
