/* SHA-256 (FIPS 180-4), for the digests of artifacts (api/artifact.c): a
 * small portable implementation, so that no crypto library is needed. */
#ifndef OCOLOS_CORE_SHA256_H
#define OCOLOS_CORE_SHA256_H

#include <stddef.h>
#include <stdint.h>

struct core_sha256 {
	uint32_t h[8];
	uint64_t len;		/* bytes hashed so far */
	uint8_t buf[64];	/* a partial block */
	size_t nbuf;
};

void core_sha256_init(struct core_sha256 *s);
void core_sha256_update(struct core_sha256 *s, const void *data, size_t n);
/* The digest of everything hashed since init; `s` must be inited again
 * before another use. */
void core_sha256_final(struct core_sha256 *s, uint8_t out[32]);

#endif
