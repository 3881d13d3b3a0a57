/*
 * hd.h - GPUQ_HD, the storage class of code written once for the host and
 * the device: static inline in C, __host__ __device__ __forceinline__ in
 * CUDA (handlers.h, kvtable.h).
 */
#ifndef GPUQ_IPC_HD_H
#define GPUQ_IPC_HD_H

#ifdef __CUDACC__
#define GPUQ_HD __host__ __device__ __forceinline__
#else
#define GPUQ_HD static inline
#endif

#endif
