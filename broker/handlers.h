/*
 * handlers.h - the built-in message handlers, written once.
 *
 * This header compiles as C11 for the CPU backend and as CUDA C++ for the
 * GPU backend, so both backends run the same source: a result computed on
 * either backend is bit-for-bit the same (tests compare them).
 *
 * The handler contract (also for user handlers, docs/design.md):
 *   in:  the message payload (len bytes, 16-byte aligned) and its id;
 *   out: up to res->cap bytes written at res->data, res->len set;
 *   return 0 on success, non-zero to report failure (the producer sees
 *   GPUQ_EHANDLER for that message).
 * Handlers must not keep state between calls or block.
 */
#ifndef GPUQ_BROKER_HANDLERS_H
#define GPUQ_BROKER_HANDLERS_H

#include <stdint.h>
#include <math.h>
#include <pthread.h>
#include <string.h>

#include "ipc/hd.h"
#include "ipc/kvwire.h"
#include "broker/kvtable.h"

struct gpuq_hmsg {
	const uint8_t *data;
	uint32_t len;
	uint32_t attempt; /* 1 on the first run, 2 on the first retry, ... */
	uint64_t id;
	uint64_t key;
	/* The queue's hash table (per-key handler state), or NULL where the
	 * queue has none. */
	const struct gpuq_kvt *table;
};

struct gpuq_hres {
	uint8_t *data;
	uint32_t cap;
	uint32_t len;
};

enum gpuq_handler_id {
	GPUQ_H_ECHO = 1,
	GPUQ_H_CHECKSUM = 2,
	GPUQ_H_VECTOR = 3,
	GPUQ_H_KEYSUM = 4,
	GPUQ_H_KV = 5,
	/* The handler of a module loaded at start (gpu/gpuq_handler.cuh):
	 * only compiled in where GPUQ_USER_HANDLER names it. */
	GPUQ_H_USER = 100,
};

#ifdef GPUQ_USER_HANDLER
__device__ int GPUQ_USER_HANDLER(const struct gpuq_hmsg *m,
				 struct gpuq_hres *r);
#endif

/* Result of the vector handler. */
struct gpuq_vector_result {
	float sum, l2, min, max;
};

/* CRC32C (Castagnoli), reflected, init and final xor 0xffffffff: the iSCSI /
 * ext4 checksum, so results can be checked with any standard tool. */
#define GPUQ_CRC32C_TABLE_INIT {\
	0x00000000u, 0xf26b8303u, 0xe13b70f7u, 0x1350f3f4u, 0xc79a971fu, 0x35f1141cu,\
	0x26a1e7e8u, 0xd4ca64ebu, 0x8ad958cfu, 0x78b2dbccu, 0x6be22838u, 0x9989ab3bu,\
	0x4d43cfd0u, 0xbf284cd3u, 0xac78bf27u, 0x5e133c24u, 0x105ec76fu, 0xe235446cu,\
	0xf165b798u, 0x030e349bu, 0xd7c45070u, 0x25afd373u, 0x36ff2087u, 0xc494a384u,\
	0x9a879fa0u, 0x68ec1ca3u, 0x7bbcef57u, 0x89d76c54u, 0x5d1d08bfu, 0xaf768bbcu,\
	0xbc267848u, 0x4e4dfb4bu, 0x20bd8edeu, 0xd2d60dddu, 0xc186fe29u, 0x33ed7d2au,\
	0xe72719c1u, 0x154c9ac2u, 0x061c6936u, 0xf477ea35u, 0xaa64d611u, 0x580f5512u,\
	0x4b5fa6e6u, 0xb93425e5u, 0x6dfe410eu, 0x9f95c20du, 0x8cc531f9u, 0x7eaeb2fau,\
	0x30e349b1u, 0xc288cab2u, 0xd1d83946u, 0x23b3ba45u, 0xf779deaeu, 0x05125dadu,\
	0x1642ae59u, 0xe4292d5au, 0xba3a117eu, 0x4851927du, 0x5b016189u, 0xa96ae28au,\
	0x7da08661u, 0x8fcb0562u, 0x9c9bf696u, 0x6ef07595u, 0x417b1dbcu, 0xb3109ebfu,\
	0xa0406d4bu, 0x522bee48u, 0x86e18aa3u, 0x748a09a0u, 0x67dafa54u, 0x95b17957u,\
	0xcba24573u, 0x39c9c670u, 0x2a993584u, 0xd8f2b687u, 0x0c38d26cu, 0xfe53516fu,\
	0xed03a29bu, 0x1f682198u, 0x5125dad3u, 0xa34e59d0u, 0xb01eaa24u, 0x42752927u,\
	0x96bf4dccu, 0x64d4cecfu, 0x77843d3bu, 0x85efbe38u, 0xdbfc821cu, 0x2997011fu,\
	0x3ac7f2ebu, 0xc8ac71e8u, 0x1c661503u, 0xee0d9600u, 0xfd5d65f4u, 0x0f36e6f7u,\
	0x61c69362u, 0x93ad1061u, 0x80fde395u, 0x72966096u, 0xa65c047du, 0x5437877eu,\
	0x4767748au, 0xb50cf789u, 0xeb1fcbadu, 0x197448aeu, 0x0a24bb5au, 0xf84f3859u,\
	0x2c855cb2u, 0xdeeedfb1u, 0xcdbe2c45u, 0x3fd5af46u, 0x7198540du, 0x83f3d70eu,\
	0x90a324fau, 0x62c8a7f9u, 0xb602c312u, 0x44694011u, 0x5739b3e5u, 0xa55230e6u,\
	0xfb410cc2u, 0x092a8fc1u, 0x1a7a7c35u, 0xe811ff36u, 0x3cdb9bddu, 0xceb018deu,\
	0xdde0eb2au, 0x2f8b6829u, 0x82f63b78u, 0x709db87bu, 0x63cd4b8fu, 0x91a6c88cu,\
	0x456cac67u, 0xb7072f64u, 0xa457dc90u, 0x563c5f93u, 0x082f63b7u, 0xfa44e0b4u,\
	0xe9141340u, 0x1b7f9043u, 0xcfb5f4a8u, 0x3dde77abu, 0x2e8e845fu, 0xdce5075cu,\
	0x92a8fc17u, 0x60c37f14u, 0x73938ce0u, 0x81f80fe3u, 0x55326b08u, 0xa759e80bu,\
	0xb4091bffu, 0x466298fcu, 0x1871a4d8u, 0xea1a27dbu, 0xf94ad42fu, 0x0b21572cu,\
	0xdfeb33c7u, 0x2d80b0c4u, 0x3ed04330u, 0xccbbc033u, 0xa24bb5a6u, 0x502036a5u,\
	0x4370c551u, 0xb11b4652u, 0x65d122b9u, 0x97baa1bau, 0x84ea524eu, 0x7681d14du,\
	0x2892ed69u, 0xdaf96e6au, 0xc9a99d9eu, 0x3bc21e9du, 0xef087a76u, 0x1d63f975u,\
	0x0e330a81u, 0xfc588982u, 0xb21572c9u, 0x407ef1cau, 0x532e023eu, 0xa145813du,\
	0x758fe5d6u, 0x87e466d5u, 0x94b49521u, 0x66df1622u, 0x38cc2a06u, 0xcaa7a905u,\
	0xd9f75af1u, 0x2b9cd9f2u, 0xff56bd19u, 0x0d3d3e1au, 0x1e6dcdeeu, 0xec064eedu,\
	0xc38d26c4u, 0x31e6a5c7u, 0x22b65633u, 0xd0ddd530u, 0x0417b1dbu, 0xf67c32d8u,\
	0xe52cc12cu, 0x1747422fu, 0x49547e0bu, 0xbb3ffd08u, 0xa86f0efcu, 0x5a048dffu,\
	0x8ecee914u, 0x7ca56a17u, 0x6ff599e3u, 0x9d9e1ae0u, 0xd3d3e1abu, 0x21b862a8u,\
	0x32e8915cu, 0xc083125fu, 0x144976b4u, 0xe622f5b7u, 0xf5720643u, 0x07198540u,\
	0x590ab964u, 0xab613a67u, 0xb831c993u, 0x4a5a4a90u, 0x9e902e7bu, 0x6cfbad78u,\
	0x7fab5e8cu, 0x8dc0dd8fu, 0xe330a81au, 0x115b2b19u, 0x020bd8edu, 0xf0605beeu,\
	0x24aa3f05u, 0xd6c1bc06u, 0xc5914ff2u, 0x37faccf1u, 0x69e9f0d5u, 0x9b8273d6u,\
	0x88d28022u, 0x7ab90321u, 0xae7367cau, 0x5c18e4c9u, 0x4f48173du, 0xbd23943eu,\
	0xf36e6f75u, 0x0105ec76u, 0x12551f82u, 0xe03e9c81u, 0x34f4f86au, 0xc69f7b69u,\
	0xd5cf889du, 0x27a40b9eu, 0x79b737bau, 0x8bdcb4b9u, 0x988c474du, 0x6ae7c44eu,\
	0xbe2da0a5u, 0x4c4623a6u, 0x5f16d052u, 0xad7d5351u,\
}

/*
 * CRC32C by slicing-by-8: eight tables, t[k][i] being the CRC of byte i
 * followed by k zero bytes, so eight bytes take eight independent lookups
 * instead of a chain of eight dependent ones.  On the GPU that chain was
 * most of a 256-byte message's handler time, and the tables live in shared
 * memory (filled by gpuq_handlers_block_init() when a kernel starts): a
 * warp's 32 lanes looking up random entries of a global table serialise
 * on cache lines.  The host builds its copy once.
 */
typedef uint32_t gpuq_crc_tables[8][256];

GPUQ_HD void gpuq_crc32c_fill_column(gpuq_crc_tables t, const uint32_t *base,
				     uint32_t i)
{
	t[0][i] = base[i];
	for (int k = 1; k < 8; k++)
		t[k][i] = (t[k - 1][i] >> 8) ^ base[t[k - 1][i] & 0xffu];
}

#ifdef __CUDACC__
static __device__ const uint32_t gpuq_crc32c_table_d[256] =
	GPUQ_CRC32C_TABLE_INIT;
static __shared__ gpuq_crc_tables gpuq_crc32c_smem;

/* Every thread of a block calls this once before any handler runs. */
__device__ inline void gpuq_handlers_block_init(void)
{
	for (uint32_t i = threadIdx.x; i < 256; i += blockDim.x)
		gpuq_crc32c_fill_column(gpuq_crc32c_smem, gpuq_crc32c_table_d, i);
	__syncthreads();
}
#endif

static const uint32_t gpuq_crc32c_table_h[256] = GPUQ_CRC32C_TABLE_INIT;
static gpuq_crc_tables gpuq_crc32c_tables_h;
static pthread_once_t gpuq_crc32c_once = PTHREAD_ONCE_INIT;

static void gpuq_crc32c_init_host(void)
{
	for (uint32_t i = 0; i < 256; i++)
		gpuq_crc32c_fill_column(gpuq_crc32c_tables_h, gpuq_crc32c_table_h, i);
}

/* Eight bytes (lo, hi: little-endian words) into the CRC. */
GPUQ_HD uint32_t gpuq_crc32c_step8(const uint32_t (*t)[256], uint32_t crc,
				   uint32_t lo, uint32_t hi)
{
	lo ^= crc;
	return t[7][lo & 0xffu] ^ t[6][(lo >> 8) & 0xffu] ^
	       t[5][(lo >> 16) & 0xffu] ^ t[4][lo >> 24] ^ t[3][hi & 0xffu] ^
	       t[2][(hi >> 8) & 0xffu] ^ t[1][(hi >> 16) & 0xffu] ^
	       t[0][hi >> 24];
}

GPUQ_HD uint32_t gpuq_crc32c_update(uint32_t crc, const uint8_t *p, uint32_t n)
{
#ifdef __CUDA_ARCH__
	const uint32_t(*t)[256] = gpuq_crc32c_smem;
#else
	const uint32_t(*t)[256] = gpuq_crc32c_tables_h;
	pthread_once(&gpuq_crc32c_once, gpuq_crc32c_init_host);
#endif
#ifdef __CUDA_ARCH__
	/* Payloads are 16-byte aligned: one load per 16 bytes, unrolled so
	 * that the next loads are in flight while the lookups run (a single
	 * message's handler is on the round-trip path, and each dependent
	 * load from a line copy_in just wrote costs an L2 trip). */
	if (((uintptr_t)p & 15u) == 0) {
#pragma unroll 4
		for (; n >= 16; p += 16, n -= 16) {
			uint4 w = *(const uint4 *)p;
			crc = gpuq_crc32c_step8(t, crc, w.x, w.y);
			crc = gpuq_crc32c_step8(t, crc, w.z, w.w);
		}
	}
#endif
	for (; n >= 8; p += 8, n -= 8) {
		uint32_t lo, hi;
		memcpy(&lo, p, 4); /* little-endian, as x86 and GPUs */
		memcpy(&hi, p + 4, 4);
		crc = gpuq_crc32c_step8(t, crc, lo, hi);
	}
	for (; n; p++, n--)
		crc = t[0][(crc ^ *p) & 0xffu] ^ (crc >> 8);
	return crc;
}

GPUQ_HD uint32_t gpuq_crc32c(const uint8_t *p, uint32_t n)
{
	return gpuq_crc32c_update(0xffffffffu, p, n) ^ 0xffffffffu;
}

/* memcpy, but on the GPU by 16 bytes where both ends allow it: a device
 * memcpy of a run-time length goes byte by byte, and one thread copying
 * 256 bytes that way took 8 us of a single message's round trip. */
GPUQ_HD void gpuq_copy(uint8_t *dst, const uint8_t *src, uint32_t n)
{
#ifdef __CUDA_ARCH__
	if ((((uintptr_t)dst | (uintptr_t)src) & 15u) == 0) {
		uint32_t k = n / 16;
#pragma unroll 4
		for (uint32_t i = 0; i < k; i++)
			((uint4 *)dst)[i] = ((const uint4 *)src)[i];
		dst += 16 * k;
		src += 16 * k;
		n -= 16 * k;
	}
#endif
	memcpy(dst, src, n);
}

/* echo: the result is the payload.  Needs result room >= slot size, which
 * the broker checks when it creates the queue. */
GPUQ_HD int gpuq_handler_echo(const struct gpuq_hmsg *m, struct gpuq_hres *r)
{
	if (m->len > r->cap)
		return 1;
	gpuq_copy(r->data, m->data, m->len);
	r->len = m->len;
	return 0;
}

/* checksum: 4-byte little-endian CRC32C of the payload. */
GPUQ_HD int gpuq_handler_checksum(const struct gpuq_hmsg *m,
				  struct gpuq_hres *r)
{
	uint32_t c = gpuq_crc32c(m->data, m->len);
	if (r->cap < 4)
		return 1;
	memcpy(r->data, &c, 4);
	r->len = 4;
	return 0;
}

/* vector: payload is float32[len / 4]; result is sum, L2 norm, min, max.
 * A length that is not a multiple of 4 is a failure, not a guess. */
GPUQ_HD int gpuq_handler_vector(const struct gpuq_hmsg *m, struct gpuq_hres *r)
{
	struct gpuq_vector_result v;
	uint32_t n = m->len / 4;
	float sq = 0.0f;
	if (m->len == 0 || m->len % 4 != 0 || r->cap < sizeof(v))
		return 1;
	v.sum = 0.0f;
	memcpy(&v.min, m->data, 4);
	v.max = v.min;
	for (uint32_t i = 0; i < n; i++) {
		float x;
		memcpy(&x, m->data + 4 * i, 4);
		v.sum += x;
		sq += x * x;
		v.min = x < v.min ? x : v.min;
		v.max = x > v.max ? x : v.max;
	}
	v.l2 = sqrtf(sq);
	memcpy(r->data, &v, sizeof(v));
	r->len = sizeof(v);
	return 0;
}

/*
 * keysum: per-key state in the queue's table.  Payload: a uint64 state key,
 * then float32 values (none is allowed).  The key's record, a running
 * count of values and their sum in double precision, is updated in place
 * and returned as the result.  Fails without a table, on a length that is
 * not 8 + a multiple of 4, or when the table is full (nothing changed).
 */
struct gpuq_keysum_result {
	uint64_t count;
	double sum;
};

GPUQ_HD int gpuq_handler_keysum(const struct gpuq_hmsg *m, struct gpuq_hres *r)
{
	struct gpuq_keysum_result k;
	struct gpuq_kvt_hold h;
	uint8_t *val;
	uint32_t vlen, n = (m->len - 8) / 4;
	int created;
	double add = 0.0;
	if (!m->table || m->len < 8 || (m->len - 8) % 4 ||
	    r->cap < sizeof(k))
		return 1;
	for (uint32_t i = 0; i < n; i++) {
		float x;
		memcpy(&x, m->data + 8 + 4 * i, 4);
		add += x;
	}
	if (gpuq_kvt_acquire(m->table, m->data, 8, 1, sizeof(k), &h, &val,
			     &vlen, &created))
		return 1;
	memcpy(&k, val, sizeof(k)); /* all zero when created */
	k.count += n;
	k.sum += add;
	memcpy(val, &k, sizeof(k));
	gpuq_kvt_release(m->table, &h, sizeof(k));
	memcpy(r->data, &k, sizeof(k));
	r->len = sizeof(k);
	return 0;
}

/*
 * kv: a batch of get / put / delete operations on the queue's table
 * (ipc/kvwire.h), each answered in order with its own status; the
 * client's gpuq_kv_* calls write and read these.  Puts are upserts.  A
 * malformed request (or no table, or no room for the reply) fails the
 * message before any op runs; an operation the table refuses (too long a key or value, a
 * full table, no such key) is that operation's status, not a failure.
 */
/* A kv request's header is well formed, with room for its offset
 * table; *nops gets its op count. */
GPUQ_HD int gpuq_kv_header_ok(const uint8_t *p, uint32_t len, uint32_t cap,
			      uint16_t *nops)
{
	if (len < GPUQ_KVW_HDR || p[0] != GPUQ_KVW_VERSION || cap < GPUQ_KVW_HDR)
		return 0;
	memcpy(nops, p + 2, 2);
	return len - GPUQ_KVW_HDR >= 2u * *nops;
}

/* Op i of a request whose header is well formed: a known op, starting
 * where off[i] says, inside the ops area, and ending where op i + 1 (or,
 * for the last, the offset table) begins; so the ops are contiguous from
 * off[0] = 4 on.  *rbytes gets its reply record's size.  Each op is
 * checked on its own, so the CUDA backend checks 32 at once. */
GPUQ_HD int gpuq_kv_op_ok(const uint8_t *p, uint32_t len, uint32_t nops,
			  uint32_t i, uint32_t *rbytes)
{
	uint32_t tab = gpuq_kvw_off_at(len, nops, 0);
	uint32_t off = gpuq_kvw_off(p, len, nops, i), ob, next;
	struct gpuq_kvw_op_hdr o;
	if ((i == 0 && off != GPUQ_KVW_HDR) || off < GPUQ_KVW_HDR ||
	    off > tab || tab - off < GPUQ_KVW_OP_HDR)
		return 0;
	memcpy(&o, p + off, sizeof(o));
	if (o.op < GPUQ_KVW_GET || o.op > GPUQ_KVW_DEL)
		return 0;
	ob = gpuq_kvw_op_bytes(o.op, o.klen, o.vlen);
	next = i + 1 < nops ? gpuq_kvw_off(p, len, nops, i + 1) : tab;
	if (tab - off < ob || next != off + ob)
		return 0;
	*rbytes = gpuq_kvw_res_bytes(o.op, o.vlen);
	return 1;
}

/* A kv request is well formed: its header, every op, and replies that
 * fit cap.  Checked whole before any op runs, so a bad request changes
 * nothing (and a retry of it nothing either). */
GPUQ_HD int gpuq_kv_request_ok(const uint8_t *p, uint32_t len, uint32_t cap)
{
	uint32_t need = GPUQ_KVW_HDR, rb;
	uint16_t nops;
	if (!gpuq_kv_header_ok(p, len, cap, &nops))
		return 0;
	for (uint32_t i = 0; i < nops; i++) {
		if (!gpuq_kv_op_ok(p, len, nops, i, &rb))
			return 0;
		need += rb;
		if (need > cap)
			return 0;
	}
	return 1;
}

/*
 * One operation of a well-formed request: op points at its header, res at
 * its reply record (gpuq_kvw_res_bytes bytes, all written: a GET's unused
 * value room is zeroed, so no earlier result's bytes show through).  The
 * CPU handler calls it for each op in turn; the CUDA backend calls it from
 * a lane of a warp per op (gpu/kv_warp.cuh).  Returns the op's request
 * bytes.
 */
GPUQ_HD uint32_t gpuq_kv_op(const struct gpuq_kvt *t, const uint8_t *op,
			    uint8_t *res)
{
	struct gpuq_kvw_op_hdr o;
	struct gpuq_kvw_res_hdr rh = { 0, 0, 0 };
	const uint8_t *key = op + GPUQ_KVW_OP_HDR;
	uint32_t vl = 0;
	memcpy(&o, op, sizeof(o));
	if (o.op == GPUQ_KVW_GET) {
		rh.status = gpuq_kvt_get(t, key, o.klen, res + GPUQ_KVW_RES_HDR,
					 o.vlen, &vl);
		if (!rh.status) {
			rh.len = (uint16_t)vl;
			rh.n = (uint16_t)(vl < o.vlen ? vl : o.vlen);
		}
		memset(res + GPUQ_KVW_RES_HDR + rh.n, 0, o.vlen - rh.n);
	} else if (o.op == GPUQ_KVW_PUT) {
		rh.status = gpuq_kvt_put(t, key, o.klen, key + o.klen, o.vlen,
					 GPUQ_KVT_UPSERT);
	} else {
		rh.status = gpuq_kvt_del(t, key, o.klen);
	}
	memcpy(res, &rh, sizeof(rh));
	return gpuq_kvw_op_bytes(o.op, o.klen, o.vlen);
}

/* The reply header; returns the reply's first record. */
GPUQ_HD uint8_t *gpuq_kv_reply_hdr(const uint8_t *req, uint8_t *out)
{
	memcpy(out, req + 2, 2); /* nops */
	memset(out + 2, 0, 2);
	return out + GPUQ_KVW_HDR;
}

GPUQ_HD int gpuq_handler_kv(const struct gpuq_hmsg *m, struct gpuq_hres *r)
{
	const uint8_t *p = m->data + GPUQ_KVW_HDR;
	uint8_t *out;
	uint16_t nops;
	if (!m->table || !gpuq_kv_request_ok(m->data, m->len, r->cap))
		return 1;
	memcpy(&nops, m->data + 2, 2);
	out = gpuq_kv_reply_hdr(m->data, r->data);
	for (uint32_t i = 0; i < nops; i++) {
		struct gpuq_kvw_op_hdr o;
		memcpy(&o, p, sizeof(o));
		p += gpuq_kv_op(m->table, p, out); /* contiguous: checked */
		out += gpuq_kvw_res_bytes(o.op, o.vlen);
	}
	r->len = (uint32_t)(out - r->data);
	return 0;
}

/* Dispatch by id: a switch, not function pointers, so the same code works
 * in device code without relocatable device linking. */
GPUQ_HD int gpuq_handler_run(uint32_t id, const struct gpuq_hmsg *m,
			     struct gpuq_hres *r)
{
	switch (id) {
	case GPUQ_H_ECHO:
		return gpuq_handler_echo(m, r);
	case GPUQ_H_CHECKSUM:
		return gpuq_handler_checksum(m, r);
	case GPUQ_H_VECTOR:
		return gpuq_handler_vector(m, r);
	case GPUQ_H_KEYSUM:
		return gpuq_handler_keysum(m, r);
	case GPUQ_H_KV:
		return gpuq_handler_kv(m, r);
#if defined(GPUQ_USER_HANDLER) && defined(__CUDA_ARCH__)
	case GPUQ_H_USER:
		return GPUQ_USER_HANDLER(m, r);
#endif
	default:
		return 1;
	}
}

/* ---- retries and fault injection (both backends) ---- */

/* Fault injection: a queue's fail_ppm chooses messages by a hash of their
 * id; a chosen message fails its first fail_attempts runs (0 = every run).
 * Deterministic, so a test can compute exactly which messages end in the
 * dead-letter queue. */
#define GPUQ_HANDLER_INJECTED 99 /* the code an injected failure returns */

struct gpuq_fault {
	uint32_t ppm;
	uint32_t fail_attempts;
};

GPUQ_HD uint64_t gpuq_fault_mix(uint64_t x)
{
	/* splitmix64's finaliser */
	x ^= x >> 30;
	x *= 0xbf58476d1ce4e5b9ull;
	x ^= x >> 27;
	x *= 0x94d049bb133111ebull;
	return x ^ (x >> 31);
}

GPUQ_HD int gpuq_fault_chosen(const struct gpuq_fault *f, uint64_t id)
{
	/* Salted so the choice does not line up with key -> ring hashing. */
	return f->ppm &&
	       gpuq_fault_mix(id ^ 0x6661756c74ull) % 1000000u < f->ppm;
}

GPUQ_HD int gpuq_fault_fails(const struct gpuq_fault *f, uint64_t id,
			     uint32_t attempt)
{
	return gpuq_fault_chosen(f, id) &&
	       (f->fail_attempts == 0 || attempt <= f->fail_attempts);
}

/*
 * Run handler on m up to max_attempts times, stopping at the first success.
 * Retries happen in place, before the slot is released, so a retried
 * message keeps its position (per-key order holds across retries).
 * Returns 0 or the last failure code; *attempts says how many runs.
 */
GPUQ_HD int gpuq_handle(uint32_t handler, struct gpuq_hmsg *m,
			struct gpuq_hres *r, const struct gpuq_fault *f,
			uint32_t max_attempts, uint32_t *attempts)
{
	int rc = 1;
	uint32_t a;
	for (a = 1; a <= max_attempts; a++) {
		m->attempt = a;
		r->len = 0;
		rc = gpuq_fault_fails(f, m->id, a)
			     ? GPUQ_HANDLER_INJECTED
			     : gpuq_handler_run(handler, m, r);
		if (rc == 0)
			break;
	}
	*attempts = a > max_attempts ? max_attempts : a;
	return rc;
}

/* ---- exactly-once (queues with exactly_once = yes) ---- */

/*
 * A message's key is its idempotency key.  The first successful run of a
 * key records its result in the queue's dedupe table (a separate table
 * from handler state, so that the dedupe lock, taken first, and a state
 * lock taken by the handler never wait on each other in a cycle); a later
 * message with the same key, within window_ns of that run (0: forever),
 * gets the recorded result and the handler does not run.  The key's lock
 * is held across the run, so two copies of one key never run at once.
 * A failed run records nothing: the key may run again (its dead letter
 * can be replayed).
 */
struct gpuq_once_rec {
	uint64_t done_ns; /* when the recorded run finished; 0: none */
	uint32_t len;     /* result bytes, which follow */
	uint32_t pad;
};

#ifdef __CUDACC__
/* The clock of exactly-once records on the GPU: nanoseconds by its global
 * timer (the consumer kernels stamp records, and expire them in their
 * housekeeping; gpu/maint.cuh). */
__device__ inline uint64_t gpuq_once_now_ns(void)
{
	uint64_t t;
	asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t));
	return t;
}
#endif

/* Value bytes a dedupe table needs for results of result_bytes. */
GPUQ_HD uint32_t gpuq_once_value_bytes(uint32_t result_bytes)
{
	return (uint32_t)sizeof(struct gpuq_once_rec) + result_bytes;
}

/* Is the record a live one?  now_ns is read before the key's lock is
 * taken, so a record written while waiting for it is newer than now_ns:
 * that one is live too (the difference must not wrap into "expired"). */
GPUQ_HD int gpuq_once_live(const struct gpuq_once_rec *rec, uint64_t now_ns,
			   uint64_t window_ns)
{
	return rec->done_ns &&
	       (window_ns == 0 || now_ns <= rec->done_ns ||
		now_ns - rec->done_ns < window_ns);
}

/*
 * Expire the record in slot i of a dedupe table if its window has passed.
 * The key is acquired like any writer's, so a record in use is never
 * pulled out from under a run.  A record with done_ns 0 (a run that left
 * nothing behind) goes too.  Returns 1 if the slot was emptied.  The host
 * sweep (broker/queue_table.c) and the GPU's (gpu/maint.cuh) both call
 * this.
 */
GPUQ_HD int gpuq_once_expire(const struct gpuq_kvt *once, uint64_t i,
			     uint64_t now_ns, uint64_t window_ns)
{
	struct gpuq_kvt_hold h;
	struct gpuq_once_rec rec;
	uint8_t key[GPUQ_KVT_KEY_MAX], *val;
	uint32_t klen, vlen;
	int created;
	if (gpuq_kvt_slot_key(once, i, key, &klen) ||
	    gpuq_kvt_acquire(once, key, klen, 0, 0, &h, &val, &vlen, &created))
		return 0;
	memcpy(&rec, val, sizeof(rec));
	if (!gpuq_once_live(&rec, now_ns, window_ns)) {
		gpuq_kvt_release_delete(once, &h);
		return 1;
	}
	gpuq_kvt_release(once, &h, vlen);
	return 0;
}

/*
 * gpuq_handle, at most once per key.  *refused gets a gpuq code when the
 * message could not be checked, and then nothing ran: GPUQ_EKEYSIZE (key
 * 0: no idempotency key) or GPUQ_ETABLEFULL.  *replayed is 1 when the
 * result is a recorded one (*attempts is then 0).
 */
GPUQ_HD int gpuq_handle_once(uint32_t handler, struct gpuq_hmsg *m,
			     struct gpuq_hres *r, const struct gpuq_fault *f,
			     uint32_t max_attempts, uint32_t *attempts,
			     const struct gpuq_kvt *once, uint64_t now_ns,
			     uint64_t window_ns, int *refused, int *replayed)
{
	struct gpuq_kvt_hold h;
	struct gpuq_once_rec rec;
	uint8_t *val;
	uint32_t vlen;
	int created, rc;
	*attempts = 0;
	*replayed = 0;
	*refused = m->key ? gpuq_kvt_acquire(once, &m->key, 8, 1, sizeof(rec),
					     &h, &val, &vlen, &created)
			  : GPUQ_EKEYSIZE;
	if (*refused)
		return 1;
	memcpy(&rec, val, sizeof(rec));
	if (!created && gpuq_once_live(&rec, now_ns, window_ns)) {
		r->len = rec.len <= r->cap ? rec.len : r->cap;
		gpuq_copy(r->data, val + sizeof(rec), r->len);
		gpuq_kvt_release(once, &h, vlen);
		*replayed = 1;
		return 0;
	}
	rc = gpuq_handle(handler, m, r, f, max_attempts, attempts);
	if (rc || sizeof(rec) + r->len > once->value_bytes) {
		gpuq_kvt_release_delete(once, &h);
		return rc;
	}
	rec.done_ns = now_ns ? now_ns : 1;
	rec.len = r->len;
	rec.pad = 0;
	memcpy(val, &rec, sizeof(rec));
	gpuq_copy(val + sizeof(rec), r->data, r->len);
	gpuq_kvt_release(once, &h, (uint32_t)sizeof(rec) + r->len);
	return 0;
}

#endif
