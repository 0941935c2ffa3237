/*
 * What a round reports: one JSON line (for scripts; its keys are a
 * contract, docs/tools.schema.json, and the keys of the first versions —
 * pid, round, ok, error, message, pause_ms, functions_moved, c1_bytes,
 * call_sites_patched, pointer_slots_patched, bolt_ms, samples,
 * samples_in_binary, threads_stopped — keep their names and the line its
 * leading {"pid": because scripts read them), or a short human-readable
 * summary; progress lines on stderr; and the binary and its build-id,
 * read here with libelf (the library does not expose them, and the tools
 * use only its public header).
 */
#include <fcntl.h>
#include <gelf.h>
#include <libelf.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "tool.h"

/* Version of the JSON line's schema: raised when a key changes meaning or
 * goes away (new keys do not raise it). */
#define TOOL_JSON_SCHEMA 1

/* The GNU build-id note among the PT_NOTE segments of `e`, in hex. The
 * program headers, not the sections: the note the loader maps is there
 * even when the section headers were stripped. */
static void build_id_of(Elf *e, char *hex, size_t size)
{
	size_t nph;
	if (elf_getphdrnum(e, &nph) != 0)
		return;
	for (size_t i = 0; i < nph; i++) {
		GElf_Phdr ph;
		if (!gelf_getphdr(e, (int)i, &ph) || ph.p_type != PT_NOTE)
			continue;
		Elf_Data *d = elf_getdata_rawchunk(e, (int64_t)ph.p_offset, ph.p_filesz, ELF_T_NHDR);
		GElf_Nhdr nh;
		size_t off = 0, name_off, desc_off;
		while (d && (off = gelf_getnote(d, off, &nh, &name_off, &desc_off)) > 0) {
			if (nh.n_type != NT_GNU_BUILD_ID || nh.n_namesz != 4 ||
			    memcmp((const char *)d->d_buf + name_off, "GNU", 4))
				continue;
			const unsigned char *id = (const unsigned char *)d->d_buf + desc_off;
			for (size_t k = 0; k < nh.n_descsz && 2 * k + 2 < size; k++)
				snprintf(hex + 2 * k, 3, "%02x", id[k]);
			return;
		}
	}
}

void tool_binary_info(pid_t pid, const char *binary_path, char *path, size_t path_size,
		      char *build_id, size_t build_id_size)
{
	char exe[64];
	snprintf(exe, sizeof(exe), "/proc/%d/exe", (int)pid);
	path[0] = build_id[0] = '\0';
	if (binary_path) {
		snprintf(path, path_size, "%s", binary_path);
	} else {
		ssize_t n = readlink(exe, path, path_size - 1);
		path[n > 0 ? n : 0] = '\0';
	}
	int fd = open(binary_path ? binary_path : exe, O_RDONLY | O_CLOEXEC);
	if (fd < 0 || elf_version(EV_CURRENT) == EV_NONE) {
		if (fd >= 0)
			close(fd);
		return;
	}
	Elf *e = elf_begin(fd, ELF_C_READ, NULL);
	if (e && elf_kind(e) == ELF_K_ELF)
		build_id_of(e, build_id, build_id_size);
	elf_end(e);
	close(fd);
}

/* ---- JSON ---- */

static void json_string(const char *s)
{
	if (!s) {
		fputs("null", stdout);
		return;
	}
	putchar('"');
	for (; *s; s++) {
		unsigned char c = (unsigned char)*s;
		if (c == '"' || c == '\\')
			printf("\\%c", c);
		else if (c < 0x20)
			printf("\\u%04x", c);
		else
			putchar(c);
	}
	putchar('"');
}

/* UTC, ISO 8601 with milliseconds: when the round ended. */
static void timestamp(char *buf, size_t size)
{
	struct timespec ts;
	struct tm tm;
	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	size_t n = strftime(buf, size, "%Y-%m-%dT%H:%M:%S", &tm);
	snprintf(buf + n, size - n, ".%03ldZ", ts.tv_nsec / 1000000);
}

static void report_json(const struct tool_round *r)
{
	const struct ocolos_stats *st = r->st;
	char when[40];
	timestamp(when, sizeof(when));
	printf("{\"pid\":%d,\"round\":%u,\"ok\":%s", (int)r->pid, r->round, r->rc ? "false" : "true");
	if (r->rc) {
		printf(",\"error\":");
		json_string(ocolos_strerror(r->rc));
		printf(",\"message\":");
		json_string(r->message ? r->message : "");
	}
	printf(",\"pause_ms\":%.3f,\"functions_moved\":%u,\"c1_bytes\":%llu,"
	       "\"call_sites_patched\":%u,\"pointer_slots_patched\":%u,\"bolt_ms\":%.1f,"
	       "\"samples\":%llu,\"samples_in_binary\":%llu,\"threads_stopped\":%u",
	       st->pause_ns / 1e6, st->functions_moved, (unsigned long long)st->c1_bytes,
	       st->call_sites_patched, st->pointer_slots_patched, st->bolt_ns / 1e6,
	       (unsigned long long)st->samples, (unsigned long long)st->samples_in_binary,
	       st->threads_stopped);
	printf(",\"error_code\":%d,\"stage\":\"%s\",\"sampler\":", r->rc, r->stage);
	json_string(st->sampler[0] ? st->sampler : NULL);
	printf(",\"threads_sampled\":%u,\"entries_patched\":%u,\"entries_blocked\":%u,"
	       "\"pointer_slots_kept\":%u,\"c1_addr\":\"0x%llx\",\"profile_ms\":%.1f,"
	       "\"round_ms\":%.1f,\"binary\":",
	       st->threads_sampled, st->entries_patched, st->entries_blocked,
	       st->pointer_slots_kept, (unsigned long long)st->c1_addr, st->profile_ns / 1e6,
	       r->round_ns / 1e6);
	json_string(r->binary && r->binary[0] ? r->binary : NULL);
	printf(",\"build_id\":");
	json_string(r->build_id && r->build_id[0] ? r->build_id : NULL);
	printf(",\"generation\":%u,\"versions_mapped\":%u,\"versions_retired\":%u,"
	       "\"bytes_retired\":%llu", st->generation, st->versions_mapped, st->versions_retired,
	       (unsigned long long)st->bytes_retired);
	if (st->benefit_pairs)
		printf(",\"benefit_ratio\":%.4f,\"benefit_pairs\":%u,\"benefit_ms\":%.1f",
		       st->benefit_ratio, st->benefit_pairs, st->benefit_ns / 1e6);
	static const char *const stops[] = { NULL, "fixed", "converged", "max", "canceled" };
	printf(",\"profile_stop\":");
	json_string(st->profile_stop < sizeof(stops) / sizeof(stops[0]) ? stops[st->profile_stop]
									  : NULL);
	if (st->profile_distance_ppm != UINT32_MAX && st->profile_stop)
		printf(",\"profile_distance_ppm\":%u", st->profile_distance_ppm);
	printf(",\"sample_overhead_ppm\":%u,\"sample_hz_final\":%u", st->sample_overhead_ppm,
	       st->sample_hz_final);
	printf(",\"time\":\"%s\",\"schema\":%d}\n", when, TOOL_JSON_SCHEMA);
}

/* ---- text ---- */

static void human_bytes(uint64_t b, char *buf, size_t size)
{
	if (b >= (10ull << 20))
		snprintf(buf, size, "%.1f MiB", b / 1048576.0);
	else
		snprintf(buf, size, "%.1f KiB", b / 1024.0);
}

static void report_text(const struct tool_round *r)
{
	const struct ocolos_stats *st = r->st;
	const char *bin = r->binary && r->binary[0] ? r->binary : "?";
	if (r->round == 0) {
		printf("pid %d: cannot be optimized: %s\n  %s\n", (int)r->pid,
		       ocolos_strerror(r->rc), r->message ? r->message : "");
		return;
	}
	if (!strcmp(r->stage, "revert")) {
		if (r->rc)
			printf("pid %d (%s): revert failed: %s\n  %s\n", (int)r->pid, bin,
			       ocolos_strerror(r->rc), r->message ? r->message : "");
		else
			printf("pid %d (%s): back to its original code in %.2f s (pause %.3f ms); %u "
			       "versions of optimized code still mapped, %u retired in all\n",
			       (int)r->pid, bin, r->round_ns / 1e9, st->pause_ns / 1e6,
			       st->versions_mapped, st->versions_retired);
		return;
	}
	if (r->rc)
		printf("round %u on pid %d (%s): failed in %s after %.2f s\n  %s\n  %s\n", r->round,
		       (int)r->pid, bin, r->stage, r->round_ns / 1e9, ocolos_strerror(r->rc),
		       r->message ? r->message : "");
	else
		printf("round %u on pid %d (%s): optimized in %.2f s\n", r->round, (int)r->pid, bin,
		       r->round_ns / 1e9);
	if (r->stage_ns[0])
		printf("  profile   %6.2f s  %s: %llu samples, %llu in the binary, %u threads\n",
		       r->stage_ns[0] / 1e9, st->sampler[0] ? st->sampler : "-",
		       (unsigned long long)st->samples, (unsigned long long)st->samples_in_binary,
		       st->threads_sampled);
	if (r->stage_ns[1])
		printf("  optimize  %6.2f s  llvm-bolt %.2f s: %u functions moved\n",
		       r->stage_ns[1] / 1e9, st->bolt_ns / 1e9, st->functions_moved);
	if (r->stage_ns[2] && (!r->rc || r->stage_ns[3])) {
		char c1[32];
		human_bytes(st->c1_bytes, c1, sizeof(c1));
		printf("  replace   %6.2f s  %s of new code at 0x%llx; pause %.3f ms, %u threads "
		       "stopped\n", r->stage_ns[2] / 1e9, c1, (unsigned long long)st->c1_addr,
		       st->pause_ns / 1e6, st->threads_stopped);
		printf("            redirected: %u call sites, %u function entries (%u left for now), "
		       "%u pointer slots (%u kept on the original code)\n", st->call_sites_patched,
		       st->entries_patched, st->entries_blocked, st->pointer_slots_patched,
		       st->pointer_slots_kept);
		printf("            generation %u; %u versions mapped, %u retired in all\n",
		       st->generation, st->versions_mapped, st->versions_retired);
	}
	if (r->stage_ns[3] && st->benefit_pairs)
		printf("  check     %6.2f s  optimized / original work rate %.3f (median of %u "
		       "pairs): %s\n", r->stage_ns[3] / 1e9, st->benefit_ratio, st->benefit_pairs,
		       r->rc == OCOLOS_ENOGAIN ? "reverted" : r->rc ? "failed" : "kept");
}

void tool_report(const struct tool_cfg *cfg, const struct tool_round *r)
{
	int json = cfg->format == TOOL_FORMAT_JSON ||
		   (cfg->format == TOOL_FORMAT_AUTO && !isatty(STDOUT_FILENO));
	if (json)
		report_json(r);
	else
		report_text(r);
	fflush(stdout);
}

void tool_progress(const struct tool_cfg *cfg, pid_t pid, unsigned round, const char *fmt, ...)
{
	if (cfg->quiet)
		return;
	char line[2048];
	int n = round ? snprintf(line, sizeof(line), "%s: pid %d: round %u: ", cfg->prog, (int)pid,
				 round)
		      : snprintf(line, sizeof(line), "%s: pid %d: ", cfg->prog, (int)pid);
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(line + n, sizeof(line) - (size_t)n - 1, fmt, ap);
	va_end(ap);
	/* One write per line, so that lines of the tool and of the library's
	 * log (-v) never interleave within a line. */
	strcat(line, "\n");
	fputs(line, stderr);
}
