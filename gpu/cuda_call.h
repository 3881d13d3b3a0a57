// cuda_call.h - CUDA_CALL, for gpuqd's CUDA backend (backend_cuda.cu,
// tables_cuda.cu): every runtime call goes through it, so a failure is
// logged naming the call, and the expression's value is the error.
#ifndef GPUQ_GPU_CUDA_CALL_H
#define GPUQ_GPU_CUDA_CALL_H

#include <cuda_runtime.h>

extern "C" {
#include "broker/broker.h" /* blog */
}

#define CUDA_CALL(call)                                                      \
	({                                                                   \
		cudaError_t e_ = (call);                                     \
		if (e_ != cudaSuccess)                                       \
			blog(0, "%s:%d: %s: %s", __FILE__, __LINE__, #call,  \
			     cudaGetErrorString(e_));                        \
		e_;                                                          \
	})

#endif
