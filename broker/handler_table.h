/* handler_table.h - built-in handlers by name, and what each needs. */
#ifndef GPUQ_BROKER_HANDLER_TABLE_H
#define GPUQ_BROKER_HANDLER_TABLE_H

#include <stdint.h>

struct handler_info {
	const char *name;
	uint32_t id; /* enum gpuq_handler_id */
	/* Result bytes the handler needs for a payload of slot_bytes. */
	uint32_t (*result_bytes)(uint32_t slot_bytes);
	const char *summary;
};

/* NULL if no built-in handler has that name. */
const struct handler_info *handler_lookup(const char *name);
/* The table, terminated by an entry with name NULL. */
const struct handler_info *handler_all(void);

#endif
