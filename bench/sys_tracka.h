/* sys_tracka.h - `gpuq-bench tracka`: Track A next to Redis's own ceiling
 * (sys_tracka.c). */
#ifndef GPUQ_BENCH_SYS_TRACKA_H
#define GPUQ_BENCH_SYS_TRACKA_H

/* The whole mode: argv[0] is "tracka".  Returns the exit status. */
int tracka_bench_main(int argc, char **argv);

#endif
