/* runner.h - the main() of every check runner: run one suite, exit 0 only
 * if nothing failed. */
#ifndef GPUQ_TESTS_RUNNER_H
#define GPUQ_TESTS_RUNNER_H

#include <check.h>
#include <stdlib.h>

#define GPUQ_CHECK_MAIN(suite_fn)                                       \
	int main(void)                                                  \
	{                                                               \
		SRunner *sr = srunner_create(suite_fn());               \
		int failed;                                             \
		srunner_run_all(sr, CK_NORMAL);                         \
		failed = srunner_ntests_failed(sr);                     \
		srunner_free(sr);                                       \
		return failed ? EXIT_FAILURE : EXIT_SUCCESS;            \
	}

#endif
