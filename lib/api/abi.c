/*
 * The ABI of the structs that cross the API, the libbpf way. Every one
 * starts with `size_t sz`, the size the caller was compiled with.
 *
 * Options (read): only up to offsetofend of the last field this library
 * knows, not sizeof: a field a newer header appends may sit in what is
 * padding here, and bytes there must be zero, or a setting would be
 * silently ignored. Results (written): never past the caller's sz (an older
 * caller's struct is smaller), and the fields of a newer caller's struct
 * that this library does not know are zeroed.
 */
#include <stdint.h>
#include <string.h>

#include "api/api.h"

int api_read_opts(const void *in, void *out, size_t out_size, size_t known, const char *what,
		  struct core_err *err)
{
	memset(out, 0, out_size);
	if (!in)
		return 0;
	size_t sz;
	memcpy(&sz, in, sizeof(sz));
	if (sz < sizeof(size_t))
		return core_errf(err, OCOLOS_EINVAL,
				 "%s.sz is %zu: fill options with OCOLOS_OPTS(%s, ...) (or set sz = "
				 "sizeof(struct %s))", what, sz, what, what);
	memcpy(out, in, sz < known ? sz : known);
	for (size_t i = known; i < sz; i++)
		if (((const unsigned char *)in)[i])
			return core_errf(err, OCOLOS_EINVAL,
					 "struct %s has a non-zero byte at offset %zu, past its last field "
					 "this libocolos (%s) knows (which ends at offset %zu): the program "
					 "was built against a newer header and sets an option this library "
					 "would ignore; upgrade libocolos, or leave that option zero",
					 what, i, ocolos_version(), known);
	return 0;
}

int api_check_out(const void *out, const char *what, struct core_err *err)
{
	if (!out)
		return 0;
	size_t sz;
	memcpy(&sz, out, sizeof(sz));
	if (sz < sizeof(size_t))
		return core_errf(err, OCOLOS_EINVAL,
				 "%s.sz is %zu: set it to the size of the struct (OCOLOS_OPTS(%s, "
				 "name) does), so the library knows how much it may write", what, sz,
				 what);
	return 0;
}

void api_write_out(void *out, const void *src, size_t known)
{
	if (!out)
		return;
	size_t sz;
	memcpy(&sz, out, sizeof(sz));
	if (sz < sizeof(size_t))
		return;
	uint8_t *dst = out;
	size_t n = sz < known ? sz : known;
	memcpy(dst + sizeof(size_t), (const uint8_t *)src + sizeof(size_t), n - sizeof(size_t));
	if (sz > known)
		memset(dst + known, 0, sz - known);
}
