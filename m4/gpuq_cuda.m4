# GPUQ_CHECK_CUDA: --with-cuda[=DIR] (default: auto-detect).
# Sets NVCC, CUDA_CPPFLAGS, CUDA_LIBS, NVCC_FLAGS, HAVE_CUDA and the
# HAVE_CUDA automake conditional.  The runtime is linked statically
# (cudart_static) so a gpuqd bundle runs on any host with the NVIDIA driver.
AC_DEFUN([GPUQ_CHECK_CUDA], [
  AC_ARG_WITH([cuda],
    [AS_HELP_STRING([--with-cuda@<:@=DIR@:>@],
      [build the CUDA backend (default: auto-detect; DIR defaults to /usr/local/cuda)])],
    [], [with_cuda=check])
  AC_ARG_VAR([NVCC], [CUDA compiler])
  AC_ARG_VAR([CUDA_ARCH], [nvcc -arch list (default: sm_90 with PTX for newer GPUs)])
  gpuq_have_cuda=no
  AS_IF([test "x$with_cuda" != xno], [
    AS_CASE([$with_cuda],
      [yes|check], [cuda_dir=/usr/local/cuda],
      [cuda_dir=$with_cuda])
    AC_PATH_PROG([NVCC], [nvcc], [], [$cuda_dir/bin$PATH_SEPARATOR$PATH])
    AS_IF([test -n "$NVCC" && test -r "$cuda_dir/include/cuda_runtime.h"], [
      gpuq_have_cuda=yes
      CUDA_CPPFLAGS="-I$cuda_dir/include"
      CUDA_LIBS="-L$cuda_dir/lib64 -lcudart_static -ldl -lrt"
      AS_IF([test -z "$CUDA_ARCH"], [CUDA_ARCH="-gencode=arch=compute_90,code=sm_90 -gencode=arch=compute_90,code=compute_90"])
      # -fmad=false: the vector handler must give the same bits as the CPU
      # backend, and gcc does not contract a*b+c on x86-64.
      NVCC_FLAGS="-O2 -std=c++17 -fmad=false $CUDA_ARCH --compiler-options=-Wall,-Wextra,-Werror"
    ], [
      AS_IF([test "x$with_cuda" != xcheck],
        [AC_MSG_ERROR([--with-cuda given but nvcc or cuda_runtime.h not found under $cuda_dir])])
    ])
  ])
  AS_IF([test "x$gpuq_have_cuda" = xyes],
    [AC_DEFINE([HAVE_CUDA], [1], [Build the CUDA backend])])
  AM_CONDITIONAL([HAVE_CUDA], [test "x$gpuq_have_cuda" = xyes])
  AC_SUBST([CUDA_CPPFLAGS])
  AC_SUBST([CUDA_LIBS])
  AC_SUBST([NVCC_FLAGS])
])
