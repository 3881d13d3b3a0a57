/*
 * lin_table.h - one operation of a linearizability history (lincheck.h)
 * run on the hash table (broker/kvtable.h), written once for the host test
 * (check_kvtable, threads) and the GPU one (tests/gpu_kvt.cu, warps).
 * Key k is the single byte 'a' + k; values are 8 bytes.
 */
#ifndef GPUQ_TESTS_LIN_TABLE_H
#define GPUQ_TESTS_LIN_TABLE_H

#include "broker/kvtable.h"
#include "ipc/hd.h"
#include "tests/lincheck.h"

/* Run o (its kind, arg and expect already set) on key k: sets o->rc and
 * o->res, and *seen to the value it read or wrote (the next CAS's
 * expectation).  The caller stamps o->inv and o->resp around it. */
GPUQ_HD void lin_apply(const struct gpuq_kvt *t, int k, struct lin_op *o,
		       uint64_t *seen)
{
	uint8_t kb = (uint8_t)('a' + k);
	uint64_t v = 0;
	uint32_t len;
	o->res = 0;
	switch (o->k) {
	case LIN_GET:
		o->rc = gpuq_kvt_get(t, &kb, 1, &v, 8, &len);
		o->res = o->rc ? 0 : v;
		break;
	case LIN_UPSERT:
	case LIN_INSERT:
	case LIN_UPDATE:
		o->rc = gpuq_kvt_put(t, &kb, 1, &o->arg, 8,
				     o->k == LIN_UPSERT ? GPUQ_KVT_UPSERT
				     : o->k == LIN_INSERT ? GPUQ_KVT_INSERT
							 : GPUQ_KVT_UPDATE);
		break;
	case LIN_DEL:
		o->rc = gpuq_kvt_del(t, &kb, 1);
		break;
	default:
		o->rc = gpuq_kvt_cas_value(t, &kb, 1, &o->expect, 8, &o->arg, 8);
		break;
	}
	if (o->k == LIN_GET && !o->rc)
		*seen = v;
	else if (o->rc == 0 && o->k != LIN_DEL && o->k != LIN_GET)
		*seen = o->arg;
}

/* The value key k holds now (0: absent). */
GPUQ_HD uint64_t lin_value(const struct gpuq_kvt *t, int k)
{
	uint8_t kb = (uint8_t)('a' + k);
	uint64_t v = 0;
	uint32_t len;
	return gpuq_kvt_get(t, &kb, 1, &v, 8, &len) ? 0 : v;
}

#endif
