/* Walking one's own cgroups for ocolos-bam's resource checks (memory.c,
 * cpu.c). A limit set on a cgroup applies to its whole subtree, so every
 * ancestor's limit counts as well as our own. */
#ifndef OCOLOS_BAM_CGROUP_H
#define OCOLOS_BAM_CGROUP_H

/* The first number of a file, or -1 (also for v2's "max" and a missing
 * file). */
long long bam_read_ll(const char *path);

/* One line of /proc/self/cgroup, "N:controllers:/path", split in place:
 * `*controllers` is "" on v2's line ("0::/path"), a comma list on v1's.
 * 0 for a line without two colons. */
int bam_cgroup_line(char *line, const char **controllers, const char **path);

/* Whether a v1 controller list ("cpu,cpuacct") names `name` exactly
 * ("cpu" is not "cpuacct" or "cpuset"). */
int bam_cgroup_names(const char *controllers, const char *name);

/* `fn(dir, arg)` for the cgroup at `path` under the hierarchy mounted at
 * `base` (e.g. "/sys/fs/cgroup" and "/user.slice/x.scope"), then for each
 * ancestor up to and including `base` itself. */
void bam_cgroup_walk(const char *base, const char *path, void (*fn)(const char *dir, void *arg),
		     void *arg);

#endif
