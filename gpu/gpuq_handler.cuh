// gpuq_handler.cuh - write a gpuq handler of your own, which gpuqd loads
// at start, with no rebuild of gpuqd.
//
//   #define GPUQ_USER_HANDLER my_handler
//   #include <gpu/gpuq_handler.cuh>
//
//   __device__ int my_handler(const struct gpuq_hmsg *m, struct gpuq_hres *r)
//   {
//           ... read m->data[0 .. m->len), write up to r->cap bytes at
//           r->data, set r->len, return 0 (or non-zero: failed) ...
//   }
//
// Build it into a module (gpu/example_handler.cu is a worked example):
//
//   nvcc -fatbin -std=c++17 -arch=sm_90 -I<gpuq source or include/gpuq>
//        -o my_handler.fatbin my_handler.cu
//
// and name it in the queue's config, with the result room it needs:
//
//   [queue.mine]
//   handler_module = /path/to/my_handler.fatbin
//   result_bytes = 64
//
// The contract (the built-in handlers keep it too, broker/handlers.h):
//  - m->data is the payload, m->len bytes, 16-byte aligned, in global or
//    (a lone message on a stamped queue) shared memory: read it through
//    the generic pointer, not with __ldg, cp.async or anything that
//    assumes global memory; m->id is the producer's message id, m->key
//    its ordering key, m->attempt 1 on the first run, 2 on the first
//    retry, ...
//  - Write at most r->cap bytes at r->data (16-byte aligned, global or
//    shared memory as m->data) and set
//    r->len.  Return 0 for success; any other value is a failure: the
//    message is retried up to the queue's max_attempts, then it goes to the
//    dead-letter queue and the producer gets GPUQ_EHANDLER.
//  - One thread runs one message.  Keep no state between calls other than
//    in the queue's table, do not block, and do not use __syncthreads()
//    (threads of a block run different messages and some run none).
//  - State: with table_slots set, m->table is the queue's hash table in
//    VRAM (broker/kvtable.h: gpuq_kvt_get, _put, _del, _cas_value, and
//    gpuq_kvt_acquire/_release for a read-modify-write under the key's
//    lock); NULL otherwise.  With exactly_once = yes gpuqd runs a key at
//    most once and replays its recorded result (docs/guarantees.md).
//  - A trap or an illegal address kills the CUDA context: see the device
//    fault policy in docs/runbook.md.
//
// The module carries a copy of gpuqd's consumer kernels (gpu/consume.cuh)
// built around the handler, so retries, dead letters, pause and drain work
// as for the built-ins.  gpuqd refuses a module built against another
// version of them (GPUQ_KERNEL_ABI).
#ifndef GPUQ_GPU_GPUQ_HANDLER_CUH
#define GPUQ_GPU_GPUQ_HANDLER_CUH

#ifndef GPUQ_USER_HANDLER
#error "#define GPUQ_USER_HANDLER to your handler's name before including gpuq_handler.cuh"
#endif

#include "gpu/consume.cuh"

#endif
