/* errors.c - names and messages for every return code, from the one list
 * in gpuq.h.  Shared by the library, the broker and the tools. */
#include "config.h"

#include <errno.h>
#include <string.h>

#include "libclient/gpuq.h"

GPUQ_API const char *gpuq_strerror(int err)
{
	switch (err) {
	case 0:
		return "success";
#define X(name, value, msg) case value: return msg;
		GPUQ_ERROR_LIST(X)
#undef X
	default:
		break;
	}
	if (err < 0 && err > GPUQ_ERR_BASE)
		return strerrordesc_np(-err) ? strerrordesc_np(-err)
					     : "unknown error";
	return "unknown error";
}

GPUQ_API const char *gpuq_err_name(int err)
{
	switch (err) {
	case 0:
		return "OK";
#define X(name, value, msg) case value: return "GPUQ_" #name;
		GPUQ_ERROR_LIST(X)
#undef X
	default:
		break;
	}
	if (err < 0 && err > GPUQ_ERR_BASE && strerrorname_np(-err))
		return strerrorname_np(-err);
	return "UNKNOWN";
}

GPUQ_API const char *gpuq_version(void) { return PACKAGE_VERSION; }
