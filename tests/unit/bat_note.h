/*
 * Byte builders for hand-made BAT notes in the unit tests (the note layout
 * is described in lib/elf/bat.c). Only the encodings live here; what the
 * bytes mean is written next to each note in the tests.
 */
#ifndef OCOLOS_TEST_BAT_NOTE_H
#define OCOLOS_TEST_BAT_NOTE_H

#include <stdint.h>
#include <string.h>

struct buf {
	uint8_t b[512];
	size_t n;
};

static inline void byte(struct buf *o, uint8_t v) { o->b[o->n++] = v; }

static inline void uleb(struct buf *o, uint64_t v)
{
	do {
		uint8_t c = v & 0x7f;
		v >>= 7;
		byte(o, c | (v ? 0x80 : 0));
	} while (v);
}

static inline void sleb(struct buf *o, int64_t v)
{
	for (;;) {
		uint8_t c = v & 0x7f;
		v >>= 7; /* arithmetic on gcc/clang */
		if ((v == 0 && !(c & 0x40)) || (v == -1 && (c & 0x40))) {
			byte(o, c);
			return;
		}
		byte(o, c | 0x80);
	}
}

static inline void u64le(struct buf *o, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		byte(o, (uint8_t)(v >> (8 * i)));
}

static inline void u32le(struct buf *o, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		byte(o, (uint8_t)(v >> (8 * i)));
}

/* The header for a descriptor of `descsz` bytes: namesz 5, "BOLT\0" + pad. */
static inline void header(struct buf *o, uint32_t descsz, uint32_t type)
{
	u32le(o, 5);
	u32le(o, descsz);
	u32le(o, type);
	memcpy(o->b + o->n, "BOLT\0\0\0", 8);
	o->n += 8;
}

/* The whole note: header for `d`'s bytes with note type `type`, then `d`. */
static inline void note(struct buf *o, const struct buf *d, uint32_t type)
{
	o->n = 0;
	header(o, (uint32_t)d->n, type);
	memcpy(o->b + o->n, d->b, d->n);
	o->n += d->n;
}

#endif
