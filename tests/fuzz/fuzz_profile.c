/* The profile writers' input (infer/profile_writer.c, lbr_writer.c,
 * hybrid_writer.c): a sample set as a sampler leaves it, for the fixture.
 * Samples anywhere (inside or outside the binary, in the middle of an
 * instruction, branch stacks of any length) give a profile or
 * OCOLOS_ENOPROFILE, never a crash. Input: 1 byte writer choice and load
 * bias, then records: a tag byte; tag bit 0 clear: one IP (bit 1: a raw 8
 * bytes, else 4 bytes of offset into the image); set: a stack of tag >> 2
 * branches, each two 4-byte offsets. */
#include "core/util.h"
#include "fuzz.h"
#include "infer/hybrid.h"
#include "infer/profile.h"
#include "sample/sample.h"

static uint64_t image_addr(const struct elf_binary *b, uint64_t bias, uint64_t off)
{
	/* The image and a little beyond it on both sides. */
	uint64_t span = b->img_hi - b->img_lo + 0x200;
	return b->img_lo - 0x100 + off % span + bias;
}

static int push_stack(struct sample_set *s, const struct elf_binary *b, uint64_t bias,
		      struct fuzz_in *in, unsigned nr)
{
	if (core_grow((void **)&s->stack_start, &s->cap_stacks, s->nstacks, sizeof(*s->stack_start)))
		return -1;
	s->stack_start[s->nstacks++] = s->nbranches;
	for (unsigned i = 0; i < nr; i++) {
		if (core_grow((void **)&s->branches, &s->cap_branches, s->nbranches,
			      sizeof(*s->branches)))
			return -1;
		uint64_t from = image_addr(b, bias, fuzz_take(in, 4));
		uint64_t to = image_addr(b, bias, fuzz_take(in, 4));
		s->branches[s->nbranches++] = (struct sample_branch){ from, to };
	}
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const struct elf_binary *b = fuzz_fixture();
	struct fuzz_in in = { data, size };
	unsigned mode = (unsigned)fuzz_take(&in, 1);
	uint64_t bias = (uint64_t)(mode >> 2) << 12;
	struct sample_set s = { .event = "cycles" };
	while (in.n) {
		unsigned tag = (unsigned)fuzz_take(&in, 1);
		int rc;
		if (tag & 1)
			rc = push_stack(&s, b, bias, &in, tag >> 2);
		else if (tag & 2)
			rc = sample_set_push(&s, fuzz_take(&in, 8));
		else
			rc = sample_set_push(&s, image_addr(b, bias, fuzz_take(&in, 4)));
		if (rc)
			break;
	}
	struct infer_profile_stats st;
	struct core_err err = { 0 };
	switch (mode & 3) {
	case 0:
		(void)infer_write_preagg(b, bias, &s, "/dev/null", &st, &err);
		break;
	case 1:
		(void)infer_write_lbr(b, bias, &s, "/dev/null", &st, &err);
		break;
	default:
		(void)infer_write_hybrid_flags(b, bias, &s, "/dev/null", (mode & 3) == 3 ? HYBRID_NO_INFER : 0,
					       &st, NULL, &err);
		break;
	}
	sample_set_free(&s);
	return 0;
}
